//! The arena's writes as group commit applies them: an entry moving on
//! (`waiting` → `left`, `matched` → `rewarded`) is a guard that applies
//! only from the status it must still be in, so a refund or a prize lands
//! once; new entries are one multi-row insert per chunk.
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! arena_writes {
    () => {
        pub(super) mod arena_writes {
            use super::*;

            pub async fn guard(
                tx: &mut Conn,
                batch: &[WriteSet],
                outcomes: &mut [CommitOutcome],
            ) -> Result<(), StoreError> {
                guard_each!(tx, batch, outcomes, |ws| ws.arena_close(), |c| sqlx::query(
                    "UPDATE arena_entries SET status = $1, closed_ms = $2 \
                     WHERE id = $3 AND guild_id = $4 AND user_id = $5 AND status = $6 RETURNING id",
                )
                .bind(c.to.as_str())
                .bind(ws.at_ms)
                .bind(c.id.as_str())
                .bind(ws.key.guild.get())
                .bind(ws.key.user.get())
                .bind(c.from.as_str()));
                Ok(())
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let entries: Vec<&ArenaEntry> = applied.iter().flat_map(|ws| ws.writes.iter()).filter_map(|w| match w {
                    Write::ArenaNew(e) => Some(e),
                    _ => None,
                }).collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO arena_entries (id, guild_id, user_id, fee, power, status, created_ms, notify) ",
                    "",
                    entries,
                    |b, e| {
                        b.push_bind(e.id.as_str())
                            .push_bind(e.key.guild.get())
                            .push_bind(e.key.user.get())
                            .push_bind(e.fee)
                            .push_bind(e.power)
                            .push_bind("waiting")
                            .push_bind(e.created_ms)
                            .push_bind(e.notify.as_deref());
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use arena_writes;
