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
                    "SELECT since_ms, vip_until_ms, free_day, free_used, chosen_workflow, chosen_ms FROM gen_players \
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
                        chosen: match (r.try_get::<Option<String>, _>(4)?, r.try_get::<Option<i64>, _>(5)?) {
                            (Some(w), Some(at)) if workflow::valid_id(&w) => Some((Workflow::intern(&w), at)),
                            _ => None,
                        },
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

            /// What jobs and payments prove about credits: holds never
            /// exceed a balance; every `generate` ledger row is a job that
            /// was charged (a held job that succeeded, or one charged when
            /// queued before holds) and every `refund` one a job charged
            /// when queued that failed; `topup` rows are the payments and
            /// `chargeback` rows what was taken back. Returns the credits
            /// held in all and every broken rule, in words.
            pub async fn audit(tx: &mut Conn) -> Result<(i64, Vec<String>), StoreError> {
                let mut out = Vec::new();
                for r in sqlx::query(
                    "SELECT u.guild_id, u.user_id, u.credits, h.held FROM users u JOIN ( \
                       SELECT guild_id, user_id, CAST(SUM(cost) AS BIGINT) AS held FROM jobs \
                       WHERE status = 'queued' AND held = 1 GROUP BY guild_id, user_id) h \
                     ON h.guild_id = u.guild_id AND h.user_id = u.user_id \
                     WHERE h.held > u.credits ORDER BY u.guild_id, u.user_id LIMIT 20",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    out.push(format!(
                        "{} holds {} credits for queued jobs but has only {}",
                        user_key(r.try_get(0)?, r.try_get(1)?)?,
                        r.try_get::<i64, _>(3)?,
                        r.try_get::<i64, _>(2)?,
                    ));
                }
                let sum = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
                let held = sum("SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM jobs WHERE status = 'queued' AND held = 1")
                    .fetch_one(&mut *tx)
                    .await?;
                let charged = sum(
                    "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM jobs WHERE held = 0 OR status = 'done'",
                )
                .fetch_one(&mut *tx)
                .await?;
                let refunded = sum(
                    "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM jobs \
                     WHERE held = 0 AND status IN ('failed', 'cancelled')",
                )
                .fetch_one(&mut *tx)
                .await?;
                // Jobs pruned by retention left their sums behind.
                let pruned = sqlx::query("SELECT charged, refunded FROM jobs_pruned WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
                let (charged, refunded) = match pruned {
                    Some(r) => (charged + r.try_get::<i64, _>(0)?, refunded + r.try_get::<i64, _>(1)?),
                    None => (charged, refunded),
                };
                let bought = sum("SELECT CAST(COALESCE(SUM(credits), 0) AS BIGINT) FROM payments")
                    .fetch_one(&mut *tx)
                    .await?;
                let taken = sum("SELECT CAST(COALESCE(SUM(clawed_back), 0) AS BIGINT) FROM payments")
                    .fetch_one(&mut *tx)
                    .await?;
                let ledger = |reason: &'static str| {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger \
                         WHERE currency = 'credits' AND reason = $1",
                    )
                    .bind(reason)
                };
                for (reason, expected, what) in [
                    ("generate", -charged, "the jobs charged"),
                    ("refund", refunded, "the jobs refunded"),
                    ("topup", bought, "the payments"),
                    ("chargeback", -taken, "the chargebacks"),
                ] {
                    let booked = ledger(reason).fetch_one(&mut *tx).await?;
                    if booked != expected {
                        out.push(format!(
                            "credits booked as {reason} ({booked}) differ from {what} ({expected})"
                        ));
                    }
                }
                Ok((held, out))
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
                    "INSERT INTO jobs (id, guild_id, user_id, workflow, prompt, cost, status, created_ms, image, held, notify) ",
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
                            .push_bind(j.image.as_deref())
                            .push_bind(i64::from(j.held))
                            .push_bind(j.notify.as_deref());
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
                    "INSERT INTO gen_players (guild_id, user_id, since_ms, vip_until_ms, free_day, free_used, chosen_workflow, chosen_ms) ",
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET since_ms = excluded.since_ms, \
                      vip_until_ms = excluded.vip_until_ms, free_day = excluded.free_day, \
                      free_used = excluded.free_used, chosen_workflow = excluded.chosen_workflow, \
                      chosen_ms = excluded.chosen_ms",
                    players,
                    |b, r| {
                        let (ws, a) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(a.since_ms)
                            .push_bind(a.vip_until_ms)
                            .push_bind(a.day)
                            .push_bind(a.used_text())
                            .push_bind(a.chosen.map(|(w, _)| w.as_str()))
                            .push_bind(a.chosen.map(|(_, at)| at));
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use generation_writes;
