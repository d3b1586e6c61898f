//! Storage through sqlx: SQLite (embedded default, WAL) or PostgreSQL.
//!
//! Each query is written once, in `queries.rs`, and instantiated for both
//! backends by a macro: the SQL is portable (`$N` placeholders, `ON CONFLICT`,
//! `excluded.`), only the pool type differs. Only the persistence actor
//! writes; activation and leaderboards read.

pub mod backup;
mod backup_sql;
mod queries;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::game::arena::entry::{ArenaEntry, StoredEntry};
use crate::game::economy::LeaderboardBy;
use crate::game::generation::job::StoredJob;
use crate::ids::{CommandId, GuildId, UserId, UserKey};
use crate::state::{RecentCommands, UserState};
use crate::writeset::{CommitOutcome, Transfer, WriteSet};

pub use queries::{AuditLine, AuditReport, LeaderboardRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("invalid database url: {0}")]
    Config(String),
    #[error("backup: {0}")]
    Backup(String),
    /// The connection failed while the transaction was committing: it may
    /// or may not have landed.
    #[error("the commit's outcome is unknown (the connection failed while committing): {0}")]
    Ambiguous(String),
}

/// Which backend, for the start-up report and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a connection may be waited for before the command fails with
    /// `storage_unavailable`.
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            busy_timeout: Duration::from_secs(2),
        }
    }
}

/// A member's Linked Roles tokens (see the front door's `linked_roles.rs`).
/// The tokens are secrets: `Debug` leaves them out.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleConnection {
    pub user_id: i64,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_ms: i64,
    pub linked_ms: i64,
}

impl std::fmt::Debug for RoleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleConnection")
            .field("user_id", &self.user_id)
            .field("expires_ms", &self.expires_ms)
            .field("linked_ms", &self.linked_ms)
            .finish_non_exhaustive()
    }
}

/// What a commit checks in cluster mode: WriteSets carrying an epoch
/// apply only while `node` holds their slot's lease of `cluster` with that
/// epoch, checked and locked (`FOR SHARE`) in the commit's transaction.
#[derive(Debug, Clone)]
pub struct Fence {
    pub cluster: String,
    pub node: String,
    pub slots: u32,
    /// The lease TTL in ms: a fenced transaction left idle this long (its
    /// process paused mid-commit) is ended by the server, so the share
    /// locks it holds cannot keep another node from taking the slots.
    pub idle_limit_ms: u64,
}

/// A player's state as stored, plus the ids of their recent commands.
#[derive(Debug, Clone, Default)]
pub struct LoadedUser {
    pub state: UserState,
    pub recent: RecentCommands,
}

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! on_pool {
    ($store:expr, ($pool:ident, $q:ident) => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => {
                use queries::sqlite as $q;
                $body
            }
            Store::Postgres($pool) => {
                use queries::postgres as $q;
                $body
            }
        }
    };
}

/// The application name of this process's PostgreSQL sessions: `kokoro`
/// and the process id, then a space (an operator's own name follows it).
fn application_name() -> String {
    format!("kokoro {} ", std::process::id())
}

impl Store {
    /// Opens (creating if needed) the embedded SQLite database in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        Self::open_sqlite_file(&data_dir.join("kokoro.db"), opts).await
    }

    pub async fn open_sqlite_file(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a group commit is acknowledged only after its fsync, so an
            // acknowledged command survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(opts.busy_timeout)
            // Multi-row upserts keep a statement journal; in memory, not a temp file.
            .pragma("temp_store", "memory")
            // 32 MiB of page cache per connection: index pages stay hot.
            .pragma("cache_size", "-32768")
            // SQLite's own checkpoints stay on: they run on the writer between
            // commits, the only place a busy WAL can restart. (Checkpointing
            // from another connection let the WAL grow ~70 MB/s under load.)
            // After a checkpoint, truncate a WAL a burst grew past 64 MiB.
            .pragma("journal_size_limit", "67108864")
            .statement_cache_capacity(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self::Sqlite(pool))
    }

    pub async fn open_postgres(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Config(e.to_string()))?;
        // Named for `await_predecessors`: which sessions are another kokoro's.
        let name = match connect.get_application_name() {
            Some(theirs) => format!("{} {theirs}", application_name()),
            None => application_name(),
        };
        let connect = connect.application_name(&name);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self::Postgres(pool))
    }

    /// PostgreSQL: waits until no other kokoro process has a transaction
    /// open on this database that has written (a read-only one, such as
    /// `kokoro backup`'s snapshot, cannot overwrite anything), for at most
    /// `patience`.
    ///
    /// A process killed with SIGKILL leaves its sessions behind for a
    /// moment: a COMMIT it had sent is still read and applied by the server
    /// after the process is gone. A runtime that loaded a player before that
    /// commit landed would write over it (a balance the ledger had moved).
    /// So a runtime starts only once every other kokoro session is idle or
    /// gone: a dead process's sessions end as soon as the server reads what
    /// is left of them. A live second writer on one database (which single-
    /// node mode does not allow) is warned of when patience runs out.
    /// SQLite needs no wait: a dead process commits nothing more.
    pub async fn await_predecessors(&self, patience: Duration) -> Result<(), StoreError> {
        let Store::Postgres(pool) = self else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        loop {
            let open: Vec<(i32, String, String)> = sqlx::query_as(
                "SELECT pid, application_name, state FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND application_name LIKE 'kokoro %' AND application_name NOT LIKE $1 \
                   AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)') \
                   AND backend_xid IS NOT NULL",
            )
            .bind(format!("{}%", application_name()))
            .fetch_all(pool)
            .await?;
            let Some((pid, name, state)) = open.first() else {
                return Ok(());
            };
            if started.elapsed() >= patience {
                tracing::warn!(
                    sessions = open.len(),
                    server_pid = pid,
                    application_name = %name,
                    state = %state,
                    "another kokoro process still has transactions open on this database; \
                     starting anyway (one serving process per database outside cluster mode)"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `postgres://…` selects PostgreSQL, `sqlite:PATH` a SQLite file; `None`
    /// the embedded database in `data_dir`.
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
        opts: &StoreOptions,
    ) -> Result<Self, StoreError> {
        match database_url {
            None => Self::open_sqlite(data_dir, opts).await,
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Self::open_postgres(u, opts).await
            }
            Some(u) => match u
                .strip_prefix("sqlite://")
                .or_else(|| u.strip_prefix("sqlite:"))
            {
                Some(path) => Self::open_sqlite_file(Path::new(path), opts).await,
                None => Err(StoreError::Config(
                    "DATABASE_URL must start with postgres:// or sqlite:".into(),
                )),
            },
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Connections in the pool: (in use, idle).
    pub fn connections(&self) -> (u32, u32) {
        let (size, idle) = match self {
            Self::Sqlite(p) => (p.size(), p.num_idle() as u32),
            Self::Postgres(p) => (p.size(), p.num_idle() as u32),
        };
        (size.saturating_sub(idle), idle)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Self::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// The newest migration applied, for readiness and the start-up report.
    pub async fn migration_version(&self) -> Result<Option<i64>, StoreError> {
        on_pool!(self, (p, q) => q::migration_version(p).await)
    }

    pub fn expected_migration_version(&self) -> Option<i64> {
        let m = match self {
            Self::Sqlite(_) => &SQLITE_MIGRATIONS,
            Self::Postgres(_) => &POSTGRES_MIGRATIONS,
        };
        m.iter().map(|m| m.version).max()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, (p, q) => q::ping(p).await)
    }

    pub async fn load_user(&self, key: UserKey) -> Result<LoadedUser, StoreError> {
        on_pool!(self, (p, q) => q::load_user(p, key).await)
    }

    /// A player's characters, pity counters and team.
    pub async fn load_collection(
        &self,
        key: UserKey,
    ) -> Result<crate::game::collection::owned::Collection, StoreError> {
        on_pool!(self, (p, q) => q::collection_sql::load(p, key).await)
    }

    /// A player's free jobs and VIP.
    pub async fn load_allowance(
        &self,
        key: UserKey,
    ) -> Result<crate::game::generation::allowance::Allowance, StoreError> {
        on_pool!(self, (p, q) => q::generation_writes::load_allowance(p, key).await)
    }

    /// A player's roleplay characters and day.
    pub async fn load_roleplay(
        &self,
        key: UserKey,
    ) -> Result<crate::game::roleplay::Roleplay, StoreError> {
        on_pool!(self, (p, q) => q::roleplay_sql::load(p, key).await)
    }

    /// A guild's settings (defaults where an admin changed nothing).
    pub async fn guild_settings(
        &self,
        guild: GuildId,
    ) -> Result<crate::game::guild::settings::GuildSettings, StoreError> {
        on_pool!(self, (p, q) => q::guild_sql::load(p, guild).await)
    }

    /// Keeps a member's Linked Roles tokens.
    pub async fn save_role_connection(&self, c: &RoleConnection) -> Result<(), StoreError> {
        on_pool!(self, (p, q) => q::save_role_connection(p, c).await)
    }

    /// Every member who linked kokoro's connection.
    pub async fn role_connections(&self) -> Result<Vec<RoleConnection>, StoreError> {
        on_pool!(self, (p, q) => q::role_connections(p).await)
    }

    /// A guild's newest audit rows, newest first.
    pub async fn recent_changes(
        &self,
        guild: GuildId,
        limit: i64,
    ) -> Result<Vec<crate::game::guild::AuditEntry>, StoreError> {
        on_pool!(self, (p, q) => q::guild_sql::recent_changes(p, guild, limit).await)
    }

    pub async fn find_reply(
        &self,
        key: UserKey,
        id: &CommandId,
    ) -> Result<Option<String>, StoreError> {
        on_pool!(self, (p, q) => q::find_reply(p, key, id).await)
    }

    /// Commits a batch of WriteSets in one transaction: all or nothing.
    pub async fn commit(&self, batch: &[WriteSet]) -> Result<Vec<CommitOutcome>, StoreError> {
        let outcomes = self.commit_fenced(batch, None).await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// `commit`, in cluster mode: each WriteSet's outcome, or `None` for
    /// one refused by `fence` (its slot's lease moved on), which wrote
    /// nothing. The rest of the batch commits as usual.
    pub async fn commit_fenced(
        &self,
        batch: &[WriteSet],
        fence: Option<&Fence>,
    ) -> Result<Vec<Option<CommitOutcome>>, StoreError> {
        on_pool!(self, (p, q) => q::commit(p, batch, fence).await)
    }

    /// Applies a batch as `commit` would, then rolls it back.
    pub async fn trial(&self, batch: &[WriteSet]) -> Result<Vec<CommitOutcome>, StoreError> {
        on_pool!(self, (p, q) => q::trial(p, batch).await)
    }

    /// Of `keys`, the players kokoro has, and whether each has roleplay
    /// characters.
    pub async fn presence(
        &self,
        keys: &[UserKey],
    ) -> Result<std::collections::HashMap<UserKey, bool>, StoreError> {
        on_pool!(self, (p, q) => q::presence(p, keys).await)
    }

    pub async fn leaderboard(
        &self,
        guild: GuildId,
        by: LeaderboardBy,
        limit: i64,
    ) -> Result<Vec<LeaderboardRow>, StoreError> {
        on_pool!(self, (p, q) => q::leaderboard(p, guild, by, limit).await)
    }

    /// Moves two waiting arena entries to `matched`, only if both still wait.
    /// Cluster mode: `fence` and the epoch the arena serves the guild's
    /// slot under; nothing is written unless the lease still has it.
    #[allow(clippy::too_many_arguments)] // one battle's facts, and its lease
    pub async fn arena_match(
        &self,
        a: &ArenaEntry,
        b: &ArenaEntry,
        battle_id: &str,
        a_won: bool,
        prize: i64,
        at_ms: i64,
        fence: Option<(&Fence, i64)>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, (p, q) => q::arena_match(p, a, b, battle_id, a_won, prize, at_ms, fence).await)
    }

    /// Arena entries waiting or matched and not yet paid.
    pub async fn arena_open(&self) -> Result<Vec<StoredEntry>, StoreError> {
        on_pool!(self, (p, q) => q::arena_open(p).await)
    }

    pub async fn arena_entry(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        on_pool!(self, (p, q) => q::arena_entry(p, id).await)
    }

    /// A player's newest `limit` arena entries, newest first.
    pub async fn arena_of(&self, key: UserKey, limit: i64) -> Result<Vec<StoredEntry>, StoreError> {
        on_pool!(self, (p, q) => q::arena_of(p, key, limit).await)
    }

    /// Jobs still queued, oldest first, for the queues to take up at start.
    pub async fn open_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        on_pool!(self, (p, q) => q::open_jobs(p).await)
    }

    pub async fn job(&self, id: &str) -> Result<Option<StoredJob>, StoreError> {
        on_pool!(self, (p, q) => q::job(p, id).await)
    }

    /// Ended jobs whose player asked through `door` and has not been told
    /// yet, each with the door's address (a channel, a chat), the
    /// longest-ended first.
    pub async fn jobs_to_notify(
        &self,
        door: &str,
        limit: i64,
    ) -> Result<Vec<(StoredJob, String)>, StoreError> {
        on_pool!(self, (p, q) => q::jobs_to_notify(p, door, limit).await)
    }

    /// Fought and paid arena entries whose player joined through `door`
    /// and has not been told yet, each with the door's address.
    pub async fn arena_to_notify(
        &self,
        door: &str,
        limit: i64,
    ) -> Result<Vec<(StoredEntry, String)>, StoreError> {
        on_pool!(self, (p, q) => q::arena_to_notify(p, door, limit).await)
    }

    pub async fn mark_arena_notified(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, (p, q) => q::mark_arena_notified(p, id, at_ms).await)
    }

    /// A payment by the provider's id: its player, the credits it bought,
    /// and its status (`paid`, `refunded`).
    pub async fn payment(
        &self,
        provider_id: &str,
    ) -> Result<Option<(UserKey, i64, String)>, StoreError> {
        on_pool!(self, (p, q) => q::payment(p, provider_id).await)
    }

    /// Admin actions since `since_ms` (Unix ms), newest first.
    pub async fn audit_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditLine>, StoreError> {
        on_pool!(self, (p, q) => q::audit_since(p, since_ms, limit).await)
    }

    /// Retention: deletes processed command ids older than `before_ms`, in
    /// chunks (a retry of one is then treated as a new command); how many.
    pub async fn prune_commands(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut gone = 0;
        loop {
            let n = on_pool!(self, (p, q) => q::prune_commands(p, before_ms, 1000).await)?;
            gone += n;
            if n < 1000 {
                return Ok(gone);
            }
        }
    }

    /// Retention: deletes jobs finished before `before_ms` whose player was
    /// told, in chunks, keeping their charges and refunds for `check`.
    pub async fn prune_jobs(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut gone = 0;
        loop {
            let n = on_pool!(self, (p, q) => q::prune_jobs(p, before_ms, 500).await)?;
            gone += n;
            if n < 500 {
                return Ok(gone);
            }
        }
    }

    /// Records that the player was told that job `id` ended. Written
    /// directly, not through group commit: it changes no game state, and a
    /// notice lost to a crash before this lands is sent again (at least once).
    pub async fn mark_notified(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, (p, q) => q::mark_notified(p, id, at_ms).await)
    }

    /// A player's newest `limit` jobs, newest first.
    pub async fn jobs_of(&self, key: UserKey, limit: i64) -> Result<Vec<StoredJob>, StoreError> {
        on_pool!(self, (p, q) => q::jobs_of(p, key, limit).await)
    }

    /// Transfers debited but not yet credited, created at or before `before_ms`.
    pub async fn pending_transfers(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<Transfer>, StoreError> {
        on_pool!(self, (p, q) => q::pending_transfers(p, before_ms, limit).await)
    }

    /// Answers `command` the conventional way, in one transaction of its
    /// own: the baseline `kokoro bench` and `kokoro loadtest --baseline`
    /// measure kokoro against. Not used by the runtime.
    pub async fn conventional(
        &self,
        command: &crate::command::Command,
        ctx: &crate::game::Context<'_>,
    ) -> Result<crate::reply::Reply, StoreError> {
        on_pool!(self, (p, q) => q::conventional(p, command, ctx).await)
    }

    /// Every recorded command id, with its player.
    pub async fn command_ids(&self) -> Result<Vec<(UserKey, String)>, StoreError> {
        on_pool!(self, (p, q) => q::command_ids(p).await)
    }

    /// Checks the money invariants over the whole database.
    pub async fn audit(&self) -> Result<AuditReport, StoreError> {
        on_pool!(self, (p, q) => q::audit(p).await)
    }

    /// Writes a backup of every table, read in one snapshot (safe while
    /// serving), to `path`; its manifest.
    pub async fn backup_to(&self, path: &Path) -> Result<backup::Manifest, StoreError> {
        let header = backup::Header {
            kokoro_backup: backup::FORMAT,
            created_ms: crate::domain::day::unix_ms(),
            kokoro_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: self.migration_version().await?.unwrap_or(0),
            backend: format!("{:?}", self.backend()).to_lowercase(),
        };
        let out = backup::BackupWriter::create(path, &header)
            .map_err(|e| StoreError::Backup(e.to_string()))?;
        match on_pool!(self, (p, q) => q::backup_sql::export(p, &out).await) {
            Ok(()) => out
                .finish()
                .await
                .map_err(|e| StoreError::Backup(e.to_string())),
            Err(e) => {
                out.abort().await;
                Err(e)
            }
        }
    }

    /// Records an operator's action at the command line (an import) in
    /// the audit log, as `by operator`.
    pub async fn audit_operator(
        &self,
        action: &str,
        key: &str,
        new: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let at = crate::domain::day::unix_ms();
        on_pool!(self, (p, q) => q::backup_sql::operator_audit(p, action, key, new, reason, at).await)
    }

    /// Rows per table of kokoro's.
    pub async fn row_counts(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        on_pool!(self, (p, q) => q::backup_sql::row_counts(p).await)
    }

    /// Writes the backup at `path` into this store (migrated to this
    /// kokoro's schema first), in one transaction, after emptying it when
    /// `replace`; the rows restored. A backup that turns out damaged (its
    /// checksum is checked at its end) restores nothing.
    pub async fn restore_from(&self, path: &Path, replace: bool) -> Result<u64, StoreError> {
        let header = backup::BackupReader::open(path)
            .map_err(|e| StoreError::Backup(e.to_string()))?
            .header;
        if let Some(expected) = self.expected_migration_version() {
            if header.schema_version > expected {
                return Err(StoreError::Backup(format!(
                    "the backup has schema version {}, newer than this kokoro's {expected}: restore it with the kokoro that made it ({})",
                    header.schema_version, header.kokoro_version
                )));
            }
        }
        self.migrate().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let file = path.to_owned();
        // Reading and decompressing on a thread of its own, fed back
        // through a bounded channel.
        std::thread::spawn(move || {
            let mut reader = match backup::BackupReader::open(&file) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                match reader.next_item() {
                    Ok(Some(item)) => {
                        if tx.blocking_send(Ok(item)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let note = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let at = crate::domain::day::unix_ms();
        on_pool!(self, (p, q) => q::backup_sql::import(p, rx, replace, &note, at).await)
    }

    /// Everything wrong with this store: its schema version, the
    /// database's own integrity check (SQLite), and unless `quick`, every
    /// money invariant `check` knows, rows that belong to no player, and
    /// jobs and arena entries in no valid state. Empty means sound.
    pub async fn verify(&self, quick: bool) -> Result<Vec<String>, StoreError> {
        let mut wrong = Vec::new();
        // A new store has no tables yet: migrations will make them.
        if self.row_counts().await?.is_empty() {
            return Ok(wrong);
        }
        match (self.migration_version().await?, self.expected_migration_version()) {
            (Some(have), Some(want)) if have > want => wrong.push(format!(
                "schema version {have} is newer than this kokoro's {want}: run the kokoro that wrote it"
            )),
            (have, Some(want)) if have.unwrap_or(0) < want => wrong.push(format!(
                "schema version {} is behind this kokoro's {want}: run kokoro migrate",
                have.unwrap_or(0)
            )),
            _ => {}
        }
        if let Self::Sqlite(p) = self {
            let pragma = if quick {
                "PRAGMA quick_check"
            } else {
                "PRAGMA integrity_check"
            };
            let found: Vec<String> = sqlx::query_scalar(pragma).fetch_all(p).await?;
            if found != ["ok"] {
                wrong.extend(
                    found
                        .into_iter()
                        .take(20)
                        .map(|f| format!("SQLite integrity: {f}")),
                );
            }
        }
        if !quick && wrong.is_empty() {
            wrong.extend(self.audit().await?.violations());
            wrong.extend(on_pool!(self, (p, q) => q::backup_sql::structure(p).await)?);
        }
        Ok(wrong)
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

fn user_key(guild: i64, user: i64) -> Result<UserKey, StoreError> {
    let bad = |_| StoreError::Corrupt(format!("bad ids {guild}/{user}"));
    Ok(UserKey::new(
        GuildId::new(guild).map_err(bad)?,
        UserId::new(user).map_err(bad)?,
    ))
}
