//! The summon rules: which rarity a summon rolls, which character of that
//! rarity, and pity. Plain functions: the random draws come in as numbers,
//! so a million summons can be checked without a database.
//!
//! Pity is counted per player and per banner: summons since the last SSR.
//! Once a player has made `pity` summons on a banner without an SSR, the
//! next one is an SSR, so no run of non-SSR summons is longer than `pity`.
//! Because of that, the chance of an SSR over many summons (the
//! consolidated rate) is above the base rate; both are published.

use super::roster::{Banner, Rarity};

/// One summon's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pull {
    /// Index of the character in the roster.
    pub character: usize,
    pub rarity: Rarity,
    /// Whether pity made it an SSR.
    pub by_pity: bool,
    /// The banner's pity counter after this summon.
    pub since_ssr: u32,
}

/// One summon on `banner` by a player `since_ssr` summons from their last
/// SSR there. `rarity_draw` and `pick_draw` are uniform random numbers.
pub fn pull(banner: &Banner, since_ssr: u32, rarity_draw: u64, pick_draw: u64) -> Pull {
    let forced = since_ssr >= banner.pity;
    let rarity = if forced {
        Rarity::SSR
    } else {
        roll_rarity(&banner.rates, rarity_draw)
    };
    let pool = &banner.pool[rarity.index()];
    // Lemire's multiply-shift: a uniform pick without modulo bias to speak of.
    let pick = ((u128::from(pick_draw) * pool.len() as u128) >> 64) as usize;
    Pull {
        character: pool.get(pick).copied().unwrap_or_default(),
        rarity,
        by_pity: forced,
        since_ssr: if rarity == Rarity::SSR {
            0
        } else {
            since_ssr.saturating_add(1)
        },
    }
}

/// Rolls a rarity from percent rates (commonest first; rates of a checked
/// banner sum to 100).
fn roll_rarity(rates: &[f64; 4], draw: u64) -> Rarity {
    // 53 random bits: a uniform point in [0, 100).
    let point = (draw >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
    let mut below = 0.0;
    for r in Rarity::ALL {
        below += rates[r.index()];
        if point < below && rates[r.index()] > 0.0 {
            return r;
        }
    }
    // Rounding at the top edge: the rarest rarity with a rate.
    Rarity::ALL
        .into_iter()
        .rev()
        .find(|r| rates[r.index()] > 0.0)
        .unwrap_or(Rarity::C)
}

/// The share of each rarity, in percent, over many summons with pity:
/// what a player really gets. SSR is `1 / E[summons per SSR]`, where a run
/// ends at the first SSR and at the latest at summon `pity + 1`; the rest
/// falls to the other rarities in proportion to their base rates.
pub fn consolidated_rates(banner: &Banner) -> [f64; 4] {
    let p = banner.rates[Rarity::SSR.index()] / 100.0;
    let n = f64::from(banner.pity);
    let per_ssr = if p > 0.0 {
        (1.0 - (1.0 - p).powf(n + 1.0)) / p
    } else {
        n + 1.0
    };
    let ssr = 1.0 / per_ssr;
    let others: f64 = Rarity::ALL[..3]
        .iter()
        .map(|r| banner.rates[r.index()])
        .sum();
    let mut out = [0.0; 4];
    for r in &Rarity::ALL[..3] {
        out[r.index()] = if others > 0.0 {
            (1.0 - ssr) * banner.rates[r.index()] / others * 100.0
        } else {
            0.0
        };
    }
    out[Rarity::SSR.index()] = ssr * 100.0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::collection::roster::Roster;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// A million summons on each shipped banner: every rarity's share is
    /// within tolerance of the published consolidated rate, pity fires and
    /// never lets more than `pity` summons pass without an SSR, and within a
    /// rarity every character on the banner comes up about equally often.
    #[test]
    fn a_million_summons_match_the_published_rates_and_pity_holds() {
        let roster = Roster::shipped().unwrap();
        for banner in roster.banners() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let n = 1_000_000u32;
            let mut by_rarity = [0u32; 4];
            let mut by_character = vec![0u32; roster.characters().len()];
            let (mut since, mut longest, mut pity_fired) = (0u32, 0u32, 0u32);
            for _ in 0..n {
                let p = pull(banner, since, rng.random(), rng.random());
                assert_eq!(
                    roster.character(p.character).map(|c| c.rarity),
                    Some(p.rarity)
                );
                by_rarity[p.rarity.index()] += 1;
                by_character[p.character] += 1;
                pity_fired += u32::from(p.by_pity);
                since = p.since_ssr;
                longest = longest.max(since);
            }
            assert!(
                longest <= banner.pity,
                "{}: {longest} summons without an SSR",
                banner.id
            );
            assert!(
                pity_fired > 100,
                "{}: pity fired {pity_fired} times",
                banner.id
            );
            let published = consolidated_rates(banner);
            for r in Rarity::ALL {
                let seen = f64::from(by_rarity[r.index()]) / f64::from(n) * 100.0;
                let want = published[r.index()];
                assert!(
                    (seen - want).abs() < 0.25,
                    "{} {}: observed {seen:.3}% against published {want:.3}%",
                    banner.id,
                    r.as_str()
                );
            }
            for r in Rarity::ALL {
                let pool = &banner.pool[r.index()];
                let mean = f64::from(by_rarity[r.index()]) / pool.len() as f64;
                for &c in pool {
                    let got = f64::from(by_character[c]);
                    assert!(
                        (got - mean).abs() < 0.1 * mean + 30.0,
                        "{}: {} came up {got} times, {mean:.0} expected",
                        banner.id,
                        roster.characters()[c].name
                    );
                }
            }
        }
    }

    #[test]
    fn the_consolidated_ssr_rate_is_above_the_base_rate_and_shares_sum_to_100() {
        let roster = Roster::shipped().unwrap();
        for banner in roster.banners() {
            let c = consolidated_rates(banner);
            assert!(c[Rarity::SSR.index()] > banner.rates[Rarity::SSR.index()]);
            assert!((c.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        }
    }

    proptest! {
        /// Whatever the draws, even ones that always land on the commonest
        /// rarity, no player goes more than `pity` summons without an SSR,
        /// and the counter resets exactly on an SSR.
        #[test]
        fn pity_holds_for_any_draws(
            start in 0u32..200,
            draws in proptest::collection::vec((0u64..u64::MAX / 2, any::<u64>()), 1..400),
        ) {
            let roster = Roster::shipped().unwrap();
            let banner = roster.banner("starfall").unwrap();
            let mut since = start.min(banner.pity);
            for (r, p) in draws {
                let before = since;
                let got = pull(banner, since, r, p);
                since = got.since_ssr;
                prop_assert!(since <= banner.pity);
                prop_assert_eq!(got.rarity == Rarity::SSR, since == 0);
                prop_assert_eq!(got.by_pity, before >= banner.pity);
            }
        }
    }
}
