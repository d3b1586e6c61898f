//! The SQL side of backups and `verify`, instantiated per backend by
//! `store::queries` (see `economy/sql.rs`): kokoro's tables read in one
//! snapshot into a `BackupWriter`, a backup's rows written back in one
//! transaction, and the structural checks `verify` runs besides `check`.

macro_rules! backup_sql {
    ($db:ty, $begin_write:expr, $begin_snapshot:expr, $tables_sql:expr, $columns_sql:expr, $override_identity:expr, $reset_sequences:expr) => {
        pub(crate) mod backup_sql {
            use super::*;
            use crate::store::backup::{valid_identifier, BackupWriter};
            use serde_json::Value;

            /// kokoro's tables, sorted; sqlx's bookkeeping is not kokoro's
            /// data (a restored store is migrated by this kokoro itself),
            /// nor are cluster mode's leases and members (who serves a
            /// slot now: restored, they would name nodes long gone).
            async fn tables(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
                let names: Vec<String> = sqlx::query_scalar($tables_sql).fetch_all(&mut *conn).await?;
                Ok(names
                    .into_iter()
                    .filter(|n| valid_identifier(n) && !n.starts_with("_sqlx") && !n.starts_with("cluster_"))
                    .collect())
            }

            async fn columns(conn: &mut Conn, table: &str) -> Result<Vec<String>, StoreError> {
                let names: Vec<String> = sqlx::query_scalar($columns_sql).bind(table).fetch_all(&mut *conn).await?;
                if names.iter().all(|c| valid_identifier(c)) {
                    Ok(names)
                } else {
                    Err(StoreError::Corrupt(format!("table {table} has a column kokoro never made")))
                }
            }

            /// A column's value as JSON, whatever its type.
            fn value(row: &<$db as sqlx::Database>::Row, i: usize) -> Result<Value, StoreError> {
                if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                    return Ok(v.map_or(Value::Null, Value::from));
                }
                if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                    return Ok(v.map_or(Value::Null, Value::from));
                }
                if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                    return Ok(v.map_or(Value::Null, Value::from));
                }
                if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                    return Ok(v.map_or(Value::Null, Value::from));
                }
                if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                    return Ok(v.map_or(Value::Null, Value::from));
                }
                Err(StoreError::Corrupt(format!("a value of column {i} kokoro cannot read")))
            }

            /// Every table, in one snapshot, into `out`.
            pub async fn export(pool: &Pool, out: &BackupWriter) -> Result<(), StoreError> {
                let mut tx = pool.begin_with($begin_snapshot).await?;
                let backup = |e: crate::store::backup::BackupError| StoreError::Backup(e.to_string());
                for table in tables(&mut tx).await? {
                    let cols = columns(&mut tx, &table).await?;
                    out.table(&table, cols.clone()).await.map_err(backup)?;
                    let list = cols.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
                    let sql = format!("SELECT {list} FROM \"{table}\"");
                    let mut rows = sqlx::query(&sql).fetch(&mut *tx);
                    while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
                        let values = (0..cols.len()).map(|i| value(&row, i)).collect::<Result<Vec<_>, _>>()?;
                        out.row(values).await.map_err(backup)?;
                    }
                }
                tx.rollback().await?;
                Ok(())
            }

            /// Rows per table.
            pub async fn row_counts(pool: &Pool) -> Result<BTreeMap<String, u64>, StoreError> {
                let mut conn = pool.acquire().await?;
                let mut counts = BTreeMap::new();
                for table in tables(&mut conn).await? {
                    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
                        .fetch_one(&mut *conn)
                        .await?;
                    counts.insert(table, n as u64);
                }
                Ok(counts)
            }

            /// Writes a backup's items into this store in one transaction:
            /// every table emptied first when `replace`, each row inserted
            /// as it was, the id sequences moved past the restored ids, and
            /// an audit row. Nothing lands unless all of it does.
            pub async fn import(
                pool: &Pool,
                mut items: tokio::sync::mpsc::Receiver<Result<crate::store::backup::Item, crate::store::backup::BackupError>>,
                replace: bool,
                note: &str,
                at_ms: i64,
            ) -> Result<u64, StoreError> {
                use crate::store::backup::Item;
                let mut tx = pool.begin_with($begin_write).await?;
                let known = tables(&mut tx).await?;
                if replace {
                    for t in &known {
                        sqlx::query(&format!("DELETE FROM \"{t}\"")).execute(&mut *tx).await?;
                    }
                }
                let mut current: Option<(String, Vec<String>)> = None;
                let mut pending: Vec<Vec<Value>> = Vec::new();
                let mut restored = 0u64;
                while let Some(item) = items.recv().await {
                    match item.map_err(|e| StoreError::Backup(e.to_string()))? {
                        Item::Table { name, columns: backed_up } => {
                            if let Some((t, c)) = &current {
                                insert(&mut tx, t, c, &mut pending).await?;
                            }
                            if !known.contains(&name) {
                                return Err(StoreError::Backup(format!(
                                    "the backup has table {name}, which this kokoro's schema lacks (made by a newer kokoro?)"
                                )));
                            }
                            let have = columns(&mut tx, &name).await?;
                            if let Some(c) = backed_up.iter().find(|c| !have.contains(c)) {
                                return Err(StoreError::Backup(format!(
                                    "the backup has column {name}.{c}, which this kokoro's schema lacks (made by a newer kokoro?)"
                                )));
                            }
                            current = Some((name, backed_up));
                        }
                        Item::Row(values) => {
                            let Some((t, c)) = &current else {
                                return Err(StoreError::Corrupt("a row before any table".into()));
                            };
                            if values.len() != c.len() {
                                return Err(StoreError::Corrupt(format!("a row of {t} with {} values for {} columns", values.len(), c.len())));
                            }
                            pending.push(values);
                            restored += 1;
                            if pending.len() >= 200 {
                                insert(&mut tx, t, c, &mut pending).await?;
                            }
                        }
                    }
                }
                if let Some((t, c)) = &current {
                    insert(&mut tx, t, c, &mut pending).await?;
                }
                for statement in $reset_sequences {
                    let rows: Vec<(String, String)> = sqlx::query_as(statement).fetch_all(&mut *tx).await?;
                    for (table, column) in rows.into_iter().filter(|(t, c)| valid_identifier(t) && valid_identifier(c)) {
                        sqlx::query(&format!(
                            "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), \
                             COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
                        ))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO audit_log (guild_id, by_user, action, target_user, key, old_value, new_value, reason, at_ms) \
                     VALUES (0, 0, 'restore', NULL, 'store', $1, $2, $3, $4)",
                )
                .bind(if replace { "replaced" } else { "empty" })
                .bind(format!("{restored} rows"))
                .bind(note)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(restored)
            }

            /// An audit row for what an operator did at the command line
            /// (guild 0, by 0: no player did it).
            pub async fn operator_audit(pool: &Pool, action: &str, key: &str, new: &str, reason: &str, at_ms: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_log (guild_id, by_user, action, target_user, key, old_value, new_value, reason, at_ms) \
                     VALUES (0, 0, $1, NULL, $2, '', $3, $4, $5)",
                )
                .bind(action)
                .bind(key)
                .bind(new)
                .bind(reason)
                .bind(at_ms)
                .execute(pool)
                .await?;
                Ok(())
            }

            async fn insert(tx: &mut Conn, table: &str, columns: &[String], rows: &mut Vec<Vec<Value>>) -> Result<(), StoreError> {
                if rows.is_empty() {
                    return Ok(());
                }
                let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
                let mut qb = QueryBuilder::<$db>::new(format!("INSERT INTO \"{table}\" ({list}){} ", $override_identity));
                qb.push_values(rows.iter(), |mut b, row| {
                    for v in row {
                        match v {
                            // A NULL typed as an integer: PostgreSQL casts it to
                            // a text column on assignment, not the other way.
                            Value::Null => { b.push_bind(None::<i64>); }
                            Value::Bool(x) => { b.push_bind(*x); }
                            Value::Number(n) => match n.as_i64() {
                                Some(i) => { b.push_bind(i); }
                                None => { b.push_bind(n.as_f64().unwrap_or_default()); }
                            },
                            Value::String(s) => { b.push_bind(s.clone()); }
                            other => { b.push_bind(other.to_string()); }
                        }
                    }
                });
                qb.build().execute(&mut *tx).await?;
                rows.clear();
                Ok(())
            }

            /// What `verify` checks beyond the money invariants: rows that
            /// belong to no player, and jobs and arena entries in a state
            /// kokoro never leaves them in. At most 20 of each, in words.
            pub async fn structure(pool: &Pool) -> Result<Vec<String>, StoreError> {
                let mut conn = pool.acquire().await?;
                let mut out = Vec::new();
                let present = tables(&mut conn).await?;
                for table in ["inventory", "ledger", "jobs", "arena_entries", "characters", "pity",
                              "summons", "teams", "upgrades", "rp_players", "rp_characters",
                              "rp_xp_days", "gen_players", "payments"] {
                    // (Command ids are not in the list: an admin who never
                    // played still has the ids of their settings changes.)
                    if !present.iter().any(|t| t == table) {
                        continue;
                    }
                    let n: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM \"{table}\" x WHERE NOT EXISTS \
                         (SELECT 1 FROM users u WHERE u.guild_id = x.guild_id AND u.user_id = x.user_id)"
                    ))
                    .fetch_one(&mut *conn)
                    .await?;
                    if n > 0 {
                        out.push(format!("{n} row(s) of {table} belong to no player"));
                    }
                }
                let bad_jobs: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE status NOT IN ('queued', 'done', 'failed', 'cancelled') \
                       OR (status = 'queued') <> (finished_ms IS NULL) OR cost < 0 OR held NOT IN (0, 1) \
                       OR (status = 'done' AND result IS NULL) ORDER BY id LIMIT 20",
                )
                .fetch_all(&mut *conn)
                .await?;
                if !bad_jobs.is_empty() {
                    out.push(format!("jobs in no valid state: {}", bad_jobs.join(", ")));
                }
                let bad_entries: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM arena_entries WHERE status NOT IN ('waiting', 'left', 'matched', 'rewarded') \
                       OR (status IN ('matched', 'rewarded') AND battle_id IS NULL) ORDER BY id LIMIT 20",
                )
                .fetch_all(&mut *conn)
                .await?;
                if !bad_entries.is_empty() {
                    out.push(format!("arena entries in no valid state: {}", bad_entries.join(", ")));
                }
                Ok(out)
            }
        }
    };
}

pub(crate) use backup_sql;
