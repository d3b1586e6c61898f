//! A `Draft`: what deciding a command produces, in every feature. Given a
//! player's state and a command, a feature's rules build a draft (the state
//! the player would have, the rows and ledger rows it writes, the reply data)
//! or a `Refusal`. Nothing here is applied: the player's actor adopts the
//! draft only once group commit says its writes are durable.
//!
//! The draft keeps the books: every balance change goes through `credit` or
//! `debit`, which write its ledger row, so no feature can change a balance
//! without explaining it.

use serde_json::{json, Value};

use crate::domain::money::{self, MoneyError};
use crate::domain::Currency;
use crate::game::collection::roster::Roster;
use crate::game::economy::shop::Catalogue;
use crate::game::guild::role_rules::RoleChange;
use crate::game::guild::settings::GuildSettings;
use crate::ids::{CommandId, UserKey};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{LedgerEntry, UserRow, Write, WriteSet};

/// What a decision may read besides the state. No clock is read inside the
/// rules: `now_ms` comes from here.
pub struct Context<'a> {
    pub now_ms: i64,
    pub catalogue: &'a Catalogue,
    pub roster: &'a Roster,
    /// Workflows and lucky tiers.
    pub generation: &'a crate::game::generation::data::GenerationData,
    /// The player's guild's settings (`GuildSettings::fallback()` for the
    /// commands that do not read them).
    pub guild: &'a GuildSettings,
    /// Gold a player starts with, paid (with its ledger row) by their first command.
    pub starting_gold: i64,
    /// Credits a player starts with (a `welcome` ledger row in credits).
    pub starting_credits: i64,
    /// Gems a player starts with (a `welcome` ledger row in gems).
    pub starting_gems: i64,
    /// A fresh unique id, used when a decision creates something that needs one.
    pub fresh_id: u128,
    /// A uniformly random draw, for the rules that roll dice (`lucky`).
    pub draw: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<MoneyError> for Refusal {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::Insufficient { .. } => {
                Self::new(ErrorCode::InsufficientFunds, e.to_string())
            }
            MoneyError::Overflow => Self::new(ErrorCode::LimitReached, e.to_string()),
        }
    }
}

/// A decided command: the state to adopt once `writes` are durable.
#[derive(Debug, Clone)]
pub struct Draft {
    pub state: UserState,
    pub writes: WriteSet,
    pub data: Value,
    pub message: String,
    /// Roles the command hands the front door besides those its new state
    /// changes (which the player's actor works out from the guild's rules):
    /// every role the rules decide for `roles_sync`, the verified role for
    /// `verify`. Handed on once the writes are durable.
    pub roles: RoleChange,
}

impl Draft {
    /// Starts a draft from the player's state. A player's first command
    /// creates them, with the welcome balances and their ledger rows.
    pub fn begin(
        state: &UserState,
        key: UserKey,
        ctx: &Context<'_>,
        command_id: Option<CommandId>,
    ) -> Result<Self, Refusal> {
        let mut d = Self {
            state: state.clone(),
            writes: WriteSet::new(key, ctx.now_ms, command_id),
            data: Value::Null,
            message: String::new(),
            roles: RoleChange::default(),
        };
        if !d.state.exists {
            d.state.exists = true;
            d.touch();
            if ctx.starting_gold > 0 {
                d.credit(Currency::Gold, ctx.starting_gold, "welcome")?;
            }
            if ctx.starting_credits > 0 {
                d.credit(Currency::Credits, ctx.starting_credits, "welcome")?;
            }
            if ctx.starting_gems > 0 {
                d.credit(Currency::Gems, ctx.starting_gems, "welcome")?;
            }
        }
        Ok(d)
    }

    /// A draft that changes nothing (not even creating the player).
    pub fn unchanged(state: &UserState, key: UserKey, ctx: &Context<'_>) -> Self {
        Self {
            state: state.clone(),
            writes: WriteSet::new(key, ctx.now_ms, None),
            data: Value::Null,
            message: String::new(),
            roles: RoleChange::default(),
        }
    }

    pub fn touch(&mut self) {
        let s = &self.state;
        self.writes.row = Some(UserRow {
            gold: s.gold,
            gems: s.gems,
            xp: s.xp,
            level: s.level(),
            daily_day: s.daily_day,
            daily_streak: s.daily_streak,
            credits: s.credits,
            lucky_day: s.lucky_day,
            lucky_pct: s.lucky_pct,
            verified: s.verified,
        });
    }

    fn balance_mut(&mut self, currency: Currency) -> &mut i64 {
        match currency {
            Currency::Gold => &mut self.state.gold,
            Currency::Gems => &mut self.state.gems,
            Currency::Credits => &mut self.state.credits,
        }
    }

    pub fn credit(
        &mut self,
        currency: Currency,
        amount: i64,
        reason: &'static str,
    ) -> Result<(), Refusal> {
        let after = money::credit(*self.balance_mut(currency), amount)?;
        self.book(currency, amount, after, reason);
        Ok(())
    }

    /// Takes `amount` from a balance. Credits held by queued jobs cannot be
    /// spent: a debit of credits is checked against what is available.
    pub fn debit(
        &mut self,
        currency: Currency,
        amount: i64,
        reason: &'static str,
    ) -> Result<(), Refusal> {
        if currency == Currency::Credits {
            self.check_available(amount)?;
        }
        let after = money::debit(currency, *self.balance_mut(currency), amount)?;
        self.book(currency, -amount, after, reason);
        Ok(())
    }

    fn check_available(&self, amount: i64) -> Result<(), Refusal> {
        let (available, held) = (self.state.credits_available(), self.state.credits_held);
        if amount <= available {
            return Ok(());
        }
        Err(match held {
            0 => MoneyError::Insufficient {
                currency: Currency::Credits,
                have: available,
                need: amount,
            }
            .into(),
            _ => Refusal::new(
                ErrorCode::InsufficientFunds,
                format!(
                    "not enough credits: {available} available ({held} held by your queued jobs), need {amount}"
                ),
            ),
        })
    }

    /// Holds `amount` credits for a queued job: they stay in the balance
    /// but cannot be spent. No ledger row: the balance has not changed.
    pub fn hold(&mut self, amount: i64) -> Result<(), Refusal> {
        self.check_available(amount)?;
        self.state.credits_held = money::credit(self.state.credits_held, amount)?;
        Ok(())
    }

    /// Charges a hold: the job succeeded. The balance falls by `amount`,
    /// with its ledger row, and so does what is held.
    pub fn capture(&mut self, amount: i64, reason: &'static str) -> Result<(), Refusal> {
        self.release(amount);
        let after = money::debit(Currency::Credits, self.state.credits, amount)?;
        self.book(Currency::Credits, -amount, after, reason);
        Ok(())
    }

    /// Lets a hold go: the job failed or was cancelled. The balance never
    /// moved, so nothing is booked.
    pub fn release(&mut self, amount: i64) {
        self.state.credits_held = self.state.credits_held.saturating_sub(amount).max(0);
    }

    /// Sets a balance and writes the ledger row that explains it.
    fn book(&mut self, currency: Currency, amount: i64, balance_after: i64, reason: &'static str) {
        *self.balance_mut(currency) = balance_after;
        self.writes.ledger.push(LedgerEntry {
            currency,
            amount,
            balance_after,
            reason,
        });
        self.touch();
    }

    pub fn gain_xp(&mut self, xp: i64) {
        self.state.xp = self.state.xp.saturating_add(xp);
        self.touch();
    }

    pub fn balances(&self) -> Value {
        json!({ "gold": self.state.gold, "gems": self.state.gems, "credits": self.state.credits })
    }

    /// Adds one of the feature's typed writes.
    pub fn write(&mut self, write: Write) {
        debug_assert!(
            !(write.is_guard() && self.writes.writes.iter().any(Write::is_guard)),
            "a WriteSet holds at most one guard"
        );
        self.writes.writes.push(write);
    }

    pub fn with(mut self, data: Value, message: impl Into<String>) -> Self {
        self.data = data;
        self.message = message.into();
        self
    }
}
