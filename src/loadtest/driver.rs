//! Drives a target with a scenario's load model and records every answer.
//!
//! Closed model: N virtual players, each sending its next command when the
//! last was answered (plus think time). Open model: commands are due at a
//! fixed rate whether or not earlier ones were answered; latency counts from
//! when a command was due, not when it was sent, so a stalled server shows as
//! latency (the coordinated-omission correction wrk2 makes). A command that
//! cannot be sent on time (too many in flight, or the sender itself more
//! than a second behind) is counted as dropped, not quietly delayed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::{Command, Reply, UserKey};
use hdrhistogram::Histogram;
use rand::SeedableRng;

use super::scenario::{LoadModel, Scenario};
use super::target::Target;
use super::workload::{writes_when_ok, Workload};

/// Most commands in flight in the open model before arrivals are dropped.
const MAX_IN_FLIGHT: usize = 50_000;
/// How long the end of a run waits for answers still in flight.
const DRAIN_FOR: Duration = Duration::from_secs(30);

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits; these bounds are valid constants.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// One second of the run.
pub struct Second {
    pub sent: u64,
    pub ok: u64,
    /// Answers that are the service failing (busy, storage, internal…), not
    /// the game saying no (already claimed, insufficient funds).
    pub failed: u64,
    pub latency: Histogram<u64>,
}

/// Everything recorded during a run.
pub struct Recording {
    pub all: Histogram<u64>,
    pub by_command: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: BTreeMap<&'static str, u64>,
    pub ok: u64,
    pub dropped: u64,
    pub timeline: Vec<Second>,
    /// Acknowledged commands that wrote: each must be durable.
    pub acked_writes: Vec<(UserKey, String)>,
    /// A sample of acknowledged commands with their replies, for replay checks.
    pub acked_sample: Vec<(Command, Reply)>,
    window: Histogram<u64>,
}

const SAMPLE: usize = 2000;

impl Recording {
    fn new() -> Self {
        Self {
            all: histogram(),
            by_command: BTreeMap::new(),
            errors: BTreeMap::new(),
            ok: 0,
            dropped: 0,
            timeline: Vec::new(),
            acked_writes: Vec::new(),
            acked_sample: Vec::new(),
            window: histogram(),
        }
    }

    fn second(&mut self, s: usize) -> &mut Second {
        while self.timeline.len() <= s {
            self.timeline.push(Second {
                sent: 0,
                ok: 0,
                failed: 0,
                latency: histogram(),
            });
        }
        &mut self.timeline[s]
    }

    fn record(&mut self, at_second: usize, command: &Command, reply: &Reply, micros: u64) {
        let us = micros.max(1);
        let _ = self.all.record(us);
        let _ = self.window.record(us);
        let _ = self
            .by_command
            .entry(command.kind.name())
            .or_insert_with(histogram)
            .record(us);
        let sec = self.second(at_second);
        sec.sent += 1;
        let _ = sec.latency.record(us);
        if reply.ok {
            sec.ok += 1;
            self.ok += 1;
            if writes_when_ok(&command.kind) {
                if let Some(id) = &command.id {
                    self.acked_writes
                        .push((command.key, id.as_str().to_owned()));
                    if self.acked_sample.len() < SAMPLE {
                        self.acked_sample.push((command.clone(), reply.clone()));
                    }
                }
            }
        } else {
            if reply.code().is_some_and(|c| !c.is_refusal()) {
                sec.failed += 1;
            }
            *self.errors.entry(reply.outcome()).or_default() += 1;
        }
    }
}

/// Live counters for the progress line.
struct Live {
    sent: AtomicU64,
    in_flight: AtomicUsize,
}

pub struct Driven {
    pub recording: Recording,
    pub elapsed: Duration,
}

pub async fn drive(target: Arc<Target>, scenario: &Scenario, show_progress: bool) -> Driven {
    let workload = Arc::new(Workload::new(scenario));
    let rec = Arc::new(Mutex::new(Recording::new()));
    let live = Arc::new(Live {
        sent: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let started = Instant::now();
    let bar = show_progress.then(|| progress_bar(scenario, duration));
    let progress = bar
        .clone()
        .map(|bar| spawn_progress(bar, rec.clone(), live.clone(), started));
    match &scenario.model {
        LoadModel::Closed {
            concurrency,
            think_ms,
        } => {
            closed(
                target,
                workload,
                rec.clone(),
                live.clone(),
                *concurrency,
                Duration::from_millis(*think_ms),
                started,
                duration,
            )
            .await
        }
        LoadModel::Open { .. } => {
            open(
                target,
                workload,
                scenario,
                rec.clone(),
                live.clone(),
                started,
                duration,
            )
            .await
        }
    }
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let recording = match Arc::try_unwrap(rec) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        // A straggler still holds it (only after a drain timeout): take a copy of what we have.
        Err(shared) => {
            let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *r, Recording::new())
        }
    };
    Driven { recording, elapsed }
}

fn record(
    rec: &Mutex<Recording>,
    started: Instant,
    due: Instant,
    command: &Command,
    reply: &Reply,
) {
    let micros = due.elapsed().as_micros() as u64;
    let second = due.saturating_duration_since(started).as_secs() as usize;
    rec.lock()
        .unwrap_or_else(|e| e.into_inner())
        .record(second, command, reply, micros);
}

#[allow(clippy::too_many_arguments)]
async fn closed(
    target: Arc<Target>,
    workload: Arc<Workload>,
    rec: Arc<Mutex<Recording>>,
    live: Arc<Live>,
    concurrency: usize,
    think: Duration,
    started: Instant,
    duration: Duration,
) {
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (target, workload, rec, live) =
                (target.clone(), workload.clone(), rec.clone(), live.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::SmallRng::from_os_rng();
                while started.elapsed() < duration {
                    let seq = live.sent.fetch_add(1, Ordering::Relaxed);
                    let command = workload.next(seq, &mut rng);
                    let sent_at = Instant::now();
                    let reply = target.send(&command).await;
                    record(&rec, started, sent_at, &command, &reply);
                    if !think.is_zero() {
                        tokio::time::sleep(think).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
}

/// The open model's rate at `t` seconds: ramped up linearly, times any burst.
pub fn rate_at(scenario: &Scenario, t: f64) -> f64 {
    let LoadModel::Open {
        rate,
        ramp_secs,
        bursts,
    } = &scenario.model
    else {
        return 0.0;
    };
    let ramped = if *ramp_secs > 0.0 && t < *ramp_secs {
        rate * (0.1 + 0.9 * t / ramp_secs)
    } else {
        *rate
    };
    let burst = bursts
        .iter()
        .filter(|b| t >= b.at_secs && t < b.at_secs + b.secs)
        .map(|b| b.multiplier)
        .fold(1.0, f64::max);
    ramped * burst
}

async fn open(
    target: Arc<Target>,
    workload: Arc<Workload>,
    scenario: &Scenario,
    rec: Arc<Mutex<Recording>>,
    live: Arc<Live>,
    started: Instant,
    duration: Duration,
) {
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let end = duration.as_secs_f64();
    let mut t = 0.0;
    while t < end {
        let due = started + Duration::from_secs_f64(t);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let seq = live.sent.fetch_add(1, Ordering::Relaxed);
        let behind = Instant::now().saturating_duration_since(due);
        if live.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT
            || behind > Duration::from_secs(1)
        {
            rec.lock().unwrap_or_else(|e| e.into_inner()).dropped += 1;
        } else {
            let command = workload.next(seq, &mut rng);
            let (target, rec, live) = (target.clone(), rec.clone(), live.clone());
            live.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let reply = target.send(&command).await;
                record(&rec, started, due, &command, &reply);
                live.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        t += 1.0 / rate_at(scenario, t).max(0.001);
    }
    let drain_until = Instant::now() + DRAIN_FOR;
    while live.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn progress_bar(scenario: &Scenario, duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(scenario.name.clone());
    bar
}

fn spawn_progress(
    bar: indicatif::ProgressBar,
    rec: Arc<Mutex<Recording>>,
    live: Arc<Live>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_sent = 0;
        loop {
            tick.tick().await;
            let sent = live.sent.load(Ordering::Relaxed);
            let (errors, p99) = {
                let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
                let p99 = r.window.value_at_quantile(0.99);
                r.window.reset();
                let errors: Vec<String> =
                    r.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
                (errors.join(" "), p99)
            };
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(format!(
                "sent {sent} · {}/s · p99 {:.1} ms · in flight {} · not ok: {}",
                (sent - last_sent) * 4,
                p99 as f64 / 1000.0,
                live.in_flight.load(Ordering::Relaxed),
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors
                }
            ));
            last_sent = sent;
        }
    })
}
