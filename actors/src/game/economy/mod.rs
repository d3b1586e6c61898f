//! The economy: `profile`, `balance`, `daily`, `give`, `shop`, `buy`,
//! `inventory`, `leaderboard`, and the credit of an incoming transfer. Its
//! commands, their pure rules and what they write; `shop` and `leaderboard`
//! need no player state and are answered without an actor.

pub mod daily;
pub mod shop;
pub(crate) mod sql;

use serde_json::{json, Value};

use crate::args::{Args, ParseError};
use crate::domain::Currency;
use crate::game::draft::{Context, Draft, Refusal};
use crate::ids::{UserId, UserKey};
use crate::reply::ErrorCode;
use crate::state::UserState;
use crate::writeset::{Transfer, Write};
use shop::PurchaseError;

pub use crate::domain::money::MAX_AMOUNT;
/// Largest quantity a single `buy` may ask for.
pub const MAX_QUANTITY: i64 = 1_000;
pub use shop::MAX_ITEM_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderboardBy {
    Gold,
    Level,
}

impl LeaderboardBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gold => "gold",
            Self::Level => "level",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EconomyCommand {
    Profile,
    Balance,
    Daily,
    Give { to: UserId, amount: i64 },
    Shop,
    Buy { item: String, quantity: i64 },
    Inventory,
    Leaderboard { by: LeaderboardBy },
}

impl EconomyCommand {
    pub const NAMES: &'static [&'static str] = &[
        "profile",
        "balance",
        "daily",
        "give",
        "shop",
        "buy",
        "inventory",
        "leaderboard",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Balance => "balance",
            Self::Daily => "daily",
            Self::Give { .. } => "give",
            Self::Shop => "shop",
            Self::Buy { .. } => "buy",
            Self::Inventory => "inventory",
            Self::Leaderboard { .. } => "leaderboard",
        }
    }

    /// The command called `name`, if it is one of this feature's.
    pub fn parse(name: &str, a: &mut Args<'_>) -> Result<Option<Self>, ParseError> {
        Ok(Some(match name {
            "profile" => Self::Profile,
            "balance" => Self::Balance,
            "daily" => Self::Daily,
            "shop" => Self::Shop,
            "inventory" => Self::Inventory,
            "give" => Self::Give {
                to: a.user_id("to")?,
                amount: a.integer("amount", 1, MAX_AMOUNT)?,
            },
            "buy" => Self::Buy {
                item: item(a, "item")?,
                quantity: a
                    .optional_integer("quantity", 1, MAX_QUANTITY)?
                    .unwrap_or(1),
            },
            "leaderboard" => Self::Leaderboard {
                by: match a.optional_str("by")? {
                    None | Some("gold") => LeaderboardBy::Gold,
                    Some("level") => LeaderboardBy::Level,
                    Some(_) => return Err(ParseError::invalid("by must be \"gold\" or \"level\"")),
                },
            },
            _ => return Ok(None),
        }))
    }

    /// The `args` object that `parse` reads back into this command.
    pub fn args(&self) -> Value {
        match self {
            Self::Give { to, amount } => json!({"to": to.to_string(), "amount": amount}),
            Self::Buy { item, quantity } => json!({"item": item, "quantity": quantity}),
            Self::Leaderboard { by } => json!({"by": by.as_str()}),
            Self::Profile | Self::Balance | Self::Daily | Self::Shop | Self::Inventory => json!({}),
        }
    }

    /// Whether an `ok` answer always changed something.
    pub fn writes_when_ok(&self) -> bool {
        matches!(self, Self::Daily | Self::Give { .. } | Self::Buy { .. })
    }
}

fn item(a: &mut Args<'_>, name: &str) -> Result<String, ParseError> {
    match a.required(name)? {
        Value::String(s)
            if !s.is_empty()
                && s.len() <= MAX_ITEM_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Ok(s.clone())
        }
        _ => Err(ParseError::invalid(format!(
            "{name} must be an item id: 1 to {MAX_ITEM_LEN} of a-z, 0-9, '_'"
        ))),
    }
}

/// Decides an economy command on the player's draft.
pub fn decide(
    mut d: Draft,
    key: UserKey,
    command: &EconomyCommand,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    match command {
        EconomyCommand::Balance => {
            let data = d.balances();
            let msg = format!("You have {} gold and {} gems.", d.state.gold, d.state.gems);
            Ok(d.with(data, msg))
        }
        EconomyCommand::Profile => {
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
        EconomyCommand::Inventory => {
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
        EconomyCommand::Daily => {
            let r = daily::claim_paying(
                ctx.guild.daily_gold,
                d.state.daily_day,
                d.state.daily_streak,
                ctx.now_ms,
            )
            .map_err(|e| {
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
        EconomyCommand::Give { to, amount } => {
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
            d.write(Write::TransferOut(transfer));
            Ok(d.with(data, format!("Gave {amount} gold to <@{to}>.")))
        }
        EconomyCommand::Buy { item, quantity } => {
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
            d.write(Write::Inventory {
                item: item.clone(),
                quantity: new_owned,
            });
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
        EconomyCommand::Shop | EconomyCommand::Leaderboard { .. } => Err(Refusal::new(
            ErrorCode::Internal,
            "this command is answered without the player's actor",
        )),
    }
}

/// Credits an incoming transfer. The WriteSet carries it as a guard, so
/// storage applies it only if the transfer was not credited before.
pub fn receive(
    state: &UserState,
    key: UserKey,
    transfer: &Transfer,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    credit_transfer(state, key, transfer, ctx, Write::TransferIn)
}

/// Credits a transfer in the same transaction as its debit (the sender's
/// actor commits both): no guard, the debit's WriteSet decides for both.
pub fn receive_with_debit(
    state: &UserState,
    key: UserKey,
    transfer: &Transfer,
    ctx: &Context<'_>,
) -> Result<Draft, Refusal> {
    credit_transfer(state, key, transfer, ctx, Write::TransferPaired)
}

/// `marker` says how storage knows the credit lands once.
fn credit_transfer(
    state: &UserState,
    key: UserKey,
    transfer: &Transfer,
    ctx: &Context<'_>,
    marker: fn(String) -> Write,
) -> Result<Draft, Refusal> {
    let mut d = Draft::begin(state, key, ctx, None)?;
    d.credit(Currency::Gold, transfer.amount, "receive")?;
    d.write(marker(transfer.id.clone()));
    let data = d.balances();
    Ok(d.with(
        data,
        format!(
            "Received {} gold from <@{}>.",
            transfer.amount, transfer.from
        ),
    ))
}
