//! Generation's writes as group commit applies them: a job's close is a
//! guard (it applies only while the job is `queued`, so a result or a refund
//! lands once), and new jobs are one multi-row insert per chunk.
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! generation_writes {
    () => {
        pub(crate) mod generation_writes {
            use super::*;
            use crate::game::generation::allowance::Allowance;

            pub async fn load_allowance(pool: &Pool, key: UserKey) -> Result<Allowance, StoreError> {
                let mut conn = pool.acquire().await?;
                load_allowance_on(&mut conn, key).await
            }

            /// The player's free jobs and VIP; a player without a row has
            /// been on trial since their first command (0: not yet).
            pub async fn load_allowance_on(conn: &mut Conn, key: UserKey) -> Result<Allowance, StoreError> {
                let (g, u) = (key.guild.get(), key.user.get());
                let row = sqlx::query(
                    "SELECT since_ms, vip_until_ms, free_day, free_used FROM gen_players \
                     WHERE guild_id = $1 AND user_id = $2",
                )
                .bind(g)
                .bind(u)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(r) = row {
                    let used: String = r.try_get(3)?;
                    return Ok(Allowance {
                        since_ms: r.try_get(0)?,
                        vip_until_ms: r.try_get(1)?,
                        day: r.try_get(2)?,
                        used: Allowance::parse_used(&used)
                            .ok_or_else(|| StoreError::Corrupt(format!("{key} has free_used {used:?}")))?,
                    });
                }
                let created: Option<i64> = sqlx::query_scalar(
                    "SELECT created_ms FROM users WHERE guild_id = $1 AND user_id = $2",
                )
                .bind(g)
                .bind(u)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(Allowance {
                    since_ms: created.unwrap_or(0),
                    ..Allowance::default()
                })
            }

            pub async fn guard(
                tx: &mut Conn,
                batch: &[WriteSet],
                outcomes: &mut [CommitOutcome],
            ) -> Result<(), StoreError> {
                guard_each!(tx, batch, outcomes, |ws| ws.job_close(), |c| sqlx::query(
                    "UPDATE jobs SET status = $1, result = $2, finished_ms = $3 \
                     WHERE id = $4 AND guild_id = $5 AND user_id = $6 AND status = 'queued' RETURNING id",
                )
                .bind(c.status.as_str())
                .bind(c.result.as_deref())
                .bind(ws.at_ms)
                .bind(c.id.as_str())
                .bind(ws.key.guild.get())
                .bind(ws.key.user.get()));
                // A payment row lands once per provider id; a chargeback
                // moves a paid payment of this player to refunded, once.
                guard_each!(tx, batch, outcomes, |ws| ws.payment(), |p| match p {
                    Write::PaymentRefund(r) => sqlx::query(
                        "UPDATE payments SET status = 'refunded', clawed_back = $1, owed = $2, refunded_ms = $3 \
                         WHERE provider_id = $4 AND guild_id = $5 AND user_id = $6 AND status = 'paid' \
                         RETURNING provider_id",
                    )
                    .bind(r.clawed_back)
                    .bind(r.owed)
                    .bind(ws.at_ms)
                    .bind(r.provider_id.as_str())
                    .bind(ws.key.guild.get())
                    .bind(ws.key.user.get()),
                    Write::PaymentIn { provider_id, credits } => sqlx::query(
                        "INSERT INTO payments (provider_id, guild_id, user_id, credits, status, created_ms) \
                         VALUES ($1, $2, $3, $4, 'paid', $5) ON CONFLICT (provider_id) DO NOTHING \
                         RETURNING provider_id",
                    )
                    .bind(provider_id.as_str())
                    .bind(ws.key.guild.get())
                    .bind(ws.key.user.get())
                    .bind(*credits)
                    .bind(ws.at_ms),
                    _ => unreachable!("payment() finds payments only"),
                });
                Ok(())
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let jobs: Vec<&Job> = applied.iter().flat_map(|ws| ws.writes.iter()).filter_map(|w| match w {
                    Write::JobNew(j) => Some(j),
                    _ => None,
                }).collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO jobs (id, guild_id, user_id, workflow, prompt, cost, status, created_ms, image) ",
                    "",
                    jobs,
                    |b, j| {
                        b.push_bind(j.id.as_str())
                            .push_bind(j.key.guild.get())
                            .push_bind(j.key.user.get())
                            .push_bind(j.workflow.as_str())
                            .push_bind(j.prompt.as_str())
                            .push_bind(j.cost)
                            .push_bind("queued")
                            .push_bind(j.created_ms)
                            .push_bind(j.image.as_deref());
                    }
                );
                // One row per WriteSet, as its command left it (a player has
                // one WriteSet in a batch: their actor waits for each commit).
                let players: Vec<(&WriteSet, &Allowance)> = applied
                    .iter()
                    .filter_map(|ws| {
                        ws.writes.iter().rev().find_map(|w| match w {
                            Write::GenPlayer(a) => Some((*ws, a)),
                            _ => None,
                        })
                    })
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO gen_players (guild_id, user_id, since_ms, vip_until_ms, free_day, free_used) ",
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET since_ms = excluded.since_ms, \
                      vip_until_ms = excluded.vip_until_ms, free_day = excluded.free_day, \
                      free_used = excluded.free_used",
                    players,
                    |b, r| {
                        let (ws, a) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(a.since_ms)
                            .push_bind(a.vip_until_ms)
                            .push_bind(a.day)
                            .push_bind(a.used_text());
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use generation_writes;
