//! Guild administration: `config_show`, `config_set {key, value}`,
//! `grant {user, currency, amount, reason}` and `roles_sync {user?}`.
//! Admins only (the runtime checks the caller; see `CommandKind::is_admin`),
//! and every change writes an audit row in the same transaction as the
//! change. `roles {user?}`, which anyone may ask, shows what the guild's
//! role rules make of a member (`roles.rs`).
//!
//! A guild's settings are owned by its settings actor (`guild_settings.rs`),
//! which answers `config_show` and `config_set`; players' actors read the
//! snapshot it publishes. `grant` changes a player's balance, so it is
//! decided by that player's actor, like every other balance change.

pub mod role_rules;
pub mod roles;
pub mod settings;
pub(crate) mod sql;
pub mod verify;

use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::domain::money::MAX_AMOUNT;
use crate::domain::Currency;
use crate::game::draft::{Context, Draft, Refusal};
use crate::ids::{UserId, UserKey};
use crate::reply::ErrorCode;
use crate::writeset::{AuditRow, Write};
use settings::{GuildSettings, Key};

/// Longest reason a grant may give.
pub const MAX_REASON_CHARS: usize = 200;
/// Audit rows `config_show` lists.
pub const CHANGES_SHOWN: i64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuildCommand {
    Show,
    Set {
        key: Key,
        value: String,
    },
    Grant {
        user: UserId,
        currency: Currency,
        /// Negative to take back (a correction); never zero.
        amount: i64,
        reason: String,
        /// The admin who granted: set by the runtime when it hands the
        /// command to the receiving player's actor.
        by: Option<UserId>,
    },
    /// The roles the rules want a member (the caller, if `user` is absent)
    /// to have, and why.
    Roles {
        user: Option<UserId>,
        by: Option<UserId>,
    },
    /// Admin: hands every role the rules decide for a member to the front
    /// door to apply again.
    RolesSync {
        user: Option<UserId>,
        by: Option<UserId>,
    },
    /// A member's press of the verification button (with their answer to
    /// the guild's question), or, with `user`, an admin's or integration's
    /// word that the member is verified.
    Verify {
        user: Option<UserId>,
        answer: Option<String>,
        by: Option<UserId>,
    },
}

impl GuildCommand {
    pub const NAMES: &'static [&'static str] = &[
        "config_show",
        "config_set",
        "grant",
        "roles",
        "roles_sync",
        "verify",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Show => "config_show",
            Self::Set { .. } => "config_set",
            Self::Grant { .. } => "grant",
            Self::Roles { .. } => "roles",
            Self::RolesSync { .. } => "roles_sync",
            Self::Verify { .. } => "verify",
        }
    }

    pub fn parse(name: &str, a: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(Some(match name {
            "config_show" => Self::Show,
            "config_set" => {
                let key = match a.required("key")? {
                    Value::String(k) => Key::parse(k.trim()).ok_or_else(|| {
                        ParseError::invalid(format!(
                            "unknown setting {:?}; settings are: {}",
                            k.chars().take(40).collect::<String>(),
                            Key::ALL.map(Key::as_str).join(", ")
                        ))
                    })?,
                    _ => return Err(ParseError::invalid("key must be a string")),
                };
                // A number, a string, or (for channel lists) an array of ids.
                let value = match a.required("value")? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Array(items) => items
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(n) => Ok(n.to_string()),
                            _ => Err(ParseError::invalid("value must hold ids")),
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    _ => {
                        return Err(ParseError::invalid(format!(
                            "value of {} must be {}",
                            key.as_str(),
                            key.allowed()
                        )))
                    }
                };
                // Checked now, so a bad value is refused before any actor.
                GuildSettings::default()
                    .set(key, &value)
                    .map_err(ParseError::InvalidArgument)?;
                Self::Set { key, value }
            }
            "grant" => {
                let user = a.user_id("user")?;
                let currency = match a.required("currency")? {
                    Value::String(c) => Currency::parse(c).ok_or_else(|| {
                        ParseError::invalid("currency must be gold, gems or credits")
                    })?,
                    _ => return Err(ParseError::invalid("currency must be a string")),
                };
                let amount = a.integer("amount", -MAX_AMOUNT, MAX_AMOUNT)?;
                if amount == 0 {
                    return Err(ParseError::invalid("amount must not be 0"));
                }
                let reason = match a.required("reason")? {
                    Value::String(r) => r.trim().to_owned(),
                    _ => return Err(ParseError::invalid("reason must be a string")),
                };
                let n = reason.chars().count();
                if n == 0 || n > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
                    return Err(ParseError::invalid(format!(
                        "reason must be 1 to {MAX_REASON_CHARS} printable characters"
                    )));
                }
                Self::Grant {
                    user,
                    currency,
                    amount,
                    reason,
                    by: None,
                }
            }
            "roles" => Self::Roles {
                user: a.optional_user_id("user")?,
                by: None,
            },
            "roles_sync" => Self::RolesSync {
                user: a.optional_user_id("user")?,
                by: None,
            },
            "verify" => {
                let user = a.optional_user_id("user")?;
                let answer = a.optional_str("answer")?.map(str::trim).map(str::to_owned);
                if answer.as_ref().is_some_and(|s| {
                    s.chars().count() > settings::MAX_ANSWER_CHARS
                        || s.chars().any(char::is_control)
                }) {
                    return Err(ParseError::invalid(format!(
                        "answer must be at most {} printable characters",
                        settings::MAX_ANSWER_CHARS
                    )));
                }
                Self::Verify {
                    user,
                    answer,
                    by: None,
                }
            }
            _ => return Ok(None),
        }))
    }

    pub fn args(&self) -> Value {
        match self {
            Self::Show => json!({}),
            Self::Set { key, value } => json!({ "key": key.as_str(), "value": value }),
            Self::Grant {
                user,
                currency,
                amount,
                reason,
                ..
            } => json!({
                "user": user.to_string(), "currency": currency.as_str(),
                "amount": amount, "reason": reason,
            }),
            Self::Roles { user, .. } | Self::RolesSync { user, .. } => match user {
                Some(u) => json!({ "user": u.to_string() }),
                None => json!({}),
            },
            Self::Verify { user, answer, .. } => {
                let mut a = serde_json::Map::new();
                if let Some(u) = user {
                    a.insert("user".into(), json!(u.to_string()));
                }
                if let Some(x) = answer {
                    a.insert("answer".into(), json!(x));
                }
                Value::Object(a)
            }
        }
    }

    pub fn writes_when_ok(&self) -> bool {
        !matches!(self, Self::Show | Self::Roles { .. })
    }
}

/// Decides a grant in the receiving player's actor: the balance change and
/// its ledger row, and the audit row, in one WriteSet.
pub fn decide(
    mut d: Draft,
    key: UserKey,
    c: &GuildCommand,
    _ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    match c {
        GuildCommand::RolesSync { by, .. } => return roles::sync(d, key, *by, _ctx),
        GuildCommand::Verify { answer, by, .. } => {
            return verify::decide(d, key, answer.as_deref(), *by, _ctx)
        }
        _ => {}
    }
    let GuildCommand::Grant {
        currency,
        amount,
        reason,
        by,
        ..
    } = c
    else {
        return Err(Refusal::new(
            ErrorCode::Internal,
            "guild settings are answered by the guild's settings actor",
        ));
    };
    let before = balance(&d, *currency);
    if *amount > 0 {
        d.credit(*currency, *amount, "grant")?;
    } else {
        d.debit(*currency, -*amount, "grant")?;
    }
    let after = balance(&d, *currency);
    d.write(Write::Audit(AuditRow {
        by: by.unwrap_or(key.user),
        action: "grant",
        target: Some(key.user),
        key: currency.as_str().to_owned(),
        old: before.to_string(),
        new: after.to_string(),
        reason: reason.clone(),
    }));
    let mut data = d.balances();
    data["granted"] =
        json!({ "user": key.user.to_string(), "currency": currency.as_str(), "amount": amount });
    let msg = format!(
        "{} {} {} <@{}> ({}); they now have {after}.",
        if *amount > 0 { "Granted" } else { "Took back" },
        amount.abs(),
        currency.as_str(),
        key.user,
        reason
    );
    Ok(d.with(data, msg))
}

fn balance(d: &Draft, c: Currency) -> i64 {
    match c {
        Currency::Gold => d.state.gold,
        Currency::Gems => d.state.gems,
        Currency::Credits => d.state.credits,
    }
}

/// `config_set` as the settings actor decides it: the new settings, and the
/// writes (the setting and its audit row), or a refusal that changes nothing.
pub fn set(
    current: &GuildSettings,
    by: UserId,
    key: Key,
    value: &str,
) -> Result<(GuildSettings, Vec<Write>, Value, String), Refusal> {
    let mut next = current.clone();
    next.set(key, value)
        .map_err(|e| Refusal::new(ErrorCode::InvalidArgument, e))?;
    let (old, new) = (current.get(key), next.get(key));
    let writes = vec![
        Write::Setting {
            key: key.as_str(),
            value: new.clone(),
        },
        Write::Audit(AuditRow {
            by,
            action: "config_set",
            target: None,
            key: key.as_str().to_owned(),
            old: old.clone(),
            new: new.clone(),
            reason: String::new(),
        }),
    ];
    let data = json!({ "key": key.as_str(), "old": old, "new": new });
    let show = |v: &str| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.to_owned()
        }
    };
    let msg = format!(
        "{} is now {} (was {}).",
        key.as_str(),
        show(&new),
        show(&old)
    );
    Ok((next, writes, data, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(name: &str, args: Value) -> Result<Option<GuildCommand>, ParseError> {
        let map = args.as_object().cloned().unwrap_or_default();
        let mut a = Args::new(&map);
        GuildCommand::parse(name, &mut a)
    }

    #[test]
    fn config_set_refuses_unknown_keys_and_bad_values_by_name() {
        let e = parse("config_set", json!({"key": "colour", "value": "red"})).unwrap_err();
        assert!(
            e.to_string().contains("unknown setting \"colour\"")
                && e.to_string().contains("char_per_rp"),
            "{e}"
        );
        let e = parse("config_set", json!({"key": "char_per_rp", "value": 0})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "char_per_rp must be a whole number from 1 to 100000"
        );
        assert_eq!(
            parse(
                "config_set",
                json!({"key": "rp_channels", "value": ["1", 2]})
            )
            .unwrap(),
            Some(GuildCommand::Set {
                key: Key::RpChannels,
                value: "1,2".into()
            })
        );
    }

    #[test]
    fn grant_needs_a_reason_and_a_non_zero_amount() {
        let ok = json!({"user": "5", "currency": "gems", "amount": -3, "reason": "typo"});
        assert!(matches!(
            parse("grant", ok),
            Ok(Some(GuildCommand::Grant { amount: -3, .. }))
        ));
        for bad in [
            json!({"user": "5", "currency": "gems", "amount": 0, "reason": "x"}),
            json!({"user": "5", "currency": "rubies", "amount": 3, "reason": "x"}),
            json!({"user": "5", "currency": "gems", "amount": 3, "reason": " "}),
            json!({"user": "5", "currency": "gems", "amount": 3}),
        ] {
            assert!(parse("grant", bad.clone()).is_err(), "{bad}");
        }
    }
}

/// One row of the audit log, as `config_show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub by: UserId,
    pub action: String,
    pub target: Option<UserId>,
    pub key: String,
    pub old: String,
    pub new: String,
    pub reason: String,
    pub at_ms: i64,
}

impl AuditEntry {
    pub fn to_json(&self) -> Value {
        json!({
            "by": self.by.to_string(), "action": self.action,
            "target": self.target.map(|t| t.to_string()), "key": self.key,
            "old": self.old, "new": self.new, "reason": self.reason, "at_ms": self.at_ms,
        })
    }
}
