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
            use crate::game::collection::owned::{Collection, Owned};
            use crate::writeset::Summoned;

            pub async fn load(pool: &Pool, key: UserKey) -> Result<Collection, StoreError> {
                let mut conn = pool.acquire().await?;
                load_on(&mut conn, key).await
            }

            pub async fn load_on(conn: &mut Conn, key: UserKey) -> Result<Collection, StoreError> {
                let (g, u) = (key.guild.get(), key.user.get());
                let mut c = Collection::default();
                for r in sqlx::query(
                    "SELECT name, level, shards, copies FROM characters \
                     WHERE guild_id = $1 AND user_id = $2 ORDER BY name",
                )
                .bind(g)
                .bind(u)
                .fetch_all(&mut *conn)
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
                    .fetch_all(&mut *conn)
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
                    .fetch_optional(&mut *conn)
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

            /// What the logs do not explain, in words: characters whose
            /// copies or shards differ from their summons less their
            /// upgrades, and pity counters that differ from the summons
            /// since the last SSR. Run inside the audit's snapshot.
            pub async fn audit(tx: &mut Conn) -> Result<Vec<String>, StoreError> {
                let mut out = Vec::new();
                for r in sqlx::query(
                    "SELECT c.guild_id, c.user_id, c.name, c.copies, c.shards, \
                       COALESCE(m.n, 0), COALESCE(m.s, 0) - COALESCE(u.s, 0) FROM characters c \
                     LEFT JOIN (SELECT guild_id, user_id, character, COUNT(*) AS n, \
                                  CAST(SUM(shards) AS BIGINT) AS s FROM summons \
                                GROUP BY guild_id, user_id, character) m \
                       ON m.guild_id = c.guild_id AND m.user_id = c.user_id AND m.character = c.name \
                     LEFT JOIN (SELECT guild_id, user_id, character, CAST(SUM(shards) AS BIGINT) AS s \
                                FROM upgrades GROUP BY guild_id, user_id, character) u \
                       ON u.guild_id = c.guild_id AND u.user_id = c.user_id AND u.character = c.name \
                     WHERE c.copies <> COALESCE(m.n, 0) OR c.shards <> COALESCE(m.s, 0) - COALESCE(u.s, 0) \
                     ORDER BY c.guild_id, c.user_id, c.name LIMIT 20",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let key = user_key(r.try_get(0)?, r.try_get(1)?)?;
                    let name: String = r.try_get(2)?;
                    out.push(format!(
                        "{key} {name:?}: {} copies and {} shards stored, {} and {} by the summon and upgrade logs",
                        r.try_get::<i64, _>(3)?,
                        r.try_get::<i64, _>(4)?,
                        r.try_get::<i64, _>(5)?,
                        r.try_get::<i64, _>(6)?,
                    ));
                }
                for r in sqlx::query(
                    "SELECT p.guild_id, p.user_id, p.banner, p.since_ssr, p.summons, \
                       COALESCE(s.top, 0) - COALESCE(s.last_ssr, 0), COALESCE(s.n, 0) FROM pity p \
                     LEFT JOIN (SELECT guild_id, user_id, banner, COUNT(*) AS n, MAX(seq) AS top, \
                                  MAX(CASE WHEN rarity = 'SSR' THEN seq ELSE 0 END) AS last_ssr \
                                FROM summons GROUP BY guild_id, user_id, banner) s \
                       ON s.guild_id = p.guild_id AND s.user_id = p.user_id AND s.banner = p.banner \
                     WHERE p.summons <> COALESCE(s.n, 0) OR p.summons <> COALESCE(s.top, 0) \
                        OR p.since_ssr <> COALESCE(s.top, 0) - COALESCE(s.last_ssr, 0) \
                     ORDER BY p.guild_id, p.user_id, p.banner LIMIT 20",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let key = user_key(r.try_get(0)?, r.try_get(1)?)?;
                    let banner: String = r.try_get(2)?;
                    out.push(format!(
                        "{key} banner {banner:?}: pity {}/{} stored, {}/{} by the summon log",
                        r.try_get::<i64, _>(3)?,
                        r.try_get::<i64, _>(4)?,
                        r.try_get::<i64, _>(5)?,
                        r.try_get::<i64, _>(6)?,
                    ));
                }
                Ok(out)
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

                let upgrades: Vec<(&WriteSet, (&str, u32, i64, i64))> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Upgraded { character, level, shards, gold } => {
                            Some((*ws, (character.as_str(), *level, *shards, *gold)))
                        }
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO upgrades (guild_id, user_id, character, level, shards, gold, at_ms) ",
                    "",
                    upgrades,
                    |b, r| {
                        let (ws, (character, level, shards, gold)) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(*character)
                            .push_bind(i64::from(*level))
                            .push_bind(*shards)
                            .push_bind(*gold)
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
