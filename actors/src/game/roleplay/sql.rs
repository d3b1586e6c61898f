//! Roleplay in SQL: a player's characters read when their actor first needs
//! them; the writes as group commit applies them (player and character rows
//! as absolute upserts, deletions first, one tally row per character and
//! day); and the check that every character's XP is the sum of its tallies.
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! roleplay_sql {
    () => {
        pub(crate) mod roleplay_sql {
            use super::*;
            use crate::game::roleplay::{day, Roleplay, RpCharacter};

            pub async fn load(pool: &Pool, key: UserKey) -> Result<Roleplay, StoreError> {
                let mut conn = pool.acquire().await?;
                load_on(&mut conn, key).await
            }

            pub async fn load_on(conn: &mut Conn, key: UserKey) -> Result<Roleplay, StoreError> {
                let (g, u) = (key.guild.get(), key.user.get());
                let mut rp = Roleplay::default();
                for r in sqlx::query(
                    "SELECT id, name, xp, daily_xp, daily_hf, char_buffer, image_url, created_ms \
                     FROM rp_characters WHERE guild_id = $1 AND user_id = $2 ORDER BY created_ms, id",
                )
                .bind(g)
                .bind(u)
                .fetch_all(&mut *conn)
                .await?
                {
                    rp.characters.push(RpCharacter {
                        id: r.try_get(0)?,
                        name: r.try_get(1)?,
                        xp: r.try_get(2)?,
                        daily_xp: r.try_get(3)?,
                        daily_hf: r.try_get(4)?,
                        char_buffer: r.try_get(5)?,
                        image_url: r.try_get(6)?,
                        created_ms: r.try_get(7)?,
                    });
                }
                if let Some(r) = sqlx::query(
                    "SELECT active_character, timezone, last_xp_reset FROM rp_players WHERE guild_id = $1 AND user_id = $2",
                )
                .bind(g)
                .bind(u)
                .fetch_optional(&mut *conn)
                .await?
                {
                    let active: Option<String> = r.try_get(0)?;
                    let tz: String = r.try_get(1)?;
                    let reset: Option<String> = r.try_get(2)?;
                    rp.active = active.and_then(|n| rp.find(&n)).map(|i| rp.characters[i].id);
                    rp.timezone = day::parse_tz(&tz)
                        .ok_or_else(|| StoreError::Corrupt(format!("{key} has time zone {tz:?}")))?;
                    rp.last_xp_reset = reset
                        .map(|d| d.parse().map_err(|_| StoreError::Corrupt(format!("{key} has last_xp_reset {d:?}"))))
                        .transpose()?;
                }
                Ok(rp)
            }

            /// How many roleplay characters there are, and their XP. The
            /// sum is taken in two halves (billions and the rest), each far
            /// from a 64-bit overflow, and joined without one: a store whose
            /// characters hold the most XP still adds up.
            pub async fn totals(tx: &mut Conn) -> Result<(i64, i128), StoreError> {
                let r = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(xp / 1000000000), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(xp % 1000000000), 0) AS BIGINT) FROM rp_characters",
                )
                .fetch_one(&mut *tx)
                .await?;
                let (high, low): (i64, i64) = (r.try_get(1)?, r.try_get(2)?);
                Ok((r.try_get(0)?, i128::from(high) * 1_000_000_000 + i128::from(low)))
            }

            /// Characters whose XP is not the sum of their tallies, or whose
            /// counters differ from the tally of their player's day. Run
            /// inside the audit's snapshot.
            pub async fn audit(tx: &mut Conn) -> Result<Vec<String>, StoreError> {
                let mut out = Vec::new();
                for r in sqlx::query(
                    "SELECT c.guild_id, c.user_id, c.name, c.xp, COALESCE(t.s, 0), c.daily_xp, c.daily_hf, \
                       COALESCE(d.rp_xp, 0), COALESCE(d.hf_xp, 0) FROM rp_characters c \
                     LEFT JOIN (SELECT guild_id, user_id, character_id, CAST(SUM(rp_xp + hf_xp) AS BIGINT) AS s \
                                FROM rp_xp_days GROUP BY guild_id, user_id, character_id) t \
                       ON t.guild_id = c.guild_id AND t.user_id = c.user_id AND t.character_id = c.id \
                     LEFT JOIN rp_players p ON p.guild_id = c.guild_id AND p.user_id = c.user_id \
                     LEFT JOIN rp_xp_days d ON d.guild_id = c.guild_id AND d.user_id = c.user_id \
                       AND d.character_id = c.id AND d.day = p.last_xp_reset \
                     WHERE c.xp <> COALESCE(t.s, 0) OR c.daily_xp <> COALESCE(d.rp_xp, 0) \
                        OR c.daily_hf <> COALESCE(d.hf_xp, 0) \
                     ORDER BY c.guild_id, c.user_id, c.name LIMIT 20",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let key = user_key(r.try_get(0)?, r.try_get(1)?)?;
                    let name: String = r.try_get(2)?;
                    out.push(format!(
                        "{key} roleplay character {name:?}: {} XP stored, {} by its tallies; today {}+{} stored, {}+{} tallied",
                        r.try_get::<i64, _>(3)?,
                        r.try_get::<i64, _>(4)?,
                        r.try_get::<i64, _>(5)?,
                        r.try_get::<i64, _>(6)?,
                        r.try_get::<i64, _>(7)?,
                        r.try_get::<i64, _>(8)?,
                    ));
                }
                Ok(out)
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                // Collected first: no iterator of borrowed closures is held
                // across an await (the future must stay `Send`).
                let mut deleted: Vec<(i64, i64, i64)> = Vec::new();
                for ws in applied {
                    for w in &ws.writes {
                        if let Write::RpDeleted(id) = w {
                            deleted.push((ws.key.guild.get(), ws.key.user.get(), *id));
                        }
                    }
                }
                for (g, u, id) in deleted {
                    sqlx::query("DELETE FROM rp_characters WHERE guild_id = $1 AND user_id = $2 AND id = $3")
                        .bind(g)
                        .bind(u)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                let players: Vec<(&WriteSet, (Option<&str>, &str, Option<&str>))> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::RpPlayer { active_character, timezone, last_xp_reset } => Some((
                            *ws,
                            (active_character.as_deref(), timezone.as_str(), last_xp_reset.as_deref()),
                        )),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO rp_players (guild_id, user_id, active_character, timezone, last_xp_reset) ",
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET active_character = excluded.active_character, \
                      timezone = excluded.timezone, last_xp_reset = excluded.last_xp_reset",
                    players,
                    |b, r| {
                        let (ws, (active, tz, reset)) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(*active)
                            .push_bind(*tz)
                            .push_bind(*reset);
                    }
                );
                // A character changed twice in one command (a day rolled over,
                // then a post counted) is written once, as it ended. A player
                // has one WriteSet in a batch (their actor waits for each
                // commit), so only a WriteSet's own writes are compared.
                let mut characters: Vec<(&WriteSet, &RpCharacter)> = Vec::new();
                for ws in applied {
                    let mine = characters.len();
                    for w in &ws.writes {
                        if let Write::RpCharacter(c) = w {
                            if let Some(i) = characters[mine..].iter().position(|(_, o)| o.id == c.id) {
                                characters[mine + i] = (*ws, c);
                            } else {
                                characters.push((*ws, c));
                            }
                        }
                    }
                }
                insert_chunked!(
                    tx,
                    "INSERT INTO rp_characters (guild_id, user_id, id, name, name_key, xp, daily_xp, daily_hf, \
                     char_buffer, image_url, created_ms) ",
                    " ON CONFLICT (guild_id, user_id, id) DO UPDATE SET name = excluded.name, \
                      name_key = excluded.name_key, xp = excluded.xp, daily_xp = excluded.daily_xp, \
                      daily_hf = excluded.daily_hf, char_buffer = excluded.char_buffer, image_url = excluded.image_url",
                    characters,
                    |b, r| {
                        let (ws, c) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(c.id)
                            .push_bind(c.name.as_str())
                            .push_bind(crate::game::roleplay::name_key(&c.name))
                            .push_bind(c.xp)
                            .push_bind(c.daily_xp)
                            .push_bind(c.daily_hf)
                            .push_bind(c.char_buffer)
                            .push_bind(c.image_url.as_deref())
                            .push_bind(c.created_ms);
                    }
                );
                let tallies: Vec<(&WriteSet, (i64, &str, i64, i64))> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::RpTally { character, day, rp_xp, hf_xp } => {
                            Some((*ws, (*character, day.as_str(), *rp_xp, *hf_xp)))
                        }
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO rp_xp_days (guild_id, user_id, character_id, day, rp_xp, hf_xp) ",
                    " ON CONFLICT (guild_id, user_id, character_id, day) DO UPDATE SET \
                      rp_xp = excluded.rp_xp, hf_xp = excluded.hf_xp",
                    tallies,
                    |b, r| {
                        let (ws, (character, day, rp_xp, hf_xp)) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(*character)
                            .push_bind(*day)
                            .push_bind(*rp_xp)
                            .push_bind(*hf_xp);
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use roleplay_sql;
