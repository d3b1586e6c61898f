//! Generation's writes as group commit applies them: a job's close is a
//! guard (it applies only while the job is `queued`, so a result or a refund
//! lands once), and new jobs are one multi-row insert per chunk.
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! generation_writes {
    () => {
        pub(super) mod generation_writes {
            use super::*;

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
                Ok(())
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let jobs: Vec<&Job> = applied.iter().flat_map(|ws| ws.writes.iter()).filter_map(|w| match w {
                    Write::JobNew(j) => Some(j),
                    _ => None,
                }).collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO jobs (id, guild_id, user_id, workflow, prompt, cost, status, created_ms) ",
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
                            .push_bind(j.created_ms);
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use generation_writes;
