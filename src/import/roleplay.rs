//! The roleplay XP bot's data: its single JSON file, or (see `postgres.rs`)
//! the PostgreSQL database it moved to. Fields of the file (see
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
//! settings, audited under `--admin`. A character kokoro cannot keep (a
//! bad name, XP past the most, a broken link) is rejected alone.

use std::collections::HashSet;

use actors::game::guild::settings::{GuildSettings, Key};
use actors::game::roleplay::{self as rp, RpCharacter};
use actors::writeset::{AuditRow, UserRow, Write, WriteSet};
use actors::{GuildId, UserId, UserKey};
use serde_json::Value;

use super::scan::Shape;
use super::value::{self, Fields};
use super::{command_id, reply, Checked, Kind, Rules};

/// The day imported XP without a date is tallied on.
pub const HISTORY_DAY: &str = "1970-01-01";

/// Where records sit in the file: `config.G` and `users.G.U`.
pub struct File;

impl Shape for File {
    fn is_record(&self, path: &[String]) -> bool {
        match path.first().map(String::as_str) {
            Some("config") => path.len() == 2,
            Some("users") => path.len() == 3,
            _ => false,
        }
    }
    fn is_container(&self, path: &[String]) -> bool {
        match path.first().map(String::as_str) {
            None => true,
            Some("config") => path.len() < 2,
            Some("users") => path.len() < 3,
            _ => false,
        }
    }
    fn ignored(&self, path: &[String]) -> bool {
        path == ["version"]
    }
}

/// A guild's configuration as its settings, each checked as `config_set`
/// checks it.
pub fn check_config(
    at: String,
    guild: &str,
    config: Result<Value, String>,
    rules: &Rules,
) -> Checked {
    let mut c = Checked::new(at, Kind::Guilds);
    let result = config.and_then(|v| settings(&mut c, guild, v, rules));
    c.finish(result)
}

fn settings(
    c: &mut Checked,
    guild: &str,
    config: Value,
    rules: &Rules,
) -> Result<WriteSet, String> {
    let mut f = Fields::of(config)?;
    let guild = value::canonical_id(guild)
        .and_then(|g| GuildId::new(g).ok())
        .ok_or_else(|| format!("guild {guild:?} is not an id"))?;
    let admin = rules
        .admin
        .ok_or("a guild configuration needs --admin (the admin the settings are audited under)")?;
    let key = UserKey::new(guild, admin);
    c.key = Some(key);
    let channels = |field: &str, v: Option<Value>| -> Result<Option<String>, String> {
        let Some(v) = v else { return Ok(None) };
        let Value::Array(list) = v else {
            return Err(format!("{field} is {v}, not a list"));
        };
        let ids = list
            .iter()
            .map(|c| value::id("channel", c).map(|i| i.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!ids.is_empty()).then(|| ids.join(",")))
    };
    let mut pairs: Vec<(Key, String)> = Vec::new();
    for (k, field) in [
        (Key::RpChannels, "rp_channels"),
        (Key::HfChannels, "hf_channels"),
    ] {
        if let Some(v) = channels(field, f.take(field))? {
            pairs.push((k, v));
        }
    }
    for (k, field) in [
        (Key::CharPerRp, "char_per_rp"),
        (Key::DailyRpCap, "daily_rp_cap"),
        (Key::DailyHfCap, "daily_hf_cap"),
        (Key::HfAttemptXp, "hf_attempt_xp"),
        (Key::HfSuccessXp, "hf_success_xp"),
    ] {
        if let Some(v) = value::int(field, f.take(field))? {
            pairs.push((k, v.to_string()));
        }
    }
    c.unknown_keys(&f, rules)?;
    c.read(Kind::Settings, pairs.len() as u64);
    let mut check = GuildSettings::default();
    let mut ws = WriteSet::new(key, rules.now_ms, command_id("roleplay-config", key));
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
    c.good(Kind::Settings, c.read_of(Kind::Settings));
    c.good(Kind::Guilds, 1);
    c.what = format!("guild {guild}: {} setting(s)", pairs.len());
    ws.reply_json = Some(reply(&c.what));
    Ok(ws)
}

/// One player's document: `characters` as written, in order (the
/// PostgreSQL reader may give one name twice; the file cannot).
pub fn check_player(
    at: String,
    guild: &str,
    user: &str,
    doc: Result<Value, String>,
    rules: &Rules,
) -> Checked {
    let mut c = Checked::new(at, Kind::Players);
    let result = doc.and_then(|d| player(&mut c, guild, user, d, rules));
    c.finish(result)
}

fn player(
    c: &mut Checked,
    guild: &str,
    user: &str,
    doc: Value,
    rules: &Rules,
) -> Result<WriteSet, String> {
    let mut f = Fields::of(doc)?;
    // An object keyed by name (the file), or a list of characters that
    // each carry a `name` (the database, where a name may repeat).
    let characters: Vec<(String, Value)> = match f.take("characters") {
        None => Vec::new(),
        Some(Value::Object(m)) => m.into_iter().collect(),
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|mut ch| {
                let name = match ch.as_object_mut().and_then(|o| o.remove("name")) {
                    Some(Value::String(n)) => n,
                    _ => String::new(),
                };
                (name, ch)
            })
            .collect(),
        Some(other) => return Err(format!("characters is {other}, not an object")),
    };
    c.read(Kind::Characters, characters.len() as u64);
    let g = value::canonical_id(guild)
        .and_then(|g| GuildId::new(g).ok())
        .ok_or_else(|| {
            format!("guild {guild:?} is not an id (decimal digits, no sign, no leading zero)")
        })?;
    let u = value::canonical_id(user)
        .and_then(|u| UserId::new(u).ok())
        .ok_or_else(|| {
            format!("user {user:?} is not an id (decimal digits, no sign, no leading zero)")
        })?;
    let key = UserKey::new(g, u);
    c.key = Some(key);
    if characters.len() > rp::MAX_CHARACTERS {
        return Err(format!(
            "has {} characters; a player keeps at most {}",
            characters.len(),
            rp::MAX_CHARACTERS
        ));
    }
    let timezone = value::text("timezone", f.take("timezone"), 64)?
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "UTC".to_owned());
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| format!("unknown time zone {timezone:?}"))?;
    let reset = match f.take("last_xp_reset") {
        None => None,
        Some(v) => {
            let d = value::day("last_xp_reset", &v)?;
            let today = chrono::DateTime::from_timestamp_millis(rules.now_ms)
                .map(|t| t.with_timezone(&tz).date_naive())
                .ok_or("the clock is out of range")?;
            if d > today {
                return Err(format!(
                    "last_xp_reset {d} is after today ({today} in {timezone})"
                ));
            }
            Some(d.format("%Y-%m-%d").to_string())
        }
    };
    let active_name = value::text("active_character", f.take("active_character"), 64)?;
    c.unknown_keys(&f, rules)?;

    let mut ws = WriteSet::new(key, rules.now_ms, command_id("roleplay", key));
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
        // The legacy bots kept no verification.
        verified: false,
    });
    let mut names: HashSet<String> = HashSet::new();
    let mut active = None;
    let mut kept = 0u64;
    let mut rejected: HashSet<String> = HashSet::new();
    for (name, v) in characters {
        match character(key, &name, v, reset.as_deref(), rules, &mut names) {
            Ok((ch, tallies)) => {
                kept += 1;
                c.good(Kind::Characters, 1);
                if active_name
                    .as_deref()
                    .is_some_and(|a| rp::name_key(a) == rp::name_key(&ch.name))
                {
                    active = Some(ch.name.clone());
                }
                ws.writes.push(Write::RpCharacter(ch));
                ws.writes.extend(tallies);
            }
            Err(why) => {
                rejected.insert(rp::name_key(name.trim()));
                c.reject_part(Kind::Characters, format!("character {name:?}"), why)
            }
        }
    }
    if let (Some(a), None) = (&active_name, &active) {
        if rejected.contains(&rp::name_key(a)) {
            c.warn(format!(
                "active_character {a:?} was rejected; the player has no active character"
            ));
        } else {
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
    c.good(Kind::Players, 1);
    c.what = format!("{key}: {kept} roleplay character(s), time zone {timezone}");
    ws.reply_json = Some(reply(&c.what));
    Ok(ws)
}

/// One character and the tallies that explain its XP.
fn character(
    key: UserKey,
    name: &str,
    v: Value,
    reset: Option<&str>,
    rules: &Rules,
    names: &mut HashSet<String>,
) -> Result<(RpCharacter, Vec<Write>), String> {
    let name = rp::valid_name("name", name).map_err(|e| e.to_string())?;
    let mut f = Fields::of(v)?;
    let xp = value::bounded("xp", f.take("xp"), 0, rp::MAX_XP)?;
    let daily_xp = value::bounded("daily_xp", f.take("daily_xp"), 0, rp::MAX_XP)?;
    let daily_hf = value::bounded("daily_hf", f.take("daily_hf"), 0, rp::MAX_XP)?;
    let char_buffer = value::bounded("char_buffer", f.take("char_buffer"), 0, rp::MAX_CHARS)?;
    let image_url = match value::text("image_url", f.take("image_url"), rp::MAX_URL_LEN)? {
        None => None,
        Some(u) if u.is_empty() => None,
        Some(u) => Some(rp::image_url(&u).map_err(|e| e.to_string())?),
    };
    let extra = f.unknown();
    if rules.strict && !extra.is_empty() {
        return Err(format!("unknown key {:?} (--strict)", extra[0]));
    }
    let today = daily_xp + daily_hf; // both at most MAX_XP: no overflow
    if today > xp {
        return Err(format!("has {xp} XP, less than today's counters ({today})"));
    }
    if today > 0 && reset.is_none() {
        return Err("has daily counters but the player has no last_xp_reset".to_owned());
    }
    if !names.insert(rp::name_key(&name)) {
        return Err("duplicate character name".to_owned());
    }
    let id = character_id(key, &name);
    let mut tallies = Vec::new();
    if xp > today {
        tallies.push(Write::RpTally {
            character: id,
            day: HISTORY_DAY.to_owned(),
            rp_xp: xp - today,
            hf_xp: 0,
        });
    }
    if let Some(day) = reset.filter(|_| today > 0) {
        tallies.push(Write::RpTally {
            character: id,
            day: day.to_owned(),
            rp_xp: daily_xp,
            hf_xp: daily_hf,
        });
    }
    Ok((
        RpCharacter {
            id,
            name,
            xp,
            daily_xp,
            daily_hf,
            char_buffer,
            image_url,
            created_ms: rules.now_ms,
        },
        tallies,
    ))
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
        rp::name_key(name)
    ));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    ((u64::from_be_bytes(first) >> 2) as i64).max(1)
}
