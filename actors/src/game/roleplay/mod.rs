//! Roleplay XP: players keep several characters of their own (separate from
//! collected characters and from their own level) that earn XP from what
//! they write in the guild's roleplay channels, capped per day in the
//! player's own time zone. Commands: `xp_create`, `xp`, `xp_list`,
//! `xp_delete`, `xp_active`, `xp_rename`, `xp_timezone`; the `message`
//! event a front door sends for each post; and the admin's `hf_success`.
//!
//! The rules (`xp.rs`) and the day (`day.rs`) are pure; the guild's numbers
//! come from its settings. Every change of XP is explained by the tally of
//! its character's day (`rp_xp_days`), written in the same transaction.
//! A player's roleplay state is read by their actor the first time a
//! roleplay command needs it, like the collection.

pub mod day;
pub mod sheet;
pub(crate) mod sql;
pub mod xp;

use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::game::draft::{Context, Draft, Refusal};
use crate::game::guild::settings::{ChannelKind, GuildSettings};
use crate::ids::{UserId, UserKey};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{AuditRow, Write};

pub use sheet::{name_key, Roleplay, RpCharacter};

/// Characters one player may keep.
pub const MAX_CHARACTERS: usize = 25;
/// Longest character name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest image URL.
pub const MAX_URL_LEN: usize = 500;
/// Most characters one message may count (Discord's own limit is 4,000).
pub const MAX_CHARS: i64 = 100_000;
/// Most XP a roleplay character holds: a character stops earning there
/// (a post then earns nothing, and says so). A daily cap of 100 reaches it
/// in 27,000 years; the bound keeps every sum the checks take exact.
pub const MAX_XP: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleplayCommand {
    Create {
        name: String,
        image_url: Option<String>,
    },
    Show {
        name: Option<String>,
    },
    List,
    Delete {
        name: String,
        confirm: String,
    },
    Activate {
        name: String,
    },
    Rename {
        name: String,
        new_name: String,
    },
    Timezone {
        tz: Tz,
    },
    /// A post in the guild, by its channel and length.
    Message {
        channel_id: u64,
        chars: i64,
    },
    /// Admin: an hf success for a player's character.
    HfSuccess {
        user: UserId,
        character: String,
        /// The admin, set by the runtime when it readdresses the command.
        by: Option<UserId>,
    },
}

impl RoleplayCommand {
    pub const NAMES: &'static [&'static str] = &[
        "xp_create",
        "xp",
        "xp_list",
        "xp_delete",
        "xp_active",
        "xp_rename",
        "xp_timezone",
        "message",
        "hf_success",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "xp_create",
            Self::Show { .. } => "xp",
            Self::List => "xp_list",
            Self::Delete { .. } => "xp_delete",
            Self::Activate { .. } => "xp_active",
            Self::Rename { .. } => "xp_rename",
            Self::Timezone { .. } => "xp_timezone",
            Self::Message { .. } => "message",
            Self::HfSuccess { .. } => "hf_success",
        }
    }

    pub fn parse(name: &str, a: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(Some(match name {
            "xp_create" => Self::Create {
                name: character_name(a, "name")?,
                image_url: match a.optional_str("image_url")? {
                    None => None,
                    Some(u) if u.trim().is_empty() => None,
                    Some(u) => Some(image_url(u)?),
                },
            },
            "xp" => Self::Show {
                name: a
                    .optional_str("name")?
                    .map(|n| valid_name("name", n))
                    .transpose()?,
            },
            "xp_list" => Self::List,
            "xp_delete" => Self::Delete {
                name: character_name(a, "name")?,
                confirm: match a.optional_str("confirm")? {
                    Some(c) => c.trim().to_owned(),
                    None => {
                        return Err(ParseError::invalid(
                            "confirm: repeat the character's exact name to delete it",
                        ))
                    }
                },
            },
            "xp_active" => Self::Activate {
                name: character_name(a, "name")?,
            },
            "xp_rename" => Self::Rename {
                name: character_name(a, "name")?,
                new_name: character_name(a, "new_name")?,
            },
            "xp_timezone" => Self::Timezone {
                tz: match a.required("tz")? {
                    Value::String(s) => day::parse_tz(s).ok_or_else(|| {
                        ParseError::invalid(format!(
                            "tz must be an IANA time zone name such as Europe/Paris, America/New_York or UTC (got {:?})",
                            s.chars().take(40).collect::<String>()
                        ))
                    })?,
                    _ => return Err(ParseError::invalid("tz must be a string")),
                },
            },
            "message" => Self::Message {
                channel_id: a.user_id("channel_id")?.get() as u64,
                chars: a.integer("chars", 0, MAX_CHARS)?,
            },
            "hf_success" => Self::HfSuccess {
                user: a.user_id("user")?,
                character: character_name(a, "character")?,
                by: None,
            },
            _ => return Ok(None),
        }))
    }

    pub fn args(&self) -> Value {
        match self {
            Self::Create { name, image_url } => match image_url {
                Some(u) => json!({ "name": name, "image_url": u }),
                None => json!({ "name": name }),
            },
            Self::Show { name } => name.as_ref().map_or(json!({}), |n| json!({ "name": n })),
            Self::List => json!({}),
            Self::Delete { name, confirm } => json!({ "name": name, "confirm": confirm }),
            Self::Activate { name } => json!({ "name": name }),
            Self::Rename { name, new_name } => json!({ "name": name, "new_name": new_name }),
            Self::Timezone { tz } => json!({ "tz": tz.name() }),
            Self::Message { channel_id, chars } => {
                json!({ "channel_id": channel_id.to_string(), "chars": chars })
            }
            Self::HfSuccess {
                user, character, ..
            } => {
                json!({ "user": user.to_string(), "character": character })
            }
        }
    }

    pub fn writes_when_ok(&self) -> bool {
        matches!(
            self,
            Self::Create { .. }
                | Self::Delete { .. }
                | Self::Activate { .. }
                | Self::Rename { .. }
                | Self::Timezone { .. }
                | Self::HfSuccess { .. }
        )
    }
}

fn character_name(a: &mut Args<'_>, field: &str) -> Result<String, ParseError> {
    match a.required(field)? {
        Value::String(s) => valid_name(field, s),
        _ => Err(bad_name(field)),
    }
}

fn bad_name(field: &str) -> ParseError {
    ParseError::invalid(format!(
        "{field} must be 1 to {MAX_NAME_CHARS} printable characters"
    ))
}

/// A character name: trimmed, 1–32 characters, none of them a control.
pub fn valid_name(field: &str, s: &str) -> Result<String, ParseError> {
    let s = s.trim();
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || s.chars().any(char::is_control) {
        return Err(bad_name(field));
    }
    Ok(s.to_owned())
}

/// An image link: `https://` and a host, no spaces or controls, at most
/// `MAX_URL_LEN` bytes.
pub fn image_url(u: &str) -> Result<String, ParseError> {
    let u = u.trim();
    let host = u
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next());
    if u.len() > MAX_URL_LEN
        || host.is_none_or(|h| h.is_empty() || h.starts_with(':'))
        || u.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ParseError::invalid(format!(
            "image_url must be an https:// address of at most {MAX_URL_LEN} characters"
        )));
    }
    Ok(u.to_owned())
}

fn not_loaded() -> Refusal {
    Refusal::new(ErrorCode::Internal, "roleplay characters not read yet")
}

fn not_found(name: &str) -> Refusal {
    Refusal::new(
        ErrorCode::NotFound,
        format!("You have no character called {name:?}; /xp_list shows yours."),
    )
}

/// Whether a `message` in `channel_id` can earn anything for this player:
/// otherwise it is answered without writing (a front door sends one per
/// post, and most earn nothing).
pub fn earns(state: &UserState, guild: &GuildSettings, channel_id: u64) -> bool {
    guild.channel(channel_id) != ChannelKind::None
        && state.roleplay().is_some_and(|r| r.active().is_some())
}

pub fn decide(
    mut d: Draft,
    key: UserKey,
    c: &RoleplayCommand,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut rp = d.state.roleplay().cloned().ok_or_else(not_loaded)?;
    let g = ctx.guild;
    match c {
        RoleplayCommand::Create { name, image_url } => {
            if rp.characters.len() >= MAX_CHARACTERS {
                return Err(Refusal::new(
                    ErrorCode::LimitReached,
                    format!("You already have {MAX_CHARACTERS} characters; delete one first."),
                ));
            }
            if rp.find(name).is_some() {
                return Err(Refusal::new(
                    ErrorCode::NameTaken,
                    format!("You already have a character called {name:?}."),
                ));
            }
            // 63 random bits: ids are never reused, so a deleted character's
            // tallies never count for a new one.
            let id = ((ctx.fresh_id as u64) >> 1).max(1) as i64;
            let ch = RpCharacter {
                id,
                name: name.clone(),
                xp: 0,
                daily_xp: 0,
                daily_hf: 0,
                char_buffer: 0,
                image_url: image_url.clone(),
                created_ms: ctx.now_ms,
            };
            d.write(Write::RpCharacter(ch.clone()));
            rp.characters.push(ch);
            let first = rp.active.is_none();
            if first {
                rp.active = Some(id);
            }
            write_player(&mut d, &rp);
            let data = character_json(&rp, rp.characters.len() - 1, g);
            let msg = if first {
                format!("Created {name}; it earns XP from your roleplay posts.")
            } else {
                format!("Created {name}. /xp_active {name} makes it earn from your posts.")
            };
            finish(d, rp, data, msg)
        }
        RoleplayCommand::Show { name } => {
            let view = today(&rp, ctx.now_ms);
            let i = match name {
                Some(n) => view.find(n).ok_or_else(|| not_found(n))?,
                None => view.active().ok_or_else(|| {
                    Refusal::new(
                        ErrorCode::NotFound,
                        "You have no active character; /xp_create makes one.",
                    )
                })?,
            };
            let ch = &view.characters[i];
            let level = g.level_for_xp(ch.xp);
            let msg = format!(
                "{}: level {level}, {} XP ({} to the next level) · today {}/{} roleplay, {}/{} hf",
                ch.name,
                ch.xp,
                g.xp_for_level(level + 1) - ch.xp,
                ch.daily_xp,
                g.daily_rp_cap,
                ch.daily_hf,
                g.daily_hf_cap
            );
            Ok(d.with(character_json(&view, i, g), msg))
        }
        RoleplayCommand::List => {
            let view = today(&rp, ctx.now_ms);
            let list: Vec<Value> = (0..view.characters.len())
                .map(|i| character_json(&view, i, g))
                .collect();
            let msg = if list.is_empty() {
                "You have no roleplay characters; /xp_create makes one.".to_owned()
            } else {
                format!(
                    "{} character(s); your day resets at midnight {}.",
                    list.len(),
                    view.timezone.name()
                )
            };
            Ok(d.with(
                json!({ "characters": list, "timezone": view.timezone.name() }),
                msg,
            ))
        }
        RoleplayCommand::Delete { name, confirm } => {
            let i = rp.find(name).ok_or_else(|| not_found(name))?;
            let exact = rp.characters[i].name.clone();
            if *confirm != exact {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!("To delete {exact}, repeat its exact name as confirm."),
                ));
            }
            let gone = rp.characters.remove(i);
            d.write(Write::RpDeleted(gone.id));
            if rp.active == Some(gone.id) {
                rp.active = rp.characters.first().map(|c| c.id);
            }
            write_player(&mut d, &rp);
            let active = rp.active().map(|i| rp.characters[i].name.clone());
            let data = json!({ "deleted": exact, "xp": gone.xp, "active": active });
            finish(d, rp, data, format!("Deleted {exact} ({} XP).", gone.xp))
        }
        RoleplayCommand::Activate { name } => {
            let i = rp.find(name).ok_or_else(|| not_found(name))?;
            rp.active = Some(rp.characters[i].id);
            write_player(&mut d, &rp);
            let data = character_json(&rp, i, g);
            let msg = format!("{} now earns XP from your posts.", rp.characters[i].name);
            finish(d, rp, data, msg)
        }
        RoleplayCommand::Rename { name, new_name } => {
            let i = rp.find(name).ok_or_else(|| not_found(name))?;
            if rp.find(new_name).is_some_and(|j| j != i) {
                return Err(Refusal::new(
                    ErrorCode::NameTaken,
                    format!("You already have a character called {new_name:?}."),
                ));
            }
            let old = std::mem::replace(&mut rp.characters[i].name, new_name.clone());
            d.write(Write::RpCharacter(rp.characters[i].clone()));
            // The player row names the active character.
            write_player(&mut d, &rp);
            let data = character_json(&rp, i, g);
            finish(d, rp, data, format!("{old} is now called {new_name}."))
        }
        RoleplayCommand::Timezone { tz } => {
            rp.timezone = *tz;
            write_player(&mut d, &rp);
            let local = day::local_day(ctx.now_ms, *tz);
            let data = json!({ "timezone": tz.name(), "local_day": local.to_string() });
            let msg = format!(
                "Your roleplay day now ends at midnight {} (it is {local} there).",
                tz.name()
            );
            finish(d, rp, data, msg)
        }
        RoleplayCommand::Message { channel_id, chars } => {
            let kind = g.channel(*channel_id);
            let Some(i) = rp.active().filter(|_| kind != ChannelKind::None) else {
                return Ok(d.with(json!({ "earned": 0 }), "Nothing to earn here."));
            };
            roll_day(&mut d, &mut rp, ctx.now_ms);
            let before = rp.characters[i].clone();
            let ch = &mut rp.characters[i];
            let earned = match kind {
                ChannelKind::Roleplay => xp::roleplay_post(ch, *chars, g),
                _ => xp::hf_post(ch, g.hf_attempt_xp, g),
            };
            earn(d, rp, i, &before, earned, ctx, kind)
        }
        RoleplayCommand::HfSuccess { character, by, .. } => {
            let i = rp.find(character).ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NotFound,
                    format!("<@{}> has no character called {character:?}.", key.user),
                )
            })?;
            roll_day(&mut d, &mut rp, ctx.now_ms);
            let before = rp.characters[i].clone();
            let earned = xp::hf_post(&mut rp.characters[i], g.hf_success_xp, g);
            let ch = &rp.characters[i];
            d.write(Write::Audit(AuditRow {
                by: by.unwrap_or(key.user),
                action: "hf_success",
                target: Some(key.user),
                key: ch.name.clone(),
                old: before.xp.to_string(),
                new: ch.xp.to_string(),
                reason: String::new(),
            }));
            earn(d, rp, i, &before, earned, ctx, ChannelKind::Hf)
        }
    }
}

/// The XP a post (or an hf success) earned, with the rows that explain it.
fn earn(
    mut d: Draft,
    rp: Roleplay,
    i: usize,
    before: &RpCharacter,
    earned: i64,
    ctx: &Context<'_>,
    kind: ChannelKind,
) -> Result<Draft, Refusal> {
    let g = ctx.guild;
    let ch = &rp.characters[i];
    if *ch != *before {
        d.write(Write::RpCharacter(ch.clone()));
    }
    if (ch.daily_xp, ch.daily_hf) != (before.daily_xp, before.daily_hf) {
        if let Some(day) = rp.last_xp_reset {
            d.write(Write::RpTally {
                character: ch.id,
                day: day.to_string(),
                rp_xp: ch.daily_xp,
                hf_xp: ch.daily_hf,
            });
        }
    }
    let (from, to) = (g.level_for_xp(before.xp), g.level_for_xp(ch.xp));
    let mut data = character_json(&rp, i, g);
    data["earned"] = json!(earned);
    let capped = match kind {
        ChannelKind::Roleplay => ch.daily_xp >= g.daily_rp_cap,
        _ => ch.daily_hf >= g.daily_hf_cap,
    };
    data["capped"] = json!(capped);
    let mut msg = format!("{} +{earned} XP ({} XP).", ch.name, ch.xp);
    if to > from {
        let role = g.role_between(from, to);
        data["level_up"] = json!({
            "level": to,
            "role_id": role.map(|(_, r)| r.to_string()),
        });
        msg = format!("🎉 {} reached level {to}!", ch.name);
    }
    finish(d, rp, data, msg)
}

/// Starts a new day's counters if the player's local day moved on since
/// the last reset: every character's counters go back to 0.
fn roll_day(d: &mut Draft, rp: &mut Roleplay, now_ms: i64) {
    let (day, fresh) = day::counting_day(rp.last_xp_reset, now_ms, rp.timezone);
    if !fresh {
        return;
    }
    rp.last_xp_reset = Some(day);
    for ch in &mut rp.characters {
        if ch.daily_xp != 0 || ch.daily_hf != 0 {
            ch.daily_xp = 0;
            ch.daily_hf = 0;
            d.write(Write::RpCharacter(ch.clone()));
        }
    }
    write_player(d, rp);
}

/// The counters as they read today, without writing anything: what `xp`
/// and `xp_list` show.
fn today(rp: &Roleplay, now_ms: i64) -> Roleplay {
    let mut view = rp.clone();
    let (_, fresh) = day::counting_day(rp.last_xp_reset, now_ms, rp.timezone);
    if fresh {
        for ch in &mut view.characters {
            ch.daily_xp = 0;
            ch.daily_hf = 0;
        }
    }
    view
}

fn write_player(d: &mut Draft, rp: &Roleplay) {
    // One player row per WriteSet: the last one decided wins.
    d.writes
        .writes
        .retain(|w| !matches!(w, Write::RpPlayer { .. }));
    d.write(Write::RpPlayer {
        active_character: rp.active().map(|i| rp.characters[i].name.clone()),
        timezone: rp.timezone.name().to_owned(),
        last_xp_reset: rp.last_xp_reset.map(|d| d.to_string()),
    });
}

fn finish(mut d: Draft, rp: Roleplay, data: Value, msg: String) -> Result<Draft, Refusal> {
    d.state.set_roleplay(rp);
    Ok(d.with(data, msg))
}

fn character_json(rp: &Roleplay, i: usize, g: &GuildSettings) -> Value {
    let ch = &rp.characters[i];
    let level = g.level_for_xp(ch.xp);
    json!({
        "name": ch.name,
        "xp": ch.xp,
        "level": level,
        "next_level_xp": g.xp_for_level(level + 1),
        "daily_xp": ch.daily_xp,
        "daily_rp_cap": g.daily_rp_cap,
        "daily_hf": ch.daily_hf,
        "daily_hf_cap": g.daily_hf_cap,
        "char_buffer": ch.char_buffer,
        "image_url": ch.image_url,
        "active": rp.active == Some(ch.id),
    })
}
