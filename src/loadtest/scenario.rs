//! Load-test scenarios: TOML files that say how many players, which command
//! mix, how skewed the activity, what load model and for how long, and the
//! thresholds that decide pass or fail. Every mistake is reported with the
//! line it is on.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// `concurrency` virtual players, each waiting `think_ms` between commands.
    Closed { concurrency: usize, think_ms: u64 },
    /// Commands arrive at `rate` per second (after a linear `ramp_secs`),
    /// whether or not earlier ones were answered.
    Open {
        rate: f64,
        ramp_secs: f64,
        bursts: Vec<Burst>,
    },
}

/// A spell of `multiplier` times the open model's rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub at_secs: f64,
    pub secs: f64,
    pub multiplier: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MixEntry {
    pub command: String,
    /// Share of all commands, in percent.
    pub weight: f64,
    /// Fixed arguments; `give` gets a random recipient, and the command's
    /// ranged argument (see `ranged_arg`) a value drawn in `amount_range`.
    pub args: serde_json::Value,
    pub amount_range: (i64, i64),
}

/// The argument of a command that a scenario may give as `[min, max]`,
/// drawn anew for every command: `give`'s amount, a post's length.
pub fn ranged_arg(command: &str) -> Option<&'static str> {
    match command {
        "give" => Some("amount"),
        "message" => Some("chars"),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thresholds {
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub min_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub users: u64,
    pub guilds: u64,
    /// Zipf exponent of player activity; 0 for uniform.
    pub zipf: f64,
    pub duration_secs: f64,
    pub starting_gold: i64,
    /// Gems each simulated player starts with (what summons cost).
    pub starting_gems: i64,
    pub model: LoadModel,
    pub mix: Vec<MixEntry>,
    pub thresholds: Thresholds,
    /// Guild settings an admin sets in every guild before the run
    /// (roleplay channels, caps), as `config_set` takes them.
    pub guild_settings: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    users: Spanned<i64>,
    #[serde(default = "one")]
    guilds: Spanned<i64>,
    #[serde(default = "zero_f")]
    zipf: Spanned<f64>,
    duration_secs: Spanned<f64>,
    #[serde(default = "default_gold")]
    starting_gold: Spanned<i64>,
    #[serde(default = "zero_i")]
    starting_gems: Spanned<i64>,
    load: Spanned<RawLoad>,
    mix: Spanned<Vec<Spanned<RawMix>>>,
    #[serde(default)]
    thresholds: RawThresholds,
    #[serde(default)]
    guild_settings: BTreeMap<String, Spanned<String>>,
}

fn one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

fn zero_f() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}

fn zero_i() -> Spanned<i64> {
    Spanned::new(0..0, 0)
}

fn default_gold() -> Spanned<i64> {
    Spanned::new(0..0, 1000)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    model: Spanned<String>,
    concurrency: Option<Spanned<i64>>,
    #[serde(default = "zero_i")]
    think_ms: Spanned<i64>,
    rate: Option<Spanned<f64>>,
    #[serde(default = "zero_f")]
    ramp_secs: Spanned<f64>,
    #[serde(default)]
    burst: Vec<Spanned<RawBurst>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    at_secs: f64,
    secs: f64,
    multiplier: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    command: Spanned<String>,
    weight: Spanned<f64>,
    #[serde(default)]
    args: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    p99_ms: Option<f64>,
    error_rate: Option<f64>,
    min_rate: Option<f64>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, ScenarioError> {
        let at = |offset: usize, message: String| ScenarioError::At {
            file: file.to_owned(),
            line: actors::game::data_file::line_of(text, offset),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().to_owned())
        })?;
        let positive = |v: &Spanned<i64>, what: &str| -> Result<u64, ScenarioError> {
            u64::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    at(
                        v.span().start,
                        format!("{what} must be a positive whole number"),
                    )
                })
        };
        let users = positive(&raw.users, "users")?;
        if users < 2 {
            return Err(at(
                raw.users.span().start,
                "users must be at least 2 (give needs a recipient)".into(),
            ));
        }
        let guilds = positive(&raw.guilds, "guilds")?;
        if *raw.zipf.get_ref() < 0.0 || !raw.zipf.get_ref().is_finite() {
            return Err(at(
                raw.zipf.span().start,
                "zipf must be 0 (uniform) or positive".into(),
            ));
        }
        let duration_secs = *raw.duration_secs.get_ref();
        if !(duration_secs > 0.0 && duration_secs <= 86_400.0) {
            return Err(at(
                raw.duration_secs.span().start,
                "duration_secs must be above 0 and at most 86400".into(),
            ));
        }
        let starting_gold = *raw.starting_gold.get_ref();
        if !(0..=actors::game::economy::MAX_AMOUNT).contains(&starting_gold) {
            return Err(at(
                raw.starting_gold.span().start,
                "starting_gold must be between 0 and 10^12".into(),
            ));
        }
        let starting_gems = *raw.starting_gems.get_ref();
        if !(0..=actors::game::economy::MAX_AMOUNT).contains(&starting_gems) {
            return Err(at(
                raw.starting_gems.span().start,
                "starting_gems must be between 0 and 10^12".into(),
            ));
        }

        let load = raw.load.get_ref();
        let model = match load.model.get_ref().as_str() {
            "closed" => {
                let c = load.concurrency.as_ref().ok_or_else(|| {
                    at(
                        raw.load.span().start,
                        "a closed model needs concurrency".into(),
                    )
                })?;
                let concurrency = positive(c, "concurrency")? as usize;
                let think = *load.think_ms.get_ref();
                if think < 0 {
                    return Err(at(
                        load.think_ms.span().start,
                        "think_ms must not be negative".into(),
                    ));
                }
                LoadModel::Closed {
                    concurrency,
                    think_ms: think as u64,
                }
            }
            "open" => {
                let r = load
                    .rate
                    .as_ref()
                    .ok_or_else(|| at(raw.load.span().start, "an open model needs rate".into()))?;
                if !(*r.get_ref() > 0.0 && r.get_ref().is_finite()) {
                    return Err(at(
                        r.span().start,
                        "rate must be a positive number of commands per second".into(),
                    ));
                }
                let ramp = *load.ramp_secs.get_ref();
                if !(0.0..=duration_secs).contains(&ramp) {
                    return Err(at(
                        load.ramp_secs.span().start,
                        "ramp_secs must be between 0 and duration_secs".into(),
                    ));
                }
                let mut bursts = Vec::new();
                for b in &load.burst {
                    let v = b.get_ref();
                    if v.at_secs < 0.0
                        || v.secs <= 0.0
                        || v.multiplier <= 0.0
                        || v.at_secs + v.secs > duration_secs
                    {
                        return Err(at(b.span().start, "a burst needs at_secs >= 0, secs > 0, multiplier > 0, and must end within duration_secs".into()));
                    }
                    bursts.push(Burst {
                        at_secs: v.at_secs,
                        secs: v.secs,
                        multiplier: v.multiplier,
                    });
                }
                LoadModel::Open {
                    rate: *r.get_ref(),
                    ramp_secs: ramp,
                    bursts,
                }
            }
            other => {
                return Err(at(
                    load.model.span().start,
                    format!("model must be \"open\" or \"closed\", not {other:?}"),
                ))
            }
        };

        let mut mix = Vec::new();
        for m in raw.mix.get_ref() {
            let e = m.get_ref();
            let name = e.command.get_ref().as_str();
            if !actors::CommandKind::names().any(|n| n == name) {
                return Err(at(
                    e.command.span().start,
                    format!(
                        "unknown command {name:?}; known: {:?}",
                        actors::CommandKind::names().collect::<Vec<_>>()
                    ),
                ));
            }
            let w = *e.weight.get_ref();
            if !(w > 0.0 && w <= 100.0) {
                return Err(at(
                    e.weight.span().start,
                    "weight must be above 0 and at most 100 (percent)".into(),
                ));
            }
            let mut args = serde_json::Map::new();
            let mut amount_range = (1, 1);
            let ranged = ranged_arg(name);
            for (k, v) in &e.args {
                if ranged == Some(k.as_str()) {
                    let bad = || {
                        at(
                            m.span().start,
                            format!("{name} {k} must be a number or [min, max]"),
                        )
                    };
                    amount_range = match v {
                        toml::Value::Integer(n) => (*n, *n),
                        toml::Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                            (toml::Value::Integer(lo), toml::Value::Integer(hi)) if lo <= hi => {
                                (*lo, *hi)
                            }
                            _ => return Err(bad()),
                        },
                        _ => return Err(bad()),
                    };
                    continue;
                }
                let json =
                    serde_json::to_value(v).map_err(|e| at(m.span().start, e.to_string()))?;
                args.insert(k.clone(), json);
            }
            // Check the arguments the way the API would, with a placeholder recipient.
            let mut probe = args.clone();
            if name == "give" {
                probe.insert("to".into(), "2".into());
            }
            if let Some(arg) = ranged {
                // Both ends must be valid: check the lower here, the upper below.
                probe.insert(arg.into(), amount_range.1.into());
                actors::CommandKind::parse(name, &serde_json::Value::Object(probe.clone()))
                    .map_err(|err| at(m.span().start, format!("{name}: {err}")))?;
                probe.insert(arg.into(), amount_range.0.into());
            }
            actors::CommandKind::parse(name, &serde_json::Value::Object(probe))
                .map_err(|err| at(m.span().start, format!("{name}: {err}")))?;
            mix.push(MixEntry {
                command: name.to_owned(),
                weight: w,
                args: serde_json::Value::Object(args),
                amount_range,
            });
        }
        if mix.is_empty() {
            return Err(at(
                raw.mix.span().start,
                "mix must list at least one command".into(),
            ));
        }
        let total: f64 = mix.iter().map(|m| m.weight).sum();
        if (total - 100.0).abs() > 1e-6 {
            return Err(at(
                raw.mix.span().start,
                format!("mix weights must sum to 100, not {total}"),
            ));
        }
        let mut guild_settings = Vec::new();
        let mut probe = actors::game::guild::settings::GuildSettings::default();
        for (k, v) in &raw.guild_settings {
            let key = actors::game::guild::settings::Key::parse(k).ok_or_else(|| {
                at(
                    v.span().start,
                    format!("guild_settings: unknown setting {k:?}"),
                )
            })?;
            probe
                .set(key, v.get_ref())
                .map_err(|e| at(v.span().start, format!("guild_settings: {e}")))?;
            guild_settings.push((k.clone(), v.get_ref().clone()));
        }
        let t = raw.thresholds;
        Ok(Self {
            name: raw.name.into_inner(),
            description: raw.description,
            users,
            guilds,
            zipf: *raw.zipf.get_ref(),
            duration_secs,
            starting_gold,
            starting_gems,
            model,
            mix,
            thresholds: Thresholds {
                p99_ms: t.p99_ms,
                error_rate: t.error_rate,
                min_rate: t.min_rate,
            },
            guild_settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
users = 100
duration_secs = 2

[load]
model = "closed"
concurrency = 8

[[mix]]
command = "balance"
weight = 60

[[mix]]
command = "give"
weight = 40
args = { amount = [1, 5] }
"#;

    fn error_of(text: &str) -> String {
        Scenario::parse(text, "s.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_good_scenario_parses() {
        let s = Scenario::parse(GOOD, "s.toml").unwrap();
        assert_eq!(s.users, 100);
        assert_eq!(s.mix[1].amount_range, (1, 5));
        assert_eq!(
            s.model,
            LoadModel::Closed {
                concurrency: 8,
                think_ms: 0
            }
        );
    }

    #[test]
    fn an_unknown_command_is_named_with_its_line() {
        let e = error_of(&GOOD.replace("command = \"balance\"", "command = \"rob_bank\""));
        assert!(e.starts_with("s.toml:11:"), "{e}");
        assert!(e.contains("rob_bank"), "{e}");
    }

    #[test]
    fn weights_must_sum_to_100() {
        let e = error_of(&GOOD.replace("weight = 60", "weight = 50"));
        assert!(e.contains("sum to 100, not 90"), "{e}");
        assert!(e.starts_with("s.toml:10:"), "{e}");
    }

    #[test]
    fn a_negative_rate_is_refused_on_its_line() {
        let open = GOOD.replace(
            "model = \"closed\"\nconcurrency = 8",
            "model = \"open\"\nrate = -5",
        );
        let e = error_of(&open);
        assert!(e.starts_with("s.toml:8:"), "{e}");
        assert!(e.contains("rate must be a positive"), "{e}");
    }

    #[test]
    fn typos_and_bad_arguments_are_refused() {
        assert!(error_of(&GOOD.replace("users = 100", "userz = 100")).contains("unknown field"));
        assert!(error_of(&GOOD.replace("[1, 5]", "[5, 1]")).contains("amount"));
        let bad_item = GOOD.replace(
            "command = \"balance\"",
            "command = \"buy\"\nargs = { item = \"Bad Item\" }",
        );
        assert!(error_of(&bad_item).contains("item"));
    }

    #[test]
    fn shipped_scenarios_parse() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
            let path = entry.unwrap().path();
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
