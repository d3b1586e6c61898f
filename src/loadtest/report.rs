//! The result of a run: numbers (throughput, latency percentiles, errors by
//! code, a per-second timeline), the invariant check, the thresholds and
//! whether they held, and the baseline comparison. Printed as a table,
//! written as JSON, and rendered as HTML by `html.rs`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::driver::Driven;
use super::scenario::Thresholds;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondRow {
    pub second: usize,
    pub sent: u64,
    pub ok: u64,
    /// Service failures this second (refusals by the rules are not failures).
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub rule: String,
    pub actual: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InvariantResult {
    /// Whether the check could run (HTTP without database access replays only).
    pub checked: Vec<String>,
    pub violations: Vec<String>,
    /// Players named by a violation.
    pub users: Vec<String>,
    /// Ledger totals by currency and reason, from the database.
    pub ledger: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineComparison {
    pub rate: f64,
    pub latency: Latency,
    pub ratio_throughput: f64,
    pub ratio_p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub machine: String,
    pub duration_secs: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub dropped: u64,
    /// Answered commands per second (ok and refused alike).
    pub rate: f64,
    pub error_ratio: f64,
    pub latency: Latency,
    pub by_command: BTreeMap<String, Latency>,
    pub timeline: Vec<SecondRow>,
    /// (percentile, ms) pairs for the percentile spectrum plot.
    pub spectrum: Vec<(f64, f64)>,
    pub invariants: InvariantResult,
    pub thresholds: Vec<ThresholdResult>,
    pub baseline: Option<BaselineComparison>,
}

/// Codes that count against the failure ratio: the service failing, not
/// the game saying no (`already_claimed`, `insufficient_funds` are answers).
/// `disabled` counts: a server that cannot run the scenario's commands is
/// not serving them.
pub fn is_failure(code: &str) -> bool {
    if code == "ok" {
        return false;
    }
    match serde_json::from_value::<actors::ErrorCode>(code.into()) {
        Ok(actors::ErrorCode::Disabled) | Err(_) => true,
        Ok(c) => !c.is_refusal(),
    }
}

impl Report {
    pub fn build(scenario: &str, target: String, driven: &Driven) -> Self {
        let r = &driven.recording;
        let secs = driven.elapsed.as_secs_f64().max(1e-9);
        let answered = r.all.len();
        let failures: u64 = r
            .errors
            .iter()
            .filter(|(c, _)| is_failure(c))
            .map(|(_, n)| n)
            .sum();
        let timeline = r
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| SecondRow {
                second: i,
                sent: s.sent,
                ok: s.ok,
                failed: s.failed,
                p50_ms: s.latency.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: s.latency.value_at_quantile(0.99) as f64 / 1000.0,
            })
            .collect();
        let spectrum = [
            0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
        ]
        .iter()
        .map(|p| (*p, r.all.value_at_percentile(*p) as f64 / 1000.0))
        .collect();
        Self {
            scenario: scenario.to_owned(),
            target,
            machine: machine(),
            duration_secs: secs,
            sent: answered + r.dropped,
            ok: r.ok,
            errors: r
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            dropped: r.dropped,
            rate: answered as f64 / secs,
            error_ratio: (failures + r.dropped) as f64 / (answered + r.dropped).max(1) as f64,
            latency: Latency::of(&r.all),
            by_command: r
                .by_command
                .iter()
                .map(|(k, h)| ((*k).to_owned(), Latency::of(h)))
                .collect(),
            timeline,
            spectrum,
            invariants: InvariantResult::default(),
            thresholds: Vec::new(),
            baseline: None,
        }
    }

    /// Evaluates the scenario's thresholds and those given on the command line.
    pub fn judge(&mut self, scenario: &Thresholds, extra: &[Threshold]) {
        let mut rules: Vec<Threshold> = Vec::new();
        if let Some(v) = scenario.p99_ms {
            rules.push(Threshold {
                metric: Metric::P99,
                op: Op::Lt,
                value: v,
            });
        }
        if let Some(v) = scenario.error_rate {
            rules.push(Threshold {
                metric: Metric::Errors,
                op: Op::Lt,
                value: v,
            });
        }
        if let Some(v) = scenario.min_rate {
            rules.push(Threshold {
                metric: Metric::Rate,
                op: Op::Ge,
                value: v,
            });
        }
        rules.extend_from_slice(extra);
        self.thresholds = rules
            .iter()
            .map(|t| {
                let actual = match t.metric {
                    Metric::P50 => self.latency.p50_ms,
                    Metric::P99 => self.latency.p99_ms,
                    Metric::Max => self.latency.max_ms,
                    Metric::Errors => self.error_ratio,
                    Metric::Rate => self.rate,
                };
                ThresholdResult {
                    rule: t.to_string(),
                    actual,
                    passed: t.op.holds(actual, t.value),
                }
            })
            .collect();
    }

    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed) && self.invariants.violations.is_empty()
    }

    pub fn print(&self) {
        println!();
        println!(
            "scenario {} against {} for {:.1} s on {}",
            self.scenario, self.target, self.duration_secs, self.machine
        );
        println!(
            "  commands   {} sent, {} ok, {} dropped, {:.0}/s answered, failure ratio {:.4}%",
            self.sent,
            self.ok,
            self.dropped,
            self.rate,
            self.error_ratio * 100.0
        );
        let l = &self.latency;
        println!(
            "  latency    p50 {:.2} ms · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        println!("  {:<12} {:>10} {:>10}", "command", "p50 ms", "p99 ms");
        for (name, l) in &self.by_command {
            println!("  {:<12} {:>10.2} {:>10.2}", name, l.p50_ms, l.p99_ms);
        }
        if !self.errors.is_empty() {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("  answers    {}", e.join(" · "));
        }
        if let Some(b) = &self.baseline {
            println!(
                "  baseline   {:.0}/s, p99 {:.2} ms  →  kokoro/baseline: throughput {:.2}x, p99 {:.4}x (kokoro's p99 {:.0}x lower)",
                b.rate, b.latency.p99_ms, b.ratio_throughput, b.ratio_p99, 1.0 / b.ratio_p99.max(1e-9)
            );
        }
        for c in &self.invariants.checked {
            println!("  checked    {c}");
        }
        for v in &self.invariants.violations {
            println!("  VIOLATION  {v}");
        }
        for t in &self.thresholds {
            println!(
                "  threshold  {} (actual {:.4}): {}",
                t.rule,
                t.actual,
                if t.passed { "held" } else { "FAILED" }
            );
        }
        println!(
            "  result     {}",
            if self.passed() { "PASS" } else { "FAIL" }
        );
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| format!(", {} GiB", kb / 1024 / 1024));
    format!("{cores} cores{mem}, {}", std::env::consts::OS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    P50,
    P99,
    Max,
    Errors,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Self::Lt => actual < limit,
            Self::Le => actual <= limit,
            Self::Gt => actual > limit,
            Self::Ge => actual >= limit,
        }
    }
}

/// `p99 < 10ms`, `errors < 0.1%`, `rate >= 20000`. Values are kept in the
/// report's units: milliseconds, a ratio, commands per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        };
        match self.metric {
            Metric::P50 => write!(f, "p50 {op} {}ms", self.value),
            Metric::P99 => write!(f, "p99 {op} {}ms", self.value),
            Metric::Max => write!(f, "max {op} {}ms", self.value),
            Metric::Errors => write!(f, "errors {op} {}%", self.value * 100.0),
            Metric::Rate => write!(f, "rate {op} {}", self.value),
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (name, rest) = s
            .split_once(['<', '>'])
            .ok_or_else(|| format!("{s:?}: expected e.g. \"p99 < 10ms\""))?;
        let op_start = name.len();
        let (op, value) = match rest.strip_prefix('=') {
            Some(value) => (&s[op_start..op_start + 2], value),
            None => (&s[op_start..op_start + 1], rest),
        };
        let op = match op {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return Err(format!("{s:?}: unknown comparison")),
        };
        let metric = match name.trim() {
            "p50" => Metric::P50,
            "p99" => Metric::P99,
            "max" => Metric::Max,
            "errors" => Metric::Errors,
            "rate" => Metric::Rate,
            other => {
                return Err(format!(
                    "{s:?}: unknown metric {other:?}; use p50, p99, max, errors or rate"
                ))
            }
        };
        let v = value.trim();
        let (num, scale) = match metric {
            Metric::Errors => match v.strip_suffix('%') {
                Some(n) => (n, 0.01),
                None => (v, 1.0),
            },
            Metric::Rate => (v.strip_suffix("/s").unwrap_or(v), 1.0),
            _ => {
                if let Some(n) = v.strip_suffix("ms") {
                    (n, 1.0)
                } else if let Some(n) = v.strip_suffix("us") {
                    (n, 0.001)
                } else if let Some(n) = v.strip_suffix('s') {
                    (n, 1000.0)
                } else {
                    return Err(format!("{s:?}: give latency a unit (ms, us or s)"));
                }
            }
        };
        let value: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        Ok(Self {
            metric,
            op,
            value: value * scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_units() {
        assert_eq!(
            "p99 < 10ms".parse::<Threshold>(),
            Ok(Threshold {
                metric: Metric::P99,
                op: Op::Lt,
                value: 10.0
            })
        );
        assert_eq!(
            "p99<=1s".parse::<Threshold>().map(|t| (t.op, t.value)),
            Ok((Op::Le, 1000.0))
        );
        assert_eq!(
            "errors < 0.1%".parse::<Threshold>().map(|t| t.value),
            Ok(0.001)
        );
        assert_eq!(
            "rate >= 20000"
                .parse::<Threshold>()
                .map(|t| (t.op, t.value)),
            Ok((Op::Ge, 20000.0))
        );
        assert!(
            "p99 < 10".parse::<Threshold>().is_err(),
            "latency needs a unit"
        );
        assert!("speed > 3".parse::<Threshold>().is_err());
    }
}
