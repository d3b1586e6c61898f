//! What every feature shares: money (currencies, checked arithmetic, the
//! largest amount), the UTC day and the level curve. Plain functions over plain data: no actor, no I/O, no clock
//! read. Each feature's own rules live in its module under `game/`.

pub mod day;
pub mod level;
pub mod money;

pub use money::{Currency, MoneyError};
