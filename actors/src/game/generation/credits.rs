//! Credits and generation jobs: how a discount applies to a price, how many
//! jobs a player may have open, and the checks a prompt must pass.

/// Most credits one payment may buy.
pub const MAX_CREDITS: i64 = 1_000_000;

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 500;

/// Jobs one player may have waiting or running at once.
pub const MAX_OPEN_JOBS: u8 = 3;

/// Why a prompt is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("the prompt is empty")]
    Empty,
    #[error("the prompt is longer than {MAX_PROMPT_CHARS} characters")]
    TooLong,
    #[error("the prompt contains control characters")]
    ControlCharacters,
}

/// Trims a prompt and checks its length and characters.
pub fn check_prompt(prompt: &str) -> Result<String, PromptError> {
    let p = prompt.trim();
    if p.is_empty() {
        return Err(PromptError::Empty);
    }
    if p.chars().count() > MAX_PROMPT_CHARS {
        return Err(PromptError::TooLong);
    }
    // Newlines are fine in a prompt; other control characters only ever
    // come from pasted garbage or attempts to confuse log readers.
    if p.chars().any(|c| c.is_control() && c != '\n') {
        return Err(PromptError::ControlCharacters);
    }
    Ok(p.to_owned())
}

/// `cost` less `pct` percent, rounded up so a discount never makes a job
/// free; never more than `cost`.
pub fn discounted(cost: i64, pct: u8) -> i64 {
    let pct = i64::from(pct.min(100));
    let off = cost.saturating_mul(pct) / 100;
    (cost - off).max(if cost > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn discount_rounds_in_the_players_disfavour_but_never_to_zero() {
        assert_eq!(discounted(10, 0), 10);
        assert_eq!(discounted(10, 35), 7);
        assert_eq!(discounted(40, 50), 20);
        assert_eq!(discounted(1, 50), 1);
        assert_eq!(discounted(10, 200), 1);
    }

    #[test]
    fn prompts_are_trimmed_and_checked() {
        assert_eq!(check_prompt("  a red fox \n").as_deref(), Ok("a red fox"));
        assert_eq!(check_prompt("   "), Err(PromptError::Empty));
        assert_eq!(check_prompt("a\u{7}b"), Err(PromptError::ControlCharacters));
        assert_eq!(check_prompt(&"é".repeat(501)), Err(PromptError::TooLong));
        assert!(check_prompt(&"é".repeat(500)).is_ok());
    }

    proptest! {
        #[test]
        fn a_discounted_price_is_positive_and_at_most_the_price(cost in 1i64..1_000_000, pct in 0u8..=255) {
            let d = discounted(cost, pct);
            prop_assert!(d >= 1 && d <= cost);
        }
    }
}
