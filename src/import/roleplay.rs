//! The roleplay XP bot's single JSON file. Fields (see
//! `assets/legacy/roleplay.json`, and the README):
//!
//! ```json
//! {"config": {"123": {"rp_channels": ["42"], "hf_channels": ["43"], "char_per_rp": 100,
//!                     "daily_rp_cap": 100, "daily_hf_cap": 50, "hf_attempt_xp": 5, "hf_success_xp": 20}},
//!  "users": {"123": {"456": {"active_character": "Ayla", "timezone": "Europe/Paris",
//!     "last_xp_reset": "2024-05-01",
//!     "characters": {"Ayla": {"xp": 1234, "daily_xp": 40, "daily_hf": 5, "char_buffer": 37,
//!                             "image_url": "https://img.example/ayla.png"}}}}}}
//! ```
//!
//! A character's XP is explained, as kokoro's own is, by per-day tallies:
//! its daily counters on its last reset day, and the rest on 1970-01-01
//! (the legacy bot kept no history). A guild's configuration becomes its
//! settings, audited under `--admin`, unless kokoro already has some.

use std::collections::{BTreeMap, HashSet};

use actors::game::guild::settings::{GuildSettings, Key};
use actors::game::roleplay::RpCharacter;
use actors::writeset::{AuditRow, UserRow, Write, WriteSet};
use actors::{GuildId, UserId, UserKey};
use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::{command_id, reply, Plan, Rejected};

/// The day imported XP without a date is tallied on.
pub const HISTORY_DAY: &str = "1970-01-01";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    config: BTreeMap<String, Value>,
    #[serde(default)]
    users: BTreeMap<String, BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rp_channels: Vec<Value>,
    #[serde(default)]
    hf_channels: Vec<Value>,
    char_per_rp: Option<i64>,
    daily_rp_cap: Option<i64>,
    daily_hf_cap: Option<i64>,
    hf_attempt_xp: Option<i64>,
    hf_success_xp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    active_character: Option<String>,
    timezone: Option<String>,
    last_xp_reset: Option<String>,
    #[serde(default)]
    characters: BTreeMap<String, Char>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Char {
    #[serde(default)]
    xp: i64,
    #[serde(default)]
    daily_xp: i64,
    #[serde(default)]
    daily_hf: i64,
    #[serde(default)]
    char_buffer: i64,
    image_url: Option<String>,
}

pub fn plan(text: &str, admin: Option<i64>, now_ms: i64) -> anyhow::Result<Plan> {
    let file: File =
        serde_json::from_str(text).context("the roleplay file is not the legacy bot's JSON")?;
    let mut plan = Plan::default();
    for (guild, config) in &file.config {
        let at = format!("config.{guild}");
        match settings(guild, config.clone(), admin, now_ms) {
            Ok(Some(r)) => plan.records.push(r),
            Ok(None) => {}
            Err(why) => plan.rejected.push(Rejected { at, why }),
        }
    }
    for (guild, users) in &file.users {
        for (user, doc) in users {
            let at = format!("users.{guild}.{user}");
            match player(guild, user, doc.clone(), now_ms) {
                Ok(r) => plan.records.push(r),
                Err(why) => plan.rejected.push(Rejected { at, why }),
            }
        }
    }
    Ok(plan)
}

fn key(guild: &str, user: &str) -> Result<UserKey, String> {
    let g = guild
        .parse()
        .ok()
        .and_then(|g| GuildId::new(g).ok())
        .ok_or(format!("guild {guild:?} is not an id"))?;
    let u = user
        .parse()
        .ok()
        .and_then(|u| UserId::new(u).ok())
        .ok_or(format!("user {user:?} is not an id"))?;
    Ok(UserKey::new(g, u))
}

/// A guild's configuration as its settings, each checked as `config_set`
/// checks it.
fn settings(
    guild: &str,
    config: Value,
    admin: Option<i64>,
    now_ms: i64,
) -> Result<Option<(WriteSet, String)>, String> {
    let c: Config = serde_json::from_value(config).map_err(|e| e.to_string())?;
    let admin = admin
        .and_then(|a| UserId::new(a).ok())
        .ok_or("a guild configuration needs --admin (the admin the settings are audited under)")?;
    let key = key(guild, &admin.to_string())?;
    let channels = |v: &[Value]| -> Result<String, String> {
        v.iter()
            .map(|c| {
                super::id(c)
                    .map(|i| i.to_string())
                    .ok_or(format!("channel {c} is not an id"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|ids| ids.join(","))
    };
    let mut pairs: Vec<(Key, String)> = Vec::new();
    if !c.rp_channels.is_empty() {
        pairs.push((Key::RpChannels, channels(&c.rp_channels)?));
    }
    if !c.hf_channels.is_empty() {
        pairs.push((Key::HfChannels, channels(&c.hf_channels)?));
    }
    for (k, v) in [
        (Key::CharPerRp, c.char_per_rp),
        (Key::DailyRpCap, c.daily_rp_cap),
        (Key::DailyHfCap, c.daily_hf_cap),
        (Key::HfAttemptXp, c.hf_attempt_xp),
        (Key::HfSuccessXp, c.hf_success_xp),
    ] {
        if let Some(v) = v {
            pairs.push((k, v.to_string()));
        }
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut check = GuildSettings::default();
    let mut ws = WriteSet::new(key, now_ms, command_id("roleplay-config", key));
    for (k, value) in &pairs {
        check
            .set(*k, value)
            .map_err(|e| format!("{}: {e}", k.as_str()))?;
        ws.writes.push(Write::Setting {
            key: k.as_str(),
            value: value.clone(),
        });
        ws.writes.push(Write::Audit(AuditRow {
            by: admin,
            action: "config_set",
            target: None,
            key: k.as_str().to_owned(),
            old: String::new(),
            new: value.clone(),
            reason: "imported from the roleplay bot".to_owned(),
        }));
    }
    let what = format!("guild {guild}: {} setting(s)", pairs.len());
    ws.reply_json = Some(reply(&what));
    Ok(Some((ws, what)))
}

fn player(guild: &str, user: &str, doc: Value, now_ms: i64) -> Result<(WriteSet, String), String> {
    let key = key(guild, user)?;
    let u: User = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let timezone = u.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!("unknown time zone {timezone:?}"));
    }
    let reset = match &u.last_xp_reset {
        None => None,
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| format!("broken date last_xp_reset {d:?}"))?
                .format("%Y-%m-%d")
                .to_string(),
        ),
    };
    let mut ws = WriteSet::new(key, now_ms, command_id("roleplay", key));
    // A player the roleplay bot knew but kokoro does not: a row with no
    // balances (their first command pays no welcome: they are not new).
    ws.row = Some(UserRow {
        gold: 0,
        gems: 0,
        xp: 0,
        level: actors::domain::level::level_for_xp(0),
        daily_day: None,
        daily_streak: 0,
        credits: 0,
        lucky_day: None,
        lucky_pct: 0,
    });
    let mut names: HashSet<String> = HashSet::new();
    let mut active = None;
    for (name, c) in &u.characters {
        let name = actors::game::roleplay::valid_name("name", name).map_err(|e| e.to_string())?;
        if !names.insert(name.to_lowercase()) {
            return Err(format!("duplicate character name {name:?}"));
        }
        for (what, v) in [
            ("xp", c.xp),
            ("daily_xp", c.daily_xp),
            ("daily_hf", c.daily_hf),
            ("char_buffer", c.char_buffer),
        ] {
            if v < 0 {
                return Err(format!("{name:?} has negative {what} ({v})"));
            }
        }
        let today = c.daily_xp.checked_add(c.daily_hf).ok_or("XP overflows")?;
        if today > c.xp {
            return Err(format!(
                "{name:?} has {} XP, less than today's counters ({today})",
                c.xp
            ));
        }
        if today > 0 && reset.is_none() {
            return Err(format!(
                "{name:?} has daily counters but the player has no last_xp_reset"
            ));
        }
        if let Some(url) = &c.image_url {
            if !url.starts_with("https://")
                || url.len() > 500
                || url.chars().any(char::is_whitespace)
            {
                return Err(format!(
                    "{name:?} has an image_url that is not an https link"
                ));
            }
        }
        let id = character_id(key, &name);
        if u.active_character
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(&name))
        {
            active = Some(name.clone());
        }
        ws.writes.push(Write::RpCharacter(RpCharacter {
            id,
            name: name.clone(),
            xp: c.xp,
            daily_xp: c.daily_xp,
            daily_hf: c.daily_hf,
            char_buffer: c.char_buffer,
            image_url: c.image_url.clone(),
            created_ms: now_ms,
        }));
        if c.xp > today {
            ws.writes.push(Write::RpTally {
                character: id,
                day: HISTORY_DAY.to_owned(),
                rp_xp: c.xp - today,
                hf_xp: 0,
            });
        }
        if let Some(day) = reset.as_ref().filter(|_| today > 0) {
            ws.writes.push(Write::RpTally {
                character: id,
                day: day.clone(),
                rp_xp: c.daily_xp,
                hf_xp: c.daily_hf,
            });
        }
    }
    if let Some(a) = &u.active_character {
        if active.is_none() {
            return Err(format!(
                "active_character {a:?} is none of their characters"
            ));
        }
    }
    ws.writes.insert(
        0,
        Write::RpPlayer {
            active_character: active,
            timezone: timezone.clone(),
            last_xp_reset: reset,
        },
    );
    let what = format!(
        "{key}: {} roleplay character(s), time zone {timezone}",
        u.characters.len()
    );
    ws.reply_json = Some(reply(&what));
    Ok((ws, what))
}

/// An imported character's id: the same for the same player and name in
/// every run (so a dry run and the real run agree), distinct for distinct
/// names, and 62 bits wide like the ids `xp_create` draws, so it never
/// meets one of those.
pub fn character_id(key: UserKey, name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!(
        "kokoro-import:{}:{}:{}",
        key.guild,
        key.user,
        actors::game::roleplay::name_key(name)
    ));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    ((u64::from_be_bytes(first) >> 2) as i64).max(1)
}
