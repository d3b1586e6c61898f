//! kokoro's actor runtime and game: every player is an actor that takes one
//! message at a time; a persistence actor commits many players' writes in one
//! transaction and answers only once they are durable. Knows nothing of
//! Discord or HTTP: front doors build a `Command` and await a `Reply`.

pub mod command;
pub mod domain;
pub mod ids;
pub mod reply;
pub mod rules;
pub mod state;
pub mod store;
pub mod writeset;
