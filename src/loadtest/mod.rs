//! `kokoro loadtest`: drives simulated players through the real command path
//! (in this process, or over HTTP against a running server), then proves the
//! game's invariants held and reports throughput and latency, optionally
//! against a one-transaction-per-command baseline on the same store.

pub mod baseline;
pub mod driver;
pub mod html;
pub mod invariants;
pub mod report;
pub mod scenario;
pub mod target;
pub mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use actors::{Runtime, RuntimeConfig};
use clap::Args;

use crate::scratch::Scratch;
use report::{BaselineComparison, Report, Threshold};
use scenario::{LoadModel, Scenario};
use target::Target;

#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// The scenario file (see scenarios/).
    pub scenario: PathBuf,
    /// A running `kokoro serve` (e.g. http://127.0.0.1:8080); the token comes
    /// from KOKORO_API_TOKEN. Unset: the runtime in this process, on a
    /// throw-away store.
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a --target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// In-process only: a PostgreSQL server to create the throw-away database
    /// on (`postgres://…/postgres`). Unset: SQLite in a temporary directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Override the scenario's duration.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Override the open model's rate (commands/s).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Override the closed model's number of virtual players.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// A pass/fail rule, e.g. "p99 < 10ms", "errors < 0.1%", "rate >= 20000". Repeatable.
    #[arg(long = "threshold", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// Also run the scenario against a one-transaction-per-command baseline on the same kind of store.
    #[arg(long)]
    pub baseline: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report here (default: <scenario>-report.html).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_threshold(s: &str) -> Result<Threshold, String> {
    s.parse()
}

/// How to run a scenario, independent of the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub target: Option<String>,
    pub token: Option<String>,
    pub allow_remote: bool,
    pub database_url: Option<String>,
    pub thresholds: Vec<Threshold>,
    /// The server's admin token, for scenarios that set guild settings.
    pub admin_token: Option<String>,
    pub baseline: bool,
    pub progress: bool,
    /// Chaos testing: a group commit that loses every Nth write.
    pub lose_every: Option<u64>,
}

pub async fn run_scenario(scenario: &Scenario, opts: &Options) -> anyhow::Result<Report> {
    let mut report = match &opts.target {
        Some(base) => {
            target::check_loopback(base, opts.allow_remote)?;
            let token = opts
                .token
                .clone()
                .ok_or_else(|| anyhow::anyhow!("set KOKORO_API_TOKEN to the server's API token"))?;
            let target = Arc::new(Target::http(base, token, opts.admin_token.clone())?);
            target.configure(scenario).await?;
            let driven = driver::drive(target.clone(), scenario, opts.progress).await;
            let mut report = Report::build(&scenario.name, target.describe(), &driven);
            report.invariants = invariants::check_by_replay(&target, &driven.recording).await;
            report
        }
        None => {
            let scratch = Scratch::new(opts.database_url.as_deref()).await?;
            let store = scratch.store(&Default::default()).await?;
            let mut config = RuntimeConfig {
                starting_gold: scenario.starting_gold,
                starting_gems: scenario.starting_gems,
                mailbox_capacity: 256,
                // Simulated players' jobs need something to render them; the
                // queues, charges and refunds are the real ones.
                jobs: actors::config::JobsConfig {
                    render: Some(Arc::new(actors::job_queue::SimulatedRender::new(
                        std::time::Duration::from_millis(200),
                        0,
                    ))),
                },
                ..Default::default()
            };
            config.commit.lose_every = opts.lose_every;
            let runtime = Arc::new(Runtime::start(store, config).await?);
            let target = Arc::new(Target::InProcess(runtime.clone()));
            target.configure(scenario).await?;
            let driven = driver::drive(target.clone(), scenario, opts.progress).await;
            let mut report = Report::build(&scenario.name, target.describe(), &driven);
            report.invariants = invariants::check_store(&runtime, &driven.recording).await?;
            drop(target);
            if let Some(rt) = Arc::into_inner(runtime) {
                rt.shutdown().await;
            }
            scratch.cleanup().await;
            report
        }
    };
    if opts.baseline {
        let b = baseline::run(scenario, opts.database_url.as_deref()).await?;
        report.baseline = Some(BaselineComparison {
            rate: b.rate,
            ratio_throughput: report.rate / b.rate.max(1e-9),
            ratio_p99: report.latency.p99_ms / b.latency.p99_ms.max(1e-9),
            latency: b.latency,
        });
    }
    Ok(report)
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(d) = args.duration {
        anyhow::ensure!(d > 0.0, "--duration must be positive");
        scenario.duration_secs = d;
    }
    match (&mut scenario.model, args.rate, args.concurrency) {
        (LoadModel::Open { rate, .. }, Some(r), _) => {
            anyhow::ensure!(r > 0.0, "--rate must be positive");
            *rate = r;
        }
        (LoadModel::Closed { concurrency, .. }, _, Some(c)) => {
            anyhow::ensure!(c > 0, "--concurrency must be positive");
            *concurrency = c;
        }
        (_, None, None) => {}
        _ => anyhow::bail!("--rate applies to open scenarios, --concurrency to closed ones"),
    }
    let opts = Options {
        target: args.target.clone(),
        token: crate::settings::api_token(),
        admin_token: crate::settings::admin_token(),
        allow_remote: args.allow_remote,
        database_url: args.database_url.clone(),
        thresholds: args.thresholds.clone(),
        baseline: args.baseline,
        progress: !args.quiet,
        lose_every: None,
    };
    let mut report = run_scenario(&scenario, &opts).await?;
    report.judge(&scenario.thresholds, &opts.thresholds);
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("  json       {}", path.display());
    }
    let html = args
        .html
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-report.html", scenario.name)));
    std::fs::write(&html, html::render(&report))?;
    println!("  html       {}", html.display());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
