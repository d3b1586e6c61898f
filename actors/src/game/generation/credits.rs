//! Credits and generation jobs: what each workflow costs, the daily lucky
//! discount and its tiers, and the checks a prompt must pass. The random
//! draw is passed in, so every rule here is deterministic under test.

/// A kind of generation job. Each workflow has its own queue actor, so a
/// backlog of slow videos never delays images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workflow {
    Image,
    Video,
}

impl Workflow {
    pub const ALL: [Workflow; 2] = [Workflow::Image, Workflow::Video];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(Self::Image),
            "video" => Some(Self::Video),
            _ => None,
        }
    }

    /// Full price in credits, before any discount.
    pub fn cost(self) -> i64 {
        match self {
            Self::Image => 10,
            Self::Video => 40,
        }
    }
}

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

/// The lucky discount tiers: (weight, percent off). Weights sum to 100, so
/// a tier's weight is its chance in percent.
pub const LUCKY_TIERS: [(u64, u8); 4] = [(50, 10), (30, 20), (15, 35), (5, 50)];

/// The discount a `lucky` draw gives, from a uniformly random `draw`.
pub fn lucky_discount(draw: u64) -> u8 {
    let total: u64 = LUCKY_TIERS.iter().map(|(w, _)| w).sum();
    let mut ticket = draw % total;
    for (weight, pct) in LUCKY_TIERS {
        if ticket < weight {
            return pct;
        }
        ticket -= weight;
    }
    LUCKY_TIERS[0].1
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
    fn lucky_tiers_follow_their_weights() {
        let mut seen = std::collections::BTreeMap::new();
        for draw in 0..100u64 {
            *seen.entry(lucky_discount(draw)).or_insert(0) += 1;
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [(10, 50), (20, 30), (35, 15), (50, 5)]
        );
    }

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
