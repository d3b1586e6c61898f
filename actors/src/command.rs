//! The typed command every front door builds: parsed and validated once, here,
//! from a command name and a JSON object of arguments. Invalid input never gets
//! past this file, so actors only ever see well-formed commands. Each feature
//! parses its own commands (`game/<feature>`); this file routes a name to its
//! feature and reads the arguments.

use serde_json::{Map, Value};

pub use crate::args::{Args, ParseError};

use crate::game::arena::ArenaCommand;
use crate::game::collection::CollectionCommand;
use crate::game::economy::EconomyCommand;
use crate::game::generation::GenerationCommand;
use crate::game::guild::GuildCommand;
use crate::game::roleplay::RoleplayCommand;
use crate::ids::{CommandId, UserKey};

/// A command, by the feature it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    Economy(EconomyCommand),
    Generation(GenerationCommand),
    Arena(ArenaCommand),
    Collection(CollectionCommand),
    Guild(GuildCommand),
    Roleplay(RoleplayCommand),
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Economy(c) => c.name(),
            Self::Generation(c) => c.name(),
            Self::Arena(c) => c.name(),
            Self::Collection(c) => c.name(),
            Self::Guild(c) => c.name(),
            Self::Roleplay(c) => c.name(),
        }
    }

    /// Every command name this build understands, for help texts, front
    /// doors that register commands and validating load-test scenarios.
    pub fn names() -> impl Iterator<Item = &'static str> {
        EconomyCommand::NAMES
            .iter()
            .chain(GenerationCommand::NAMES)
            .chain(ArenaCommand::NAMES)
            .chain(CollectionCommand::NAMES)
            .chain(GuildCommand::NAMES)
            .chain(RoleplayCommand::NAMES)
            .copied()
    }

    /// The `args` object that `parse` reads back into this command: what a
    /// client (the load tester over HTTP) sends.
    pub fn args(&self) -> Value {
        match self {
            Self::Economy(c) => c.args(),
            Self::Generation(c) => c.args(),
            Self::Arena(c) => c.args(),
            Self::Collection(c) => c.args(),
            Self::Guild(c) => c.args(),
            Self::Roleplay(c) => c.args(),
        }
    }

    /// Whether an `ok` answer to this command always changed something
    /// (and so must be durable).
    pub fn writes_when_ok(&self) -> bool {
        match self {
            Self::Economy(c) => c.writes_when_ok(),
            Self::Generation(c) => c.writes_when_ok(),
            Self::Arena(c) => c.writes_when_ok(),
            Self::Collection(c) => c.writes_when_ok(),
            Self::Guild(c) => c.writes_when_ok(),
            Self::Roleplay(c) => c.writes_when_ok(),
        }
    }

    /// Whether deciding it reads the player's collection (a summon, or the
    /// arena, where a team fights), which their actor then reads first.
    pub fn needs_collection(&self) -> bool {
        matches!(
            self,
            Self::Collection(_)
                | Self::Arena(ArenaCommand::Join { .. })
                | Self::Guild(GuildCommand::Roles { .. })
        )
    }

    /// Whether deciding it reads the guild's settings (the daily reward,
    /// every roleplay rule).
    pub fn needs_guild_settings(&self) -> bool {
        matches!(
            self,
            Self::Economy(crate::game::economy::EconomyCommand::Daily)
                | Self::Roleplay(_)
                | Self::Guild(
                    GuildCommand::Roles { .. }
                        | GuildCommand::RolesSync { .. }
                        | GuildCommand::Verify { .. }
                )
        )
    }

    /// Notes where the player is to be told when what this command starts
    /// ends (`discord:<channel>`, `telegram:<chat>`): a front door's
    /// address, never a player's argument. `generate` starts a job and
    /// `arena_join` a battle.
    pub fn reply_at(&mut self, door: &str, address: impl std::fmt::Display) {
        match self {
            Self::Generation(GenerationCommand::Generate { notify, .. })
            | Self::Arena(ArenaCommand::Join { notify }) => {
                *notify = Some(format!("{door}:{address}"));
            }
            _ => {}
        }
    }

    /// Whether only a guild's admins may send it: on Discord a member with
    /// Manage Guild, over HTTP a caller with the admin token.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Self::Guild(
                GuildCommand::Show
                    | GuildCommand::Set { .. }
                    | GuildCommand::Grant { .. }
                    | GuildCommand::RolesSync { .. }
                    | GuildCommand::Verify { user: Some(_), .. }
            ) | Self::Roleplay(RoleplayCommand::HfSuccess { .. })
                | Self::Generation(
                    GenerationCommand::Vip { .. }
                        | GenerationCommand::Payment { .. }
                        | GenerationCommand::Chargeback { .. }
                )
        )
    }

    /// Commands a front door sends for events (a post, a payment), never a
    /// player's slash command.
    pub const EVENTS: &'static [&'static str] = &["message", "payment", "chargeback"];

    /// Whether deciding it reads the player's roleplay characters.
    /// (`roles` reads every part: it shows every fact a rule can name.)
    pub fn needs_roleplay(&self) -> bool {
        matches!(
            self,
            Self::Roleplay(_) | Self::Guild(GuildCommand::Roles { .. })
        )
    }

    /// Whether deciding it reads the player's free jobs and VIP.
    pub fn needs_allowance(&self) -> bool {
        matches!(
            self,
            Self::Generation(
                GenerationCommand::Generate { .. }
                    | GenerationCommand::Choose { .. }
                    | GenerationCommand::Credits
                    | GenerationCommand::Vip { .. }
            ) | Self::Guild(GuildCommand::Roles { .. })
        )
    }

    /// For an admin command acting on another player (`grant`): notes the
    /// admin `by` in it and returns the player, whose actor must decide it.
    pub fn readdress(&mut self, by: crate::ids::UserId) -> Option<crate::ids::UserId> {
        match self {
            Self::Guild(GuildCommand::Grant { user, by: b, .. })
            | Self::Roleplay(RoleplayCommand::HfSuccess { user, by: b, .. })
            | Self::Generation(GenerationCommand::Vip { user, by: b, .. }) => {
                *b = Some(by);
                Some(*user)
            }
            Self::Guild(
                GuildCommand::Roles {
                    user: Some(user),
                    by: b,
                }
                | GuildCommand::RolesSync {
                    user: Some(user),
                    by: b,
                }
                | GuildCommand::Verify {
                    user: Some(user),
                    by: b,
                    ..
                },
            ) => {
                *b = Some(by);
                Some(*user)
            }
            Self::Guild(GuildCommand::RolesSync { user: None, by: b }) => {
                *b = Some(by);
                None
            }
            _ => None,
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
        let mut a = Args::new(args);
        let kind = if let Some(c) = EconomyCommand::parse(name, &mut a)? {
            Self::Economy(c)
        } else if let Some(c) = GenerationCommand::parse(name, &mut a)? {
            Self::Generation(c)
        } else if let Some(c) = ArenaCommand::parse(name, &mut a)? {
            Self::Arena(c)
        } else if let Some(c) = CollectionCommand::parse(name, &mut a)? {
            Self::Collection(c)
        } else if let Some(c) = GuildCommand::parse(name, &mut a)? {
            Self::Guild(c)
        } else if let Some(c) = RoleplayCommand::parse(name, &mut a)? {
            Self::Roleplay(c)
        } else {
            return Err(ParseError::UnknownCommand(name.chars().take(40).collect()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::economy::{LeaderboardBy, MAX_AMOUNT};
    use serde_json::json;

    fn parse(name: &str, args: Value) -> Result<CommandKind, ParseError> {
        CommandKind::parse(name, &args)
    }

    #[test]
    fn give_takes_a_snowflake_string_and_a_positive_amount() {
        assert_eq!(
            parse("give", json!({"to": "789", "amount": 50})),
            Ok(CommandKind::Economy(EconomyCommand::Give {
                to: "789".parse().unwrap(),
                amount: 50
            }))
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
        assert_eq!(
            parse("balance", json!({})),
            Ok(CommandKind::Economy(EconomyCommand::Balance))
        );
    }

    #[test]
    fn buy_defaults_to_one_and_checks_item_charset() {
        assert_eq!(
            parse("buy", json!({"item": "fishing_rod"})),
            Ok(CommandKind::Economy(EconomyCommand::Buy {
                item: "fishing_rod".into(),
                quantity: 1
            }))
        );
        assert!(parse("buy", json!({"item": "Fish Rod"})).is_err());
        assert!(parse("buy", json!({"item": "rod", "quantity": 1001})).is_err());
    }

    #[test]
    fn generate_takes_a_workflow_id_and_a_clean_prompt() {
        assert_eq!(
            parse(
                "generate",
                json!({"workflow": "image", "prompt": " a fox "})
            ),
            Ok(CommandKind::Generation(GenerationCommand::Generate {
                workflow: Some("image".into()),
                prompt: "a fox".into(),
                image: None,
                notify: None
            }))
        );
        for bad in [
            json!({"workflow": "Audio!", "prompt": "a fox"}),
            json!({"workflow": "x".repeat(33), "prompt": "a fox"}),
            json!({"workflow": "image", "prompt": ""}),
            json!({"workflow": "image", "prompt": "x".repeat(501)}),
            json!({"workflow": "image", "prompt": 5}),
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
    fn only_a_front_door_says_where_a_job_is_announced() {
        let smuggled = parse(
            "generate",
            json!({"workflow": "image", "prompt": "a fox", "notify": "discord:1"}),
        );
        assert!(
            matches!(smuggled, Err(ParseError::InvalidArgument(_))),
            "a player cannot pick the channel: {smuggled:?}"
        );
        let mut kind = parse("generate", json!({"workflow": "image", "prompt": "a fox"})).unwrap();
        kind.reply_at("telegram", -100_123);
        assert!(matches!(
            kind,
            CommandKind::Generation(GenerationCommand::Generate { notify: Some(ref n), .. }) if n == "telegram:-100123"
        ));
        let mut daily = parse("daily", json!({})).unwrap();
        let before = daily.clone();
        daily.reply_at("discord", 7);
        assert_eq!(daily, before, "nothing else is announced");
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
            json!({"name": "Moss Fenwick"}),
            json!({"names": ["Moss Fenwick", "Aster Vale"]}),
            json!({"key": "char_per_rp", "value": "250"}),
            json!({"user": "5", "currency": "gems", "amount": -5, "reason": "typo"}),
            json!({"name": "Ayla", "image_url": "https://img.example/a.png"}),
            json!({"name": "Ayla", "confirm": "Ayla"}),
            json!({"name": "Ayla", "new_name": "Ayla Moon"}),
            json!({"tz": "Europe/Paris"}),
            json!({"channel_id": "42", "chars": 120}),
            json!({"user": "5", "character": "Ayla"}),
            json!({"user": "5", "days": 7}),
            json!({"payment_id": "pay_123", "credits": 100}),
            json!({"workflow": "image"}),
        ];
        let mut covered = 0;
        for name in CommandKind::names() {
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
            CommandKind::names().count(),
            "a sample for every command"
        );
    }

    #[test]
    fn cancel_takes_a_job_id() {
        assert_eq!(
            parse("cancel", json!({"job_id": "j00ff"})),
            Ok(CommandKind::Generation(GenerationCommand::Cancel {
                job_id: "j00ff".into()
            }))
        );
        for bad in ["", "j", "x00ff", "j00FF", "j' OR 1=1"] {
            assert!(parse("cancel", json!({ "job_id": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaderboard_by_is_gold_or_level() {
        assert_eq!(
            parse("leaderboard", Value::Null),
            Ok(CommandKind::Economy(EconomyCommand::Leaderboard {
                by: LeaderboardBy::Gold
            }))
        );
        assert_eq!(
            parse("leaderboard", json!({"by": "level"})),
            Ok(CommandKind::Economy(EconomyCommand::Leaderboard {
                by: LeaderboardBy::Level
            }))
        );
        assert!(parse("leaderboard", json!({"by": "gems"})).is_err());
    }
}
