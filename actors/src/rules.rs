//! The game's commands as pure decisions: given a player's state and a
//! command, produce a `Draft` (the state it would have, the ledger rows and
//! rows it writes, the reply data) or a refusal. Nothing here is applied: the
//! user actor adopts the draft only once group commit says it is durable.

use serde_json::{json, Value};

use crate::command::CommandKind;
use crate::domain::money::{self, MoneyError};
use crate::domain::shop::{Catalogue, PurchaseError};
use crate::domain::{daily, level, Currency};
use crate::ids::{CommandId, UserKey};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{LedgerEntry, Transfer, UserRow, WriteSet};

/// What a decision may read besides the state. No clock is read inside the
/// rules: `now_ms` comes from here.
pub struct Context<'a> {
    pub now_ms: i64,
    pub catalogue: &'a Catalogue,
    /// Gold a player starts with, paid (with its ledger row) by their first command.
    pub starting_gold: i64,
    /// A fresh unique id, used when a decision creates something that needs one.
    pub fresh_id: u128,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
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
        }
        Ok(d)
    }

    fn touch(&mut self) {
        let s = &self.state;
        self.writes.row = Some(UserRow {
            gold: s.gold,
            gems: s.gems,
            xp: s.xp,
            level: s.level,
            daily_day: s.daily_day,
            daily_streak: s.daily_streak,
        });
    }

    fn balance_mut(&mut self, currency: Currency) -> &mut i64 {
        match currency {
            Currency::Gold => &mut self.state.gold,
            Currency::Gems => &mut self.state.gems,
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
        self.state.level = level::level_for_xp(self.state.xp);
        self.touch();
    }

    fn balances(&self) -> Value {
        json!({ "gold": self.state.gold, "gems": self.state.gems })
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
                "gold": s.gold, "gems": s.gems, "xp": s.xp, "level": s.level,
                "daily_streak": s.daily_streak,
                "daily_claimed_today": s.daily_day == Some(daily::utc_day(ctx.now_ms)),
                "items": s.inventory.iter().map(|(_, n)| *n).sum::<i64>(),
            });
            let msg = format!(
                "Level {} · {} XP · {} gold · {} gems",
                s.level, s.xp, s.gold, s.gems
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
            d.gain_xp(r.xp);
            d.state.daily_day = Some(daily::utc_day(ctx.now_ms));
            d.state.daily_streak = r.streak;
            d.touch();
            let mut data = d.balances();
            data["reward"] = json!({ "gold": r.gold, "gems": r.gems, "xp": r.xp });
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
        CommandKind::Shop | CommandKind::Leaderboard { .. } => Err(Refusal::new(
            ErrorCode::Internal,
            "shop and leaderboard are answered without a player actor",
        )),
    }
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
            fresh_id: 7,
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

    proptest! {
        /// Whatever sequence of commands, every draft's ledger explains its
        /// balances exactly and no balance is negative.
        #[test]
        fn ledger_explains_every_balance(ops in proptest::collection::vec((0u8..4, 1i64..400, 0i64..5), 1..60)) {
            let cat = Catalogue::shipped();
            let mut s = UserState::default();
            let (mut gold_sum, mut gem_sum) = (0i64, 0i64);
            let mut now = 1_700_000_000_000i64;
            for (op, amount, day_step) in ops {
                now += day_step * 43_200_000;
                let c = Context { now_ms: now, catalogue: &cat, starting_gold: 100, fresh_id: 1 };
                let kind = match op {
                    0 => CommandKind::Daily,
                    1 => CommandKind::Give { to: crate::ids::UserId::new(9).unwrap(), amount },
                    2 => CommandKind::Buy { item: "bait".into(), quantity: amount % 20 + 1 },
                    _ => CommandKind::Buy { item: "lucky_charm".into(), quantity: 1 },
                };
                if let Ok(d) = decide(&s, key(1), &kind, None, &c) {
                    gold_sum += ledger_sum(&d, Currency::Gold);
                    gem_sum += ledger_sum(&d, Currency::Gems);
                    s = d.state;
                }
                prop_assert_eq!(gold_sum, s.gold);
                prop_assert_eq!(gem_sum, s.gems);
                prop_assert!(s.gold >= 0 && s.gems >= 0);
            }
        }
    }
}
