//! The `/daily` reward: once per UTC day, with a streak that grows when claims
//! fall on consecutive days and resets after a missed day.

pub use crate::domain::day::utc_day;

pub const BASE_GOLD: i64 = 100;
/// Extra gold per day of streak beyond the first, capped at `MAX_STREAK_BONUS_DAYS`.
pub const STREAK_GOLD: i64 = 20;
pub const MAX_STREAK_BONUS_DAYS: i32 = 10;
/// Every `GEM_EVERY`th consecutive day also pays `GEMS` gems.
pub const GEM_EVERY: i32 = 7;
pub const GEMS: i64 = 5;
pub const XP: i64 = 10;
/// Credits every claim pays, for image and video generation.
pub const CREDITS: i64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyReward {
    pub gold: i64,
    pub gems: i64,
    pub xp: i64,
    pub credits: i64,
    pub streak: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyClaimed {
    /// Milliseconds until the next UTC midnight.
    pub retry_in_ms: i64,
}

/// What a claim on `today` pays, given the day of the last claim (`None`:
/// never claimed) and the streak it reached.
pub fn claim(
    last_day: Option<i32>,
    streak: i32,
    now_ms: i64,
) -> Result<DailyReward, AlreadyClaimed> {
    claim_paying(BASE_GOLD, last_day, streak, now_ms)
}

/// `claim`, in a guild whose daily reward is `base_gold` (its
/// `daily_gold` setting) before the streak bonus.
pub fn claim_paying(
    base_gold: i64,
    last_day: Option<i32>,
    streak: i32,
    now_ms: i64,
) -> Result<DailyReward, AlreadyClaimed> {
    let today = utc_day(now_ms);
    let streak = match last_day {
        Some(d) if d >= today => {
            let next_midnight = (i64::from(today) + 1) * 86_400_000;
            return Err(AlreadyClaimed {
                retry_in_ms: next_midnight - now_ms,
            });
        }
        Some(d) if d == today - 1 => streak.saturating_add(1).max(1),
        _ => 1,
    };
    let bonus_days = i64::from((streak - 1).min(MAX_STREAK_BONUS_DAYS));
    Ok(DailyReward {
        gold: base_gold.saturating_add(STREAK_GOLD * bonus_days),
        gems: if streak % GEM_EVERY == 0 { GEMS } else { 0 },
        xp: XP,
        credits: CREDITS,
        streak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn first_claim_pays_base_and_starts_a_streak() {
        let r = claim(None, 0, 10 * DAY + 5).unwrap();
        assert_eq!((r.gold, r.gems, r.streak), (BASE_GOLD, 0, 1));
    }

    #[test]
    fn second_claim_the_same_utc_day_is_refused_until_midnight() {
        let err = claim(Some(10), 1, 10 * DAY + DAY - 1000).unwrap_err();
        assert_eq!(err.retry_in_ms, 1000);
    }

    #[test]
    fn claims_just_either_side_of_midnight_continue_the_streak() {
        assert_eq!(claim(Some(10), 3, 11 * DAY).unwrap().streak, 4);
        assert_eq!(claim(Some(10), 3, 12 * DAY - 1).unwrap().streak, 4);
    }

    #[test]
    fn a_missed_day_resets_the_streak() {
        assert_eq!(claim(Some(10), 9, 12 * DAY).unwrap().streak, 1);
    }

    #[test]
    fn seventh_day_pays_gems_and_bonus_is_capped() {
        let r = claim(Some(6), 6, 7 * DAY).unwrap();
        assert_eq!(
            (r.streak, r.gems, r.gold),
            (7, GEMS, BASE_GOLD + 6 * STREAK_GOLD)
        );
        let r = claim(Some(99), 500, 100 * DAY).unwrap();
        assert_eq!(
            r.gold,
            BASE_GOLD + i64::from(MAX_STREAK_BONUS_DAYS) * STREAK_GOLD
        );
    }

    proptest! {
        #[test]
        fn exactly_one_claim_per_utc_day(start in 0i64..(1 << 40), steps in proptest::collection::vec(0i64..(3 * DAY), 1..40)) {
            // Walk time forward; every paid claim must be on a day no claim was paid on before.
            let (mut last, mut streak, mut now) = (None::<i32>, 0, start);
            let mut paid_days = std::collections::HashSet::new();
            for step in steps {
                now += step;
                if let Ok(r) = claim(last, streak, now) {
                    prop_assert!(paid_days.insert(utc_day(now)), "paid twice on one day");
                    prop_assert!(r.gold >= BASE_GOLD && r.streak >= 1);
                    last = Some(utc_day(now));
                    streak = r.streak;
                } else {
                    prop_assert_eq!(last, Some(utc_day(now)));
                }
            }
        }
    }
}
