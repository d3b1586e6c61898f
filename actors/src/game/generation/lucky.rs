//! The daily lucky draw's tiers, as data (`assets/lucky.toml`, replaced by
//! `--lucky-file`): each a name, a discount and its odds in percent. Checked
//! at start; a bad file is refused with `file:line: message`. The draw is
//! passed in, so the rule is deterministic under test.

use serde::Deserialize;
use toml::Spanned;

use crate::game::data_file::{DataFileError, Pointer};

pub const SHIPPED: &str = include_str!("../../../../assets/lucky.toml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub discount_pct: u8,
    /// Chance in percent.
    pub odds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuckyTiers {
    tiers: Vec<Tier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tier: Spanned<Vec<Spanned<RawTier>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: String,
    discount_pct: i64,
    odds: i64,
}

impl Default for LuckyTiers {
    fn default() -> Self {
        Self::parse(SHIPPED, "assets/lucky.toml").unwrap_or_else(|_| Self {
            tiers: vec![Tier {
                name: "C".into(),
                discount_pct: 5,
                odds: 100,
            }],
        })
    }
}

impl LuckyTiers {
    pub fn parse(text: &str, file: &str) -> Result<Self, DataFileError> {
        let at = Pointer { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| at.toml(&e))?;
        let mut tiers: Vec<Tier> = Vec::new();
        for t in raw.tier.get_ref() {
            let pos = t.span().start;
            let r = t.get_ref();
            let name = r.name.trim();
            if name.is_empty() || name.chars().count() > 16 {
                return Err(at.at(pos, "name must be 1 to 16 characters"));
            }
            if tiers.iter().any(|o| o.name == name) {
                return Err(at.at(pos, format!("duplicate tier {name:?}")));
            }
            if !(0..=100).contains(&r.discount_pct) {
                return Err(at.at(pos, "discount_pct must be 0 to 100"));
            }
            if !(1..=100).contains(&r.odds) {
                return Err(at.at(pos, "odds must be 1 to 100 (percent)"));
            }
            tiers.push(Tier {
                name: name.to_owned(),
                discount_pct: r.discount_pct as u8,
                odds: r.odds as u32,
            });
        }
        let total: u32 = tiers.iter().map(|t| t.odds).sum();
        if total != 100 {
            return Err(at.at(
                raw.tier.span().start,
                format!("the tiers' odds must sum to 100, not {total}"),
            ));
        }
        Ok(Self { tiers })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, DataFileError> {
        let (text, file) = crate::game::data_file::read(path)?;
        Self::parse(&text, &file)
    }

    /// The tier a uniformly random `draw` lands on.
    pub fn draw(&self, draw: u64) -> &Tier {
        let mut ticket = (draw % 100) as u32;
        for t in &self.tiers {
            if ticket < t.odds {
                return t;
            }
            ticket -= t.odds;
        }
        // The odds sum to 100, so the loop always returns.
        &self.tiers[self.tiers.len() - 1]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tier> {
        self.tiers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_shipped_tiers_are_the_legacy_bots() {
        let t = LuckyTiers::default();
        let table: Vec<(&str, u8, u32)> = t
            .iter()
            .map(|t| (t.name.as_str(), t.discount_pct, t.odds))
            .collect();
        assert_eq!(
            table,
            [("C", 5, 50), ("R", 15, 30), ("SR", 30, 15), ("SSR", 50, 5)]
        );
    }

    #[test]
    fn bad_tables_say_where() {
        let e = LuckyTiers::parse(
            "[[tier]]\nname = \"C\"\ndiscount_pct = 5\nodds = 60\n",
            "l.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("sum to 100, not 60"), "{e}");
        let e = LuckyTiers::parse(
            "[[tier]]\nname = \"C\"\ndiscount_pct = 5\nodds = 50\n\n[[tier]]\nname = \"R\"\ndiscount_pct = 150\nodds = 50\n",
            "l.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 6, "the second tier: {e}");
        assert!(e.message.contains("discount_pct"), "{e}");
    }

    proptest! {
        /// Over every draw, each tier comes up exactly as often as its odds
        /// say, whatever the table.
        #[test]
        fn tiers_follow_their_odds(cuts in proptest::collection::btree_set(1u32..100, 0..6)) {
            let mut odds = Vec::new();
            let mut last = 0;
            for c in cuts.iter().chain(std::iter::once(&100)) {
                odds.push(c - last);
                last = *c;
            }
            let tiers = LuckyTiers {
                tiers: odds.iter().enumerate().map(|(i, o)| Tier { name: format!("t{i}"), discount_pct: i as u8, odds: *o }).collect(),
            };
            let mut seen = vec![0u32; odds.len()];
            for draw in 0..10_000u64 {
                seen[tiers.draw(draw).discount_pct as usize] += 1;
            }
            let want: Vec<u32> = odds.iter().map(|o| o * 100).collect();
            prop_assert_eq!(seen, want);
        }
    }
}
