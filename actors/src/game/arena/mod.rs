//! The arena: `arena_join`, `arena_leave`, `arena_status`, and how a battle
//! is paid. Its commands, their pure rules and what they write. The
//! matchmaking actor lives in the runtime (`arena.rs`); `arena_status` reads
//! storage and the matchmaker, so the runtime answers it.

pub mod battle;
pub mod entry;
pub(crate) mod sql;

use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::domain::Currency;
use crate::game::arena::entry::{ArenaEntry, EntryStatus, Fought};
use crate::game::draft::{Context, Draft, Refusal};
use crate::ids::UserKey;
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{ArenaClose, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArenaCommand {
    /// `notify`: where the player is told who won (a front door's
    /// address, set by `CommandKind::reply_at`, never an argument).
    Join {
        notify: Option<String>,
    },
    Leave,
    Status,
}

impl ArenaCommand {
    pub const NAMES: &'static [&'static str] = &["arena_join", "arena_leave", "arena_status"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Join { .. } => "arena_join",
            Self::Leave => "arena_leave",
            Self::Status => "arena_status",
        }
    }

    /// The command called `name`, if it is one of this feature's.
    pub fn parse(name: &str, _: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(match name {
            "arena_join" => Some(Self::Join { notify: None }),
            "arena_leave" => Some(Self::Leave),
            "arena_status" => Some(Self::Status),
            _ => None,
        })
    }

    /// The `args` object that `parse` reads back into this command.
    pub fn args(&self) -> Value {
        json!({})
    }

    /// Whether an `ok` answer always changed something.
    pub fn writes_when_ok(&self) -> bool {
        matches!(self, Self::Join { .. } | Self::Leave)
    }
}

/// Decides an arena command on the player's draft: joining pays the fee and
/// writes the entry the matchmaker will line up.
pub fn decide(
    mut d: Draft,
    key: UserKey,
    command: &ArenaCommand,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    match command {
        ArenaCommand::Join { notify } => {
            if d.state.in_arena {
                return Err(Refusal::new(
                    ErrorCode::LimitReached,
                    "You are already in the arena; arena_leave gets your fee back before a match.",
                ));
            }
            d.debit(Currency::Gold, battle::ENTRY_FEE, "arena_fee")?;
            d.state.in_arena = true;
            let entry = ArenaEntry {
                id: format!("a{:032x}", ctx.fresh_id),
                key,
                fee: battle::ENTRY_FEE,
                // A team fights with its power; without one, the level's.
                power: crate::game::collection::team_power(&d.state, ctx.roster)
                    .unwrap_or_else(|| battle::power(d.state.level())),
                created_ms: ctx.now_ms,
                notify: notify.clone(),
            };
            let mut data = d.balances();
            data["entry_id"] = json!(entry.id);
            data["fee"] = json!(entry.fee);
            data["power"] = json!(entry.power);
            let msg = format!(
                "You entered the arena (power {}) for {} gold; the winner takes {}.{}",
                entry.power,
                entry.fee,
                battle::prize(),
                if entry.notify.is_some() {
                    " You will be told here who won."
                } else {
                    ""
                }
            );
            d.write(Write::ArenaNew(entry));
            Ok(d.with(data, msg))
        }
        ArenaCommand::Leave | ArenaCommand::Status => Err(Refusal::new(
            ErrorCode::Internal,
            "this command is not decided from the player's state alone",
        )),
    }
}

/// Leaves the arena before a match: the fee comes back. The close is a
/// guard: storage applies it only while the entry is still waiting, so a
/// leave that loses the race against a match changes nothing.
pub fn leave(state: &UserState, entry: &ArenaEntry, ctx: &Context<'_>) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, entry.key, ctx, None)?;
    d.credit(Currency::Gold, entry.fee, "arena_refund")?;
    d.state.in_arena = false;
    d.write(Write::ArenaClose(ArenaClose {
        id: entry.id.clone(),
        from: EntryStatus::Waiting,
        to: EntryStatus::Left,
    }));
    let mut data = d.balances();
    data["refunded"] = json!(entry.fee);
    Ok(d.with(
        data,
        format!("You left the arena; {} gold refunded.", entry.fee),
    ))
}

/// Pays one side of a battle: the prize to the winner, XP to both. Storage
/// applies it only while the entry is `matched`, so it pays once.
pub fn reward(state: &UserState, fought: &Fought, ctx: &Context<'_>) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, fought.entry.key, ctx, None)?;
    if fought.prize > 0 {
        d.credit(Currency::Gold, fought.prize, "arena_prize")?;
    }
    d.gain_xp(if fought.won {
        battle::WIN_XP
    } else {
        battle::LOSS_XP
    });
    d.state.in_arena = false;
    d.write(Write::ArenaClose(ArenaClose {
        id: fought.entry.id.clone(),
        from: EntryStatus::Matched,
        to: EntryStatus::Rewarded,
    }));
    let mut data = d.balances();
    data["battle_id"] = json!(fought.battle_id);
    data["won"] = json!(fought.won);
    data["prize"] = json!(fought.prize);
    let msg = if fought.won {
        format!(
            "You beat <@{}> and won {} gold.",
            fought.opponent, fought.prize
        )
    } else {
        format!("<@{}> beat you this time.", fought.opponent)
    };
    Ok(d.with(data, msg))
}
