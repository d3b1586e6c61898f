//! Turns a scenario into a stream of commands: which player (Zipf-skewed, so
//! a few are very hot), which command (by the mix's weights), which
//! arguments. Each command carries a unique id, so the run can later prove
//! that every acknowledged command is durable.

use actors::game::economy::EconomyCommand;
use actors::{Command, CommandId, CommandKind, GuildId, UserId, UserKey};
use rand::distr::Distribution;
use rand::Rng;
use serde_json::Value;

use super::scenario::{ranged_arg, Scenario};

pub struct Workload {
    users: u64,
    guilds: u64,
    zipf: Option<rand_distr::Zipf<f64>>,
    /// Cumulative weights of the mix, for picking by a uniform draw.
    cumulative: Vec<(f64, usize)>,
    scenario: Scenario,
    run_id: u32,
}

impl Workload {
    pub fn new(scenario: &Scenario) -> Self {
        let zipf = (scenario.zipf > 0.0)
            .then(|| rand_distr::Zipf::new(scenario.users as f64, scenario.zipf).ok())
            .flatten();
        let mut acc = 0.0;
        let cumulative = scenario
            .mix
            .iter()
            .enumerate()
            .map(|(i, m)| {
                acc += m.weight;
                (acc, i)
            })
            .collect();
        Self {
            users: scenario.users,
            guilds: scenario.guilds,
            zipf,
            cumulative,
            scenario: scenario.clone(),
            run_id: rand::random(),
        }
    }

    /// Player `n` (0-based) of guild `g` (0-based).
    pub fn key(g: u64, n: u64) -> UserKey {
        let guild = GuildId::new(g as i64 + 1).unwrap_or_else(|_| unreachable!("positive"));
        let user = UserId::new(n as i64 + 1).unwrap_or_else(|_| unreachable!("positive"));
        UserKey::new(guild, user)
    }

    fn pick_user(&self, rng: &mut impl Rng) -> u64 {
        match &self.zipf {
            // Zipf samples ranks 1..=n; rank 1 is the hottest player.
            Some(z) => (z.sample(rng) as u64).clamp(1, self.users) - 1,
            None => rng.random_range(0..self.users),
        }
    }

    /// The `seq`th command of this run.
    pub fn next(&self, seq: u64, rng: &mut impl Rng) -> Command {
        let guild = rng.random_range(0..self.guilds);
        let who = self.pick_user(rng);
        let draw = rng.random_range(0.0..100.0);
        let idx = self
            .cumulative
            .iter()
            .find(|(c, _)| draw < *c)
            .map_or(self.cumulative.len() - 1, |(_, i)| *i);
        let entry = &self.scenario.mix[idx];
        let mut args = entry.args.clone();
        if let Value::Object(map) = &mut args {
            if entry.command == "give" {
                let mut to = rng.random_range(0..self.users - 1);
                if to >= who {
                    to += 1;
                }
                map.insert("to".into(), Value::String((to + 1).to_string()));
            }
            if let Some(arg) = ranged_arg(&entry.command) {
                let (lo, hi) = entry.amount_range;
                map.insert(arg.into(), Value::from(rng.random_range(lo..=hi)));
            }
        }
        // Validated when the scenario was loaded, so this parse cannot fail;
        // fall back to a harmless read if it somehow does.
        let kind = CommandKind::parse(&entry.command, &args)
            .unwrap_or(CommandKind::Economy(EconomyCommand::Balance));
        let id = format!("lt-{:08x}-{seq}", self.run_id)
            .parse::<CommandId>()
            .ok();
        Command {
            id,
            key: Self::key(guild, who),
            kind,
        }
    }
}

/// Commands whose "ok" means something was written: the durability check
/// looks for each of them in storage.
pub fn writes_when_ok(kind: &CommandKind) -> bool {
    kind.writes_when_ok()
}
