//! A `WriteSet`: everything one command changes, as rows. A user actor builds
//! one per command and hands it to group commit; it is applied in the same
//! transaction as every other WriteSet of its batch, all or nothing.

use crate::arena::{ArenaEntry, EntryStatus};
use crate::domain::Currency;
use crate::ids::{CommandId, GuildId, UserId, UserKey};
use crate::job::{Job, JobStatus};

/// The player's row after the command: absolute values, so applying a
/// WriteSet twice has the same effect as once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub gold: i64,
    pub gems: i64,
    pub xp: i64,
    pub level: i32,
    pub daily_day: Option<i32>,
    pub daily_streak: i32,
    pub credits: i64,
    pub lucky_day: Option<i32>,
    pub lucky_pct: u8,
}

/// One balance change. Per player and currency, the ledger sums to the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub currency: Currency,
    pub amount: i64,
    pub balance_after: i64,
    pub reason: &'static str,
}

/// Gold on its way from one player to another. Written with the sender's
/// debit (the outbox); credited once to the receiver, by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    pub guild: GuildId,
    pub from: UserId,
    pub to: UserId,
    pub amount: i64,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct WriteSet {
    pub key: UserKey,
    pub at_ms: i64,
    /// Recorded with its reply so a retry returns the first answer.
    pub command_id: Option<CommandId>,
    pub reply_json: Option<String>,
    pub row: Option<UserRow>,
    pub ledger: Vec<LedgerEntry>,
    /// Absolute quantities of the items that changed.
    pub inventory: Vec<(String, i64)>,
    pub transfer_out: Option<Transfer>,
    /// Applies only if this transfer has not been credited yet; otherwise the
    /// whole WriteSet is skipped (see `CommitOutcome::AlreadyApplied`).
    pub transfer_in: Option<String>,
    /// A generation job paid for by this command, written as `queued`.
    pub job_new: Option<Job>,
    /// An arena entry paid for by this command, written as `waiting`.
    pub arena_new: Option<ArenaEntry>,
    /// Something this command moves on from the status it must still be in
    /// (a job leaving `queued`, an arena entry leaving `waiting` or
    /// `matched`). If it has moved on already, the whole WriteSet is skipped
    /// (`AlreadyApplied`), so a refund or a prize is paid at most once.
    pub close: Option<Close>,
}

/// The guarded status changes: at most one per WriteSet, so a WriteSet is
/// applied or skipped as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    Job(JobClose),
    Arena(ArenaClose),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaClose {
    pub id: String,
    pub from: EntryStatus,
    pub to: EntryStatus,
}

/// How a job left the queue: with a result, or refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobClose {
    pub id: String,
    pub status: JobStatus,
    /// Where the finished image or video is, for `done`.
    pub result: Option<String>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.row.is_none()
            && self.ledger.is_empty()
            && self.inventory.is_empty()
            && self.job_new.is_none()
            && self.arena_new.is_none()
            && self.close.is_none()
    }
}

/// What committing a WriteSet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Applied,
    /// Nothing was written: the WriteSet's command id was recorded before (a
    /// retry), or its `transfer_in` had been credited before.
    AlreadyApplied,
}
