//! Character collection: players summon characters of four rarities with
//! gems, duplicates become shards, shards and gold raise levels, and a team
//! of up to three fights in the arena. This slice holds the data and the
//! pure rules (the roster and its checks, summons and pity); the commands
//! `summon`, `collection`, `character`, `upgrade` and `team` build on them.

pub mod roster;
pub mod summon;
