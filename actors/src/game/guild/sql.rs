//! Guild settings and the audit log in SQL: a guild's settings read by its
//! settings actor, the last changes for `config_show`, and the writes as
//! group commit applies them (a setting as an absolute upsert; an audit row
//! per admin action).
//!
//! Instantiated per backend by `store::queries` (see `economy/sql.rs`).

macro_rules! guild_sql {
    () => {
        pub(crate) mod guild_sql {
            use super::*;
            use crate::game::guild::settings::{GuildSettings, Key};
            use crate::game::guild::AuditEntry;
            use crate::writeset::AuditRow;

            /// A guild's settings: the defaults, with what admins changed.
            /// A stored value this build no longer accepts is logged and
            /// left at its default rather than refusing to serve the guild.
            pub async fn load(pool: &Pool, guild: GuildId) -> Result<GuildSettings, StoreError> {
                let mut settings = GuildSettings::default();
                for r in sqlx::query("SELECT key, value FROM guild_settings WHERE guild_id = $1")
                    .bind(guild.get())
                    .fetch_all(pool)
                    .await?
                {
                    let key: String = r.try_get(0)?;
                    let value: String = r.try_get(1)?;
                    let set = Key::parse(&key)
                        .ok_or_else(|| format!("unknown setting {key:?}"))
                        .and_then(|k| settings.set(k, &value));
                    if let Err(e) = set {
                        tracing::warn!(%guild, %key, error = %e, "a stored guild setting is not valid; using its default");
                    }
                }
                Ok(settings)
            }

            /// The newest audit rows of a guild, newest first.
            pub async fn recent_changes(pool: &Pool, guild: GuildId, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
                let rows = sqlx::query(
                    "SELECT by_user, action, target_user, key, old_value, new_value, reason, at_ms \
                     FROM audit_log WHERE guild_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
                )
                .bind(guild.get())
                .bind(limit)
                .fetch_all(pool)
                .await?;
                let id = |v: i64| UserId::new(v).map_err(|e| StoreError::Corrupt(e.to_string()));
                rows.iter()
                    .map(|r| {
                        Ok(AuditEntry {
                            by: id(r.try_get(0)?)?,
                            action: r.try_get(1)?,
                            target: r.try_get::<Option<i64>, _>(2)?.map(id).transpose()?,
                            key: r.try_get(3)?,
                            old: r.try_get(4)?,
                            new: r.try_get(5)?,
                            reason: r.try_get(6)?,
                            at_ms: r.try_get(7)?,
                        })
                    })
                    .collect()
            }

            /// Admin actions that moved money without their audit row, or
            /// the other way round: grants in the ledger and in the audit
            /// log must be the same number. Run inside the audit's snapshot.
            pub async fn audit(tx: &mut Conn) -> Result<Vec<String>, StoreError> {
                let r = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM ledger WHERE reason = 'grant'), \
                            (SELECT COUNT(*) FROM audit_log WHERE action = 'grant')",
                )
                .fetch_one(&mut *tx)
                .await?;
                let (ledger, audited): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok(if ledger == audited {
                    Vec::new()
                } else {
                    vec![format!("{ledger} grant(s) in the ledger but {audited} in the audit log")]
                })
            }

            pub async fn insert(tx: &mut Conn, applied: &[&WriteSet]) -> Result<(), StoreError> {
                let settings: Vec<(&WriteSet, &str, &str)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Setting { key, value } => Some((*ws, *key, value.as_str())),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO guild_settings (guild_id, key, value, updated_ms) ",
                    " ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                    settings,
                    |b, r| {
                        let (ws, key, value) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(*key)
                            .push_bind(*value)
                            .push_bind(ws.at_ms);
                    }
                );
                let audit: Vec<(&WriteSet, &AuditRow)> = applied
                    .iter()
                    .flat_map(|ws| ws.writes.iter().filter_map(move |w| match w {
                        Write::Audit(a) => Some((*ws, a)),
                        _ => None,
                    }))
                    .collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO audit_log (guild_id, by_user, action, target_user, key, old_value, new_value, reason, command_id, at_ms) ",
                    "",
                    audit,
                    |b, r| {
                        let (ws, a) = r;
                        b.push_bind(ws.key.guild.get())
                            .push_bind(a.by.get())
                            .push_bind(a.action)
                            .push_bind(a.target.map(UserId::get))
                            .push_bind(a.key.as_str())
                            .push_bind(a.old.as_str())
                            .push_bind(a.new.as_str())
                            .push_bind(a.reason.as_str())
                            .push_bind(ws.command_id.as_ref().map(|c| c.as_str().to_owned()))
                            .push_bind(ws.at_ms);
                    }
                );
                Ok(())
            }
        }
    };
}

pub(crate) use guild_sql;
