//! The XP curve: level n needs 100·n² total XP, so early levels come quickly
//! and later ones slow down.

pub fn level_for_xp(xp: i64) -> i32 {
    if xp <= 0 {
        return 0;
    }
    // Integer square root of xp/100, corrected for float rounding.
    let mut l = ((xp / 100) as f64).sqrt() as i64;
    while 100 * (l + 1) * (l + 1) <= xp {
        l += 1;
    }
    while l > 0 && 100 * l * l > xp {
        l -= 1;
    }
    i32::try_from(l).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thresholds() {
        assert_eq!(level_for_xp(0), 0);
        assert_eq!(level_for_xp(99), 0);
        assert_eq!(level_for_xp(100), 1);
        assert_eq!(level_for_xp(399), 1);
        assert_eq!(level_for_xp(400), 2);
    }

    proptest! {
        #[test]
        fn level_is_monotonic_and_exact(xp in 0i64..(1i64 << 50)) {
            let l = i64::from(level_for_xp(xp));
            prop_assert!(100 * l * l <= xp || xp == 0);
            prop_assert!(100 * (l + 1) * (l + 1) > xp);
            prop_assert!(level_for_xp(xp + 1) >= level_for_xp(xp));
        }
    }
}
