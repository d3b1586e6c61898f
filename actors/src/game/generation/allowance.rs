//! Free jobs: the trial, each workflow's daily allowance, and VIP. Pure:
//! the player's allowance state, the rules and `now` in; whether the next
//! job is free out.
//!
//! - A new player is on trial for `trial.days` from their first command,
//!   with `trial.daily_free` free jobs a day, on any workflows together.
//! - After the trial, each workflow gives `daily_free` free jobs a day (its
//!   file says how many; 0 for none).
//! - A VIP (an admin's `vip {user, days}`, until it expires) generates
//!   free without a daily limit, as the bot kokoro replaces has it ("truly
//!   unlimited access"). An operator who wants a cap sets `vip.daily_free`
//!   (free jobs a day on each workflow, or the workflow's own allowance if
//!   that is higher). VIP counts during the trial too.
//! - A day is a UTC day, as for `daily` and `lucky`. A free job that fails
//!   has used its turn (it cost nothing, and there is nothing to refund).
//!
//! The rules are data (`assets/credits.toml`, `--credits-file`).

use serde::Deserialize;

use crate::domain::day::utc_day;
use crate::game::data_file::{DataFileError, Pointer};
use crate::game::generation::workflow::{Workflow, WorkflowDef};

pub const SHIPPED: &str = include_str!("../../../../assets/credits.toml");

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditRules {
    pub trial_days: u32,
    pub trial_daily_free: u32,
    /// `None`: a VIP's free jobs are unlimited.
    pub vip_daily_free: Option<u32>,
}

/// What `free_left` answers for a VIP without a cap.
pub const UNLIMITED: u32 = u32::MAX;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    trial: RawTrial,
    vip: RawVip,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrial {
    days: toml::Spanned<i64>,
    daily_free: toml::Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    /// A number, or `"unlimited"`.
    daily_free: toml::Spanned<toml::Value>,
}

impl Default for CreditRules {
    fn default() -> Self {
        Self::parse(SHIPPED, "assets/credits.toml").unwrap_or(Self {
            trial_days: 2,
            trial_daily_free: 3,
            vip_daily_free: None,
        })
    }
}

impl CreditRules {
    pub fn parse(text: &str, file: &str) -> Result<Self, DataFileError> {
        let at = Pointer { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| at.toml(&e))?;
        let ranged = |v: &toml::Spanned<i64>, what: &str, max: i64| {
            let n = *v.get_ref();
            if (0..=max).contains(&n) {
                Ok(n as u32)
            } else {
                Err(at.at(v.span().start, format!("{what} must be 0 to {max}")))
            }
        };
        Ok(Self {
            trial_days: ranged(&raw.trial.days, "trial days", 365)?,
            trial_daily_free: ranged(&raw.trial.daily_free, "trial daily_free", 1000)?,
            vip_daily_free: match raw.vip.daily_free.get_ref() {
                toml::Value::String(s) if s == "unlimited" => None,
                toml::Value::Integer(n) => Some(ranged(
                    &toml::Spanned::new(raw.vip.daily_free.span(), *n),
                    "vip daily_free",
                    1000,
                )?),
                _ => {
                    return Err(at.at(
                        raw.vip.daily_free.span().start,
                        "vip daily_free must be \"unlimited\" or 0 to 1000",
                    ))
                }
            },
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, DataFileError> {
        let (text, file) = crate::game::data_file::read(path)?;
        Self::parse(&text, &file)
    }
}

/// A player's free jobs and VIP, as stored (`gen_players`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowance {
    /// When the player's trial began: their first command.
    pub since_ms: i64,
    pub vip_until_ms: Option<i64>,
    /// The UTC day `used` counts.
    pub day: Option<i32>,
    /// Free jobs used that day, per workflow.
    pub used: Vec<(Workflow, u32)>,
    /// The workflow the player chose for their next job, and when.
    pub chosen: Option<(Workflow, i64)>,
}

/// Why a job is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Free {
    Trial,
    Vip,
    Daily,
}

impl Free {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trial => "trial",
            Self::Vip => "vip",
            Self::Daily => "daily allowance",
        }
    }
}

/// How long a chosen workflow waits for its prompt or picture.
pub const CHOICE_LASTS_MS: i64 = 3_600_000;

impl Allowance {
    /// The workflow chosen for the next job, if chosen within the hour.
    pub fn chosen(&self, now_ms: i64) -> Option<Workflow> {
        self.chosen
            .filter(|(_, at)| now_ms.saturating_sub(*at) < CHOICE_LASTS_MS)
            .map(|(w, _)| w)
    }

    pub fn on_trial(&self, rules: &CreditRules, now_ms: i64) -> bool {
        now_ms < self.trial_ends_ms(rules)
    }

    pub fn trial_ends_ms(&self, rules: &CreditRules) -> i64 {
        self.since_ms
            .saturating_add(i64::from(rules.trial_days).saturating_mul(DAY_MS))
    }

    pub fn is_vip(&self, now_ms: i64) -> bool {
        self.vip_until_ms.is_some_and(|u| now_ms < u)
    }

    /// Free jobs used today on `w` (0 on a new day).
    pub fn used_today(&self, w: Workflow, now_ms: i64) -> u32 {
        if self.day != Some(utc_day(now_ms)) {
            return 0;
        }
        self.used
            .iter()
            .find(|(x, _)| *x == w)
            .map_or(0, |(_, n)| *n)
    }

    fn used_today_in_all(&self, now_ms: i64) -> u32 {
        if self.day != Some(utc_day(now_ms)) {
            return 0;
        }
        self.used.iter().map(|(_, n)| n).sum()
    }

    /// How many more free jobs `w` has today, and under which rule; the
    /// best rule that still has one wins.
    pub fn free_left(
        &self,
        rules: &CreditRules,
        w: &WorkflowDef,
        now_ms: i64,
    ) -> (u32, Option<Free>) {
        let mut best = (0, None);
        let mut consider = |left: u32, why: Free| {
            if left > best.0 {
                best = (left, Some(why));
            }
        };
        if self.on_trial(rules, now_ms) {
            consider(
                rules
                    .trial_daily_free
                    .saturating_sub(self.used_today_in_all(now_ms)),
                Free::Trial,
            );
        }
        let used = self.used_today(w.id, now_ms);
        if self.is_vip(now_ms) {
            consider(
                match rules.vip_daily_free {
                    None => UNLIMITED,
                    Some(cap) => cap.max(w.daily_free).saturating_sub(used),
                },
                Free::Vip,
            );
        }
        consider(w.daily_free.saturating_sub(used), Free::Daily);
        best
    }

    /// Counts one free job on `w` today.
    pub fn use_one(&mut self, w: Workflow, now_ms: i64) {
        let today = utc_day(now_ms);
        if self.day != Some(today) {
            self.day = Some(today);
            self.used.clear();
        }
        match self.used.iter_mut().find(|(x, _)| *x == w) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.used.push((w, 1)),
        }
    }

    /// VIP extended by `days` from now or from its current end, whichever
    /// is later; `days == 0` ends it now.
    pub fn extend_vip(&mut self, days: u32, now_ms: i64) {
        self.vip_until_ms = if days == 0 {
            None
        } else {
            let from = self.vip_until_ms.filter(|u| *u > now_ms).unwrap_or(now_ms);
            Some(from.saturating_add(i64::from(days).saturating_mul(DAY_MS)))
        };
    }

    /// `used` as stored: `workflow:count` pairs, comma-separated.
    pub fn used_text(&self) -> String {
        self.used
            .iter()
            .map(|(w, n)| format!("{w}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads `used_text` back; `None` if it is not in that form.
    pub fn parse_used(text: &str) -> Option<Vec<(Workflow, u32)>> {
        if text.is_empty() {
            return Some(Vec::new());
        }
        text.split(',')
            .map(|pair| {
                let (w, n) = pair.split_once(':')?;
                crate::game::generation::workflow::valid_id(w)
                    .then(|| Some((Workflow::intern(w), n.parse().ok()?)))?
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::generation::workflow::Workflows;
    use proptest::prelude::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC

    fn image(daily_free: u32) -> WorkflowDef {
        let mut w = (**Workflows::shipped().unwrap().get("image").unwrap()).clone();
        w.daily_free = daily_free;
        w
    }

    fn rules() -> CreditRules {
        CreditRules {
            trial_days: 2,
            trial_daily_free: 3,
            vip_daily_free: Some(20),
        }
    }

    #[test]
    fn the_shipped_rules_give_vips_unlimited_free_jobs() {
        assert_eq!(
            CreditRules::default(),
            CreditRules {
                vip_daily_free: None,
                ..rules()
            }
        );
        let mut a = Allowance::default();
        a.extend_vip(1, T0);
        let w = image(0);
        for _ in 0..500 {
            assert_eq!(
                a.free_left(&CreditRules::default(), &w, T0),
                (UNLIMITED, Some(Free::Vip))
            );
            a.use_one(w.id, T0);
        }
        // A cap is an option in the file; a bad value is named with its line.
        let capped = CreditRules::parse(
            "[trial]\ndays = 2\ndaily_free = 3\n[vip]\ndaily_free = 20\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(capped, rules());
        let bad = CreditRules::parse(
            "[trial]\ndays = 2\ndaily_free = 3\n[vip]\ndaily_free = \"lots\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("c.toml:5") && bad.contains("unlimited"),
            "{bad}"
        );
    }

    #[test]
    fn a_trial_then_the_workflows_allowance_then_vip() {
        let r = rules();
        let w = image(5);
        let mut a = Allowance {
            since_ms: T0,
            ..Default::default()
        };
        // Trial: 3 a day on anything (the workflow's own 5 is better still).
        assert_eq!(a.free_left(&r, &image(0), T0), (3, Some(Free::Trial)));
        assert_eq!(a.free_left(&r, &w, T0), (5, Some(Free::Daily)));
        // Day 3: the trial is over.
        let day3 = T0 + 2 * DAY_MS;
        assert_eq!(a.free_left(&r, &image(0), day3), (0, None));
        assert_eq!(a.free_left(&r, &w, day3), (5, Some(Free::Daily)));
        for _ in 0..5 {
            a.use_one(w.id, day3);
        }
        assert_eq!(a.free_left(&r, &w, day3), (0, None));
        assert_eq!(
            a.free_left(&r, &w, day3 + DAY_MS),
            (5, Some(Free::Daily)),
            "a new day"
        );
        a.extend_vip(7, day3);
        assert_eq!(
            a.free_left(&r, &w, day3),
            (15, Some(Free::Vip)),
            "20 a day, 5 used"
        );
        assert!(!a.is_vip(day3 + 7 * DAY_MS), "expired");
    }

    #[test]
    fn vip_extends_from_its_end_and_zero_ends_it() {
        let mut a = Allowance::default();
        a.extend_vip(2, T0);
        a.extend_vip(3, T0 + DAY_MS);
        assert_eq!(a.vip_until_ms, Some(T0 + 5 * DAY_MS));
        a.extend_vip(0, T0);
        assert_eq!(a.vip_until_ms, None);
    }

    #[test]
    fn used_counts_round_trip_as_text() {
        let mut a = Allowance::default();
        a.use_one(Workflow::intern("image"), T0);
        a.use_one(Workflow::intern("image"), T0);
        a.use_one(Workflow::intern("upscale"), T0);
        assert_eq!(a.used_text(), "image:2,upscale:1");
        assert_eq!(Allowance::parse_used(&a.used_text()), Some(a.used.clone()));
        assert_eq!(Allowance::parse_used("image:x"), None);
        assert_eq!(Allowance::parse_used("Bad!:1"), None);
    }

    proptest! {
        /// Whatever the rules and the days a player asks on, they never get
        /// more free jobs in a day than the best rule that applies allows,
        /// and never any once every rule is used up.
        #[test]
        fn never_more_free_jobs_than_the_rules_allow(
            trial_days in 0u32..4, trial_free in 0u32..5, vip_free in 0u32..8, daily in 0u32..6,
            vip_days in 0u32..3, asks in proptest::collection::vec((0i64..6, 0i64..86_400), 1..120),
        ) {
            let r = CreditRules { trial_days, trial_daily_free: trial_free, vip_daily_free: Some(vip_free) };
            let w = image(daily);
            let mut a = Allowance { since_ms: T0, ..Default::default() };
            a.extend_vip(vip_days, T0);
            let mut per_day = std::collections::BTreeMap::new();
            let mut asks = asks;
            asks.sort();
            for (day, secs) in asks {
                let now = T0 + day * DAY_MS + secs * 1000;
                if a.free_left(&r, &w, now).0 > 0 {
                    a.use_one(w.id, now);
                    *per_day.entry(day).or_insert(0u32) += 1;
                }
            }
            for (day, got) in per_day {
                let start = T0 + day * DAY_MS;
                let trial = if day < i64::from(trial_days) { trial_free } else { 0 };
                let vip = if day < i64::from(vip_days) { vip_free.max(daily) } else { 0 };
                // Within one UTC day the trial or VIP may end part-way, so
                // the bound is the best rule in force at the day's start.
                let bound = trial.max(vip).max(daily);
                prop_assert!(got <= bound, "day {day}: {got} free jobs, bound {bound} (start {start})");
            }
        }
    }
}
