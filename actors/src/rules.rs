//! The game's commands as pure decisions: given a player's state and a
//! command, produce a `Draft` (the state it would have, the ledger rows and
//! rows it writes, the reply data) or a refusal. Nothing here is applied: the
//! user actor adopts the draft only once group commit says it is durable.

use serde_json::{json, Value};

use crate::arena::{ArenaEntry, EntryStatus, Fought};
use crate::command::CommandKind;
use crate::domain::arena;
use crate::domain::credits::{self, Workflow};
use crate::domain::money::{self, MoneyError};
use crate::domain::shop::{Catalogue, PurchaseError};
use crate::domain::{daily, Currency};
use crate::ids::{CommandId, UserKey};
use crate::job::{Job, JobStatus};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{ArenaClose, Close, JobClose, LedgerEntry, Transfer, UserRow, WriteSet};

/// What a decision may read besides the state. No clock is read inside the
/// rules: `now_ms` comes from here.
pub struct Context<'a> {
    pub now_ms: i64,
    pub catalogue: &'a Catalogue,
    /// Gold a player starts with, paid (with its ledger row) by their first command.
    pub starting_gold: i64,
    /// Credits a player starts with (a `welcome` ledger row in credits).
    pub starting_credits: i64,
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
}

impl Draft {
    fn begin(
        state: &UserState,
        key: UserKey,
        ctx: &Context<'_>,
        command_id: Option<CommandId>,
    ) -> Result<Self, Refusal> {
        let mut d = Self {
            state: state.clone(),
            writes: WriteSet {
                key,
                at_ms: ctx.now_ms,
                command_id,
                reply_json: None,
                row: None,
                ledger: Vec::new(),
                inventory: Vec::new(),
                transfer_out: None,
                transfer_in: None,
                job_new: None,
                arena_new: None,
                close: None,
            },
            data: Value::Null,
            message: String::new(),
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
        }
        Ok(d)
    }

    fn touch(&mut self) {
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
        });
    }

    fn balance_mut(&mut self, currency: Currency) -> &mut i64 {
        match currency {
            Currency::Gold => &mut self.state.gold,
            Currency::Gems => &mut self.state.gems,
            Currency::Credits => &mut self.state.credits,
        }
    }

    fn credit(
        &mut self,
        currency: Currency,
        amount: i64,
        reason: &'static str,
    ) -> Result<(), Refusal> {
        let b = self.balance_mut(currency);
        *b = money::credit(*b, amount)?;
        let balance_after = *b;
        self.writes.ledger.push(LedgerEntry {
            currency,
            amount,
            balance_after,
            reason,
        });
        self.touch();
        Ok(())
    }

    fn debit(
        &mut self,
        currency: Currency,
        amount: i64,
        reason: &'static str,
    ) -> Result<(), Refusal> {
        let b = self.balance_mut(currency);
        *b = money::debit(currency, *b, amount)?;
        let balance_after = *b;
        self.writes.ledger.push(LedgerEntry {
            currency,
            amount: -amount,
            balance_after,
            reason,
        });
        self.touch();
        Ok(())
    }

    fn gain_xp(&mut self, xp: i64) {
        self.state.xp = self.state.xp.saturating_add(xp);
        self.touch();
    }

    fn balances(&self) -> Value {
        json!({ "gold": self.state.gold, "gems": self.state.gems, "credits": self.state.credits })
    }

    /// Today's lucky discount, or 0 if the player has not drawn today.
    fn discount_today(&self, now_ms: i64) -> u8 {
        if self.state.lucky_day == Some(daily::utc_day(now_ms)) {
            self.state.lucky_pct
        } else {
            0
        }
    }

    fn with(mut self, data: Value, message: impl Into<String>) -> Self {
        self.data = data;
        self.message = message.into();
        self
    }
}

/// Decides a command addressed to this player. `shop` and `leaderboard` need
/// no player state and are answered before they reach an actor.
pub fn decide(
    state: &UserState,
    key: UserKey,
    kind: &CommandKind,
    command_id: Option<CommandId>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, key, ctx, command_id)?;
    match kind {
        CommandKind::Balance => {
            let data = d.balances();
            let msg = format!("You have {} gold and {} gems.", d.state.gold, d.state.gems);
            Ok(d.with(data, msg))
        }
        CommandKind::Profile => {
            let s = &d.state;
            let data = json!({
                "gold": s.gold, "gems": s.gems, "xp": s.xp, "level": s.level(),
                "daily_streak": s.daily_streak,
                "daily_claimed_today": s.daily_day == Some(daily::utc_day(ctx.now_ms)),
                "items": s.inventory.iter().map(|(_, n)| *n).sum::<i64>(),
            });
            let msg = format!(
                "Level {} · {} XP · {} gold · {} gems",
                s.level(),
                s.xp,
                s.gold,
                s.gems
            );
            Ok(d.with(data, msg))
        }
        CommandKind::Inventory => {
            let items: Vec<Value> = d
                .state
                .inventory
                .iter()
                .map(|(id, n)| {
                    let name = ctx.catalogue.get(id).map_or(&**id, |i| i.name.as_str());
                    json!({ "item": &**id, "name": name, "quantity": n })
                })
                .collect();
            let msg = if items.is_empty() {
                "Your inventory is empty.".to_owned()
            } else {
                format!("{} kinds of item.", items.len())
            };
            Ok(d.with(json!({ "items": items }), msg))
        }
        CommandKind::Daily => {
            let r =
                daily::claim(d.state.daily_day, d.state.daily_streak, ctx.now_ms).map_err(|e| {
                    Refusal::new(
                        ErrorCode::AlreadyClaimed,
                        format!(
                            "Daily already claimed today; next claim in {} minutes (UTC midnight).",
                            (e.retry_in_ms + 59_999) / 60_000
                        ),
                    )
                })?;
            d.credit(Currency::Gold, r.gold, "daily")?;
            if r.gems > 0 {
                d.credit(Currency::Gems, r.gems, "daily_streak")?;
            }
            d.credit(Currency::Credits, r.credits, "daily")?;
            d.gain_xp(r.xp);
            d.state.daily_day = Some(daily::utc_day(ctx.now_ms));
            d.state.daily_streak = r.streak;
            d.touch();
            let mut data = d.balances();
            data["reward"] =
                json!({ "gold": r.gold, "gems": r.gems, "xp": r.xp, "credits": r.credits });
            data["streak"] = json!(r.streak);
            let msg = format!(
                "+{} gold{} · streak {}",
                r.gold,
                if r.gems > 0 {
                    format!(", +{} gems", r.gems)
                } else {
                    String::new()
                },
                r.streak
            );
            Ok(d.with(data, msg))
        }
        CommandKind::Give { to, amount } => {
            if *to == key.user {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    "You cannot give to yourself.",
                ));
            }
            d.debit(Currency::Gold, *amount, "give")?;
            let transfer = Transfer {
                id: format!("t{:032x}", ctx.fresh_id),
                guild: key.guild,
                from: key.user,
                to: *to,
                amount: *amount,
                created_ms: ctx.now_ms,
            };
            let mut data = d.balances();
            data["transfer_id"] = json!(transfer.id);
            data["to"] = json!(to.to_string());
            data["amount"] = json!(amount);
            d.writes.transfer_out = Some(transfer);
            Ok(d.with(data, format!("Gave {amount} gold to <@{to}>.")))
        }
        CommandKind::Buy { item, quantity } => {
            let owned = d.state.owned(item);
            let (found, total) =
                ctx.catalogue
                    .price(item, *quantity, owned)
                    .map_err(|e| match e {
                        PurchaseError::UnknownItem => Refusal::new(
                            ErrorCode::NotFound,
                            format!("No item {item:?} in the shop."),
                        ),
                        PurchaseError::OverLimit { limit, owned } => Refusal::new(
                            ErrorCode::LimitReached,
                            format!("You may own at most {limit} of {item}; you have {owned}."),
                        ),
                        PurchaseError::PriceOverflow => {
                            Refusal::new(ErrorCode::InvalidArgument, "quantity too large")
                        }
                    })?;
            let (currency, name) = (found.currency, found.name.clone());
            d.debit(currency, total, "buy")?;
            let new_owned = owned
                .checked_add(*quantity)
                .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "too many items"))?;
            d.state.set_owned(item, new_owned);
            d.writes.inventory.push((item.clone(), new_owned));
            let mut data = d.balances();
            data["item"] = json!(item);
            data["quantity"] = json!(new_owned);
            data["spent"] = json!({ currency.as_str(): total });
            Ok(d.with(
                data,
                format!(
                    "Bought {quantity} × {name} for {total} {}.",
                    currency.as_str()
                ),
            ))
        }
        CommandKind::Credits => {
            let discount = d.discount_today(ctx.now_ms);
            let mut data = d.balances();
            data["discount_pct"] = json!(discount);
            data["lucky_drawn_today"] =
                json!(d.state.lucky_day == Some(daily::utc_day(ctx.now_ms)));
            data["prices"] = prices(discount);
            let msg = format!(
                "{} credits · today's discount {discount}% · image {} · video {}",
                d.state.credits,
                credits::discounted(Workflow::Image.cost(), discount),
                credits::discounted(Workflow::Video.cost(), discount),
            );
            Ok(d.with(data, msg))
        }
        CommandKind::Lucky => {
            let today = daily::utc_day(ctx.now_ms);
            if d.state.lucky_day == Some(today) {
                let next_midnight = (i64::from(today) + 1) * 86_400_000;
                return Err(Refusal::new(
                    ErrorCode::AlreadyClaimed,
                    format!(
                        "You already drew today ({}% off); next draw in {} minutes (UTC midnight).",
                        d.state.lucky_pct,
                        (next_midnight - ctx.now_ms + 59_999) / 60_000
                    ),
                ));
            }
            let pct = credits::lucky_discount(ctx.draw);
            d.state.lucky_day = Some(today);
            d.state.lucky_pct = pct;
            d.touch();
            let mut data = d.balances();
            data["discount_pct"] = json!(pct);
            data["prices"] = prices(pct);
            Ok(d.with(
                data,
                format!("Lucky! {pct}% off generation for the rest of today (UTC)."),
            ))
        }
        CommandKind::Generate { workflow, prompt } => {
            if d.state.open_jobs >= credits::MAX_OPEN_JOBS {
                return Err(Refusal::new(
                    ErrorCode::LimitReached,
                    format!(
                        "You already have {} jobs waiting or running; wait for one to finish or cancel one.",
                        d.state.open_jobs
                    ),
                ));
            }
            let discount = d.discount_today(ctx.now_ms);
            let cost = credits::discounted(workflow.cost(), discount);
            d.debit(Currency::Credits, cost, "generate")?;
            d.state.open_jobs += 1;
            let job = Job {
                id: format!("j{:032x}", ctx.fresh_id),
                key,
                workflow: *workflow,
                prompt: prompt.clone(),
                cost,
                created_ms: ctx.now_ms,
            };
            let mut data = d.balances();
            data["job_id"] = json!(job.id);
            data["workflow"] = json!(workflow.as_str());
            data["charged"] = json!(cost);
            data["discount_pct"] = json!(discount);
            let msg = format!(
                "Queued {} job {} for {cost} credits.",
                workflow.as_str(),
                job.id
            );
            d.writes.job_new = Some(job);
            Ok(d.with(data, msg))
        }
        CommandKind::ArenaJoin => {
            if d.state.in_arena {
                return Err(Refusal::new(
                    ErrorCode::LimitReached,
                    "You are already in the arena; arena_leave gets your fee back before a match.",
                ));
            }
            d.debit(Currency::Gold, arena::ENTRY_FEE, "arena_fee")?;
            d.state.in_arena = true;
            let entry = ArenaEntry {
                id: format!("a{:032x}", ctx.fresh_id),
                key,
                fee: arena::ENTRY_FEE,
                power: arena::power(d.state.level()),
                created_ms: ctx.now_ms,
            };
            let mut data = d.balances();
            data["entry_id"] = json!(entry.id);
            data["fee"] = json!(entry.fee);
            data["power"] = json!(entry.power);
            let msg = format!(
                "You entered the arena (power {}) for {} gold; the winner takes {}.",
                entry.power,
                entry.fee,
                arena::prize()
            );
            d.writes.arena_new = Some(entry);
            Ok(d.with(data, msg))
        }
        CommandKind::Shop
        | CommandKind::Leaderboard { .. }
        | CommandKind::Jobs
        | CommandKind::Cancel { .. }
        | CommandKind::ArenaLeave
        | CommandKind::ArenaStatus => Err(Refusal::new(
            ErrorCode::Internal,
            "this command is not decided from the player's state alone",
        )),
    }
}

/// Prices of each workflow at a discount, for replies.
fn prices(discount: u8) -> Value {
    let mut p = serde_json::Map::new();
    for w in Workflow::ALL {
        p.insert(
            w.as_str().into(),
            json!(credits::discounted(w.cost(), discount)),
        );
    }
    Value::Object(p)
}

/// Closes one of this player's queued jobs as `status`: done (with where its
/// result is), failed or cancelled (both refunded). Storage applies the
/// WriteSet only if the job is still queued, so each job closes once.
pub fn close_job(
    state: &UserState,
    job: &Job,
    status: JobStatus,
    result: Option<String>,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, job.key, ctx, None)?;
    if status.refunds() && job.cost > 0 {
        d.credit(Currency::Credits, job.cost, "refund")?;
    }
    d.state.open_jobs = d.state.open_jobs.saturating_sub(1);
    let mut data = d.balances();
    data["job_id"] = json!(job.id);
    data["workflow"] = json!(job.workflow.as_str());
    data["status"] = json!(status.as_str());
    data["refunded"] = json!(if status.refunds() { job.cost } else { 0 });
    if let Some(r) = &result {
        data["result"] = json!(r);
    }
    let msg = match status {
        JobStatus::Done => format!("Your {} {} is ready.", job.workflow.as_str(), job.id),
        JobStatus::Cancelled => format!("Cancelled {}; {} credits refunded.", job.id, job.cost),
        _ => format!("Job {} failed; {} credits refunded.", job.id, job.cost),
    };
    d.writes.close = Some(Close::Job(JobClose {
        id: job.id.clone(),
        status,
        result,
    }));
    Ok(d.with(data, msg))
}

/// Leaves the arena before a match: the fee comes back. Storage applies it
/// only while the entry is still waiting, so a leave that loses the race
/// against a match changes nothing.
pub fn arena_leave(
    state: &UserState,
    entry: &ArenaEntry,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, entry.key, ctx, None)?;
    d.credit(Currency::Gold, entry.fee, "arena_refund")?;
    d.state.in_arena = false;
    d.writes.close = Some(Close::Arena(ArenaClose {
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
pub fn arena_reward(
    state: &UserState,
    fought: &Fought,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, fought.entry.key, ctx, None)?;
    if fought.prize > 0 {
        d.credit(Currency::Gold, fought.prize, "arena_prize")?;
    }
    d.gain_xp(if fought.won {
        arena::WIN_XP
    } else {
        arena::LOSS_XP
    });
    d.state.in_arena = false;
    d.writes.close = Some(Close::Arena(ArenaClose {
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

/// Credits an incoming transfer. The WriteSet carries `transfer_in`, so
/// storage applies it only if the transfer was not credited before.
pub fn receive(
    state: &UserState,
    key: UserKey,
    transfer: &Transfer,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, key, ctx, None)?;
    d.credit(Currency::Gold, transfer.amount, "receive")?;
    d.writes.transfer_in = Some(transfer.id.clone());
    let data = d.balances();
    Ok(d.with(
        data,
        format!(
            "Received {} gold from <@{}>.",
            transfer.amount, transfer.from
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(u: i64) -> UserKey {
        UserKey::new(
            crate::ids::GuildId::new(1).unwrap(),
            crate::ids::UserId::new(u).unwrap(),
        )
    }

    fn ctx(catalogue: &Catalogue) -> Context<'_> {
        Context {
            now_ms: 1_700_000_000_000,
            catalogue,
            starting_gold: 100,
            starting_credits: 50,
            fresh_id: 7,
            draw: 0,
        }
    }

    fn ledger_sum(d: &Draft, c: Currency) -> i64 {
        d.writes
            .ledger
            .iter()
            .filter(|l| l.currency == c)
            .map(|l| l.amount)
            .sum()
    }

    #[test]
    fn first_command_creates_the_player_with_a_welcome_ledger_row() {
        let cat = Catalogue::shipped();
        let d = decide(
            &UserState::default(),
            key(1),
            &CommandKind::Balance,
            None,
            &ctx(&cat),
        )
        .unwrap();
        assert!(d.state.exists);
        assert_eq!(d.state.gold, 100);
        assert_eq!(ledger_sum(&d, Currency::Gold), 100);
        assert_eq!(d.data["gold"], 100);
    }

    #[test]
    fn reading_an_existing_player_writes_nothing() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 5,
            ..Default::default()
        };
        let d = decide(&s, key(1), &CommandKind::Profile, None, &ctx(&cat)).unwrap();
        assert!(d.writes.is_empty());
        assert_eq!(d.state, s);
    }

    #[test]
    fn give_refuses_self_and_overdraft_and_writes_an_outbox_row() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 50,
            ..Default::default()
        };
        let to = crate::ids::UserId::new(2).unwrap();
        let me = crate::ids::UserId::new(1).unwrap();
        let c = ctx(&cat);
        assert_eq!(
            decide(
                &s,
                key(1),
                &CommandKind::Give { to: me, amount: 1 },
                None,
                &c
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            decide(&s, key(1), &CommandKind::Give { to, amount: 51 }, None, &c)
                .unwrap_err()
                .code,
            ErrorCode::InsufficientFunds
        );
        let d = decide(&s, key(1), &CommandKind::Give { to, amount: 50 }, None, &c).unwrap();
        assert_eq!(d.state.gold, 0);
        let t = d.writes.transfer_out.as_ref().unwrap();
        assert_eq!((t.from, t.to, t.amount), (me, to, 50));
        assert_eq!(
            d.writes.ledger,
            vec![LedgerEntry {
                currency: Currency::Gold,
                amount: -50,
                balance_after: 0,
                reason: "give"
            }]
        );
    }

    #[test]
    fn buy_charges_the_item_currency_and_respects_limits() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            gold: 1000,
            gems: 25,
            ..Default::default()
        };
        let c = ctx(&cat);
        let two_charms = CommandKind::Buy {
            item: "lucky_charm".into(),
            quantity: 2,
        };
        let d = decide(&s, key(1), &two_charms, None, &c).unwrap();
        assert_eq!(
            (d.state.gold, d.state.gems, d.state.owned("lucky_charm")),
            (1000, 5, 2)
        );
        let again = decide(&d.state, key(1), &two_charms, None, &c);
        assert_eq!(again.unwrap_err().code, ErrorCode::LimitReached);
        let poor = decide(
            &d.state,
            key(1),
            &CommandKind::Buy {
                item: "golden_crown".into(),
                quantity: 1,
            },
            None,
            &c,
        );
        assert_eq!(poor.unwrap_err().code, ErrorCode::InsufficientFunds);
    }

    #[test]
    fn lucky_once_a_day_discounts_generation_until_midnight() {
        let cat = Catalogue::shipped();
        let s = UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        };
        let mut c = ctx(&cat);
        c.draw = 99; // the rarest tier: 50% off
        let lucky = decide(&s, key(1), &CommandKind::Lucky, None, &c).unwrap();
        assert_eq!(lucky.data["discount_pct"], 50);
        let again = decide(&lucky.state, key(1), &CommandKind::Lucky, None, &c);
        assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyClaimed);
        let video = CommandKind::Generate {
            workflow: Workflow::Video,
            prompt: "a cat".into(),
        };
        let g = decide(&lucky.state, key(1), &video, None, &c).unwrap();
        assert_eq!(
            (g.data["charged"].as_i64(), g.state.credits),
            (Some(20), 80)
        );
        c.now_ms += 86_400_000;
        let tomorrow = decide(&lucky.state, key(1), &video, None, &c).unwrap();
        assert_eq!(
            tomorrow.data["charged"], 40,
            "the discount ends at UTC midnight"
        );
    }

    #[test]
    fn generate_charges_credits_and_limits_open_jobs() {
        let cat = Catalogue::shipped();
        let mut s = UserState {
            exists: true,
            credits: 1000,
            ..Default::default()
        };
        let c = ctx(&cat);
        let image = CommandKind::Generate {
            workflow: Workflow::Image,
            prompt: "a fox".into(),
        };
        for _ in 0..credits::MAX_OPEN_JOBS {
            let d = decide(&s, key(1), &image, None, &c).unwrap();
            let job = d.writes.job_new.clone().unwrap();
            assert_eq!((job.cost, job.workflow), (10, Workflow::Image));
            s = d.state;
        }
        let over = decide(&s, key(1), &image, None, &c).unwrap_err();
        assert_eq!(over.code, ErrorCode::LimitReached);
        let poor = UserState {
            exists: true,
            credits: 9,
            ..Default::default()
        };
        assert_eq!(
            decide(&poor, key(1), &image, None, &c).unwrap_err().code,
            ErrorCode::InsufficientFunds
        );
    }

    #[test]
    fn a_failed_or_cancelled_job_is_refunded_and_a_done_one_is_not() {
        let cat = Catalogue::shipped();
        let c = ctx(&cat);
        let s = UserState {
            exists: true,
            credits: 100,
            ..Default::default()
        };
        let image = CommandKind::Generate {
            workflow: Workflow::Image,
            prompt: "a fox".into(),
        };
        let queued = decide(&s, key(1), &image, None, &c).unwrap();
        let job = queued.writes.job_new.clone().unwrap();
        for (status, credits_after) in [
            (JobStatus::Done, 90),
            (JobStatus::Failed, 100),
            (JobStatus::Cancelled, 100),
        ] {
            let d = close_job(&queued.state, &job, status, None, &c).unwrap();
            assert_eq!(
                (d.state.credits, d.state.open_jobs),
                (credits_after, 0),
                "{status:?}"
            );
            let closed = match &d.writes.close {
                Some(Close::Job(j)) => Some(j.status),
                _ => None,
            };
            assert_eq!(closed, Some(status));
        }
    }

    proptest! {
        /// Whatever sequence of commands, every draft's ledger explains its
        /// balances exactly, no balance is negative, and a player never has
        /// more jobs open than the limit.
        #[test]
        fn ledger_explains_every_balance(ops in proptest::collection::vec((0u8..8, 1i64..400, 0i64..5), 1..60)) {
            let cat = Catalogue::shipped();
            let mut s = UserState::default();
            let (mut gold_sum, mut gem_sum, mut credit_sum) = (0i64, 0i64, 0i64);
            let mut open: Vec<Job> = Vec::new();
            let mut now = 1_700_000_000_000i64;
            for (op, amount, day_step) in ops {
                now += day_step * 43_200_000;
                let c = Context { now_ms: now, catalogue: &cat, starting_gold: 100, starting_credits: 50, fresh_id: 1, draw: amount as u64 };
                let kind = match op {
                    0 => CommandKind::Daily,
                    1 => CommandKind::Give { to: crate::ids::UserId::new(9).unwrap(), amount },
                    2 => CommandKind::Buy { item: "bait".into(), quantity: amount % 20 + 1 },
                    3 => CommandKind::Buy { item: "lucky_charm".into(), quantity: 1 },
                    4 => CommandKind::Lucky,
                    5 => CommandKind::Generate { workflow: if amount % 2 == 0 { Workflow::Image } else { Workflow::Video }, prompt: "fox".into() },
                    _ => CommandKind::Balance,
                };
                let decided = if op >= 6 && !open.is_empty() {
                    let job = open.remove(0);
                    let status = if op == 6 { JobStatus::Done } else { JobStatus::Failed };
                    close_job(&s, &job, status, None, &c)
                } else {
                    decide(&s, key(1), &kind, None, &c)
                };
                if let Ok(d) = decided {
                    gold_sum += ledger_sum(&d, Currency::Gold);
                    gem_sum += ledger_sum(&d, Currency::Gems);
                    credit_sum += ledger_sum(&d, Currency::Credits);
                    open.extend(d.writes.job_new.clone());
                    s = d.state;
                }
                prop_assert_eq!(gold_sum, s.gold);
                prop_assert_eq!(gem_sum, s.gems);
                prop_assert_eq!(credit_sum, s.credits);
                prop_assert!(s.gold >= 0 && s.gems >= 0 && s.credits >= 0);
                prop_assert_eq!(usize::from(s.open_jobs), open.len());
                prop_assert!(s.open_jobs <= credits::MAX_OPEN_JOBS);
            }
        }
    }
}
