//! The operator's commands: `backup`, `verify`, `restore`, `audit`, and
//! the scheduled backups `serve` takes. Each works the same on SQLite and
//! PostgreSQL (see `actors::store::backup` for the format).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use actors::store::backup;
use actors::store::Store;
use anyhow::Context;

use crate::settings::StorageArgs;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Where to write the backup; default: a new file named by the time in
    /// the data dir's backups/.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Verify this backup file instead of the live store: its checksum and
    /// row counts, then everything verify checks, on a scratch copy.
    #[arg(long)]
    pub backup: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The backup to restore.
    pub file: PathBuf,
    /// Replace a store that is not empty (a backup of it is taken first).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Only actions since this moment: a date (2026-11-30), an RFC 3339
    /// time, or an age (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

/// Where backups go when no place is given.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// The store `args` name, opened (not migrated).
pub async fn open(args: &StorageArgs) -> anyhow::Result<Store> {
    Store::open(
        args.database_url.as_deref(),
        &args.data_dir,
        &args.store_options(),
    )
    .await
    .context("opening storage")
}

/// Backs up a store that has data and migrations to apply, before they
/// run; where the backup went, if one was taken.
pub async fn backup_before_migrating(store: &Store, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    // A new store (no tables yet) or an empty one has nothing to keep.
    let rows: u64 = store.row_counts().await?.values().sum();
    if rows == 0 {
        return Ok(None);
    }
    let (have, want) = (
        store.migration_version().await?,
        store.expected_migration_version(),
    );
    if have.is_none() || have >= want {
        return Ok(None);
    }
    let name = backup::file_name(actors::config::unix_ms()).replace(
        ".backup.gz",
        &format!("-before-migration-{}.backup.gz", want.unwrap_or(0)),
    );
    let path = dir.join(name);
    store
        .backup_to(&path)
        .await
        .context("backing up the store before migrating it (nothing was migrated)")?;
    Ok(Some(path))
}

/// The fast part of verify, at start: schema version and the database's
/// quick integrity check. A damaged store is refused, with how to restore.
pub async fn refuse_if_damaged(store: &Store, backups: &Path) -> anyhow::Result<()> {
    let wrong: Vec<String> = match store.verify(true).await {
        Ok(w) => w
            .into_iter()
            .filter(|w| !w.contains("run kokoro migrate"))
            .collect(),
        // A file too damaged to read at all says so through its errors.
        Err(actors::store::StoreError::Db(e)) if e.as_database_error().is_some() => {
            vec![e.to_string()]
        }
        Err(e) => return Err(e.into()),
    };
    if wrong.is_empty() {
        return Ok(());
    }
    let dir = backups;
    let latest = backup::list(dir).first().map_or_else(
        || format!("{}/<a backup>", dir.display()),
        |p| p.display().to_string(),
    );
    anyhow::bail!(
        "the database is damaged; refusing to serve it:\n  {}\nrestore the last good backup: kokoro restore {latest} --force (it verifies the backup first and keeps a copy of what it replaces); then kokoro verify",
        wrong.join("\n  ")
    )
}

/// `kokoro backup`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let store = open(&args.storage).await?;
    let path = args.out.unwrap_or_else(|| {
        default_dir(&args.storage.data_dir).join(backup::file_name(actors::config::unix_ms()))
    });
    let manifest = store.backup_to(&path).await?;
    let rows: u64 = manifest.rows.values().sum();
    println!(
        "backup written to {} ({} tables, {rows} rows, sha256 {})",
        path.display(),
        manifest.rows.len(),
        manifest.sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// `kokoro verify`: exit 1 with the list of what is wrong.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let wrong = match &args.backup {
        None => {
            let store = open(&args.storage).await?;
            store.verify(false).await?
        }
        Some(file) => verify_backup(file).await?,
    };
    for w in &wrong {
        println!("WRONG: {w}");
    }
    Ok(if wrong.is_empty() {
        println!("ok: schema, integrity, every invariant, no orphan rows, every job and arena entry in a valid state");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A backup's checksum and counts, then a restore of it into a scratch
/// SQLite store, verified in full. Everything wrong, in words.
pub async fn verify_backup(file: &Path) -> anyhow::Result<Vec<String>> {
    let path = file.to_owned();
    let checked = tokio::task::spawn_blocking(move || backup::check_file(&path)).await?;
    let (header, manifest) = match checked {
        Ok(found) => found,
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    let store = Store::open_sqlite(scratch.path(), &Default::default()).await?;
    let restored = match store.restore_from(file, false).await {
        Ok(n) => n,
        Err(e) => return Ok(vec![format!("it does not restore: {e}")]),
    };
    let mut wrong = store.verify(false).await?;
    let expected: u64 = manifest.rows.values().sum();
    if restored != expected {
        wrong.push(format!(
            "{restored} rows restored of the {expected} in its manifest"
        ));
    }
    store.close().await;
    if wrong.is_empty() {
        println!(
            "backup of {} (kokoro {}, schema {}): {expected} rows, checksum ok",
            chrono::DateTime::from_timestamp_millis(header.created_ms).unwrap_or_default(),
            header.kokoro_version,
            header.schema_version
        );
    }
    Ok(wrong)
}

/// `kokoro restore`: verifies the backup, then restores it into an empty
/// store, or with `--force` into one that is not (backed up first).
pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let wrong = verify_backup(&args.file).await?;
    if !wrong.is_empty() {
        for w in &wrong {
            println!("WRONG: {w}");
        }
        println!(
            "nothing restored: {} failed verification",
            args.file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut store = open(&args.storage).await?;
    // A damaged SQLite file cannot be restored over: it is moved aside
    // (kept, for forensics) and a fresh one takes its place.
    let embedded = args.storage.database_url.is_none();
    let damaged = match store.verify(true).await {
        Ok(wrong) => wrong.iter().any(|w| w.starts_with("SQLite integrity")),
        Err(_) => true,
    };
    if embedded && damaged {
        if !args.force {
            println!("nothing restored: the store is damaged; pass --force to move it aside and restore into a fresh one");
            return Ok(ExitCode::FAILURE);
        }
        store.close().await;
        let aside = move_aside(&args.storage.data_dir)?;
        println!(
            "the damaged database was moved aside to {}",
            aside.display()
        );
        store = open(&args.storage).await?;
    }
    store.migrate().await?;
    let rows: u64 = store.row_counts().await?.values().sum();
    if rows > 0 {
        if !args.force {
            println!(
                "nothing restored: the store holds {rows} rows; restore into an empty one, or pass --force to replace it (a backup of it is taken first)"
            );
            return Ok(ExitCode::FAILURE);
        }
        let keep = default_dir(&args.storage.data_dir).join(
            backup::file_name(actors::config::unix_ms())
                .replace(".backup.gz", "-before-restore.backup.gz"),
        );
        store
            .backup_to(&keep)
            .await
            .context("backing up the store before replacing it")?;
        println!(
            "the store's {rows} rows were backed up to {}",
            keep.display()
        );
    }
    let restored = store.restore_from(&args.file, rows > 0).await?;
    let wrong = store.verify(false).await?;
    for w in &wrong {
        println!("WRONG: {w}");
    }
    println!("restored {restored} rows from {}", args.file.display());
    Ok(if wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The store to copy: `sqlite:PATH` or `postgres://…`. It is only read.
    #[arg(long)]
    pub from: String,
    /// Where to copy it: `postgres://…` or `sqlite:PATH`; empty, or holding
    /// this very copy already (a re-run then does nothing).
    #[arg(long)]
    pub to: String,
}

/// `kokoro migrate-store`: copies every row of one store into another
/// through a backup, then proves the copy: the same rows per table, the same
/// ledger sums, and every invariant on the target.
pub async fn migrate_store(args: MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let opts = actors::store::StoreOptions::default();
    let here = Path::new(".");
    let from = Store::open(Some(&args.from), here, &opts)
        .await
        .context("opening --from")?;
    let to = Store::open(Some(&args.to), here, &opts)
        .await
        .context("opening --to")?;
    let source_rows = from.row_counts().await?;
    if source_rows.is_empty() {
        anyhow::bail!("--from holds no kokoro tables; is it the right store?");
    }
    let source_books = from.audit().await?.by_reason;
    to.migrate().await?;
    let same = |rows: &std::collections::BTreeMap<String, u64>| {
        source_rows.iter().all(|(t, n)| {
            let have = rows.get(t).copied().unwrap_or(0);
            // The target's audit log also holds the copy's own row.
            if t == "audit_log" {
                have == n + 1
            } else {
                have == *n
            }
        })
    };
    let target_rows = to.row_counts().await?;
    if target_rows.values().sum::<u64>() > 0 {
        if same(&target_rows) && to.audit().await?.by_reason == source_books {
            println!("the target already holds this copy; nothing to do");
            return Ok(ExitCode::SUCCESS);
        }
        println!("nothing copied: --to holds other data; copy into an empty store");
        return Ok(ExitCode::FAILURE);
    }
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    let file = scratch.path().join("copy.backup.gz");
    let manifest = from.backup_to(&file).await?;
    let copied = to.restore_from(&file, false).await?;
    let target_rows = to.row_counts().await?;
    let mut wrong = to.verify(false).await?;
    if !same(&target_rows) {
        wrong.push(format!(
            "row counts differ: source {source_rows:?}, target {target_rows:?}"
        ));
    }
    if to.audit().await?.by_reason != source_books {
        wrong.push("ledger sums differ between source and target".into());
    }
    for w in &wrong {
        println!("WRONG: {w}");
    }
    println!(
        "copied {copied} rows in {} tables from {} to {}",
        manifest.rows.len(),
        crate::render::describe(&args.from),
        crate::render::describe(&args.to)
    );
    Ok(if wrong.is_empty() {
        println!("ok: the same rows per table and the same ledger sums on both sides, every invariant holds on the target");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Renames the embedded database's files to `kokoro.db.damaged-{time}`.
fn move_aside(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let stamp = actors::config::unix_ms();
    let db = data_dir.join("kokoro.db");
    let aside = data_dir.join(format!("kokoro.db.damaged-{stamp}"));
    std::fs::rename(&db, &aside).with_context(|| format!("moving {} aside", db.display()))?;
    for suffix in ["-wal", "-shm"] {
        let from = data_dir.join(format!("kokoro.db{suffix}"));
        if from.exists() {
            let to = data_dir.join(format!("kokoro.db.damaged-{stamp}{suffix}"));
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} aside", from.display()))?;
        }
    }
    Ok(aside)
}

/// `kokoro audit`: admin actions, newest first.
pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = match &args.since {
        None => 0,
        Some(s) => parse_since(s, actors::config::unix_ms()).with_context(|| {
            format!("--since {s:?}: give a date (2026-11-30), an RFC 3339 time or an age (24h, 7d)")
        })?,
    };
    let store = open(&args.storage).await?;
    let rows = store
        .audit_since(since, args.limit.clamp(1, 100_000))
        .await?;
    for r in &rows {
        let at = chrono::DateTime::from_timestamp_millis(r.at_ms).unwrap_or_default();
        let by = if r.by == 0 {
            "operator".to_owned()
        } else {
            r.by.to_string()
        };
        let target = r.target.map(|t| format!(" on {t}")).unwrap_or_default();
        println!(
            "{} guild {} by {by}: {}{target} {}: {} -> {} ({})",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            r.guild,
            r.action,
            r.key,
            r.old,
            r.new,
            r.reason
        );
    }
    println!("{} action(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// A date, an RFC 3339 time, or an age before `now_ms`, as Unix ms.
pub fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n >= 0)?;
    let ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(now_ms - n.checked_mul(ms)?)
}

/// How long `serve` keeps what it prunes.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub results: Duration,
    pub commands: Duration,
    pub jobs: Duration,
}

/// Hourly upkeep: uploads and results past their retention deleted off the
/// async threads; command ids and finished jobs past theirs deleted in
/// chunks. The ledger is never pruned.
pub async fn housekeeping(
    store: Store,
    uploads: Option<actors::uploads::Uploads>,
    results: PathBuf,
    keep: Retention,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let (u, r) = (uploads.clone(), results.clone());
        let files = tokio::task::spawn_blocking(move || {
            let uploads = u.map_or(0, |u| u.prune(actors::uploads::RETENTION));
            (uploads, actors::uploads::prune_files(&r, keep.results))
        })
        .await;
        let now = actors::config::unix_ms();
        let before = |d: Duration| now - d.as_millis() as i64;
        let commands = store.prune_commands(before(keep.commands)).await;
        let jobs = store.prune_jobs(before(keep.jobs)).await;
        match (files, commands, jobs) {
            (Ok((0, 0)), Ok(0), Ok(0)) => {}
            (Ok((uploads, results)), Ok(commands), Ok(jobs)) => {
                tracing::info!(
                    uploads,
                    results,
                    commands,
                    jobs,
                    "pruned what is past its retention"
                );
            }
            (files, commands, jobs) => tracing::warn!(
                files = ?files.err(),
                commands = ?commands.err(),
                jobs = ?jobs.err(),
                "could not prune everything past its retention; trying again in an hour"
            ),
        }
    }
}

/// Scheduled backups from `serve`: one every `every`, the newest `keep`
/// kept, the last success and its age as metrics.
pub async fn scheduled(store: Store, dir: PathBuf, every: Duration, keep: usize) {
    use actors::telemetry as m;
    metrics::gauge!(m::BACKUP_INTERVAL_SECONDS).set(every.as_secs_f64());
    let mut last_ok = backup::list(&dir)
        .first()
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    let mut next = tokio::time::Instant::now()
        + last_ok.map_or(Duration::ZERO, |at| {
            let age = Duration::from_millis((actors::config::unix_ms() - at).max(0) as u64);
            every.saturating_sub(age)
        });
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        if let Some(at) = last_ok {
            metrics::gauge!(m::BACKUP_LAST_SUCCESS_SECONDS).set(at as f64 / 1000.0);
            metrics::gauge!(m::BACKUP_AGE_SECONDS)
                .set((actors::config::unix_ms() - at).max(0) as f64 / 1000.0);
        }
        if tokio::time::Instant::now() < next {
            continue;
        }
        let path = dir.join(backup::file_name(actors::config::unix_ms()));
        match store.backup_to(&path).await {
            Ok(manifest) => {
                let now = actors::config::unix_ms();
                last_ok = Some(now);
                metrics::gauge!(m::BACKUP_LAST_SUCCESS_SECONDS).set(now as f64 / 1000.0);
                metrics::gauge!(m::BACKUP_AGE_SECONDS).set(0.0);
                let gone = backup::prune(&dir, keep);
                tracing::info!(path = %path.display(), rows = manifest.rows.values().sum::<u64>(), pruned = gone, "backup taken");
                next = tokio::time::Instant::now() + every;
            }
            Err(e) => {
                metrics::counter!(m::BACKUP_FAILURES_TOTAL).increment(1);
                tracing::error!(error = %e, "the scheduled backup failed; retrying in 5 minutes");
                next = tokio::time::Instant::now() + Duration::from_secs(300).min(every);
            }
        }
    }
}

/// `24h`, `30m`, `7d`, `90s`, or `0` (never), for `--backup-every`.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{s:?}: give a number and a unit, e.g. 24h, 30m, 7d, 90s (0: never)");
    let (n, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .filter(|d| *d >= Duration::from_secs(10) || d.is_zero())
        .ok_or_else(|| format!("{s:?}: at least 10s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = 1_764_590_400_000; // 2025-12-01T12:00:00Z
        assert_eq!(parse_since("24h", now), Some(now - 86_400_000));
        assert_eq!(parse_since("7d", now), Some(now - 7 * 86_400_000));
        assert_eq!(parse_since("2025-12-01", now), Some(1_764_547_200_000));
        assert_eq!(parse_since("2025-12-01T12:00:00Z", now), Some(now));
        assert_eq!(parse_since("soon", now), None);
        assert_eq!(parse_since("-3d", now), None);
        assert_eq!(parse_since("", now), None);
    }

    #[test]
    fn backup_intervals_read_as_operators_write_them() {
        assert_eq!(parse_every("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_every("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_every("0"), Ok(Duration::ZERO));
        assert!(parse_every("5s").is_err(), "too often");
        assert!(parse_every("daily").is_err());
        assert!(parse_every("").is_err());
    }
}
