//! The typed command every front door builds: parsed and validated once, here,
//! from a command name and a JSON object of arguments. Invalid input never gets
//! past this file, so actors only ever see well-formed commands.

use serde_json::{json, Map, Value};

use crate::domain::credits::{self, Workflow};
use crate::ids::{CommandId, UserId, UserKey};

/// Largest amount a single command may move. Far above any sane balance and
/// far below `i64::MAX`, so sums of a few amounts cannot overflow before the
/// checked arithmetic of the balance itself refuses them.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Largest quantity a single `buy` may ask for.
pub const MAX_QUANTITY: i64 = 1_000;
/// Longest item name accepted.
pub const MAX_ITEM_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderboardBy {
    Gold,
    Level,
}

impl LeaderboardBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gold => "gold",
            Self::Level => "level",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    Profile,
    Balance,
    Daily,
    Give { to: UserId, amount: i64 },
    Shop,
    Buy { item: String, quantity: i64 },
    Inventory,
    Leaderboard { by: LeaderboardBy },
    Credits,
    Lucky,
    Generate { workflow: Workflow, prompt: String },
    Jobs,
    Cancel { job_id: String },
    ArenaJoin,
    ArenaLeave,
    ArenaStatus,
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Balance => "balance",
            Self::Daily => "daily",
            Self::Give { .. } => "give",
            Self::Shop => "shop",
            Self::Buy { .. } => "buy",
            Self::Inventory => "inventory",
            Self::Leaderboard { .. } => "leaderboard",
            Self::Credits => "credits",
            Self::Lucky => "lucky",
            Self::Generate { .. } => "generate",
            Self::Jobs => "jobs",
            Self::Cancel { .. } => "cancel",
            Self::ArenaJoin => "arena_join",
            Self::ArenaLeave => "arena_leave",
            Self::ArenaStatus => "arena_status",
        }
    }

    /// Every command name this build understands, for help texts and for
    /// validating load-test scenarios.
    pub const NAMES: &'static [&'static str] = &[
        "profile",
        "balance",
        "daily",
        "give",
        "shop",
        "buy",
        "inventory",
        "leaderboard",
        "credits",
        "lucky",
        "generate",
        "jobs",
        "cancel",
        "arena_join",
        "arena_leave",
        "arena_status",
    ];

    /// The `args` object that `parse` reads back into this command: what a
    /// client (the load tester over HTTP) sends.
    pub fn args(&self) -> Value {
        match self {
            Self::Give { to, amount } => json!({"to": to.to_string(), "amount": amount}),
            Self::Buy { item, quantity } => json!({"item": item, "quantity": quantity}),
            Self::Leaderboard { by } => json!({"by": by.as_str()}),
            Self::Generate { workflow, prompt } => {
                json!({"workflow": workflow.as_str(), "prompt": prompt})
            }
            Self::Cancel { job_id } => json!({ "job_id": job_id }),
            Self::Profile
            | Self::Balance
            | Self::Daily
            | Self::Shop
            | Self::Inventory
            | Self::Credits
            | Self::Lucky
            | Self::Jobs
            | Self::ArenaJoin
            | Self::ArenaLeave
            | Self::ArenaStatus => json!({}),
        }
    }

    /// Parses a command from its name and its `args` object (`null` or absent
    /// means no arguments).
    pub fn parse(name: &str, args: &Value) -> Result<Self, ParseError> {
        let empty = Map::new();
        let args = match args {
            Value::Null => &empty,
            Value::Object(map) => map,
            _ => return Err(ParseError::invalid("args must be a JSON object")),
        };
        let mut a = Args { map: args, used: 0 };
        let kind = match name {
            "profile" => Self::Profile,
            "balance" => Self::Balance,
            "daily" => Self::Daily,
            "shop" => Self::Shop,
            "inventory" => Self::Inventory,
            "give" => Self::Give {
                to: a.user_id("to")?,
                amount: a.integer("amount", 1, MAX_AMOUNT)?,
            },
            "buy" => Self::Buy {
                item: a.item("item")?,
                quantity: a
                    .optional_integer("quantity", 1, MAX_QUANTITY)?
                    .unwrap_or(1),
            },
            "leaderboard" => Self::Leaderboard {
                by: match a.optional_str("by")? {
                    None | Some("gold") => LeaderboardBy::Gold,
                    Some("level") => LeaderboardBy::Level,
                    Some(_) => return Err(ParseError::invalid("by must be \"gold\" or \"level\"")),
                },
            },
            "credits" => Self::Credits,
            "lucky" => Self::Lucky,
            "jobs" => Self::Jobs,
            "arena_join" => Self::ArenaJoin,
            "arena_leave" => Self::ArenaLeave,
            "arena_status" => Self::ArenaStatus,
            "generate" => Self::Generate {
                workflow: a.workflow("workflow")?,
                prompt: a.prompt("prompt")?,
            },
            "cancel" => Self::Cancel {
                job_id: a.job_id("job_id")?,
            },
            _ => return Err(ParseError::UnknownCommand(name.chars().take(40).collect())),
        };
        a.no_extras()?;
        Ok(kind)
    }
}

/// A command addressed to one player.
#[derive(Debug, Clone)]
pub struct Command {
    pub id: Option<CommandId>,
    pub key: UserKey,
    pub kind: CommandKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{0}")]
    InvalidArgument(String),
}

impl ParseError {
    fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

/// Reads named arguments and remembers how many were read, so unexpected
/// extra arguments are refused instead of silently ignored.
struct Args<'a> {
    map: &'a Map<String, Value>,
    used: usize,
}

impl<'a> Args<'a> {
    fn get(&mut self, name: &str) -> Option<&'a Value> {
        let v = self.map.get(name).filter(|v| !v.is_null());
        if self.map.contains_key(name) {
            self.used += 1;
        }
        v
    }

    fn required(&mut self, name: &str) -> Result<&'a Value, ParseError> {
        self.get(name)
            .ok_or_else(|| ParseError::invalid(format!("missing argument {name:?}")))
    }

    fn integer(&mut self, name: &str, min: i64, max: i64) -> Result<i64, ParseError> {
        let v = self.required(name)?;
        to_integer(name, v, min, max)
    }

    fn optional_integer(
        &mut self,
        name: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ParseError> {
        self.get(name)
            .map(|v| to_integer(name, v, min, max))
            .transpose()
    }

    fn optional_str(&mut self, name: &str) -> Result<Option<&'a str>, ParseError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ParseError::invalid(format!("{name} must be a string"))),
        }
    }

    fn user_id(&mut self, name: &str) -> Result<UserId, ParseError> {
        match self.required(name)? {
            Value::String(s) => s
                .parse()
                .map_err(|e| ParseError::invalid(format!("{name} {e}"))),
            _ => Err(ParseError::invalid(format!(
                "{name} must be a decimal string (ids do not fit in a JSON number)"
            ))),
        }
    }

    fn item(&mut self, name: &str) -> Result<String, ParseError> {
        match self.required(name)? {
            Value::String(s)
                if !s.is_empty()
                    && s.len() <= MAX_ITEM_LEN
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Ok(s.clone())
            }
            _ => Err(ParseError::invalid(format!(
                "{name} must be an item id: 1 to {MAX_ITEM_LEN} of a-z, 0-9, '_'"
            ))),
        }
    }

    fn workflow(&mut self, name: &str) -> Result<Workflow, ParseError> {
        match self.required(name)? {
            Value::String(s) => Workflow::parse(s).ok_or_else(|| {
                ParseError::invalid(format!("{name} must be \"image\" or \"video\""))
            }),
            _ => Err(ParseError::invalid(format!("{name} must be a string"))),
        }
    }

    fn prompt(&mut self, name: &str) -> Result<String, ParseError> {
        match self.required(name)? {
            Value::String(s) => {
                credits::check_prompt(s).map_err(|e| ParseError::invalid(format!("{name}: {e}")))
            }
            _ => Err(ParseError::invalid(format!("{name} must be a string"))),
        }
    }

    fn job_id(&mut self, name: &str) -> Result<String, ParseError> {
        match self.required(name)? {
            Value::String(s)
                if s.len() > 1
                    && s.len() <= 40
                    && s.starts_with('j')
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
            {
                Ok(s.clone())
            }
            _ => Err(ParseError::invalid(format!(
                "{name} must be a job id as `generate` returned it (j followed by hex digits)"
            ))),
        }
    }

    fn no_extras(&self) -> Result<(), ParseError> {
        if self.used == self.map.len() {
            return Ok(());
        }
        let mut extra: Vec<&str> = self.map.keys().map(String::as_str).collect();
        extra.sort_unstable();
        Err(ParseError::invalid(format!(
            "unexpected argument(s) among {extra:?} for this command"
        )))
    }
}

fn to_integer(name: &str, v: &Value, min: i64, max: i64) -> Result<i64, ParseError> {
    let n = v
        .as_i64()
        .ok_or_else(|| ParseError::invalid(format!("{name} must be a whole number")))?;
    if n < min || n > max {
        return Err(ParseError::invalid(format!(
            "{name} must be between {min} and {max}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(name: &str, args: Value) -> Result<CommandKind, ParseError> {
        CommandKind::parse(name, &args)
    }

    #[test]
    fn give_takes_a_snowflake_string_and_a_positive_amount() {
        assert_eq!(
            parse("give", json!({"to": "789", "amount": 50})),
            Ok(CommandKind::Give {
                to: "789".parse().unwrap(),
                amount: 50
            })
        );
        for bad in [
            json!({"to": 789, "amount": 50}),
            json!({"to": "789", "amount": 0}),
            json!({"to": "789", "amount": -5}),
            json!({"to": "789", "amount": 1.5}),
            json!({"to": "789", "amount": "50"}),
            json!({"to": "789", "amount": 1e30}),
            json!({"to": "789", "amount": MAX_AMOUNT + 1}),
            json!({"to": "789"}),
            json!({"to": "789", "amount": 5, "memo": "hi"}),
        ] {
            assert!(
                matches!(
                    parse("give", bad.clone()),
                    Err(ParseError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_commands_and_non_object_args_are_refused() {
        assert!(matches!(
            parse("rob_bank", Value::Null),
            Err(ParseError::UnknownCommand(_))
        ));
        assert!(matches!(
            parse("balance", json!([1])),
            Err(ParseError::InvalidArgument(_))
        ));
        assert_eq!(parse("balance", json!({})), Ok(CommandKind::Balance));
    }

    #[test]
    fn buy_defaults_to_one_and_checks_item_charset() {
        assert_eq!(
            parse("buy", json!({"item": "fishing_rod"})),
            Ok(CommandKind::Buy {
                item: "fishing_rod".into(),
                quantity: 1
            })
        );
        assert!(parse("buy", json!({"item": "Fish Rod"})).is_err());
        assert!(parse("buy", json!({"item": "rod", "quantity": 1001})).is_err());
    }

    #[test]
    fn generate_takes_a_known_workflow_and_a_clean_prompt() {
        assert_eq!(
            parse(
                "generate",
                json!({"workflow": "image", "prompt": " a fox "})
            ),
            Ok(CommandKind::Generate {
                workflow: Workflow::Image,
                prompt: "a fox".into()
            })
        );
        for bad in [
            json!({"workflow": "audio", "prompt": "a fox"}),
            json!({"workflow": "image", "prompt": ""}),
            json!({"workflow": "image", "prompt": "x".repeat(501)}),
            json!({"workflow": "image", "prompt": 5}),
            json!({"workflow": "image"}),
            json!({"workflow": "image", "prompt": "fox", "seed": 1}),
        ] {
            assert!(
                matches!(
                    parse("generate", bad.clone()),
                    Err(ParseError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn args_parse_back_into_the_same_command() {
        let samples = [
            json!({}),
            json!({"to": "789", "amount": 50}),
            json!({"item": "bait", "quantity": 3}),
            json!({"by": "level"}),
            json!({"workflow": "video", "prompt": "a fox"}),
            json!({"job_id": "j00ff"}),
        ];
        let mut covered = 0;
        for name in CommandKind::NAMES {
            for args in &samples {
                if let Ok(kind) = parse(name, args.clone()) {
                    assert_eq!(parse(name, kind.args()), Ok(kind.clone()), "{name}");
                    covered += 1;
                    break;
                }
            }
        }
        assert_eq!(
            covered,
            CommandKind::NAMES.len(),
            "a sample for every command"
        );
    }

    #[test]
    fn cancel_takes_a_job_id() {
        assert_eq!(
            parse("cancel", json!({"job_id": "j00ff"})),
            Ok(CommandKind::Cancel {
                job_id: "j00ff".into()
            })
        );
        for bad in ["", "j", "x00ff", "j00FF", "j' OR 1=1"] {
            assert!(parse("cancel", json!({ "job_id": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaderboard_by_is_gold_or_level() {
        assert_eq!(
            parse("leaderboard", Value::Null),
            Ok(CommandKind::Leaderboard {
                by: LeaderboardBy::Gold
            })
        );
        assert_eq!(
            parse("leaderboard", json!({"by": "level"})),
            Ok(CommandKind::Leaderboard {
                by: LeaderboardBy::Level
            })
        );
        assert!(parse("leaderboard", json!({"by": "gems"})).is_err());
    }
}
