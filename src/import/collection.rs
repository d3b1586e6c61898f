//! The collectible-character bot's per-player JSON documents. Fields (see
//! `assets/legacy/collection.json`, and the README):
//!
//! ```json
//! {"guild_id": "123", "user_id": "456", "gold": 1200, "gems": 30, "level": 5, "xp": 640,
//!  "daily": {"streak": 4, "last_claim": "2024-05-01T10:00:00Z"},
//!  "inventory": {"bait": 3},
//!  "characters": [{"name": "Moss Fenwick", "rarity": "SR", "level": 3, "shards": 12}]}
//! ```
//!
//! A player's characters become the collection's rows, each explained by
//! one summon record on the pseudo-banner `imported` (so `check` proves
//! them like any other); gold and gems each get an `imported` ledger row.

use std::collections::{BTreeMap, HashSet};

use actors::domain::Currency;
use actors::game::collection::roster::{Rarity, Roster};
use actors::game::economy::shop::Catalogue;
use actors::state::Owned;
use actors::writeset::{LedgerEntry, Summoned, UserRow, Write, WriteSet};
use actors::{GuildId, UserId, UserKey};
use serde::Deserialize;
use serde_json::Value;

use super::{command_id, id, reply, Plan, Rejected};

/// The banner imported characters are recorded as summoned from.
pub const BANNER: &str = "imported";
const MAX_BALANCE: i64 = 1_000_000_000_000;
const MAX_LEVEL: i64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    guild_id: Value,
    user_id: Value,
    #[serde(default)]
    gold: i64,
    #[serde(default)]
    gems: i64,
    /// The legacy bot's level; kokoro derives levels from XP, so this is
    /// only compared with it.
    #[serde(default)]
    level: Option<i64>,
    #[serde(default)]
    xp: i64,
    #[serde(default)]
    daily: Option<Daily>,
    #[serde(default)]
    inventory: BTreeMap<String, i64>,
    #[serde(default)]
    characters: Vec<Char>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Daily {
    #[serde(default)]
    streak: i64,
    last_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Char {
    name: String,
    rarity: String,
    #[serde(default = "one")]
    level: i64,
    #[serde(default)]
    shards: i64,
}

fn one() -> i64 {
    1
}

/// The documents of a file: a JSON array, or one document per line.
fn documents(text: &str) -> Vec<(String, Result<Value, String>)> {
    if let Ok(Value::Array(docs)) = serde_json::from_str::<Value>(text) {
        return docs
            .into_iter()
            .enumerate()
            .map(|(i, d)| (format!("record {}", i + 1), Ok(d)))
            .collect();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                format!("line {}", i + 1),
                serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")),
            )
        })
        .collect()
}

pub fn plan(text: &str, catalogue: &Catalogue, roster: &Roster, now_ms: i64) -> Plan {
    let mut plan = Plan::default();
    let mut seen: HashSet<UserKey> = HashSet::new();
    for (at, doc) in documents(text) {
        let checked = doc.and_then(|d| record(d, catalogue, roster, now_ms));
        match checked {
            Ok((ws, what)) if seen.insert(ws.key) => plan.records.push((ws, what)),
            Ok((ws, _)) => plan.rejected.push(Rejected {
                at,
                why: format!("player {} appears twice in the file", ws.key),
            }),
            Err(why) => plan.rejected.push(Rejected { at, why }),
        }
    }
    plan
}

fn record(
    doc: Value,
    catalogue: &Catalogue,
    roster: &Roster,
    now_ms: i64,
) -> Result<(WriteSet, String), String> {
    let doc: Doc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let guild = id(&doc.guild_id)
        .and_then(|g| GuildId::new(g).ok())
        .ok_or("guild_id is not an id")?;
    let user = id(&doc.user_id)
        .and_then(|u| UserId::new(u).ok())
        .ok_or("user_id is not an id")?;
    let key = UserKey::new(guild, user);
    for (what, v) in [("gold", doc.gold), ("gems", doc.gems), ("xp", doc.xp)] {
        if v < 0 {
            return Err(format!("negative {what} ({v})"));
        }
        if v > MAX_BALANCE {
            return Err(format!("{what} {v} is beyond what kokoro holds"));
        }
    }
    let level = actors::domain::level::level_for_xp(doc.xp);
    let (daily_day, streak) = match &doc.daily {
        None => (None, 0),
        Some(d) => {
            if d.streak < 0 || d.streak > 100_000 {
                return Err(format!("daily streak {} is out of range", d.streak));
            }
            let day = match &d.last_claim {
                None => None,
                Some(t) => {
                    let at = chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|_| format!("broken timestamp daily.last_claim {t:?}"))?;
                    if at.timestamp_millis() > now_ms {
                        return Err(format!("daily.last_claim {t:?} is in the future"));
                    }
                    Some((at.timestamp_millis().div_euclid(86_400_000)) as i32)
                }
            };
            (day, d.streak as i32)
        }
    };
    let mut ws = WriteSet::new(key, now_ms, command_id("collection", key));
    ws.row = Some(UserRow {
        gold: doc.gold,
        gems: doc.gems,
        xp: doc.xp,
        level,
        daily_day,
        daily_streak: streak,
        credits: 0,
        lucky_day: None,
        lucky_pct: 0,
    });
    for (currency, amount) in [(Currency::Gold, doc.gold), (Currency::Gems, doc.gems)] {
        if amount > 0 {
            ws.ledger.push(LedgerEntry {
                currency,
                amount,
                balance_after: amount,
                reason: "imported",
            });
        }
    }
    for (item, quantity) in &doc.inventory {
        if catalogue.get(item).is_none() {
            return Err(format!("unknown item {item:?} in the inventory"));
        }
        if *quantity < 0 {
            return Err(format!("negative quantity of {item:?}"));
        }
        if *quantity > 0 {
            ws.writes.push(Write::Inventory {
                item: item.clone(),
                quantity: *quantity,
            });
        }
    }
    let mut names: HashSet<String> = HashSet::new();
    for (i, c) in doc.characters.iter().enumerate() {
        let rarity = Rarity::parse(&c.rarity)
            .ok_or_else(|| format!("unknown rarity {:?} of {:?}", c.rarity, c.name))?;
        let Some((_, known)) = roster.find(&c.name) else {
            return Err(format!(
                "unknown character {:?} (not in the roster)",
                c.name
            ));
        };
        if known.rarity != rarity {
            return Err(format!(
                "{:?} is {} here, {} in the roster",
                c.name,
                rarity.as_str(),
                known.rarity.as_str()
            ));
        }
        if !names.insert(known.name.to_lowercase()) {
            return Err(format!("duplicate character name {:?}", c.name));
        }
        if !(1..=MAX_LEVEL).contains(&c.level) {
            return Err(format!("{:?} has level {}", c.name, c.level));
        }
        if c.shards < 0 || c.shards > MAX_BALANCE {
            return Err(format!("{:?} has {} shards", c.name, c.shards));
        }
        ws.writes.push(Write::Character(Owned {
            name: known.name.clone().into_boxed_str(),
            level: c.level as u32,
            shards: c.shards,
            copies: 1,
        }));
        ws.writes.push(Write::Summoned(Summoned {
            banner: BANNER.to_owned(),
            seq: i as u64 + 1,
            character: known.name.clone(),
            rarity: rarity.as_str(),
            by_pity: false,
            shards: c.shards,
        }));
    }
    let mut what = format!(
        "{key}: {} gold, {} gems, {} XP, {} item kind(s), {} character(s)",
        doc.gold,
        doc.gems,
        doc.xp,
        doc.inventory.len(),
        doc.characters.len()
    );
    if let Some(l) = doc.level.filter(|l| *l != i64::from(level)) {
        what.push_str(&format!(
            " (legacy level {l}; kokoro's from that XP: {level})"
        ));
    }
    ws.reply_json = Some(reply(&what));
    Ok((ws, what))
}
