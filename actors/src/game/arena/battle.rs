//! The arena: what entering costs, how strong a player fights, who wins a
//! battle and what it pays. The random draw is passed in.

/// Gold each entrant pays on joining; refunded if they leave before a match.
pub const ENTRY_FEE: i64 = 20;
/// Gold the arena adds to the two fees for the winner.
pub const WIN_BONUS: i64 = 10;
pub const WIN_XP: i64 = 25;
pub const LOSS_XP: i64 = 10;

/// Fighting strength: grows with level so veterans usually win, but never
/// so much that a newcomer cannot.
pub fn power(level: i32) -> i64 {
    10 + 5 * i64::from(level.clamp(0, 1_000))
}

/// Whether the first fighter wins, with odds in proportion to power:
/// `draw` is uniform over `u64`.
pub fn first_wins(power_a: i64, power_b: i64, draw: u64) -> bool {
    let (a, b) = (power_a.max(1) as u64, power_b.max(1) as u64);
    draw % (a + b) < a
}

/// Gold the winner takes: both fees and the bonus.
pub fn prize() -> i64 {
    2 * ENTRY_FEE + WIN_BONUS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odds_follow_power() {
        let (a, b) = (power(10), power(0));
        assert_eq!((a, b), (60, 10));
        let wins = (0..(a + b) as u64).filter(|d| first_wins(a, b, *d)).count();
        assert_eq!(wins, 60, "60 of every 70 draws");
        assert!(!first_wins(1, 1_000_000, 5), "an underdog can lose");
        assert!(first_wins(1, 1_000_000, 0), "and can win");
    }
}
