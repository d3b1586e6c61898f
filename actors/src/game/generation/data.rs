//! The generation data operators tune, gathered: what a decision reads
//! besides the player's own state. Data only, below the rules.

use crate::game::generation::allowance::CreditRules;
use crate::game::generation::lucky::LuckyTiers;
use crate::game::generation::packs;
use crate::game::generation::workflow::Workflows;

/// The generation data operators tune: the workflows (`--workflows-dir`),
/// the lucky draw's tiers (`--lucky-file`) and the free-job rules
/// (`--credits-file`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationData {
    pub workflows: Workflows,
    pub lucky: LuckyTiers,
    pub rules: CreditRules,
    /// Credit packs sold for Telegram Stars.
    pub packs: packs::Packs,
}

impl Default for GenerationData {
    fn default() -> Self {
        Self {
            workflows: Workflows::shipped().unwrap_or_default(),
            lucky: LuckyTiers::default(),
            rules: CreditRules::default(),
            packs: packs::Packs::shipped(),
        }
    }
}
