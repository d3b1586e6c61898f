//! `kokoro bench`: durable commands per second and latency through the same
//! dispatch path the HTTP handler uses, and, in the same run and on the same
//! backend, a baseline that does what a conventional bot does: one database
//! transaction per command (lock both rows, update, ledger rows, commit).
//!
//! The workload is `give` of 1 gold between random players: every command
//! writes (debit, credit, two ledger rows), so every acknowledgement is a
//! durable change. Each run gets a fresh database, dropped afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::game::economy::EconomyCommand;
use actors::store::{Store, StoreOptions};
use actors::{Command, CommandKind, GuildId, Runtime, RuntimeConfig, UserId, UserKey};
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::loadtest::driver::histogram;
use crate::scratch::Scratch;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// PostgreSQL server to bench on (`postgres://…/postgres`: fresh databases
    /// are created and dropped there). Unset: SQLite in a temporary directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Players the commands are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Commands in flight at once (closed loop).
    #[arg(long, default_value_t = 1024)]
    pub concurrency: usize,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Skip the per-command-transaction baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Also run at half the measured maximum rate (open loop) and report p99.
    #[arg(long)]
    pub paced: bool,
    /// Group-commit transactions in flight at once (0: per backend).
    #[arg(long, default_value_t = 0)]
    pub commit_parallel: usize,
    /// Also activate this many players and report resident memory per player
    /// and cold-activation latency (0: skip).
    #[arg(long, default_value_t = 0)]
    pub resident: u64,
}

const GUILD: i64 = 1;

/// Latency and throughput of one phase.
#[derive(Debug, Clone)]
pub struct Measured {
    pub label: String,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn from(label: &str, hist: &Histogram<u64>, ok: u64, errors: u64, elapsed: Duration) -> Self {
        Self {
            label: label.to_owned(),
            ok,
            errors,
            elapsed,
            p50_us: hist.value_at_quantile(0.50),
            p99_us: hist.value_at_quantile(0.99),
            max_us: hist.max(),
        }
    }

    fn finish(
        label: &str,
        hist: &Mutex<Histogram<u64>>,
        ok: &AtomicU64,
        errors: &AtomicU64,
        elapsed: Duration,
    ) -> Self {
        let h = hist
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram());
        Self::from(
            label,
            &h,
            ok.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
            elapsed,
        )
    }

    fn print(&self) {
        println!(
            "{:<34} {:>10.0} cmd/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} ok, {} errors)",
            self.label,
            self.rate(),
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0,
            self.ok,
            self.errors
        );
    }
}

fn key(u: u64) -> UserKey {
    // Ids start at 1; the modulo keeps them positive.
    UserKey::new(
        GuildId::new(GUILD).unwrap_or_else(|_| unreachable!()),
        UserId::new(u as i64 + 1).unwrap_or_else(|_| unreachable!()),
    )
}

fn pick_pair(rng: &mut impl Rng, users: u64) -> (u64, u64) {
    let from = rng.random_range(0..users);
    let mut to = rng.random_range(0..users - 1);
    if to >= from {
        to += 1;
    }
    (from, to)
}

fn give(from: u64, to: u64) -> Command {
    let to = key(to).user;
    Command {
        id: None,
        key: key(from),
        kind: CommandKind::Economy(EconomyCommand::Give { to, amount: 1 }),
    }
}

/// Creates `users` players with a large balance and their welcome ledger rows, in bulk.
pub async fn seed(store: &Store, users: u64) -> anyhow::Result<()> {
    let users = users as i64;
    let gold: i64 = 1_000_000_000;
    let sql_users = "INSERT INTO users (guild_id, user_id, gold, gems, xp, level, daily_day, daily_streak, created_ms, updated_ms) \
                     SELECT 1, n, $1, 0, 0, 0, NULL, 0, 0, 0 FROM ids";
    let sql_ledger =
        "INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, at_ms) \
                      SELECT 1, n, 'gold', $1, $1, 'welcome', 0 FROM ids";
    // Only the id generator differs between the backends.
    macro_rules! insert_all {
        ($pool:expr, $cte:expr) => {{
            let mut tx = $pool.begin().await?;
            for sql in [sql_users, sql_ledger] {
                sqlx::query(&format!("{}{sql}", $cte))
                    .bind(gold)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }};
    }
    match store {
        Store::Sqlite(pool) => {
            insert_all!(pool, format!("WITH RECURSIVE ids(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM ids WHERE n < {users}) "))
        }
        Store::Postgres(pool) => {
            insert_all!(
                pool,
                format!("WITH ids(n) AS (SELECT generate_series(1, {users})::BIGINT) ")
            );
            sqlx::query("ANALYZE").execute(pool).await?;
        }
    }
    Ok(())
}

/// Runs `op` from `concurrency` workers for `seconds`, timing each call.
async fn closed_loop<F, Fut>(
    label: &str,
    concurrency: usize,
    seconds: u64,
    users: u64,
    op: F,
) -> Measured
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hist = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, stop, ok, errors, hist) = (
                op.clone(),
                stop.clone(),
                ok.clone(),
                errors.clone(),
                hist.clone(),
            );
            tokio::spawn(async move {
                let mut local = histogram();
                let mut rng = rand::rngs::SmallRng::from_os_rng();
                while !stop.load(Ordering::Relaxed) {
                    let (from, to) = pick_pair(&mut rng, users);
                    let t = Instant::now();
                    let good = op(from, to).await;
                    let _ = local.record(t.elapsed().as_micros() as u64);
                    if good { &ok } else { &errors }.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut h) = hist.lock() {
                    let _ = h.add(&local);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for w in workers {
        let _ = w.await;
    }
    Measured::finish(label, &hist, &ok, &errors, elapsed)
}

/// Open loop at `rate` commands/s: latency counts from when each command was
/// due, so a stall shows as latency instead of hiding as a slower rate.
async fn paced(
    label: &str,
    runtime: Arc<Runtime>,
    rate: f64,
    seconds: u64,
    users: u64,
) -> Measured {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let hist = Arc::new(Mutex::new(histogram()));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let total = (rate * seconds as f64) as u64;
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (from, to) = pick_pair(&mut rng, users);
        let (rt, hist, ok, errors) = (runtime.clone(), hist.clone(), ok.clone(), errors.clone());
        tasks.spawn(async move {
            let reply = rt.dispatch(give(from, to)).await;
            let us = due.elapsed().as_micros() as u64;
            if let Ok(mut h) = hist.lock() {
                let _ = h.record(us);
            }
            if reply.ok { &ok } else { &errors }.fetch_add(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    Measured::finish(label, &hist, &ok, &errors, elapsed)
}

fn print_commit_stats(rt: &Runtime) {
    let p = rt.commit_progress();
    let (batches, writes, us) = (
        p.batches.load(Ordering::Relaxed),
        p.writes.load(Ordering::Relaxed),
        p.commit_us.load(Ordering::Relaxed),
    );
    if batches > 0 {
        println!(
            "  group commit: {batches} batches, mean {:.0} WriteSets per batch, mean commit {:.2} ms",
            writes as f64 / batches as f64,
            us as f64 / batches as f64 / 1000.0,
        );
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let admin = args.database_url.as_deref();
    let backend = if admin.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "kokoro bench: {backend}, {} players, {} in flight, {} s per phase, {} cores",
        args.users,
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let opts = StoreOptions::default();
    // First, while the process holds nothing else: memory the throughput
    // phases freed would be reused by the players and hide their cost.
    if args.resident > 0 {
        resident(admin, args.resident, args.concurrency, &opts).await?;
    }

    let scratch = Scratch::new(admin).await?;
    let store = scratch.store(&opts).await?;
    store.migrate().await?;
    seed(&store, args.users).await?;
    let mut config = RuntimeConfig {
        mailbox_capacity: 1024,
        ..Default::default()
    };
    config.commit.parallel = args.commit_parallel;
    let runtime = Arc::new(Runtime::start(store.clone(), config).await?);
    let rt = runtime.clone();
    let kokoro = closed_loop(
        "kokoro (actors + group commit)",
        args.concurrency,
        args.seconds,
        args.users,
        move |from, to| {
            let rt = rt.clone();
            async move { rt.dispatch(give(from, to)).await.ok }
        },
    )
    .await;
    kokoro.print();
    print_commit_stats(&runtime);
    let paced_result = if args.paced {
        let half = kokoro.rate() / 2.0;
        let m = paced(
            &format!("kokoro paced at {half:.0}/s (half max)"),
            runtime.clone(),
            half,
            args.seconds,
            args.users,
        )
        .await;
        m.print();
        Some(m)
    } else {
        None
    };
    runtime.settle(Duration::from_secs(30)).await?;
    let audit = runtime.audit().await?;
    anyhow::ensure!(
        audit.violations().is_empty(),
        "invariants broken after the run: {:?}",
        audit.violations()
    );
    println!(
        "  invariants after the run: ok ({} transfers in flight)",
        audit.pending_transfers
    );
    if let Some(rt) = Arc::into_inner(runtime) {
        rt.shutdown().await;
    }
    scratch.cleanup().await;

    if !args.no_baseline {
        let scratch = Scratch::new(admin).await?;
        let store = scratch.store(&opts).await?;
        store.migrate().await?;
        seed(&store, args.users).await?;
        // A conventional bot runs one transaction per command on a pool of the same size.
        let conventional = Arc::new(crate::loadtest::baseline::Conventional {
            store: store.clone(),
            config: RuntimeConfig::default(),
            guild: Default::default(),
        });
        let base = closed_loop(
            "baseline (1 transaction / command)",
            args.concurrency,
            args.seconds,
            args.users,
            move |from, to| {
                let conventional = conventional.clone();
                async move { conventional.send(&give(from, to)).await.ok }
            },
        )
        .await;
        base.print();
        println!(
            "ratio kokoro/baseline: throughput {:.1}x, p99 {:.2}x",
            kokoro.rate() / base.rate().max(1e-9),
            kokoro.p99_us as f64 / base.p99_us.max(1) as f64
        );
        store.close().await;
        scratch.cleanup().await;
    }
    if let Some(p) = paced_result {
        println!(
            "p99 at half the maximum rate: {:.2} ms",
            p.p99_us as f64 / 1000.0
        );
    }

    Ok(())
}

/// Activates `n` existing players and reports memory per resident player and
/// cold-activation latency.
async fn resident(
    admin: Option<&str>,
    n: u64,
    concurrency: usize,
    opts: &StoreOptions,
) -> anyhow::Result<()> {
    let scratch = Scratch::new(admin).await?;
    let store = scratch.store(opts).await?;
    store.migrate().await?;
    seed(&store, n).await?;
    let runtime = Arc::new(
        Runtime::start(
            store,
            RuntimeConfig {
                max_resident: n as usize + 1,
                ..Default::default()
            },
        )
        .await?,
    );
    let before = rss_bytes();
    let next = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (rt, next, hist) = (runtime.clone(), next.clone(), hist.clone());
            tokio::spawn(async move {
                let mut local = histogram();
                loop {
                    let u = next.fetch_add(1, Ordering::Relaxed);
                    if u >= n {
                        break;
                    }
                    let t = Instant::now();
                    let _ = rt
                        .dispatch(Command {
                            id: None,
                            key: key(u),
                            kind: CommandKind::Economy(EconomyCommand::Balance),
                        })
                        .await;
                    let _ = local.record(t.elapsed().as_micros() as u64);
                }
                if let Ok(mut h) = hist.lock() {
                    let _ = h.add(&local);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    println!(
        "resident: {} players activated in {:.1} s; RSS {:.0} MiB -> {:.0} MiB (the whole process): {:.0} bytes per resident player; resident now {}",
        n,
        elapsed.as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / n as f64,
        runtime.resident()
    );
    println!(
        "cold activation (load + answer): p50 {:.2} ms, p99 {:.2} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
    if let Some(rt) = Arc::into_inner(runtime) {
        rt.shutdown().await;
    }
    scratch.cleanup().await;
    Ok(())
}
