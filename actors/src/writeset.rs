//! A `WriteSet`: everything one command changes, as rows. A user actor builds
//! one per command and hands it to group commit; it is applied in the same
//! transaction as every other WriteSet of its batch, all or nothing.

use crate::domain::Currency;
use crate::game::arena::entry::{ArenaEntry, EntryStatus};
use crate::game::collection::owned::Owned;
use crate::game::generation::job::{Job, JobStatus};
use crate::ids::{CommandId, GuildId, UserId, UserKey};

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
    pub verified: bool,
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
    /// Every command that changes the player writes their row, and a ledger
    /// row per balance change: these two are the same for every feature.
    pub row: Option<UserRow>,
    pub ledger: Vec<LedgerEntry>,
    /// What the command's feature writes besides, in the order decided.
    /// Group commit applies each kind with one multi-row statement per batch,
    /// kinds in a fixed order: the guards first (see `Write::is_guard`).
    pub writes: Vec<Write>,
    /// Applied only together with the WriteSet just before it in its batch,
    /// all or nothing: a give's credit beside its debit. Group commit keeps
    /// the two adjacent and in one transaction.
    pub paired: bool,
    /// Cluster mode: the epoch of the slot's lease under which its actor
    /// decided it. Committed only while the lease still has that epoch and
    /// this node as owner (`store::Fence`); `None` outside cluster mode.
    pub epoch: Option<i64>,
}

/// One typed write of a feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Economy: the absolute quantity of an item the player now owns.
    Inventory { item: String, quantity: i64 },
    /// Economy: gold leaving with this command's debit (the outbox row).
    TransferOut(Transfer),
    /// Economy, guard: a transfer credited by this command. Applies only if
    /// it was not credited before.
    TransferIn(String),
    /// Economy: a transfer credited in the same transaction as its debit
    /// (the WriteSet before this one in its batch, see `WriteSet::paired`),
    /// so its outbox row is written already credited. Not a guard: the
    /// debit's WriteSet decides for both.
    TransferPaired(String),
    /// Generation: a job paid for by this command, written as `queued`.
    JobNew(Job),
    /// Generation, guard: a job leaving `queued`.
    JobClose(JobClose),
    /// Arena: an entry paid for by this command, written as `waiting`.
    ArenaNew(ArenaEntry),
    /// Arena, guard: an entry moving on (`waiting` → `left`, `matched` →
    /// `rewarded`).
    ArenaClose(ArenaClose),
    /// Collection: a character as the player now has it (absolute values).
    Character(Owned),
    /// Collection: a banner's pity counter and summon count, absolute.
    Pity {
        banner: String,
        since_ssr: u32,
        summons: u64,
    },
    /// Collection: one summon's record, numbered per player and banner.
    Summoned(Summoned),
    /// Collection: the player's team, in order (empty: none).
    Team(Vec<String>),
    /// Collection: a character raised to `level`, and what it cost.
    Upgraded {
        character: String,
        level: u32,
        shards: i64,
        gold: i64,
    },
    /// Guild settings: a setting's new value (its text form), for the
    /// WriteSet's guild.
    Setting { key: &'static str, value: String },
    /// An admin action, in the same transaction as what it changed.
    Audit(AuditRow),
    /// A payment the provider reported: a guard that inserts its row, so
    /// the credits land once per provider payment id.
    PaymentIn { provider_id: String, credits: i64 },
    /// A chargeback: a guard that moves the payment from paid to refunded.
    PaymentRefund(PaymentRefund),
    /// Generation: the player's free jobs and VIP (absolute values).
    GenPlayer(crate::game::generation::allowance::Allowance),
    /// Roleplay: the player's row (absolute values; the active character by name).
    RpPlayer {
        active_character: Option<String>,
        timezone: String,
        /// YYYY-MM-DD, the player's local day.
        last_xp_reset: Option<String>,
    },
    /// Roleplay: a character as it now is (absolute values).
    RpCharacter(crate::game::roleplay::sheet::RpCharacter),
    /// Roleplay: a character deleted (its tallies stay, as history).
    RpDeleted(i64),
    /// Roleplay: a character's XP on one local day, absolute: what explains
    /// its XP and that day's counters.
    RpTally {
        character: i64,
        day: String,
        rp_xp: i64,
        hf_xp: i64,
    },
}

/// One admin action, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub by: UserId,
    pub action: &'static str,
    /// The player acted on (a grant), if any.
    pub target: Option<UserId>,
    /// The setting changed, or the currency granted.
    pub key: String,
    pub old: String,
    pub new: String,
    pub reason: String,
}

/// The record a summon leaves: what explains a pity counter and shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summoned {
    pub banner: String,
    /// 1 for a player's first summon on this banner, and so on.
    pub seq: u64,
    pub character: String,
    pub rarity: &'static str,
    pub by_pity: bool,
    /// Shards it gave (a duplicate), or 0 (a new character).
    pub shards: i64,
}

impl Write {
    /// A guard moves something on from the state it must still be in. If it
    /// has moved on already, the whole WriteSet is skipped
    /// (`AlreadyApplied`), so a credit, a refund or a prize lands once.
    /// A WriteSet holds at most one: a guard that passed is not undone when
    /// a later one fails.
    pub fn is_guard(&self) -> bool {
        matches!(
            self,
            Self::TransferIn(_)
                | Self::JobClose(_)
                | Self::ArenaClose(_)
                | Self::PaymentIn { .. }
                | Self::PaymentRefund(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRefund {
    pub provider_id: String,
    /// Credits taken back from the balance.
    pub clawed_back: i64,
    /// Credits that could not be taken back (the balance was short).
    pub owed: i64,
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
    pub fn new(key: UserKey, at_ms: i64, command_id: Option<CommandId>) -> Self {
        Self {
            key,
            at_ms,
            command_id,
            reply_json: None,
            row: None,
            ledger: Vec::new(),
            writes: Vec::new(),
            paired: false,
            epoch: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.row.is_none() && self.ledger.is_empty() && self.writes.is_empty()
    }

    /// The gold this command sends, if any.
    pub fn transfer_out(&self) -> Option<&Transfer> {
        self.writes.iter().find_map(|w| match w {
            Write::TransferOut(t) => Some(t),
            _ => None,
        })
    }

    /// The transfer this command credits, if any.
    pub fn transfer_in(&self) -> Option<&str> {
        self.writes.iter().find_map(|w| match w {
            Write::TransferIn(id) => Some(id.as_str()),
            _ => None,
        })
    }

    /// The transfer credited beside its debit, in this WriteSet's batch.
    pub fn transfer_paired(&self) -> Option<&str> {
        self.writes.iter().find_map(|w| match w {
            Write::TransferPaired(id) => Some(id.as_str()),
            _ => None,
        })
    }

    /// The transfer this WriteSet's ledger rows belong to, either way.
    pub fn transfer_id(&self) -> Option<&str> {
        self.transfer_out()
            .map(|t| t.id.as_str())
            .or_else(|| self.transfer_in())
            .or_else(|| self.transfer_paired())
    }

    pub fn job_new(&self) -> Option<&Job> {
        self.writes.iter().find_map(|w| match w {
            Write::JobNew(j) => Some(j),
            _ => None,
        })
    }

    /// The payment this WriteSet records or charges back, if any.
    pub fn payment(&self) -> Option<&Write> {
        self.writes
            .iter()
            .find(|w| matches!(w, Write::PaymentIn { .. } | Write::PaymentRefund(_)))
    }

    pub fn job_close(&self) -> Option<&JobClose> {
        self.writes.iter().find_map(|w| match w {
            Write::JobClose(c) => Some(c),
            _ => None,
        })
    }

    pub fn arena_new(&self) -> Option<&ArenaEntry> {
        self.writes.iter().find_map(|w| match w {
            Write::ArenaNew(e) => Some(e),
            _ => None,
        })
    }

    pub fn arena_close(&self) -> Option<&ArenaClose> {
        self.writes.iter().find_map(|w| match w {
            Write::ArenaClose(c) => Some(c),
            _ => None,
        })
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
