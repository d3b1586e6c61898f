//! The game's rules as plain functions over plain data: no actor, no I/O, no
//! clock read. Callers pass `now` and any random draw in, so every rule is
//! unit- and property-testable on its own.

pub mod arena;
pub mod credits;
pub mod daily;
pub mod level;
pub mod money;
pub mod shop;

pub use money::{Currency, MoneyError};
