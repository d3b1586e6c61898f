//! Currencies and the checked arithmetic every balance change goes through.
//! A balance never goes negative and never wraps: both are refusals.

use serde::Serialize;

/// Largest amount a single command may move. Far above any sane balance and
/// far below `i64::MAX`, so sums of a few amounts cannot overflow before the
/// checked arithmetic of the balance itself refuses them.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Currency {
    Gold,
    Gems,
    /// Spent on image and video generation; refunded when a job fails or is cancelled.
    Credits,
}

impl Currency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gold => "gold",
            Self::Gems => "gems",
            Self::Credits => "credits",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gold" => Some(Self::Gold),
            "gems" => Some(Self::Gems),
            "credits" => Some(Self::Credits),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not enough {currency}: have {have}, need {need}", currency = .currency.as_str())]
    Insufficient {
        currency: Currency,
        have: i64,
        need: i64,
    },
    #[error("amount would overflow the balance")]
    Overflow,
}

/// `balance + amount`, refusing overflow. `amount` must be non-negative.
pub fn credit(balance: i64, amount: i64) -> Result<i64, MoneyError> {
    if amount < 0 {
        return Err(MoneyError::Overflow);
    }
    balance.checked_add(amount).ok_or(MoneyError::Overflow)
}

/// `balance - amount`, refusing to go below zero.
pub fn debit(currency: Currency, balance: i64, amount: i64) -> Result<i64, MoneyError> {
    if amount < 0 {
        return Err(MoneyError::Overflow);
    }
    match balance.checked_sub(amount) {
        Some(after) if after >= 0 => Ok(after),
        _ => Err(MoneyError::Insufficient {
            currency,
            have: balance,
            need: amount,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn debit_never_goes_negative(balance in 0..i64::MAX, amount in 0..i64::MAX) {
            match debit(Currency::Gold, balance, amount) {
                Ok(after) => { prop_assert!(after >= 0); prop_assert_eq!(after + amount, balance); }
                Err(MoneyError::Insufficient { have, need, .. }) => {
                    prop_assert!(amount > balance); prop_assert_eq!((have, need), (balance, amount));
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn credit_then_debit_is_identity(balance in 0..i64::MAX / 2, amount in 0..i64::MAX / 2) {
            let up = credit(balance, amount).unwrap();
            prop_assert_eq!(debit(Currency::Gems, up, amount), Ok(balance));
        }
    }

    #[test]
    fn credit_refuses_overflow_and_negative_amounts() {
        assert_eq!(credit(i64::MAX, 1), Err(MoneyError::Overflow));
        assert_eq!(credit(5, -1), Err(MoneyError::Overflow));
        assert_eq!(debit(Currency::Gold, 5, -1), Err(MoneyError::Overflow));
    }
}
