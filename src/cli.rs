//! The command line: `serve`, `migrate`, `check`, `backup`, `verify`,
//! `restore`, `audit`, `bench`, `loadtest`, `cluster status`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::{ServeArgs, StorageArgs};

#[derive(Debug, Parser)]
#[command(
    name = "kokoro",
    version,
    about = "Actor runtime for chat-community game bots"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Serve the HTTP API, and the Discord front door when DISCORD_TOKEN is set.
    #[command(after_long_help = SECRETS)]
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit (a store with data is backed up first).
    Migrate(StorageArgs),
    /// Check the money invariants of a database; exit 1 if any is broken.
    Check(StorageArgs),
    /// Write a consistent, compressed, checksummed backup (safe while serving).
    Backup(crate::ops::BackupArgs),
    /// Verify the live store, or a backup: schema, integrity, every invariant,
    /// no orphan rows, valid jobs and arena entries; exit 1 with what is wrong.
    Verify(crate::ops::VerifyArgs),
    /// Restore a backup (verified first) into an empty store, or with --force
    /// over one that is not (backed up first).
    Restore(crate::ops::RestoreArgs),
    /// List admin actions (settings, VIP, grants, refunds, restores), newest first.
    Audit(crate::ops::AuditArgs),
    /// Import the legacy bots' JSON data (see the README); --dry-run reports
    /// what would be imported and every record rejected, with the reason.
    Import(crate::import::ImportArgs),
    /// Copy every row from one store to another (e.g. SQLite to PostgreSQL)
    /// and prove the copy; safe to re-run.
    MigrateStore(crate::ops::MigrateStoreArgs),
    /// GET a URL (default: this host's /healthz); exit 0 on a 2xx answer.
    /// The container's health check, so the image needs no curl.
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Measure durable commands/s and latency against a one-transaction-per-command baseline.
    Bench(crate::bench::BenchArgs),
    /// Simulate players from a scenario file, check the invariants, report.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Cluster mode: where every slot is.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// The nodes (last heartbeat, slots each), the slots without an owner
    /// (`unowned`), and with --slots every lease; exit 1 if a slot has no
    /// owner.
    Status(crate::cluster::StatusArgs),
}

/// Secrets are read from the environment only, never from flags, so they
/// stay out of shell history and process listings.
const SECRETS: &str = "Secrets, from the environment only (never logged):
  KOKORO_API_TOKEN  bearer token for /v1 routes; unset: they answer 401, and
                    serving on a non-loopback address is refused
  KOKORO_ADMIN_TOKEN  bearer token that also allows admin commands over HTTP
                    (config_set, grant, vip, hf_success); unset: they answer 403
  KOKORO_RENDER_TOKEN bearer token sent to an http:// render service
  KOKORO_PAYMENT_SECRET signs POST /v1/payments/webhook; unset: it answers 404
  KOKORO_RESULT_SECRET signs links to results; unset: a key kept in the data dir
  DISCORD_TOKEN     the Discord bot token; unset: no Discord front door
  TELEGRAM_BOT_TOKEN the Telegram bot token; unset: no Telegram front door";

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kokoro: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kokoro: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Serve(args) => crate::serve::serve(*args).await.map(|()| ExitCode::SUCCESS),
        Cmd::Migrate(args) => {
            let store = crate::ops::open(&args).await?;
            if let Some(kept) = crate::ops::backup_before_migrating(
                &store,
                &crate::ops::default_dir(&args.data_dir),
            )
            .await?
            {
                println!(
                    "the store was backed up to {} before migrating",
                    kept.display()
                );
            }
            store.migrate().await?;
            println!(
                "migrations applied; schema version {:?}",
                store.migration_version().await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check(args) => {
            let store = crate::ops::open(&args).await?;
            let report = store.audit().await?;
            println!(
                "{} players, {} gold, {} gems, {} transfers in flight ({} gold)",
                report.users,
                report.gold_total,
                report.gems_total,
                report.pending_transfers,
                report.in_flight_gold
            );
            let violations = report.violations();
            for v in &violations {
                println!("VIOLATION: {v}");
            }
            Ok(if violations.is_empty() {
                println!("ok: every ledger sums to its balance and transfers conserve gold");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Backup(args) => crate::ops::backup(args).await,
        Cmd::Verify(args) => crate::ops::verify(args).await,
        Cmd::Restore(args) => crate::ops::restore(args).await,
        Cmd::Audit(args) => crate::ops::audit(args).await,
        Cmd::MigrateStore(args) => crate::ops::migrate_store(args).await,
        Cmd::Import(args) => crate::import::run(args).await,
        Cmd::Probe { url } => {
            let answer = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await;
            Ok(match answer {
                Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("kokoro probe: {}", r.status());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("kokoro probe: {}", e.without_url());
                    ExitCode::FAILURE
                }
            })
        }
        Cmd::Bench(args) => crate::bench::run(args).await.map(|()| ExitCode::SUCCESS),
        Cmd::Loadtest(args) => crate::loadtest::run(args).await,
        Cmd::Cluster(ClusterCmd::Status(args)) => crate::cluster::status(args).await,
    }
}
