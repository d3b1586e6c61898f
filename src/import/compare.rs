//! `kokoro import FORMAT FILE --verify`: the store against the source.
//! Every record is read and checked as the import reads it, and what it
//! would have written is compared with what the store holds: balances,
//! XP and daily streak, inventory, characters (collection and roleplay,
//! with their XP, counters and links), the roleplay day and time zone, and
//! guild settings. Every difference is named; nothing is changed.

use std::process::ExitCode;
use std::sync::Arc;

use actors::writeset::Write;
use actors::Store;
use anyhow::Context;

use super::source::Source;
use super::{Checked, Kind, Rules};

pub async fn run(store: &Store, source: Source, rules: Arc<Rules>) -> anyhow::Result<ExitCode> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Checked>(256);
    let reading = source.spawn(rules, tx);
    let (mut compared, mut differ, mut rejected) = (0u64, 0u64, 0u64);
    while let Some(c) = rx.recv().await {
        let Some(ws) = &c.ws else {
            rejected += 1;
            continue;
        };
        compared += 1;
        let found = differences(store, c.primary, ws).await?;
        if !found.is_empty() {
            differ += 1;
            println!("DIFFERS {}: {}", c.at, found.join("; "));
        }
    }
    let stopped = reading.await.context("the file reader failed")??;
    if let Some(s) = &stopped {
        println!("STOPPED {s}");
    }
    println!(
        "compared {compared} record(s) with the store: {differ} differ ({rejected} rejected by the checks, not compared)"
    );
    Ok(if differ == 0 && stopped.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn differences(
    store: &Store,
    primary: Kind,
    ws: &actors::writeset::WriteSet,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut differ = |what: String, stored: String, source: String| {
        if stored != source {
            out.push(format!("{what}: store {stored}, source {source}"));
        }
    };
    if primary == Kind::Guilds {
        let settings = store.guild_settings(ws.key.guild).await?;
        for w in &ws.writes {
            if let Write::Setting { key, value } = w {
                let k = actors::game::guild::settings::Key::parse(key)
                    .with_context(|| format!("setting {key}"))?;
                differ(key.to_string(), settings.get(k), value.clone());
            }
        }
        return Ok(out);
    }
    let loaded = store.load_user(ws.key).await?.state;
    if !loaded.exists {
        return Ok(vec!["the player is not in the store".to_owned()]);
    }
    if let Some(row) = &ws.row {
        // A roleplay record's row is a placeholder with no balances; a
        // collection record's row is the player's.
        let is_roleplay = ws
            .writes
            .iter()
            .any(|w| matches!(w, Write::RpPlayer { .. }));
        if !is_roleplay {
            differ("gold".into(), loaded.gold.to_string(), row.gold.to_string());
            differ("gems".into(), loaded.gems.to_string(), row.gems.to_string());
            differ("xp".into(), loaded.xp.to_string(), row.xp.to_string());
            differ(
                "daily day".into(),
                format!("{:?}", loaded.daily_day),
                format!("{:?}", row.daily_day),
            );
            differ(
                "daily streak".into(),
                loaded.daily_streak.to_string(),
                row.daily_streak.to_string(),
            );
        }
    }
    let mut collection = None;
    let mut roleplay = None;
    for w in &ws.writes {
        match w {
            Write::Inventory { item, quantity } => differ(
                format!("inventory {item:?}"),
                loaded.owned(item).to_string(),
                quantity.to_string(),
            ),
            Write::Character(o) => {
                if collection.is_none() {
                    collection = Some(store.load_collection(ws.key).await?);
                }
                let stored = collection.as_ref().and_then(|c| c.owned(&o.name));
                differ(
                    format!("character {:?}", o.name),
                    stored.map_or("missing".to_owned(), |s| {
                        format!("level {} shards {}", s.level, s.shards)
                    }),
                    format!("level {} shards {}", o.level, o.shards),
                );
            }
            Write::RpPlayer {
                active_character,
                timezone,
                last_xp_reset,
            } => {
                if roleplay.is_none() {
                    roleplay = Some(store.load_roleplay(ws.key).await?);
                }
                if let Some(rp) = &roleplay {
                    let active = rp.active().map(|i| rp.characters[i].name.clone());
                    differ(
                        "active character".into(),
                        format!("{active:?}"),
                        format!("{active_character:?}"),
                    );
                    differ(
                        "time zone".into(),
                        rp.timezone.name().to_owned(),
                        timezone.clone(),
                    );
                    differ(
                        "last_xp_reset".into(),
                        format!("{:?}", rp.last_xp_reset.map(|d| d.to_string())),
                        format!("{last_xp_reset:?}"),
                    );
                }
            }
            Write::RpCharacter(ch) => {
                if roleplay.is_none() {
                    roleplay = Some(store.load_roleplay(ws.key).await?);
                }
                let stored = roleplay
                    .as_ref()
                    .and_then(|rp| rp.find(&ch.name).map(|i| &rp.characters[i]));
                let show = |c: &actors::game::roleplay::RpCharacter| {
                    format!(
                        "xp {} today {}+{} buffer {} image {:?}",
                        c.xp, c.daily_xp, c.daily_hf, c.char_buffer, c.image_url
                    )
                };
                differ(
                    format!("roleplay character {:?}", ch.name),
                    stored.map_or("missing".to_owned(), show),
                    show(ch),
                );
            }
            _ => {}
        }
    }
    Ok(out)
}
