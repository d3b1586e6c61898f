//! Identifiers as the game sees them: guilds, users and command ids.
//!
//! Discord snowflakes arrive as decimal strings (they do not fit in a JSON
//! double); they are parsed here, once, into typed ids so nothing downstream
//! handles raw strings. Storage keeps them as signed 64-bit integers, which is
//! why ids above `i64::MAX` are refused rather than wrapped.

use std::fmt;
use std::str::FromStr;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be a decimal string of 1 to 19 digits (a Discord snowflake)")]
    NotDecimal,
    #[error("must be between 1 and 9223372036854775807")]
    OutOfRange,
    #[error("must be 1 to {max} characters of letters, digits, '-', '_', '.', ':'", max = CommandId::MAX_LEN)]
    BadCommandId,
}

fn parse_snowflake(s: &str) -> Result<i64, IdError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotDecimal);
    }
    match s.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(IdError::OutOfRange),
    }
}

macro_rules! snowflake {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a value read back from storage or built by a test.
            pub fn new(raw: i64) -> Result<Self, IdError> {
                if raw > 0 { Ok(Self(raw)) } else { Err(IdError::OutOfRange) }
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_snowflake(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

snowflake!(
    /// A Discord guild (server). Economies are per guild.
    GuildId
);
snowflake!(
    /// A Discord user.
    UserId
);

impl GuildId {
    /// The guild's slot in a cluster of `slots` slots: the slot of its
    /// Discord shard when the shard count divides the slot count (Discord
    /// routes a guild to shard `(id >> 22) % shards`).
    pub fn slot(self, slots: u32) -> u32 {
        ((self.0 as u64 >> 22) % u64::from(slots.max(1))) as u32
    }
}

/// One player: a user within a guild. This is what an actor is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub guild: GuildId,
    pub user: UserId,
}

impl UserKey {
    pub fn new(guild: GuildId, user: UserId) -> Self {
        Self { guild, user }
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.guild, self.user)
    }
}

/// The idempotency key of a command: a Discord interaction id or an HTTP
/// client's key. Length- and charset-checked so it is safe to store and log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandId(Box<str>);

impl CommandId {
    pub const MAX_LEN: usize = 100;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable 64-bit fingerprint, kept in memory to recognise retries
    /// without keeping every id string resident.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a: stable across runs and processes, unlike `DefaultHasher`.
        self.0.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

impl FromStr for CommandId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(IdError::BadCommandId)
        }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `id` has the form of an upload id (`u` and 32 hex digits): a
/// player's input image, kept by `uploads`.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 33
        && id.starts_with('u')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_are_positive_decimal_strings_within_i64() {
        assert_eq!("456".parse::<UserId>().map(UserId::get), Ok(456));
        assert_eq!(
            "9223372036854775807".parse::<UserId>().map(UserId::get),
            Ok(i64::MAX)
        );
        assert_eq!(
            "9223372036854775808".parse::<UserId>(),
            Err(IdError::OutOfRange)
        );
        assert_eq!("0".parse::<UserId>(), Err(IdError::OutOfRange));
        for bad in ["", "-1", "12a", " 1", "1.0", "１２"] {
            assert_eq!(bad.parse::<UserId>(), Err(IdError::NotDecimal), "{bad:?}");
        }
    }

    #[test]
    fn command_ids_are_charset_and_length_checked() {
        assert!("interaction:1234-abc_X.9".parse::<CommandId>().is_ok());
        assert!("".parse::<CommandId>().is_err());
        assert!("a b".parse::<CommandId>().is_err());
        assert!("é".parse::<CommandId>().is_err());
        assert!("x".repeat(101).parse::<CommandId>().is_err());
        assert!("x".repeat(100).parse::<CommandId>().is_ok());
    }

    #[test]
    fn fingerprint_is_stable_and_discriminates() {
        let a: CommandId = "abc".parse().unwrap();
        let b: CommandId = "abd".parse().unwrap();
        assert_eq!(a.fingerprint(), 0xe71fa2190541574b);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
