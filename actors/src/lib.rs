//! kokoro's actor runtime and game: every player is an actor that takes one
//! message at a time; a persistence actor (`GroupCommit`) commits many
//! players' writes in one transaction and answers only once they are durable.
//! Knows nothing of Discord or HTTP: front doors build a `Command` and await a
//! `Reply` from `Runtime::dispatch`.

pub mod arena;
pub mod args;
pub mod cluster;
pub mod command;
pub mod config;
pub mod domain;
pub mod game;
pub mod group_commit;
pub mod guild_settings;
pub mod ids;
pub mod job_queue;
mod mailbox;
mod outbox_relay;
mod postbox;
mod registry;
pub mod reply;
pub mod role_desk;
pub mod runtime;
pub mod state;
pub mod store;
pub mod system;
pub mod telemetry;
pub mod uploads;
mod user_actor;
pub mod writeset;

pub use command::{Command, CommandKind};
pub use config::RuntimeConfig;
/// A generation job's types are the generation feature's; named here too
/// for the application.
pub use game::generation::job;
pub use ids::{CommandId, GuildId, UserId, UserKey};
pub use reply::{ErrorCode, Reply};
pub use runtime::Runtime;
pub use store::Store;
