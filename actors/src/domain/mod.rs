//! The game's rules as plain functions over plain data: no actor, no I/O, no
//! clock read. Callers pass `today` (and, later, an RNG) in, so every rule is
//! unit- and property-testable on its own.

pub mod daily;
pub mod level;
pub mod money;
pub mod shop;

pub use money::{Currency, MoneyError};
