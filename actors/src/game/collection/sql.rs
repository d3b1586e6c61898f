//! The collection's SQL: a player's collection read when their actor first
//! needs it, and its writes as group commit applies them (characters, pity
//! counters and teams as absolute upserts; one row per summon), each kind
//! one multi-row statement per chunk of the batch.
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! collection_sql {
    () => {
        pub(crate) mod collection_sql {
            use super::*;
            use crate::state::{Collection, Owned};
            use crate::writeset::Summoned;

            pub async fn load(pool: &Pool, key: UserKey) -> Result<Collection, StoreError> {
                let (g, u) = (key.guild.get(), key.user.get());
                let mut c = Collection::default();
                for r in sqlx::query(
                    "SELECT name, level, shards, copies FROM characters \
                     WHERE guild_id = $1 AND user_id = $2 ORDER BY name",
                )
                .bind(g)
                .bind(u)
                .fetch_all(pool)
                .await?
                {
                    let name: String = r.try_get(0)?;
                    let level: i64 = r.try_get(1)?;
                    c.set(Owned {
                        level: u32::try_from(level)
                            .map_err(|_| StoreError::Corrupt(format!("character {name:?} has level {level}")))?,
                        name: name.into_boxed_str(),
                        shards: r.try_get(2)?,
                        copies: r.try_get(3)?,
                    });
                }
                for r in sqlx::query("SELECT banner, since_ssr, summons FROM pity WHERE guild_id = $1 AND user_id = $2")
                    .bind(g)
                    .bind(u)
                    .fetch_all(pool)
                    .await?
                {
                    let banner: String = r.try_get(0)?;
                    let since: i64 = r.try_get(1)?;
                    let all: i64 = r.try_get(2)?;
                    let bad = || StoreError::Corrupt(format!("pity of banner {banner:?} is {since}/{all}"));
                    c.set_pity(
                        &banner,
                        u32::try_from(since).map_err(|_| bad())?,
                        u64::try_from(all).map_err(|_| bad())?,
                    );
                }
                if let Some(r) = sqlx::query("SELECT members FROM teams WHERE guild_id = $1 AND user_id = $2")
                    .bind(g)
                    .bind(u)
                    .fetch_optional(pool)
                    .await?
                {
                    let members: String = r.try_get(0)?;
                    c.team = members
                        .split('\n')
                        .filter(|m| !m.is_empty())
                        .map(Into::into)
                        .collect();
                }
                Ok(c)
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let characters: Vec<(&WriteSet, &Owned)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Character(o) => Some((*ws, o)),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO characters (guild_id, user_id, name, level, shards, copies) ",
                    " ON CONFLICT (guild_id, user_id, name) DO UPDATE SET level = excluded.level, \
                      shards = excluded.shards, copies = excluded.copies",
                    characters,
                    |b, r| {
                        let (ws, o) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(&*o.name)
                            .push_bind(i64::from(o.level))
                            .push_bind(o.shards)
                            .push_bind(o.copies);
                    }
                );

                let pity: Vec<(&WriteSet, &str, i64, i64)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Pity { banner, since_ssr, summons } => {
                            Some((*ws, banner.as_str(), i64::from(*since_ssr), i64::try_from(*summons).unwrap_or(i64::MAX)))
                        }
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO pity (guild_id, user_id, banner, since_ssr, summons) ",
                    " ON CONFLICT (guild_id, user_id, banner) DO UPDATE SET since_ssr = excluded.since_ssr, \
                      summons = excluded.summons",
                    pity,
                    |b, r| {
                        let (ws, banner, since, all) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(*banner)
                            .push_bind(*since)
                            .push_bind(*all);
                    }
                );

                let summoned: Vec<(&WriteSet, &Summoned)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Summoned(s) => Some((*ws, s)),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO summons (guild_id, user_id, banner, seq, character, rarity, by_pity, shards, at_ms) ",
                    "",
                    summoned,
                    |b, r| {
                        let (ws, s) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(s.banner.as_str())
                            .push_bind(i64::try_from(s.seq).unwrap_or(i64::MAX))
                            .push_bind(s.character.as_str())
                            .push_bind(s.rarity)
                            .push_bind(i64::from(s.by_pity))
                            .push_bind(s.shards)
                            .push_bind(ws.at_ms);
                    }
                );

                let teams: Vec<(&WriteSet, String)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        // Names never hold a newline (they are printable).
                        Write::Team(names) => Some((*ws, names.join("\n"))),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO teams (guild_id, user_id, members) ",
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET members = excluded.members",
                    teams,
                    |b, r| {
                        let (ws, members) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(members.as_str());
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use collection_sql;
