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
//! The bot kept one document per user id and no guild: a document without
//! `guild_id` goes to `--guild`. A file is a JSON array of documents, one
//! document per line, or an object of documents keyed by user id.
//!
//! A player's characters become the collection's rows, each explained by
//! one summon record on the pseudo-banner `imported` (so `check` proves
//! them like any other); gold and gems each get an `imported` ledger row.
//! A character kokoro cannot take (not in the roster, a wrong rarity, a
//! level past the roster's most) is rejected alone; the player comes in
//! without it.

use std::collections::HashSet;

use actors::domain::Currency;
use actors::game::collection::roster::Rarity;
use actors::state::Owned;
use actors::writeset::{LedgerEntry, Summoned, UserRow, Write, WriteSet};
use actors::{GuildId, UserId, UserKey};
use serde_json::Value;

use super::scan::Shape;
use super::value::{self, Fields};
use super::{command_id, reply, Checked, Kind, Rules};

/// The banner imported characters are recorded as summoned from.
pub const BANNER: &str = "imported";
/// Most gold, gems or account XP kokoro keeps for one player (the same
/// bound as every amount the game moves).
pub const MAX_BALANCE: i64 = actors::game::economy::MAX_AMOUNT;
/// Longest daily streak taken.
pub const MAX_STREAK: i64 = 100_000;

/// Where records sit: elements of a top-level array, or values of a
/// top-level object keyed by user id (a lone top-level document is found
/// by the line reader).
pub struct Documents;

impl Shape for Documents {
    fn is_record(&self, path: &[String]) -> bool {
        path.len() == 1 && path[0] != "version"
    }
    fn is_container(&self, path: &[String]) -> bool {
        path.is_empty()
    }
    fn ignored(&self, path: &[String]) -> bool {
        path == ["version"]
    }
}

/// One document, checked. `user_key`: the top-level key it was found
/// under, if any (it must agree with a `user_id` inside).
pub fn check(
    at: String,
    doc: Result<Value, String>,
    user_key: Option<&str>,
    rules: &Rules,
) -> Checked {
    let mut c = Checked::new(at, Kind::Players);
    let result = doc.and_then(|d| record(&mut c, d, user_key, rules));
    c.finish(result)
}

fn record(
    c: &mut Checked,
    doc: Value,
    user_key: Option<&str>,
    rules: &Rules,
) -> Result<WriteSet, String> {
    let mut f = Fields::of(doc)?;
    // What the record holds, counted before anything can reject it, so the
    // reconciliation counts what a rejected record carried too.
    let characters = match f.take("characters") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("characters is {other}, not a list")),
    };
    let inventory = match f.take("inventory") {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(format!("inventory is {other}, not an object")),
    };
    let gold = f.take("gold");
    let gems = f.take("gems");
    c.read(Kind::Characters, characters.len() as u64);
    c.read(Kind::Items, inventory.len() as u64);
    c.read(
        Kind::Balances,
        u64::from(gold.is_some()) + u64::from(gems.is_some()),
    );

    let guild = match f.take("guild_id") {
        Some(g) => value::id("guild_id", &g)?,
        None => rules
            .guild
            .map(|g| g.get())
            .ok_or("no guild_id (the bot kept none: give --guild ID)")?,
    };
    let user = match (f.take("user_id"), user_key) {
        (Some(u), key) => {
            let u = value::id("user_id", &u)?;
            if let Some(k) = key {
                if value::canonical_id(k) != Some(u) {
                    return Err(format!("is filed under {k:?} but its user_id is {u}"));
                }
            }
            u
        }
        (None, Some(k)) => value::canonical_id(k).ok_or_else(|| {
            format!("key {k:?} is not a user id (decimal digits, no sign, no leading zero)")
        })?,
        (None, None) => return Err("no user_id".to_owned()),
    };
    let key = UserKey::new(
        GuildId::new(guild).map_err(|e| format!("guild_id: {e}"))?,
        UserId::new(user).map_err(|e| format!("user_id: {e}"))?,
    );
    c.key = Some(key);
    let gold = value::bounded("gold", gold, 0, MAX_BALANCE)?;
    let gems = value::bounded("gems", gems, 0, MAX_BALANCE)?;
    let xp = value::bounded("xp", f.take("xp"), 0, MAX_BALANCE)?;
    let legacy_level = value::int("level", f.take("level"))?;
    let level = actors::domain::level::level_for_xp(xp);
    let (daily_day, streak) = daily(f.take("daily"), rules, c)?;
    let _ = f.take("version");
    c.unknown_keys(&f, rules)?;

    let mut ws = WriteSet::new(key, rules.now_ms, command_id("collection", key));
    ws.row = Some(UserRow {
        gold,
        gems,
        xp,
        level,
        daily_day,
        daily_streak: streak,
        credits: 0,
        lucky_day: None,
        lucky_pct: 0,
        // The legacy bots kept no verification.
        verified: false,
    });
    for (currency, amount) in [(Currency::Gold, gold), (Currency::Gems, gems)] {
        if amount > 0 {
            ws.ledger.push(LedgerEntry {
                currency,
                amount,
                balance_after: amount,
                reason: "imported",
            });
        }
    }
    for (item, quantity) in inventory {
        let at = format!("inventory {item:?}");
        match inventory_item(&item, quantity, rules) {
            Ok(0) => c.good(Kind::Items, 1),
            Ok(quantity) => {
                c.good(Kind::Items, 1);
                ws.writes.push(Write::Inventory { item, quantity });
            }
            Err(why) => c.reject_part(Kind::Items, at, why),
        }
    }
    let mut names: HashSet<String> = HashSet::new();
    let mut seq = 0u64;
    for (i, ch) in characters.into_iter().enumerate() {
        match character(ch, rules, &mut names) {
            Ok((owned, rarity)) => {
                seq += 1;
                c.good(Kind::Characters, 1);
                ws.writes.push(Write::Summoned(Summoned {
                    banner: BANNER.to_owned(),
                    seq,
                    character: owned.name.to_string(),
                    rarity: rarity.as_str(),
                    by_pity: false,
                    shards: owned.shards,
                }));
                ws.writes.push(Write::Character(owned));
            }
            Err((name, why)) => c.reject_part(
                Kind::Characters,
                match name {
                    Some(n) => format!("character {n:?}"),
                    None => format!("character #{}", i + 1),
                },
                why,
            ),
        }
    }
    c.good(Kind::Players, 1);
    c.good(Kind::Balances, c.read_of(Kind::Balances));
    let mut what = format!(
        "{key}: {gold} gold, {gems} gems, {xp} XP, {} item kind(s), {} character(s)",
        c.good_of(Kind::Items),
        seq
    );
    if let Some(l) = legacy_level.filter(|l| *l != i64::from(level)) {
        what.push_str(&format!(
            " (legacy level {l}; kokoro's from that XP: {level})"
        ));
    }
    ws.reply_json = Some(reply(&what));
    c.what = what;
    Ok(ws)
}

fn daily(v: Option<Value>, rules: &Rules, c: &mut Checked) -> Result<(Option<i32>, i32), String> {
    let Some(v) = v else { return Ok((None, 0)) };
    let mut d = Fields::of(v).map_err(|e| format!("daily {e}"))?;
    let streak = value::bounded("daily.streak", d.take("streak"), 0, MAX_STREAK)?;
    let day = match d.take("last_claim") {
        None => None,
        Some(t) => {
            let at = value::instant_ms("daily.last_claim", &t)?;
            if at > rules.now_ms {
                return Err(format!("daily.last_claim {t} is in the future"));
            }
            Some(at.div_euclid(86_400_000) as i32)
        }
    };
    for k in d.unknown() {
        c.unknown_key(format!("daily.{k}"), rules)?;
    }
    Ok((day, streak as i32))
}

fn inventory_item(item: &str, quantity: Value, rules: &Rules) -> Result<i64, String> {
    let Some(known) = rules.catalogue.get(item) else {
        return Err("not an item of the shop".to_owned());
    };
    let most = known.limit.unwrap_or(MAX_BALANCE);
    value::bounded("quantity", Some(quantity), 0, most)
}

/// One character, checked against the roster (after `--characters-map`).
fn character(
    v: Value,
    rules: &Rules,
    names: &mut HashSet<String>,
) -> Result<(Owned, Rarity), (Option<String>, String)> {
    let mut f = Fields::of(v).map_err(|e| (None, e))?;
    let name = value::text("name", f.take("name"), 64)
        .map_err(|e| (None, e))?
        .ok_or((None, "has no name".to_owned()))?;
    let fail = |why: String| (Some(name.clone()), why);
    let rarity_text = value::text("rarity", f.take("rarity"), 8)
        .map_err(fail)?
        .ok_or_else(|| fail("has no rarity".to_owned()))?;
    let rarity = Rarity::parse(&rarity_text)
        .ok_or_else(|| fail(format!("unknown rarity {rarity_text:?}")))?;
    let wanted = rules.characters_map.get(&name);
    let Some((_, known)) = rules.roster.find(wanted.unwrap_or(&name)) else {
        return Err(fail(
            "unknown character (not in the roster; --characters-map maps legacy names)".to_owned(),
        ));
    };
    if known.rarity != rarity {
        return Err(fail(format!(
            "is {} here, {} in the roster",
            rarity.as_str(),
            known.rarity.as_str()
        )));
    }
    let most = i64::from(rules.roster.upgrade.max_level);
    let level = value::int("level", f.take("level"))
        .map_err(fail)?
        .unwrap_or(1);
    if !(1..=most).contains(&level) {
        return Err(fail(format!(
            "has level {level}; levels run from 1 to {most}"
        )));
    }
    let shards = value::bounded("shards", f.take("shards"), 0, MAX_BALANCE).map_err(fail)?;
    if !names.insert(known.name.to_lowercase()) {
        return Err(fail("appears twice".to_owned()));
    }
    let extra = f.unknown();
    if rules.strict && !extra.is_empty() {
        return Err(fail(format!("unknown key {:?} (--strict)", extra[0])));
    }
    Ok((
        Owned {
            name: known.name.clone().into_boxed_str(),
            level: level as u32,
            shards,
            copies: 1,
        },
        rarity,
    ))
}
