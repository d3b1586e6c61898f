//! Role connections: a guild's `role_rules`, each `CONDITION => ROLE_ID`,
//! where a condition is over kokoro's own data about the member (`level >=
//! 10 and owns SSR => 123`). A member is wanted in a rule's role while its
//! conditions hold. Pure: the player's actor evaluates the rules on the
//! facts of the state it holds, before and after each commit, and the
//! difference is what a front door adds and removes.
//!
//! Three-valued on purpose: a fact kokoro has not read for this player
//! (their collection, say) makes a condition unknown, and a role whose
//! rule is unknown is neither added nor removed.

use std::collections::BTreeSet;
use std::fmt;

use crate::game::collection::roster::Rarity;

/// Most rules a guild may keep.
pub const MAX_RULES: usize = 25;
/// Most conditions one rule may join with `and`.
pub const MAX_CONDITIONS: usize = 8;
/// Largest number a condition may compare with.
pub const MAX_THRESHOLD: i64 = 1_000_000_000_000;

/// One condition of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The player's own level.
    Level(i64),
    /// The level of the player's highest roleplay character.
    RpLevel(i64),
    /// Owns at least one character of this rarity.
    Owns(Rarity),
    /// Distinct characters owned.
    Characters(i64),
    /// VIP now.
    Vip,
    Gold(i64),
    /// The `daily` streak.
    Streak(i64),
}

/// A rule: all of `conditions` => `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRule {
    pub conditions: Vec<Condition>,
    pub role: u64,
}

/// A guild's rules, in the order the admin gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRules(pub Vec<RoleRule>);

/// What the rules read of a player. `None`: not known (not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub level: i64,
    pub gold: i64,
    pub streak: i64,
    pub rp_level: Option<i64>,
    /// Characters owned, per rarity (`Rarity::index`).
    pub owned: Option<[i64; 4]>,
    pub vip: Option<bool>,
}

/// Which parts of a player's state kept on demand the rules read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub collection: bool,
    pub roleplay: bool,
    pub allowance: bool,
}

/// Roles to add and to remove, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleChange {
    pub add: Vec<u64>,
    pub remove: Vec<u64>,
}

impl RoleChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>();
        serde_json::json!({ "add": ids(&self.add), "remove": ids(&self.remove) })
    }

    /// This change followed by `later`: what applying both in order does.
    pub fn then(&mut self, later: &RoleChange) {
        for r in &later.add {
            self.remove.retain(|x| x != r);
            if !self.add.contains(r) {
                self.add.push(r.to_owned());
            }
        }
        for r in &later.remove {
            self.add.retain(|x| x != r);
            if !self.remove.contains(r) {
                self.remove.push(r.to_owned());
            }
        }
        self.add.sort_unstable();
        self.remove.sort_unstable();
    }
}

impl Condition {
    /// `Some(true|false)`, or `None` where the fact is not known.
    pub fn holds(self, f: &Facts) -> Option<bool> {
        Some(match self {
            Self::Level(n) => f.level >= n,
            Self::Gold(n) => f.gold >= n,
            Self::Streak(n) => f.streak >= n,
            Self::RpLevel(n) => f.rp_level? >= n,
            Self::Owns(r) => f.owned?[r.index()] > 0,
            Self::Characters(n) => f.owned?.iter().sum::<i64>() >= n,
            Self::Vip => f.vip?,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |w: &str| -> Result<i64, String> {
            w.parse::<i64>()
                .ok()
                .filter(|n| (0..=MAX_THRESHOLD).contains(n))
                .ok_or_else(|| format!("`{w}` is not a whole number from 0 to {MAX_THRESHOLD}"))
        };
        match words.as_slice() {
            ["vip"] => Ok(Self::Vip),
            ["owns", rarity] => Rarity::parse(&rarity.to_uppercase())
                .map(Self::Owns)
                .ok_or_else(|| format!("`{rarity}` is not a rarity (C, R, SR or SSR)")),
            [fact, ">=", n] => {
                let n = number(n)?;
                Ok(match *fact {
                    "level" => Self::Level(n),
                    "rp_level" => Self::RpLevel(n),
                    "characters" => Self::Characters(n),
                    "gold" => Self::Gold(n),
                    "streak" => Self::Streak(n),
                    other => return Err(unknown(other)),
                })
            }
            [] => Err("a condition is empty".to_owned()),
            _ => Err(unknown(text)),
        }
    }

    fn needs(self, n: &mut Needs) {
        match self {
            Self::RpLevel(_) => n.roleplay = true,
            Self::Owns(_) | Self::Characters(_) => n.collection = true,
            Self::Vip => n.allowance = true,
            Self::Level(_) | Self::Gold(_) | Self::Streak(_) => {}
        }
    }
}

fn unknown(what: &str) -> String {
    format!(
        "unknown condition `{what}`; a condition is one of: level >= N, rp_level >= N, \
         owns C|R|SR|SSR, characters >= N, vip, gold >= N, streak >= N"
    )
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Level(n) => write!(f, "level >= {n}"),
            Self::RpLevel(n) => write!(f, "rp_level >= {n}"),
            Self::Owns(r) => write!(f, "owns {}", r.as_str()),
            Self::Characters(n) => write!(f, "characters >= {n}"),
            Self::Vip => write!(f, "vip"),
            Self::Gold(n) => write!(f, "gold >= {n}"),
            Self::Streak(n) => write!(f, "streak >= {n}"),
        }
    }
}

impl RoleRule {
    /// `Some(true)` when every condition holds, `Some(false)` when one
    /// does not, `None` when none fails but one is unknown.
    pub fn holds(&self, f: &Facts) -> Option<bool> {
        let mut known = true;
        for c in &self.conditions {
            match c.holds(f) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => known = false,
            }
        }
        known.then_some(true)
    }
}

impl fmt::Display for RoleRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conditions.iter().enumerate() {
            write!(f, "{}{c}", if i > 0 { " and " } else { "" })?;
        }
        write!(f, " => {}", self.role)
    }
}

impl RoleRules {
    /// Parses rules separated by `;` or new lines. An error names the rule
    /// (its number and text) and what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let texts: Vec<&str> = value
            .split([';', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if texts.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules, not {}", texts.len()));
        }
        let mut rules = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let rule = parse_rule(text).map_err(|e| {
                let shown: String = text.chars().take(80).collect();
                format!("rule {} (`{shown}`): {e}", i + 1)
            })?;
            rules.push(rule);
        }
        Ok(Self(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every role some rule gives.
    pub fn roles(&self) -> BTreeSet<u64> {
        self.0.iter().map(|r| r.role).collect()
    }

    pub fn needs(&self) -> Needs {
        let mut n = Needs::default();
        for c in self.0.iter().flat_map(|r| &r.conditions) {
            c.needs(&mut n);
        }
        n
    }

    /// Per role: `Some(true)` if some rule giving it holds, `Some(false)`
    /// if every rule giving it fails, `None` otherwise.
    pub fn wanted(&self, f: &Facts) -> Vec<(u64, Option<bool>)> {
        let mut out = Vec::new();
        for role in self.roles() {
            let mut any_unknown = false;
            let mut held = false;
            for rule in self.0.iter().filter(|r| r.role == role) {
                match rule.holds(f) {
                    Some(true) => held = true,
                    None => any_unknown = true,
                    Some(false) => {}
                }
            }
            let verdict = if held {
                Some(true)
            } else if any_unknown {
                None
            } else {
                Some(false)
            };
            out.push((role, verdict));
        }
        out
    }

    /// What changes between the facts before and after a commit: a role is
    /// added when it starts being wanted and removed when it stops; a role
    /// unknown on either side is left alone.
    pub fn change(&self, before: &Facts, after: &Facts) -> RoleChange {
        let mut c = RoleChange::default();
        if self.is_empty() || before == after {
            return c;
        }
        let (b, a) = (self.wanted(before), self.wanted(after));
        for ((role, was), (_, now)) in b.into_iter().zip(a) {
            match (was, now) {
                (Some(false), Some(true)) => c.add.push(role),
                (Some(true), Some(false)) => c.remove.push(role),
                _ => {}
            }
        }
        c
    }

    /// Everything the rules say of a member now, for `roles_sync`: every
    /// role wanted is added, every other known one removed.
    pub fn sync(&self, f: &Facts) -> RoleChange {
        let mut c = RoleChange::default();
        for (role, verdict) in self.wanted(f) {
            match verdict {
                Some(true) => c.add.push(role),
                Some(false) => c.remove.push(role),
                None => {}
            }
        }
        c
    }
}

fn parse_rule(text: &str) -> Result<RoleRule, String> {
    let (conditions, role) = text
        .split_once("=>")
        .ok_or("a rule is CONDITION => ROLE_ID (conditions joined by `and`)")?;
    let role = role
        .trim()
        .trim_start_matches("<@&")
        .trim_start_matches('@')
        .trim_end_matches('>');
    let role = role
        .parse::<u64>()
        .ok()
        .filter(|r| *r > 0 && *r <= i64::MAX as u64)
        .ok_or_else(|| {
            format!(
                "`{}` is not a role id",
                role.chars().take(24).collect::<String>()
            )
        })?;
    let parts: Vec<&str> = conditions.split(" and ").map(str::trim).collect();
    if parts.len() > MAX_CONDITIONS {
        return Err(format!("at most {MAX_CONDITIONS} conditions in a rule"));
    }
    let conditions = parts
        .into_iter()
        .map(Condition::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoleRule { conditions, role })
}

impl fmt::Display for RoleRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            write!(f, "{}{r}", if i > 0 { "; " } else { "" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(level: i64, gold: i64) -> Facts {
        Facts {
            level,
            gold,
            ..Facts::default()
        }
    }

    #[test]
    fn rules_round_trip_through_their_text_form() {
        let text = "level >= 10 and owns ssr => <@&123>; vip => 5\n gold >= 1000 and streak >= 7 => 6;rp_level >= 3 and characters >= 20 => @7";
        let rules = RoleRules::parse(text).unwrap();
        assert_eq!(rules.0.len(), 4);
        assert_eq!(
            rules.to_string(),
            "level >= 10 and owns SSR => 123; vip => 5; gold >= 1000 and streak >= 7 => 6; rp_level >= 3 and characters >= 20 => 7"
        );
        assert_eq!(RoleRules::parse(&rules.to_string()).unwrap(), rules);
        assert_eq!(
            rules.needs(),
            Needs {
                collection: true,
                roleplay: true,
                allowance: true
            }
        );
        assert_eq!(RoleRules::parse(" ; \n").unwrap(), RoleRules::default());
    }

    #[test]
    fn a_bad_rule_is_named_by_its_number_and_text() {
        for (text, says) in [
            (
                "level >= 5 => 1; levl >= 3 => 2",
                "rule 2 (`levl >= 3 => 2`): unknown condition `levl`",
            ),
            (
                "owns XR => 1",
                "rule 1 (`owns XR => 1`): `XR` is not a rarity",
            ),
            ("gold >= -1 => 1", "`-1` is not a whole number"),
            ("gold >= 5", "a rule is CONDITION => ROLE_ID"),
            ("vip => everyone", "`everyone` is not a role id"),
            ("vip => 0", "`0` is not a role id"),
            ("level > 5 => 1", "unknown condition `level > 5`"),
            ("vip and  => 1", "a condition is empty"),
        ] {
            let e = RoleRules::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let many = vec!["vip => 1"; MAX_RULES + 1].join(";");
        assert!(RoleRules::parse(&many)
            .unwrap_err()
            .contains("at most 25 rules"));
    }

    #[test]
    fn a_role_is_added_when_wanted_removed_when_not_and_left_when_unknown() {
        let rules =
            RoleRules::parse("gold >= 100 => 1; level >= 5 => 2; gold >= 500 => 2; owns SSR => 3")
                .unwrap();
        let c = rules.change(&facts(1, 50), &facts(1, 150));
        assert_eq!(
            c,
            RoleChange {
                add: vec![1],
                remove: vec![]
            }
        );
        // Role 2 is wanted by either of its rules: losing gold keeps it
        // while the level holds.
        let c = rules.change(&facts(5, 600), &facts(5, 0));
        assert_eq!(
            c,
            RoleChange {
                add: vec![],
                remove: vec![1]
            }
        );
        let c = rules.change(&facts(4, 600), &facts(4, 0));
        assert_eq!(
            c,
            RoleChange {
                add: vec![],
                remove: vec![1, 2]
            }
        );
        // The collection was never read: role 3 is neither added nor removed.
        assert_eq!(
            rules.sync(&facts(1, 0)),
            RoleChange {
                add: vec![],
                remove: vec![1, 2]
            }
        );
        let mut with = facts(1, 0);
        with.owned = Some([3, 0, 0, 1]);
        assert_eq!(
            rules.sync(&with),
            RoleChange {
                add: vec![3],
                remove: vec![1, 2]
            }
        );
        // A known failing condition decides a rule even beside an unknown one.
        let both = RoleRules::parse("gold >= 100 and owns SSR => 9").unwrap();
        assert_eq!(
            both.sync(&facts(1, 0)),
            RoleChange {
                add: vec![],
                remove: vec![9]
            }
        );
        assert_eq!(both.sync(&facts(1, 100)), RoleChange::default());
    }

    #[test]
    fn changes_applied_in_order_fold_into_one() {
        let mut c = RoleChange {
            add: vec![1, 2],
            remove: vec![3],
        };
        c.then(&RoleChange {
            add: vec![3],
            remove: vec![1],
        });
        assert_eq!(
            c,
            RoleChange {
                add: vec![2, 3],
                remove: vec![1]
            }
        );
    }
}
