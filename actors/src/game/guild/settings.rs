//! A guild's settings, typed: what an admin may change with `config_set`,
//! each with its range and its default. The roleplay names are the legacy
//! bot's (`rp_channels`, `char_per_rp`, `daily_rp_cap`, ...), so operators
//! recognise their data. A value is parsed here, from what an admin typed
//! or what storage holds, and nowhere else.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::game::guild::role_rules::RoleRules;

/// Most channels one channel list holds.
pub const MAX_CHANNELS: usize = 50;
/// Most level roles.
pub const MAX_LEVEL_ROLES: usize = 25;

/// Every setting, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    RpChannels,
    HfChannels,
    NoXpChannels,
    CharPerRp,
    DailyRpCap,
    HfAttemptXp,
    HfSuccessXp,
    DailyHfCap,
    XpPerLevel,
    LevelRoles,
    DailyGold,
    CurrencyName,
    CurrencyEmoji,
    RoleRules,
    VerifyChannel,
    VerifiedRole,
    VerifyMinAccountAge,
    VerifyQuestion,
    VerifyAnswer,
    AdminChannel,
}

/// Longest verification question, in characters: Discord shows it as the
/// label of the answer form's field, which holds at most 45.
pub const MAX_QUESTION_CHARS: usize = 45;
/// Longest verification answer, in characters.
pub const MAX_ANSWER_CHARS: usize = 100;

/// The range of each number setting, and its default.
const fn numbers(key: Key) -> Option<(i64, i64, i64)> {
    Some(match key {
        Key::CharPerRp => (1, 100_000, 100),
        Key::DailyRpCap => (0, 100_000, 100),
        Key::HfAttemptXp => (0, 10_000, 5),
        Key::HfSuccessXp => (0, 100_000, 20),
        Key::DailyHfCap => (0, 100_000, 50),
        Key::XpPerLevel => (1, 1_000_000, 100),
        Key::DailyGold => (0, 1_000_000, 100),
        Key::VerifyMinAccountAge => (0, 3_650, 0),
        _ => return None,
    })
}

impl Key {
    pub const ALL: [Key; 20] = [
        Key::RpChannels,
        Key::HfChannels,
        Key::NoXpChannels,
        Key::CharPerRp,
        Key::DailyRpCap,
        Key::HfAttemptXp,
        Key::HfSuccessXp,
        Key::DailyHfCap,
        Key::XpPerLevel,
        Key::LevelRoles,
        Key::DailyGold,
        Key::CurrencyName,
        Key::CurrencyEmoji,
        Key::RoleRules,
        Key::VerifyChannel,
        Key::VerifiedRole,
        Key::VerifyMinAccountAge,
        Key::VerifyQuestion,
        Key::VerifyAnswer,
        Key::AdminChannel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RpChannels => "rp_channels",
            Self::HfChannels => "hf_channels",
            Self::NoXpChannels => "no_xp_channels",
            Self::CharPerRp => "char_per_rp",
            Self::DailyRpCap => "daily_rp_cap",
            Self::HfAttemptXp => "hf_attempt_xp",
            Self::HfSuccessXp => "hf_success_xp",
            Self::DailyHfCap => "daily_hf_cap",
            Self::XpPerLevel => "xp_per_level",
            Self::LevelRoles => "level_roles",
            Self::DailyGold => "daily_gold",
            Self::CurrencyName => "currency_name",
            Self::CurrencyEmoji => "currency_emoji",
            Self::RoleRules => "role_rules",
            Self::VerifyChannel => "verify_channel",
            Self::VerifiedRole => "verified_role",
            Self::VerifyMinAccountAge => "verify_min_account_age",
            Self::VerifyQuestion => "verify_question",
            Self::VerifyAnswer => "verify_answer",
            Self::AdminChannel => "admin_channel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What a value of this setting must be, for error messages and help.
    pub fn allowed(self) -> String {
        if let Some((min, max, _)) = numbers(self) {
            return format!("a whole number from {min} to {max}");
        }
        match self {
            Self::RpChannels | Self::HfChannels | Self::NoXpChannels => format!(
                "up to {MAX_CHANNELS} channel ids or #mentions, separated by commas or spaces (empty: none)"
            ),
            Self::LevelRoles => format!(
                "up to {MAX_LEVEL_ROLES} pairs level:role_id (or level:@role), separated by commas (empty: none)"
            ),
            Self::CurrencyName => "1 to 24 printable characters".to_owned(),
            Self::RoleRules => format!(
                "up to {} rules CONDITION => ROLE_ID, separated by ';' (a condition: level >= N, \
                 rp_level >= N, owns C|R|SR|SSR, characters >= N, vip, gold >= N, streak >= N; \
                 several joined by 'and'; empty: none)",
                crate::game::guild::role_rules::MAX_RULES
            ),
            Self::VerifyChannel => "a channel id or #mention (empty: no verification)".to_owned(),
            Self::AdminChannel => "a channel id or #mention (empty: none)".to_owned(),
            Self::VerifiedRole => "a role id or @mention (empty: none)".to_owned(),
            Self::VerifyQuestion => format!("up to {MAX_QUESTION_CHARS} printable characters (empty: no question)"),
            Self::VerifyAnswer => format!("up to {MAX_ANSWER_CHARS} printable characters (empty: no answer)"),
            _ => "up to 32 printable characters (empty: none)".to_owned(),
        }
    }
}

/// One guild's settings. `Default` is what a guild has before any change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildSettings {
    pub rp_channels: Vec<u64>,
    pub hf_channels: Vec<u64>,
    /// Channels that earn nothing, even when listed as roleplay or hf: an
    /// admin can mute a channel without losing its place in the lists.
    pub no_xp_channels: Vec<u64>,
    /// Characters of roleplay per XP point.
    pub char_per_rp: i64,
    pub daily_rp_cap: i64,
    pub hf_attempt_xp: i64,
    pub hf_success_xp: i64,
    pub daily_hf_cap: i64,
    /// The level curve: level L is reached at `xp_per_level × L(L−1)/2` XP,
    /// so each level costs `xp_per_level` more than the one before.
    pub xp_per_level: i64,
    /// Role granted on reaching a level, sorted by level.
    pub level_roles: Vec<(u32, u64)>,
    /// The base gold of `daily` (the streak adds to it).
    pub daily_gold: i64,
    pub currency_name: String,
    pub currency_emoji: String,
    /// Roles given from what members achieve (role connections).
    pub role_rules: RoleRules,
    /// Where the verification message and its button are kept (`None`:
    /// verification is off).
    pub verify_channel: Option<u64>,
    /// The role a verified member gets.
    pub verified_role: Option<u64>,
    /// Days a Discord account must have existed to verify.
    pub verify_min_account_age: i64,
    /// A question the member answers when verifying (empty: none).
    pub verify_question: String,
    /// The answer expected, compared ignoring case and outer spaces.
    pub verify_answer: String,
    /// Where kokoro tells the admins of a problem they can fix (a role it
    /// may not give, a missing intent).
    pub admin_channel: Option<u64>,
}

impl Default for GuildSettings {
    fn default() -> Self {
        let n = |k| numbers(k).map_or(0, |(_, _, d)| d);
        Self {
            rp_channels: Vec::new(),
            hf_channels: Vec::new(),
            no_xp_channels: Vec::new(),
            char_per_rp: n(Key::CharPerRp),
            daily_rp_cap: n(Key::DailyRpCap),
            hf_attempt_xp: n(Key::HfAttemptXp),
            hf_success_xp: n(Key::HfSuccessXp),
            daily_hf_cap: n(Key::DailyHfCap),
            xp_per_level: n(Key::XpPerLevel),
            level_roles: Vec::new(),
            daily_gold: n(Key::DailyGold),
            currency_name: "gold".to_owned(),
            currency_emoji: "🪙".to_owned(),
            role_rules: RoleRules::default(),
            verify_channel: None,
            verified_role: None,
            verify_min_account_age: n(Key::VerifyMinAccountAge),
            verify_question: String::new(),
            verify_answer: String::new(),
            admin_channel: None,
        }
    }
}

/// What kind of channel a message was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Roleplay,
    Hf,
    None,
}

impl GuildSettings {
    /// The defaults, for decisions that read no guild setting.
    pub fn fallback() -> &'static Self {
        static DEFAULT: std::sync::LazyLock<GuildSettings> =
            std::sync::LazyLock::new(GuildSettings::default);
        &DEFAULT
    }

    pub fn channel(&self, channel: u64) -> ChannelKind {
        if self.no_xp_channels.contains(&channel) {
            ChannelKind::None
        } else if self.rp_channels.contains(&channel) {
            ChannelKind::Roleplay
        } else if self.hf_channels.contains(&channel) {
            ChannelKind::Hf
        } else {
            ChannelKind::None
        }
    }

    /// XP needed to reach `level` (level 1 at 0 XP).
    pub fn xp_for_level(&self, level: u32) -> i64 {
        let l = i64::from(level.max(1));
        self.xp_per_level.saturating_mul(l * (l - 1) / 2)
    }

    /// The level `xp` reaches on this guild's curve.
    pub fn level_for_xp(&self, xp: i64) -> u32 {
        // Start from the square-root estimate and step to the exact level.
        let estimate = ((2.0 * xp.max(0) as f64 / self.xp_per_level as f64).sqrt()) as u32;
        let mut level = estimate.max(1);
        while level > 1 && self.xp_for_level(level) > xp {
            level -= 1;
        }
        while level < u32::MAX && self.xp_for_level(level + 1) <= xp {
            level += 1;
        }
        level
    }

    /// The role of the highest configured level in `(from, to]`: what a
    /// level-up from `from` to `to` grants.
    pub fn role_between(&self, from: u32, to: u32) -> Option<(u32, u64)> {
        self.level_roles
            .iter()
            .rev()
            .find(|(l, _)| *l > from && *l <= to)
            .copied()
    }

    /// A setting's value as `config_set` takes it and `config_show` shows it.
    pub fn get(&self, key: Key) -> String {
        let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        match key {
            Key::RpChannels => list(&self.rp_channels),
            Key::HfChannels => list(&self.hf_channels),
            Key::NoXpChannels => list(&self.no_xp_channels),
            Key::CharPerRp => self.char_per_rp.to_string(),
            Key::DailyRpCap => self.daily_rp_cap.to_string(),
            Key::HfAttemptXp => self.hf_attempt_xp.to_string(),
            Key::HfSuccessXp => self.hf_success_xp.to_string(),
            Key::DailyHfCap => self.daily_hf_cap.to_string(),
            Key::XpPerLevel => self.xp_per_level.to_string(),
            Key::LevelRoles => {
                let mut s = String::new();
                for (i, (level, role)) in self.level_roles.iter().enumerate() {
                    let _ = write!(s, "{}{level}:{role}", if i > 0 { "," } else { "" });
                }
                s
            }
            Key::DailyGold => self.daily_gold.to_string(),
            Key::CurrencyName => self.currency_name.clone(),
            Key::CurrencyEmoji => self.currency_emoji.clone(),
            Key::RoleRules => self.role_rules.to_string(),
            Key::VerifyChannel => self
                .verify_channel
                .map(|c| c.to_string())
                .unwrap_or_default(),
            Key::VerifiedRole => self
                .verified_role
                .map(|r| r.to_string())
                .unwrap_or_default(),
            Key::VerifyMinAccountAge => self.verify_min_account_age.to_string(),
            Key::VerifyQuestion => self.verify_question.clone(),
            Key::VerifyAnswer => self.verify_answer.clone(),
            Key::AdminChannel => self
                .admin_channel
                .map(|c| c.to_string())
                .unwrap_or_default(),
        }
    }

    /// Sets `key` from its text form; on error, names the key and what it
    /// allows, and changes nothing.
    pub fn set(&mut self, key: Key, value: &str) -> Result<(), String> {
        let bad = || format!("{} must be {}", key.as_str(), key.allowed());
        let value = value.trim();
        if let Some((min, max, _)) = numbers(key) {
            let n: i64 = value.parse().map_err(|_| bad())?;
            if n < min || n > max {
                return Err(bad());
            }
            *match key {
                Key::CharPerRp => &mut self.char_per_rp,
                Key::DailyRpCap => &mut self.daily_rp_cap,
                Key::HfAttemptXp => &mut self.hf_attempt_xp,
                Key::HfSuccessXp => &mut self.hf_success_xp,
                Key::DailyHfCap => &mut self.daily_hf_cap,
                Key::XpPerLevel => &mut self.xp_per_level,
                Key::VerifyMinAccountAge => &mut self.verify_min_account_age,
                _ => &mut self.daily_gold,
            } = n;
            return Ok(());
        }
        match key {
            Key::RpChannels | Key::HfChannels | Key::NoXpChannels => {
                let ids = channel_ids(value).ok_or_else(bad)?;
                *match key {
                    Key::RpChannels => &mut self.rp_channels,
                    Key::HfChannels => &mut self.hf_channels,
                    _ => &mut self.no_xp_channels,
                } = ids;
            }
            Key::LevelRoles => self.level_roles = level_roles(value).ok_or_else(bad)?,
            Key::CurrencyName => self.currency_name = text(value, 1, 24).ok_or_else(bad)?,
            Key::RoleRules => {
                self.role_rules =
                    RoleRules::parse(value).map_err(|e| format!("{}: {e}", key.as_str()))?
            }
            Key::VerifyChannel | Key::VerifiedRole | Key::AdminChannel => {
                let id = if value.is_empty() {
                    None
                } else {
                    Some(snowflake(value.trim_start_matches('@')).ok_or_else(bad)?)
                };
                *match key {
                    Key::VerifyChannel => &mut self.verify_channel,
                    Key::AdminChannel => &mut self.admin_channel,
                    _ => &mut self.verified_role,
                } = id;
            }
            Key::VerifyQuestion => {
                self.verify_question = text(value, 0, MAX_QUESTION_CHARS).ok_or_else(bad)?
            }
            Key::VerifyAnswer => {
                self.verify_answer = text(value, 0, MAX_ANSWER_CHARS).ok_or_else(bad)?
            }
            _ => self.currency_emoji = text(value, 0, 32).ok_or_else(bad)?,
        }
        Ok(())
    }

    /// Every setting, for `config_show`.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        for k in Key::ALL {
            o.insert(k.as_str().to_owned(), json!(self.get(k)));
        }
        Value::Object(o)
    }
}

/// A snowflake as typed: digits, or a Discord mention (`<#1>`, `<@&1>`).
fn snowflake(s: &str) -> Option<u64> {
    let s = s
        .trim()
        .trim_start_matches("<#")
        .trim_start_matches("<@&")
        .trim_end_matches('>');
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0 && *n <= i64::MAX as u64)
}

fn channel_ids(value: &str) -> Option<Vec<u64>> {
    let mut ids = Vec::new();
    for part in value.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        let id = snowflake(part)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    (ids.len() <= MAX_CHANNELS).then_some(ids)
}

fn level_roles(value: &str) -> Option<Vec<(u32, u64)>> {
    let mut roles: Vec<(u32, u64)> = Vec::new();
    for part in value.split(',').filter(|p| !p.trim().is_empty()) {
        let (level, role) = part.split_once(':')?;
        let level: u32 = level
            .trim()
            .parse()
            .ok()
            .filter(|l| (2..=10_000).contains(l))?;
        let role = snowflake(role.trim().trim_start_matches('@'))?;
        if roles.iter().any(|(l, _)| *l == level) {
            return None;
        }
        roles.push((level, role));
    }
    roles.sort_unstable();
    (roles.len() <= MAX_LEVEL_ROLES).then_some(roles)
}

fn text(value: &str, min: usize, max: usize) -> Option<String> {
    let n = value.chars().count();
    (n >= min && n <= max && !value.chars().any(char::is_control)).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_round_trips_through_its_text_form() {
        let mut s = GuildSettings::default();
        s.set(Key::RpChannels, "<#11>, 12 12").unwrap();
        s.set(Key::LevelRoles, "10:@30, 5:<@&20>").unwrap();
        s.set(Key::CharPerRp, "250").unwrap();
        s.set(Key::CurrencyName, "coins").unwrap();
        s.set(
            Key::RoleRules,
            "level >= 5 and owns SSR => <@&40>; vip => 41",
        )
        .unwrap();
        s.set(Key::VerifyChannel, "<#50>").unwrap();
        s.set(Key::VerifiedRole, "@<@&51>").unwrap();
        s.set(Key::VerifyMinAccountAge, "7").unwrap();
        s.set(Key::VerifyQuestion, "Which planet do we live on?")
            .unwrap();
        s.set(Key::VerifyAnswer, "Earth").unwrap();
        s.set(Key::AdminChannel, "52").unwrap();
        assert_eq!(s.rp_channels, [11, 12]);
        assert_eq!(s.level_roles, [(5, 20), (10, 30)]);
        let mut again = GuildSettings::default();
        for k in Key::ALL {
            again.set(k, &s.get(k)).unwrap();
        }
        assert_eq!(again, s);
    }

    #[test]
    fn bad_values_name_the_key_and_what_it_allows_and_change_nothing() {
        let mut s = GuildSettings::default();
        for (key, value) in [
            (Key::CharPerRp, "0"),
            (Key::CharPerRp, "ten"),
            (Key::DailyRpCap, "100001"),
            (Key::RpChannels, "general"),
            (Key::RpChannels, "-5"),
            (Key::LevelRoles, "1:5"),
            (Key::LevelRoles, "5:1,5:2"),
            (Key::CurrencyName, ""),
            (Key::CurrencyEmoji, "\u{7}"),
            (Key::RoleRules, "levl >= 2 => 5"),
            (Key::VerifyChannel, "general"),
            (Key::VerifiedRole, "1,2"),
            (Key::VerifyMinAccountAge, "3651"),
        ] {
            let e = s.set(key, value).unwrap_err();
            assert!(e.starts_with(key.as_str()), "{e}");
        }
        assert_eq!(s, GuildSettings::default());
    }

    #[test]
    fn the_level_curve_costs_one_step_more_per_level() {
        let s = GuildSettings::default();
        let thresholds: Vec<i64> = (1..=5).map(|l| s.xp_for_level(l)).collect();
        assert_eq!(thresholds, [0, 100, 300, 600, 1000]);
        for (xp, level) in [(0, 1), (99, 1), (100, 2), (299, 2), (300, 3), (1000, 5)] {
            assert_eq!(s.level_for_xp(xp), level, "{xp}");
        }
        for xp in (0..200_000).step_by(7) {
            let l = s.level_for_xp(xp);
            assert!(s.xp_for_level(l) <= xp && s.xp_for_level(l + 1) > xp);
        }
    }

    #[test]
    fn a_muted_channel_earns_nothing_even_when_listed() {
        let mut s = GuildSettings::default();
        s.set(Key::RpChannels, "1,2").unwrap();
        s.set(Key::HfChannels, "3").unwrap();
        s.set(Key::NoXpChannels, "2").unwrap();
        assert_eq!(s.channel(1), ChannelKind::Roleplay);
        assert_eq!(s.channel(2), ChannelKind::None);
        assert_eq!(s.channel(3), ChannelKind::Hf);
        assert_eq!(s.channel(4), ChannelKind::None);
    }
}
