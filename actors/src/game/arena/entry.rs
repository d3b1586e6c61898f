//! An arena entry as the rules, the matchmaker and storage see it: who
//! paid to fight, where it stands, and the battle it ended in.

use crate::ids::{UserId, UserKey};

/// One player's place in the arena, paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaEntry {
    pub id: String,
    pub key: UserKey,
    pub fee: i64,
    pub power: i64,
    pub created_ms: i64,
    /// Where the player joined from, to be told the battle's outcome
    /// (`discord:<channel>`); `None` for HTTP clients.
    pub notify: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Waiting,
    /// Left before a match: refunded.
    Left,
    /// Fought; the result is on its way to the player's actor.
    Matched,
    /// The result is paid.
    Rewarded,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Left => "left",
            Self::Matched => "matched",
            Self::Rewarded => "rewarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "waiting" => Some(Self::Waiting),
            "left" => Some(Self::Left),
            "matched" => Some(Self::Matched),
            "rewarded" => Some(Self::Rewarded),
            _ => None,
        }
    }
}

/// One side of a resolved battle, for that player's actor to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fought {
    pub entry: ArenaEntry,
    pub battle_id: String,
    pub opponent: UserId,
    pub won: bool,
    /// Gold paid to this player (0 for the loser).
    pub prize: i64,
}

/// An entry as stored, with its battle once matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub entry: ArenaEntry,
    pub status: EntryStatus,
    pub fought: Option<Fought>,
}
