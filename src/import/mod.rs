//! `kokoro import FORMAT FILE [--dry-run]`: the legacy bots' JSON data into
//! a real store. Every record is checked first; a bad one (a negative
//! balance, a duplicate character name, an unknown rarity, a broken
//! timestamp, an unknown field) is reported with its reason and skipped,
//! never a crash. Good records become ordinary WriteSets committed through
//! the store's group-commit path, one transaction per batch, each with an
//! `imported` ledger row per balance so the books balance, and each under a
//! command id of its own (`import:{format}:{guild}:{user}`), so a second
//! run imports nothing twice. Players kokoro already has are left alone.
//!
//! Stop `serve` while importing: its actors keep players in memory.

mod collection;
mod roleplay;

use std::path::PathBuf;
use std::process::ExitCode;

use actors::writeset::{CommitOutcome, WriteSet};
use actors::Store;
use anyhow::Context;

use crate::settings::StorageArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The collectible-character bot: one JSON document per player (a JSON
    /// array, or one document per line).
    Collection,
    /// The roleplay XP bot: its single JSON file (`config` per guild,
    /// `users` per guild and player).
    Roleplay,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    pub format: Format,
    pub file: PathBuf,
    /// Report what would be imported and every record that would be
    /// rejected, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The admin (a user id) the imported guild settings are recorded under
    /// in the audit log (roleplay format).
    #[arg(long)]
    pub admin: Option<i64>,
    /// Players per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

/// A record that will not be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where in the file: `record 12` or `users.123.456`.
    pub at: String,
    pub why: String,
}

/// What a file becomes: the writes of each good record, and the rest.
#[derive(Debug, Default)]
pub struct Plan {
    /// One per player (or guild configuration), with a line saying what.
    pub records: Vec<(WriteSet, String)>,
    pub rejected: Vec<Rejected>,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub imported: u64,
    /// Already there: imported before, or a player kokoro already has.
    pub skipped: u64,
    pub rejected: u64,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let store = crate::ops::open(&args.storage).await?;
    store.migrate().await?;
    let plan = plan(args.format, &text, args.admin)?;
    for r in &plan.rejected {
        println!("REJECTED {}: {}", r.at, r.why);
    }
    if args.dry_run {
        for (_, what) in &plan.records {
            println!("would import {what}");
        }
        println!(
            "dry run: {} record(s) would be imported, {} rejected (records kokoro already has are skipped); nothing was changed",
            plan.records.len(),
            plan.rejected.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = import(&store, plan, args.batch as usize, true).await?;
    let file = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    store
        .audit_operator(
            "import",
            &format!("{:?}", args.format).to_lowercase(),
            &format!(
                "{} imported, {} skipped, {} rejected",
                outcome.imported, outcome.skipped, outcome.rejected
            ),
            &file,
        )
        .await?;
    println!(
        "imported {}, skipped {}, rejected {} (skipped: imported before, or a player kokoro already has)",
        outcome.imported, outcome.skipped, outcome.rejected
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a file of `format` into its plan.
pub fn plan(format: Format, text: &str, admin: Option<i64>) -> anyhow::Result<Plan> {
    let catalogue = actors::game::economy::shop::Catalogue::shipped();
    let roster = actors::game::collection::roster::Roster::shipped()
        .context("reading the shipped characters")?;
    let now = actors::config::unix_ms();
    Ok(match format {
        Format::Collection => collection::plan(text, &catalogue, &roster, now),
        Format::Roleplay => roleplay::plan(text, admin, now)?,
    })
}

/// Commits a plan, a batch per transaction, skipping players kokoro has.
pub async fn import(
    store: &Store,
    plan: Plan,
    batch: usize,
    progress: bool,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome {
        rejected: plan.rejected.len() as u64,
        ..Outcome::default()
    };
    let bar = if progress {
        indicatif::ProgressBar::new(plan.records.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for chunk in plan.records.chunks(batch.max(1)) {
        let mut writes = Vec::with_capacity(chunk.len());
        for (ws, _) in chunk {
            // A player kokoro already has (who played, or was imported by
            // the other format) keeps their row: only what is missing is
            // written, or nothing.
            match keep_for(store, ws).await? {
                Some(ws) => writes.push(ws),
                None => out.skipped += 1,
            }
        }
        let outcomes = store.commit(&writes).await?;
        for o in outcomes {
            match o {
                CommitOutcome::Applied => out.imported += 1,
                CommitOutcome::AlreadyApplied => out.skipped += 1,
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_with_message("done");
    Ok(out)
}

/// The part of a record kokoro does not have yet; `None`: nothing.
async fn keep_for(store: &Store, ws: &WriteSet) -> anyhow::Result<Option<WriteSet>> {
    let Some(_) = &ws.row else {
        return Ok(Some(ws.clone())); // guild settings: their id guards them
    };
    let loaded = store.load_user(ws.key).await?;
    if !loaded.state.exists {
        return Ok(Some(ws.clone()));
    }
    // The player exists: roleplay data joins them if they have none yet;
    // a collection record (balances) is never merged.
    let is_roleplay = ws
        .writes
        .iter()
        .any(|w| matches!(w, actors::writeset::Write::RpPlayer { .. }));
    if is_roleplay {
        let rp = store.load_roleplay(ws.key).await?;
        if rp.characters.is_empty() {
            let mut only = ws.clone();
            only.row = None;
            return Ok(Some(only));
        }
    }
    Ok(None)
}

/// The command id that makes a record's import happen once.
fn command_id(format: &str, key: actors::UserKey) -> Option<actors::CommandId> {
    format!("import:{format}:{}:{}", key.guild, key.user)
        .parse()
        .ok()
}

/// The reply stored with an import's command id.
fn reply(what: &str) -> String {
    serde_json::json!({"ok": true, "command": "import", "data": null, "message": what}).to_string()
}

/// A decimal id, given as a string or a number.
fn id(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .filter(|n| *n > 0)
}
