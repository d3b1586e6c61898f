//! Character collection: `summon`, `collection`, `character`, `upgrade`,
//! `team`. Players summon characters of four rarities with gems (pity per
//! banner), duplicates become shards, shards and gold raise levels, and a
//! team of up to three fights in the arena. The roster and the summon rules
//! are data and pure functions (`roster.rs`, `summon.rs`); this file holds
//! the commands, their rules and what they write.
//!
//! A player's collection is read from storage by their actor the first time
//! a command needs it (`UserState::collection`); the rules refuse to run
//! without it rather than write over what storage holds.

pub mod owned;
pub mod roster;
pub(crate) mod sql;
pub mod summon;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::domain::Currency;
use crate::game::draft::{Context, Draft, Refusal};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{Summoned, Write};
use owned::Owned;
use roster::{Rarity, Roster, Upgrade, MAX_BANNER_ID, MAX_NAME_CHARS};

/// Most characters in a team.
pub const TEAM_SIZE: usize = 3;
/// Characters listed per `collection` page.
pub const PAGE_SIZE: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionCommand {
    /// No banner and no count: the rates of every banner.
    Summon {
        banner: Option<String>,
        count: Option<u32>,
    },
    Collection {
        page: u32,
    },
    Character {
        name: String,
    },
    Upgrade {
        name: String,
    },
    Team {
        names: Vec<String>,
    },
}

impl CollectionCommand {
    pub const NAMES: &'static [&'static str] =
        &["summon", "collection", "character", "upgrade", "team"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Summon { .. } => "summon",
            Self::Collection { .. } => "collection",
            Self::Character { .. } => "character",
            Self::Upgrade { .. } => "upgrade",
            Self::Team { .. } => "team",
        }
    }

    /// The command called `name`, if it is one of this feature's.
    pub fn parse(name: &str, a: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(Some(match name {
            "summon" => Self::Summon {
                banner: match a.optional_str("banner")? {
                    None => None,
                    Some(b) => Some(banner_id(b)?),
                },
                count: match a.optional_integer("count", 1, 10)? {
                    None => None,
                    Some(1) => Some(1),
                    Some(10) => Some(10),
                    Some(_) => return Err(ParseError::invalid("count must be 1 or 10")),
                },
            },
            "collection" => Self::Collection {
                page: a.optional_integer("page", 1, 10_000)?.unwrap_or(1) as u32,
            },
            "character" => Self::Character {
                name: character_name(a, "name")?,
            },
            "upgrade" => Self::Upgrade {
                name: character_name(a, "name")?,
            },
            "team" => Self::Team {
                names: team_names(a, "names")?,
            },
            _ => return Ok(None),
        }))
    }

    /// The `args` object that `parse` reads back into this command.
    pub fn args(&self) -> Value {
        match self {
            Self::Summon { banner, count } => {
                let mut o = serde_json::Map::new();
                if let Some(b) = banner {
                    o.insert("banner".into(), json!(b));
                }
                if let Some(c) = count {
                    o.insert("count".into(), json!(c));
                }
                Value::Object(o)
            }
            Self::Collection { page } => json!({ "page": page }),
            Self::Character { name } | Self::Upgrade { name } => json!({ "name": name }),
            Self::Team { names } => json!({ "names": names }),
        }
    }

    /// Whether an `ok` answer always changed something.
    pub fn writes_when_ok(&self) -> bool {
        match self {
            Self::Summon { banner, count } => banner.is_some() || count.is_some(),
            Self::Upgrade { .. } | Self::Team { .. } => true,
            Self::Collection { .. } | Self::Character { .. } => false,
        }
    }
}

fn banner_id(s: &str) -> Result<String, ParseError> {
    if s.is_empty()
        || s.len() > MAX_BANNER_ID
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ParseError::invalid(format!(
            "banner must be a banner id: 1 to {MAX_BANNER_ID} of a-z, 0-9, '_'"
        )));
    }
    Ok(s.to_owned())
}

fn checked_name(field: &str, s: &str) -> Result<String, ParseError> {
    let s = s.trim();
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || s.chars().any(char::is_control) {
        return Err(ParseError::invalid(format!(
            "{field} must be a character's name: 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    Ok(s.to_owned())
}

fn character_name(a: &mut Args<'_>, field: &str) -> Result<String, ParseError> {
    match a.required(field)? {
        Value::String(s) => checked_name(field, s),
        _ => Err(ParseError::invalid(format!("{field} must be a string"))),
    }
}

/// A list of names, as a JSON array or one comma-separated string (what a
/// chat front door's text option gives); empty clears the team.
fn team_names(a: &mut Args<'_>, field: &str) -> Result<Vec<String>, ParseError> {
    let names: Vec<String> = match a.required(field)? {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => checked_name(field, s),
                _ => Err(ParseError::invalid(format!("{field} must hold strings"))),
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| checked_name(field, p))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ParseError::invalid(format!(
                "{field} must be a list of character names"
            )))
        }
    };
    if names.len() > TEAM_SIZE {
        return Err(ParseError::invalid(format!(
            "{field}: a team has at most {TEAM_SIZE} characters"
        )));
    }
    Ok(names)
}

/// A character's power at `level`.
pub fn power_at(base: i64, level: u32, upgrade: &Upgrade) -> i64 {
    let extra = base
        .saturating_mul(upgrade.power_percent)
        .saturating_mul(i64::from(level.saturating_sub(1)))
        / 100;
    base.saturating_add(extra)
}

/// The power a player's team brings to the arena, if they have a team.
pub fn team_power(state: &UserState, roster: &Roster) -> Option<i64> {
    let c = state.collection()?;
    let power: i64 = c
        .team
        .iter()
        .filter_map(|name| {
            let owned = c.owned(name)?;
            let (_, ch) = roster.find(name)?;
            Some(power_at(ch.power, owned.level, &roster.upgrade))
        })
        .sum();
    (power > 0).then_some(power)
}

fn not_loaded() -> Refusal {
    Refusal::new(
        ErrorCode::Internal,
        "the player's collection was not read; nothing was changed",
    )
}

fn rates_json(rates: &[f64; 4]) -> Value {
    let mut o = serde_json::Map::new();
    for r in Rarity::ALL {
        o.insert(r.as_str().into(), json!(rates[r.index()]));
    }
    Value::Object(o)
}

/// Decides a collection command on the player's draft.
pub fn decide(d: Draft, command: &CollectionCommand, ctx: &Context<'_>) -> Result<Draft, Refusal> {
    match command {
        CollectionCommand::Summon {
            banner: None,
            count: None,
        } => Ok(rates(d, ctx.roster)),
        CollectionCommand::Summon { banner, count } => summon(
            d,
            banner.as_deref().unwrap_or("standard"),
            count.unwrap_or(1),
            ctx,
        ),
        CollectionCommand::Collection { page } => list(d, *page, ctx.roster),
        CollectionCommand::Character { name } => character(d, name, ctx.roster),
        CollectionCommand::Upgrade { name } => upgrade(d, name, ctx.roster),
        CollectionCommand::Team { names } => team(d, names, ctx.roster),
    }
}

/// `summon` with no argument: every banner's costs and rates, base and
/// with pity.
fn rates(d: Draft, roster: &Roster) -> Draft {
    let banners: Vec<Value> = roster
        .banners()
        .iter()
        .map(|b| {
            json!({
                "banner": b.id, "name": b.name, "cost": b.cost, "ten_cost": b.ten_cost,
                "pity": b.pity, "rates": rates_json(&b.rates),
                "rates_with_pity": rates_json(&summon::consolidated_rates(b)),
            })
        })
        .collect();
    let msg = roster
        .banners()
        .iter()
        .map(|b| {
            format!(
                "{} ({}): {} gems, ten for {}; SSR {}% ({:.2}% with pity {})",
                b.name,
                b.id,
                b.cost,
                b.ten_cost,
                b.rates[Rarity::SSR.index()],
                summon::consolidated_rates(b)[Rarity::SSR.index()],
                b.pity
            )
        })
        .collect::<Vec<_>>()
        .join(" · ");
    d.with(json!({ "banners": banners }), msg)
}

fn summon(mut d: Draft, banner_id: &str, count: u32, ctx: &Context<'_>) -> Result<Draft, Refusal> {
    let roster = ctx.roster;
    let banner = roster.banner(banner_id).ok_or_else(|| {
        let ids: Vec<&str> = roster.banners().iter().map(|b| b.id.as_str()).collect();
        Refusal::new(
            ErrorCode::NotFound,
            format!("No banner {banner_id:?}; banners: {}.", ids.join(", ")),
        )
    })?;
    let cost = if count == 10 {
        banner.ten_cost
    } else {
        banner.cost
    };
    // One charge, one ledger row, for one summon or ten.
    d.debit(Currency::Gems, cost, "summon")?;
    // The draft already holds its own copy of the state: change it in place.
    let mut coll = d.state.take_collection().ok_or_else(not_loaded)?;
    let (mut since, mut all) = coll.pity(&banner.id);
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.draw);
    let mut writes = Vec::new();
    let mut changed: Vec<Box<str>> = Vec::new();
    let mut pulls = Vec::new();
    for _ in 0..count {
        let p = summon::pull(banner, since, rng.random(), rng.random());
        since = p.since_ssr;
        all += 1;
        let ch = roster.character(p.character).ok_or_else(not_loaded)?;
        let (owned, shards) = match coll.owned(&ch.name) {
            Some(o) => {
                let gained = roster.duplicate_shards[p.rarity.index()];
                let owned = Owned {
                    shards: o
                        .shards
                        .checked_add(gained)
                        .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "too many shards"))?,
                    copies: o.copies.saturating_add(1),
                    ..o.clone()
                };
                (owned, gained)
            }
            None => (
                Owned {
                    name: ch.name.as_str().into(),
                    level: 1,
                    shards: 0,
                    copies: 1,
                },
                0,
            ),
        };
        pulls.push(json!({
            "name": ch.name, "rarity": p.rarity.as_str(), "new": owned.copies == 1,
            "shards": shards, "by_pity": p.by_pity,
        }));
        writes.push(Write::Summoned(Summoned {
            banner: banner.id.clone(),
            seq: all,
            character: ch.name.clone(),
            rarity: p.rarity.as_str(),
            by_pity: p.by_pity,
            shards,
        }));
        if !changed.contains(&owned.name) {
            changed.push(owned.name.clone());
        }
        coll.set(owned);
    }
    coll.set_pity(&banner.id, since, all);
    writes.push(Write::Pity {
        banner: banner.id.clone(),
        since_ssr: since,
        summons: all,
    });
    for name in &changed {
        if let Some(o) = coll.owned(name) {
            writes.push(Write::Character(o.clone()));
        }
    }
    for w in writes {
        d.write(w);
    }
    d.state.set_collection(coll);
    let mut data = d.balances();
    let guaranteed_within = banner.pity - since + 1;
    data["banner"] = json!(banner.id);
    data["pulls"] = json!(pulls);
    data["pity"] = json!({ "since_ssr": since, "pity": banner.pity, "ssr_guaranteed_within": guaranteed_within });
    let shown: Vec<String> = pulls
        .iter()
        .map(|p| {
            format!(
                "{} ({}{})",
                p["name"].as_str().unwrap_or_default(),
                p["rarity"].as_str().unwrap_or_default(),
                if p["new"] == true { ", new" } else { "" }
            )
        })
        .collect();
    let msg = format!(
        "{}: {} · an SSR within {guaranteed_within} more summons",
        banner.name,
        shown.join(", ")
    );
    Ok(d.with(data, msg))
}

fn owned_json(o: &Owned, roster: &Roster) -> Value {
    let found = roster.find(&o.name).map(|(_, c)| c);
    json!({
        "name": o.name, "rarity": found.map(|c| c.rarity.as_str()),
        "level": o.level, "shards": o.shards, "copies": o.copies,
        "power": found.map(|c| power_at(c.power, o.level, &roster.upgrade)),
        "image": found.and_then(|c| c.image.clone()),
    })
}

fn list(d: Draft, page: u32, roster: &Roster) -> Result<Draft, Refusal> {
    let coll = d.state.collection().ok_or_else(not_loaded)?;
    let mut owned: Vec<&Owned> = coll.owned.iter().collect();
    let rarity = |o: &Owned| roster.find(&o.name).map(|(_, c)| c.rarity);
    owned.sort_by(|a, b| rarity(b).cmp(&rarity(a)).then_with(|| a.name.cmp(&b.name)));
    let pages = owned.len().div_ceil(PAGE_SIZE).max(1);
    let page = (page as usize).min(pages);
    let shown: Vec<Value> = owned
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|o| owned_json(o, roster))
        .collect();
    let total = owned.len();
    let msg = if total == 0 {
        "You have no characters yet; `summon` to get some.".to_owned()
    } else {
        format!(
            "{total} of {} characters · page {page}/{pages}",
            roster.characters().len()
        )
    };
    let data = json!({
        "characters": shown, "page": page, "pages": pages, "owned": total,
        "roster": roster.characters().len(), "team": coll.team,
    });
    Ok(d.with(data, msg))
}

fn unknown(name: &str) -> Refusal {
    Refusal::new(
        ErrorCode::NotFound,
        format!("No character {name:?} in the roster."),
    )
}

fn character(d: Draft, name: &str, roster: &Roster) -> Result<Draft, Refusal> {
    let (_, ch) = roster.find(name).ok_or_else(|| unknown(name))?;
    let coll = d.state.collection().ok_or_else(not_loaded)?;
    let mut data = json!({
        "name": ch.name, "rarity": ch.rarity.as_str(), "base_power": ch.power,
        "image": ch.image, "owned": false,
    });
    let msg = match coll.owned(&ch.name) {
        None => format!(
            "{} ({}) · not in your collection",
            ch.name,
            ch.rarity.as_str()
        ),
        Some(o) => {
            data = owned_json(o, roster);
            data["base_power"] = json!(ch.power);
            data["owned"] = json!(true);
            data["next_level"] = match level_cost(o.level, &roster.upgrade) {
                Some((shards, gold)) => json!({ "shards": shards, "gold": gold }),
                None => Value::Null,
            };
            format!(
                "{} ({}) · level {} · power {} · {} shards",
                ch.name,
                ch.rarity.as_str(),
                o.level,
                power_at(ch.power, o.level, &roster.upgrade),
                o.shards
            )
        }
    };
    Ok(d.with(data, msg))
}

/// Shards and gold to go from `level` to the next, or `None` at the top.
pub fn level_cost(level: u32, upgrade: &Upgrade) -> Option<(i64, i64)> {
    if level >= upgrade.max_level {
        return None;
    }
    let l = i64::from(level);
    Some((upgrade.shards.checked_mul(l)?, upgrade.gold.checked_mul(l)?))
}

fn upgrade(mut d: Draft, name: &str, roster: &Roster) -> Result<Draft, Refusal> {
    let (_, ch) = roster.find(name).ok_or_else(|| unknown(name))?;
    let coll = d.state.collection().ok_or_else(not_loaded)?;
    let owned = coll
        .owned(&ch.name)
        .cloned()
        .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("You do not own {}.", ch.name)))?;
    let (shards, gold) = level_cost(owned.level, &roster.upgrade).ok_or_else(|| {
        Refusal::new(
            ErrorCode::LimitReached,
            format!("{} is at the top level, {}.", ch.name, owned.level),
        )
    })?;
    if owned.shards < shards {
        return Err(Refusal::new(
            ErrorCode::InsufficientFunds,
            format!(
                "Level {} needs {shards} shards of {}; you have {}.",
                owned.level + 1,
                ch.name,
                owned.shards
            ),
        ));
    }
    if gold > 0 {
        d.debit(Currency::Gold, gold, "upgrade")?;
    }
    let raised = Owned {
        level: owned.level + 1,
        shards: owned.shards - shards,
        ..owned
    };
    if let Some(coll) = d.state.collection_mut() {
        coll.set(raised.clone());
    }
    d.write(Write::Character(raised.clone()));
    d.write(Write::Upgraded {
        character: ch.name.clone(),
        level: raised.level,
        shards,
        gold,
    });
    let mut data = d.balances();
    data["character"] = owned_json(&raised, roster);
    data["spent"] = json!({ "shards": shards, "gold": gold });
    let msg = format!(
        "{} is now level {} (power {}) for {shards} shards and {gold} gold.",
        ch.name,
        raised.level,
        power_at(ch.power, raised.level, &roster.upgrade)
    );
    Ok(d.with(data, msg))
}

fn team(mut d: Draft, names: &[String], roster: &Roster) -> Result<Draft, Refusal> {
    let coll = d.state.collection().ok_or_else(not_loaded)?;
    let mut team: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let (_, ch) = roster.find(name).ok_or_else(|| unknown(name))?;
        if coll.owned(&ch.name).is_none() {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!("You do not own {}.", ch.name),
            ));
        }
        if team.contains(&ch.name) {
            return Err(Refusal::new(
                ErrorCode::InvalidArgument,
                format!("{} is in the team twice.", ch.name),
            ));
        }
        team.push(ch.name.clone());
    }
    if let Some(coll) = d.state.collection_mut() {
        coll.team = team.iter().map(|n| n.as_str().into()).collect();
    }
    d.write(Write::Team(team.clone()));
    let power = team_power(&d.state, roster).unwrap_or(0);
    let data = json!({ "team": team, "team_power": power });
    let msg = if team.is_empty() {
        "Your team is empty; the arena uses your level.".to_owned()
    } else {
        format!("Team: {} · power {power}", team.join(", "))
    };
    Ok(d.with(data, msg))
}
