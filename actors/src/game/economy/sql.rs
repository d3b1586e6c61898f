//! The economy's writes as group commit applies them: the transfer-credit
//! guard, then inventory and outbox rows, each kind as one multi-row
//! statement per chunk of the batch.
//!
//! SQL is written once and instantiated per backend: `store::queries`
//! expands `economy_writes!()` inside each backend's module, where `Conn`,
//! `QueryBuilder`, `chunk_sizes` and `insert_chunked!` are in scope.

macro_rules! economy_writes {
    () => {
        pub(super) mod economy_writes {
            use super::*;

            /// A transfer credited before makes its WriteSet a no-op. One
            /// statement per chunk returns the ids it marked.
            pub async fn guard(
                tx: &mut Conn,
                batch: &[WriteSet],
                outcomes: &mut [CommitOutcome],
            ) -> Result<(), StoreError> {
                let credits: Vec<(usize, &str)> = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| outcomes[*i] == CommitOutcome::Applied)
                    .filter_map(|(i, ws)| Some((i, ws.transfer_in()?)))
                    .collect();
                if credits.is_empty() {
                    return Ok(());
                }
                let mut marked: std::collections::HashSet<String> = std::collections::HashSet::new();
                let at = batch.iter().map(|ws| ws.at_ms).max().unwrap_or_default();
                let mut start = 0;
                for size in chunk_sizes(credits.len()) {
                    let mut qb = QueryBuilder::new("UPDATE transfers SET credited_ms = ");
                    qb.push_bind(at);
                    qb.push(" WHERE credited_ms IS NULL AND id IN (");
                    let mut ids = qb.separated(", ");
                    for (_, id) in &credits[start..start + size] {
                        ids.push_bind(*id);
                    }
                    qb.push(") RETURNING id");
                    for r in qb.build().fetch_all(&mut *tx).await? {
                        marked.insert(r.try_get(0)?);
                    }
                    start += size;
                }
                // `remove`: should one transfer appear twice in a batch, only
                // its first WriteSet applies.
                for (i, id) in &credits {
                    if !marked.remove(*id) {
                        outcomes[*i] = CommitOutcome::AlreadyApplied;
                    }
                }
                Ok(())
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let items: Vec<(&WriteSet, (&String, i64))> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Inventory { item, quantity } => Some((*ws, (item, *quantity))),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO inventory (guild_id, user_id, item, quantity) ",
                    " ON CONFLICT (guild_id, user_id, item) DO UPDATE SET quantity = excluded.quantity",
                    items,
                    |b, r| {
                        let (ws, (item, qty)) = r;
                        b.push_bind(ws.key.guild.get()).push_bind(ws.key.user.get()).push_bind(item.as_str()).push_bind(qty);
                    }
                );

                // A transfer credited beside its debit is written credited:
                // the outbox relay has nothing left to do for it.
                let paired: std::collections::HashSet<&str> =
                    applied.iter().filter_map(|ws| ws.transfer_paired()).collect();
                let transfers: Vec<(&Transfer, Option<i64>)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().map(move |w| (*ws, w)))
                    .filter_map(|(ws, w)| match w {
                        Write::TransferOut(t) => Some((t, paired.contains(t.id.as_str()).then_some(ws.at_ms))),
                        _ => None,
                    })
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO transfers (id, guild_id, from_user, to_user, amount, created_ms, credited_ms) ",
                    "",
                    transfers,
                    |b, r| {
                        let (t, credited) = r;
                        b.push_bind(t.id.as_str())
                            .push_bind(t.guild.get())
                            .push_bind(t.from.get())
                            .push_bind(t.to.get())
                            .push_bind(t.amount)
                            .push_bind(t.created_ms)
                            .push_bind(*credited);
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use economy_writes;
