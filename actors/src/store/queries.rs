//! The SQL of kokoro, written once and expanded for each backend by
//! `backend!`. Writes are batched: one multi-row statement per table per
//! chunk, in chunk sizes from a fixed set so prepared statements are reused.

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row};

use super::{user_key, Fence, LoadedUser, StoreError};
use crate::command::{Command, CommandKind};
use crate::domain::Currency;
use crate::game::arena::entry::{ArenaEntry, EntryStatus, Fought, StoredEntry};
use crate::game::economy::{EconomyCommand, LeaderboardBy};
use crate::game::generation::job::{Job, JobStatus, StoredJob};
use crate::game::generation::workflow::{self, Workflow};
use crate::game::{self, Context};
use crate::ids::{CommandId, GuildId, UserId, UserKey};
use crate::reply::Reply;
use crate::state::{RecentCommands, UserState};
use crate::writeset::{CommitOutcome, Transfer, UserRow, Write, WriteSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardRow {
    pub user: UserId,
    pub gold: i64,
    pub level: i64,
    pub xp: i64,
}

/// One admin action, as `kokoro audit` lists it: ids as stored (0 for the
/// operator at the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    pub guild: i64,
    pub by: i64,
    pub action: String,
    pub target: Option<i64>,
    pub key: String,
    pub old: String,
    pub new: String,
    pub reason: String,
    pub at_ms: i64,
}

/// The money invariants, as read from the database.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub users: i64,
    pub gold_total: i64,
    pub gems_total: i64,
    pub credits_total: i64,
    /// Credits held by queued jobs (part of `credits_total`).
    pub credits_held: i64,
    /// Gold debited from senders and not yet credited to receivers.
    pub in_flight_gold: i64,
    pub pending_transfers: i64,
    /// Ledger sums by (currency, reason): what was minted and burned.
    pub by_reason: BTreeMap<(String, String), i64>,
    /// Players whose ledger does not sum to their balance.
    pub mismatched: Vec<UserKey>,
    /// Players with a negative balance (the schema forbids it; checked anyway).
    pub negative: Vec<UserKey>,
    /// Characters and pity counters their logs do not explain (at most 20
    /// of each), and roleplay characters their tallies do not, in words.
    pub collection: Vec<String>,
    /// Roleplay characters, and their XP in all.
    pub rp_characters: i64,
    pub rp_xp: i128,
}

impl AuditReport {
    pub fn ledger(&self, currency: Currency, reason: &str) -> i64 {
        self.by_reason
            .get(&(currency.as_str().to_owned(), reason.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every broken invariant, in words. Empty means the books balance.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.mismatched.is_empty() {
            let names: Vec<String> = self
                .mismatched
                .iter()
                .take(20)
                .map(ToString::to_string)
                .collect();
            v.push(format!(
                "{} player(s) whose ledger does not sum to their balance: {}",
                self.mismatched.len(),
                names.join(", ")
            ));
        }
        let (given, received) = (
            self.ledger(Currency::Gold, "give"),
            self.ledger(Currency::Gold, "receive"),
        );
        if given + received + self.in_flight_gold != 0 {
            v.push(format!(
                "transfers do not conserve gold: given {} + received {received} + in flight {} != 0",
                -given, self.in_flight_gold
            ));
        }
        for (currency, total) in [
            (Currency::Gold, self.gold_total),
            (Currency::Gems, self.gems_total),
            (Currency::Credits, self.credits_total),
        ] {
            let ledger: i64 = self
                .by_reason
                .iter()
                .filter(|((c, _), _)| c == currency.as_str())
                .map(|(_, s)| s)
                .sum();
            if ledger != total {
                v.push(format!(
                    "total {} {total} differs from the ledger total {ledger}",
                    currency.as_str()
                ));
            }
        }
        v.extend(self.collection.iter().cloned());
        v
    }
}

macro_rules! entry_columns {
    () => {
        "id, guild_id, user_id, fee, power, status, battle_id, opponent_id, won, prize, created_ms, notify"
    };
}

macro_rules! job_columns {
    () => {
        "id, guild_id, user_id, workflow, prompt, cost, status, result, created_ms, finished_ms, image, held, notify"
    };
}

/// Splits `n` rows into chunks of a few fixed sizes, largest first.
fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    let mut out = Vec::new();
    for size in [128, 32, 8, 1] {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out.into_iter()
}

fn to_i32(v: Option<i64>) -> Option<i32> {
    v.and_then(|v| i32::try_from(v).ok())
}

/// Inserts `$rows` with one multi-row statement per chunk.
macro_rules! insert_chunked {
    ($tx:expr, $head:expr, $tail:expr, $rows:expr, |$b:ident, $r:ident| $push:block) => {{
        let rows = $rows;
        let mut start = 0;
        for size in chunk_sizes(rows.len()) {
            let mut qb = QueryBuilder::new($head);
            qb.push_values(&rows[start..start + size], |mut $b, $r| $push);
            qb.push($tail);
            qb.build().execute(&mut *$tx).await?;
            start += size;
        }
    }};
}

/// Applies one guard per WriteSet that still applies: `$query` (a guarded
/// `UPDATE … RETURNING`, built from the write `$pick` finds) must touch a
/// row, or the WriteSet is skipped as already applied.
macro_rules! guard_each {
    ($tx:expr, $batch:expr, $outcomes:expr, |$ws:ident| $pick:expr, |$w:ident| $query:expr) => {{
        for (i, $ws) in $batch.iter().enumerate() {
            if $outcomes[i] != CommitOutcome::Applied {
                continue;
            }
            let Some($w) = $pick else { continue };
            if $query.fetch_optional(&mut *$tx).await?.is_none() {
                $outcomes[i] = CommitOutcome::AlreadyApplied;
            }
        }
    }};
}

macro_rules! backend {
    ($module:ident, $db:ty, $begin_write:expr, $begin_snapshot:expr, $lock_rows:expr, $backup:tt) => {
        pub mod $module {
            use super::*;

            crate::store::backup_sql::backup_sql! $backup;

            type Pool = sqlx::Pool<$db>;
            type Conn = <$db as sqlx::Database>::Connection;

            crate::game::economy::sql::economy_writes!();
            crate::game::generation::sql::generation_writes!();
            crate::game::arena::sql::arena_writes!();
            crate::game::collection::sql::collection_sql!();
            crate::game::guild::sql::guild_sql!();
            crate::game::roleplay::sql::roleplay_sql!();

/// A `jobs` row, selected with `job_columns!()`.
fn stored_job(r: &<$db as sqlx::Database>::Row) -> Result<StoredJob, StoreError> {
    let workflow: String = r.try_get(3)?;
    let status: String = r.try_get(6)?;
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("job has {what} {v:?}"));
    Ok(StoredJob {
        job: Job {
            id: r.try_get(0)?,
            key: user_key(r.try_get(1)?, r.try_get(2)?)?,
            workflow: if workflow::valid_id(&workflow) {
                Workflow::intern(&workflow)
            } else {
                return Err(corrupt("workflow", &workflow));
            },
            prompt: r.try_get(4)?,
            image: r.try_get(10)?,
            cost: r.try_get(5)?,
            held: r.try_get::<i64, _>(11)? != 0,
            notify: r.try_get(12)?,
            created_ms: r.try_get(8)?,
        },
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        result: r.try_get(7)?,
        finished_ms: r.try_get(9)?,
    })
}

/// An `arena_entries` row, selected with `entry_columns!()`.
fn stored_entry(r: &<$db as sqlx::Database>::Row) -> Result<StoredEntry, StoreError> {
    let status: String = r.try_get(5)?;
    let key = user_key(r.try_get(1)?, r.try_get(2)?)?;
    let entry = ArenaEntry {
        id: r.try_get(0)?,
        key,
        fee: r.try_get(3)?,
        power: r.try_get(4)?,
        created_ms: r.try_get(10)?,
        notify: r.try_get(11)?,
    };
    let battle: Option<String> = r.try_get(6)?;
    let opponent: Option<i64> = r.try_get(7)?;
    let fought = match (battle, opponent) {
        (Some(battle_id), Some(opponent)) => Some(Fought {
            entry: entry.clone(),
            battle_id,
            opponent: UserId::new(opponent).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            won: r.try_get::<Option<i64>, _>(8)?.unwrap_or(0) != 0,
            prize: r.try_get::<Option<i64>, _>(9)?.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(StoredEntry {
        entry,
        status: EntryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("arena entry has status {status:?}")))?,
        fought,
    })
}

            pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }

            pub async fn migration_version(pool: &Pool) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
                Ok(row.try_get::<Option<i64>, _>(0)?)
            }

            pub async fn load_user(pool: &Pool, key: UserKey) -> Result<LoadedUser, StoreError> {
                let mut conn = pool.acquire().await?;
                load_user_on(&mut conn, key).await
            }

            async fn load_user_on(conn: &mut Conn, key: UserKey) -> Result<LoadedUser, StoreError> {
                let (g, u) = (key.guild.get(), key.user.get());
                let row = sqlx::query(
                    "SELECT gold, gems, xp, level, daily_day, daily_streak, credits, lucky_day, lucky_pct, verified, \
                     (SELECT COUNT(*) FROM jobs j WHERE j.guild_id = $1 AND j.user_id = $2 AND j.status = 'queued'), \
                     (SELECT COUNT(*) FROM arena_entries a WHERE a.guild_id = $1 AND a.user_id = $2 AND a.status IN ('waiting', 'matched')), \
                     (SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM jobs j WHERE j.guild_id = $1 AND j.user_id = $2 AND j.status = 'queued' AND j.held = 1) \
                     FROM users WHERE guild_id = $1 AND user_id = $2",
                )
                .bind(g)
                .bind(u)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else {
                    return Ok(LoadedUser::default());
                };
                let mut state = UserState {
                    on_demand: None,
                    exists: true,
                    gold: row.try_get(0)?,
                    gems: row.try_get(1)?,
                    xp: row.try_get(2)?,
                    daily_day: to_i32(row.try_get(4)?),
                    daily_streak: to_i32(row.try_get(5)?).unwrap_or(0),
                    credits: row.try_get(6)?,
                    lucky_day: to_i32(row.try_get(7)?),
                    lucky_pct: u8::try_from(row.try_get::<i64, _>(8)?).unwrap_or(0),
                    verified: row.try_get::<i64, _>(9)? != 0,
                    open_jobs: u8::try_from(row.try_get::<i64, _>(10)?).unwrap_or(u8::MAX),
                    in_arena: row.try_get::<i64, _>(11)? > 0,
                    credits_held: row.try_get(12)?,
                    inventory: crate::state::Inventory::default(),
                };
                let items = sqlx::query(
                    "SELECT item, quantity FROM inventory WHERE guild_id = $1 AND user_id = $2 AND quantity > 0 ORDER BY item",
                )
                .bind(g)
                .bind(u)
                .fetch_all(&mut *conn)
                .await?;
                state.inventory = crate::state::Inventory::from_sorted(
                    items
                        .iter()
                        .map(|it| Ok((it.try_get::<String, _>(0)?.into_boxed_str(), it.try_get(1)?)))
                        .collect::<Result<Vec<_>, StoreError>>()?,
                );
                let cap = RecentCommands::CAPACITY as i64;
                let ids = sqlx::query(
                    "SELECT command_id FROM commands WHERE guild_id = $1 AND user_id = $2 ORDER BY at_ms DESC LIMIT $3",
                )
                .bind(g)
                .bind(u)
                .bind(cap + 1)
                .fetch_all(&mut *conn)
                .await?;
                let incomplete = ids.len() as i64 > cap;
                let mut fps = Vec::with_capacity(ids.len().min(cap as usize));
                for r in ids.iter().take(cap as usize).rev() {
                    let id: String = r.try_get(0)?;
                    if let Ok(id) = id.parse::<CommandId>() {
                        fps.push(id.fingerprint());
                    }
                }
                Ok(LoadedUser { state, recent: RecentCommands::from_loaded(fps, incomplete) })
            }

            pub async fn find_reply(pool: &Pool, key: UserKey, id: &CommandId) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT reply FROM commands WHERE guild_id = $1 AND user_id = $2 AND command_id = $3")
                    .bind(key.guild.get())
                    .bind(key.user.get())
                    .bind(id.as_str())
                    .fetch_optional(pool)
                    .await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?)
            }

            pub async fn commit(pool: &Pool, batch: &[WriteSet], fence: Option<&Fence>) -> Result<Vec<Option<CommitOutcome>>, StoreError> {
                let mut conn = pool.acquire().await?;
                let done = async {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let refused = match fence {
                        Some(f) => fenced_in(&mut tx, f, batch).await?,
                        None => None,
                    };
                    let outcomes = match refused {
                        None => commit_on(&mut tx, batch).await?.into_iter().map(Some).collect(),
                        Some(refused) => {
                            let kept: Vec<WriteSet> = batch
                                .iter()
                                .zip(&refused)
                                .filter(|(_, r)| !**r)
                                .map(|(w, _)| w.clone())
                                .collect();
                            let mut applied = if kept.is_empty() {
                                Vec::new().into_iter()
                            } else {
                                commit_on(&mut tx, &kept).await?.into_iter()
                            };
                            refused.iter().map(|r| if *r { None } else { applied.next() }).collect()
                        }
                    };
                    // An answer from the database means it did not commit;
                    // a connection lost on the way leaves it unknown.
                    tx.commit().await.map_err(|e| match e {
                        sqlx::Error::Database(_) => StoreError::Db(e),
                        other => StoreError::Ambiguous(other.to_string()),
                    })?;
                    Ok(outcomes)
                }
                .await;
                if done.is_err() {
                    // A transaction that failed (a full disk, a lost server)
                    // can leave its connection in a state the pool cannot
                    // see: SQLite may have rolled it back itself while sqlx
                    // still counts it open, and that connection then holds
                    // the write lock for ever. It is closed, never reused.
                    let _ = sqlx::Connection::close(conn.detach()).await;
                }
                done
            }

            /// Cluster mode: which WriteSets of `batch` their slot's lease
            /// refuses (another epoch, another owner), `None` if none is.
            /// The leases are locked `FOR SHARE`, in slot order, until the
            /// transaction ends: a takeover waits for this commit.
            async fn fenced_in(tx: &mut Conn, fence: &Fence, batch: &[WriteSet]) -> Result<Option<Vec<bool>>, StoreError> {
                let mut slots: Vec<u32> = batch
                    .iter()
                    .filter(|w| w.epoch.is_some())
                    .map(|w| w.key.guild.slot(fence.slots))
                    .collect();
                slots.sort_unstable();
                slots.dedup();
                if slots.is_empty() {
                    return Ok(None);
                }
                // One prepared statement, one round trip: the idle limit
                // (for this transaction only) and the leases, locked in slot
                // order. The slots travel as an array literal in text, so the
                // same code compiles for SQLite, which binds no arrays (and
                // never runs it: cluster mode is PostgreSQL's).
                let list = format!("{{{}}}", slots.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
                let rows = sqlx::query(
                    "WITH idle_limit AS (SELECT set_config('idle_in_transaction_session_timeout', $3, true)) \
                     SELECT l.slot, l.epoch FROM cluster_leases l, idle_limit \
                     WHERE l.cluster = $1 AND l.owner = $2 AND l.slot = ANY(CAST(CAST($4 AS TEXT) AS INTEGER[])) \
                     ORDER BY l.slot FOR SHARE OF l",
                )
                .bind(&fence.cluster)
                .bind(&fence.node)
                .bind(fence.idle_limit_ms.to_string())
                .bind(list)
                .fetch_all(&mut *tx)
                .await?;
                let mut held = HashMap::with_capacity(rows.len());
                for r in &rows {
                    held.insert(r.try_get::<i32, _>(0)? as u32, r.try_get::<i64, _>(1)?);
                }
                let mut refused: Vec<bool> = batch
                    .iter()
                    .map(|w| w.epoch.is_some_and(|e| held.get(&w.key.guild.slot(fence.slots)) != Some(&e)))
                    .collect();
                // A pair goes together, refused or not.
                for i in 1..batch.len() {
                    if batch[i].paired && (refused[i] || refused[i - 1]) {
                        refused[i] = true;
                        refused[i - 1] = true;
                    }
                }
                Ok(refused.iter().any(|r| *r).then_some(refused))
            }

            /// A batch applied and rolled back: what `commit` would do and
            /// what it would refuse, without changing anything (an import's
            /// dry run).
            pub async fn trial(pool: &Pool, batch: &[WriteSet]) -> Result<Vec<CommitOutcome>, StoreError> {
                let mut conn = pool.acquire().await?;
                let done = async {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let outcomes = commit_on(&mut tx, batch).await?;
                    tx.rollback().await?;
                    Ok(outcomes)
                }
                .await;
                if done.is_err() {
                    let _ = sqlx::Connection::close(conn.detach()).await;
                }
                done
            }

            /// Of `keys`, the players kokoro has, each with whether they
            /// have roleplay characters: one query per chunk, for imports.
            pub async fn presence(pool: &Pool, keys: &[UserKey]) -> Result<HashMap<UserKey, bool>, StoreError> {
                // Chunks of one shape (the last padded with its own keys),
                // joined to the users' primary key: an index lookup per
                // key on both backends, never a scan of every player.
                const CHUNK: usize = 128;
                let mut out = HashMap::with_capacity(keys.len());
                for chunk in keys.chunks(CHUNK) {
                    let padded = chunk.iter().chain(std::iter::repeat(&chunk[0])).take(CHUNK);
                    let mut qb = QueryBuilder::<$db>::new("WITH k (g, u) AS (");
                    qb.push_values(padded, |mut b, k| {
                        b.push_bind(k.guild.get()).push_bind(k.user.get());
                    });
                    qb.push(
                        // LIMIT 1: a probe of the index per player (an
                        // EXISTS may be planned as a hash of every row).
                        ") SELECT u.guild_id, u.user_id, CAST((SELECT COUNT(*) FROM (SELECT 1 FROM rp_characters c \
                         WHERE c.guild_id = u.guild_id AND c.user_id = u.user_id LIMIT 1) AS one) AS BIGINT) \
                         FROM k JOIN users u ON u.guild_id = k.g AND u.user_id = k.u",
                    );
                    for r in qb.build().fetch_all(pool).await? {
                        out.insert(user_key(r.try_get(0)?, r.try_get(1)?)?, r.try_get::<i64, _>(2)? != 0);
                    }
                }
                Ok(out)
            }

            /// The body of a group commit, inside the caller's transaction.
            async fn commit_on(tx: &mut Conn, batch: &[WriteSet]) -> Result<Vec<CommitOutcome>, StoreError> {
                let mut outcomes = vec![CommitOutcome::Applied; batch.len()];
                // Guards first, feature by feature: each skips its WriteSet if
                // what it moves on has moved on already (a transfer credited,
                // a job closed, an entry matched), so it lands once.
                economy_writes::guard(tx, batch, &mut outcomes).await?;
                generation_writes::guard(tx, batch, &mut outcomes).await?;
                arena_writes::guard(tx, batch, &mut outcomes).await?;
                // Then command ids: a multi-row insert that returns the ids it
                // took; one it did not take was recorded before, so that
                // WriteSet is a retry and writes nothing else.
                let fresh_commands: Vec<(usize, &WriteSet, &CommandId, &String)> = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| outcomes[*i] == CommitOutcome::Applied)
                    .filter_map(|(i, ws)| Some((i, ws, ws.command_id.as_ref()?, ws.reply_json.as_ref()?)))
                    .collect();
                if !fresh_commands.is_empty() {
                    let mut taken: std::collections::HashSet<(i64, i64, String)> = std::collections::HashSet::new();
                    let mut start = 0;
                    for size in chunk_sizes(fresh_commands.len()) {
                        let mut qb = QueryBuilder::new("INSERT INTO commands (guild_id, user_id, command_id, reply, at_ms) ");
                        qb.push_values(&fresh_commands[start..start + size], |mut b, (_, ws, id, reply)| {
                            b.push_bind(ws.key.guild.get())
                                .push_bind(ws.key.user.get())
                                .push_bind(id.as_str())
                                .push_bind(reply.as_str())
                                .push_bind(ws.at_ms);
                        });
                        qb.push(" ON CONFLICT (guild_id, user_id, command_id) DO NOTHING RETURNING guild_id, user_id, command_id");
                        for r in qb.build().fetch_all(&mut *tx).await? {
                            taken.insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
                        }
                        start += size;
                    }
                    for (i, ws, id, _) in &fresh_commands {
                        if !taken.contains(&(ws.key.guild.get(), ws.key.user.get(), id.as_str().to_owned())) {
                            outcomes[*i] = CommitOutcome::AlreadyApplied;
                        }
                    }
                }
                // A paired WriteSet (a give's credit) shares the fate of the
                // one before it (the debit): a retried debit writes neither.
                for i in 1..batch.len() {
                    if batch[i].paired && outcomes[i - 1] != CommitOutcome::Applied {
                        outcomes[i] = CommitOutcome::AlreadyApplied;
                    }
                }
                let applied: Vec<&WriteSet> = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| **o == CommitOutcome::Applied)
                    .map(|(ws, _)| ws)
                    .collect();

                // One row per player: a later WriteSet of the same player wins
                // (one writer per player makes this rare; PostgreSQL refuses
                // to upsert one key twice in a statement).
                let mut last: HashMap<UserKey, usize> = HashMap::with_capacity(applied.len());
                let mut users: Vec<(UserKey, &UserRow, i64)> = Vec::with_capacity(applied.len());
                for ws in &applied {
                    if let Some(row) = &ws.row {
                        match last.get(&ws.key) {
                            Some(&i) => users[i] = (ws.key, row, ws.at_ms),
                            None => {
                                last.insert(ws.key, users.len());
                                users.push((ws.key, row, ws.at_ms));
                            }
                        }
                    }
                }
                insert_chunked!(
                    tx,
                    "INSERT INTO users (guild_id, user_id, gold, gems, xp, level, daily_day, daily_streak, \
                     credits, lucky_day, lucky_pct, verified, created_ms, updated_ms) ",
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET gold = excluded.gold, gems = excluded.gems, \
                      xp = excluded.xp, level = excluded.level, daily_day = excluded.daily_day, \
                      daily_streak = excluded.daily_streak, credits = excluded.credits, \
                      lucky_day = excluded.lucky_day, lucky_pct = excluded.lucky_pct, \
                      verified = excluded.verified, updated_ms = excluded.updated_ms",
                    users,
                    |b, r| {
                        let (key, row, at) = r;
                        b.push_bind(key.guild.get())
                            .push_bind(key.user.get())
                            .push_bind(row.gold)
                            .push_bind(row.gems)
                            .push_bind(row.xp)
                            .push_bind(i64::from(row.level))
                            .push_bind(row.daily_day.map(i64::from))
                            .push_bind(i64::from(row.daily_streak))
                            .push_bind(row.credits)
                            .push_bind(row.lucky_day.map(i64::from))
                            .push_bind(i64::from(row.lucky_pct))
                            .push_bind(i64::from(row.verified))
                            .push_bind(*at)
                            .push_bind(*at);
                    }
                );

                let ledger: Vec<(&WriteSet, &crate::writeset::LedgerEntry)> =
                    applied.iter().flat_map(|ws| ws.ledger.iter().map(move |l| (*ws, l))).collect();
                insert_chunked!(
                    tx,
                    "INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, command_id, transfer_id, at_ms) ",
                    "",
                    ledger,
                    |b, r| {
                        let (ws, l) = r;
                        let transfer = ws.transfer_id().map(str::to_owned);
                        b.push_bind(ws.key.guild.get())
                            .push_bind(ws.key.user.get())
                            .push_bind(l.currency.as_str())
                            .push_bind(l.amount)
                            .push_bind(l.balance_after)
                            .push_bind(l.reason)
                            .push_bind(ws.command_id.as_ref().map(|c| c.as_str().to_owned()))
                            .push_bind(transfer)
                            .push_bind(ws.at_ms);
                    }
                );

                // Then what each feature writes besides, kind by kind.
                economy_writes::insert(tx, &applied).await?;
                generation_writes::insert(tx, &applied).await?;
                arena_writes::insert(tx, &applied).await?;
                collection_sql::insert(tx, &applied).await?;
                guild_sql::insert(tx, &applied).await?;
                roleplay_sql::insert(tx, &applied).await?;

                Ok(outcomes)
            }

            /// Moves two waiting entries to `matched` with the battle's
            /// result, in one transaction, only if both are still waiting.
            #[allow(clippy::too_many_arguments)]
            pub async fn arena_match(
                pool: &Pool, a: &ArenaEntry, b: &ArenaEntry, battle_id: &str, a_won: bool, prize: i64, at: i64,
                fence: Option<(&Fence, i64)>,
            ) -> Result<bool, StoreError> {
                let mut tx = pool.begin().await?;
                if let Some((fence, epoch)) = fence {
                    let limit = format!("SET LOCAL idle_in_transaction_session_timeout = {}", fence.idle_limit_ms);
                    sqlx::query(&limit).persistent(false).execute(&mut *tx).await?;
                    let held = sqlx::query(
                        "SELECT 1 FROM cluster_leases WHERE cluster = $1 AND owner = $2 AND slot = $3 AND epoch = $4 FOR SHARE",
                    )
                    .bind(&fence.cluster)
                    .bind(&fence.node)
                    .bind(a.key.guild.slot(fence.slots) as i32)
                    .bind(epoch)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if held.is_none() {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                for (me, them, won) in [(a, b, a_won), (b, a, !a_won)] {
                    let row = sqlx::query(
                        "UPDATE arena_entries SET status = 'matched', battle_id = $1, opponent_id = $2, won = $3, \
                         prize = $4, matched_ms = $5 WHERE id = $6 AND status = 'waiting' RETURNING id",
                    )
                    .bind(battle_id)
                    .bind(them.key.user.get())
                    .bind(i64::from(won))
                    .bind(if won { prize } else { 0 })
                    .bind(at)
                    .bind(me.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    if row.is_none() {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                tx.commit().await?;
                Ok(true)
            }

            /// Entries waiting or matched but not yet paid, oldest first.
            pub async fn arena_open(pool: &Pool) -> Result<Vec<StoredEntry>, StoreError> {
                let rows = sqlx::query(concat!("SELECT ", entry_columns!(), " FROM arena_entries WHERE status IN ('waiting', 'matched') ORDER BY created_ms, id"))
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(stored_entry).collect()
            }

            pub async fn arena_entry(pool: &Pool, id: &str) -> Result<Option<StoredEntry>, StoreError> {
                let row = sqlx::query(concat!("SELECT ", entry_columns!(), " FROM arena_entries WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(stored_entry).transpose()
            }

            /// A player's newest arena entries, newest first.
            pub async fn arena_of(pool: &Pool, key: UserKey, limit: i64) -> Result<Vec<StoredEntry>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT ", entry_columns!(), " FROM arena_entries WHERE guild_id = $1 AND user_id = $2 ORDER BY created_ms DESC, id DESC LIMIT $3"
                ))
                .bind(key.guild.get())
                .bind(key.user.get())
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter().map(stored_entry).collect()
            }

            /// Jobs still queued (oldest first): after a restart, the queues
            /// take them up again.
            pub async fn open_jobs(pool: &Pool) -> Result<Vec<StoredJob>, StoreError> {
                let rows = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE status = 'queued' ORDER BY created_ms, id"))
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(stored_job).collect()
            }

            pub async fn job(pool: &Pool, id: &str) -> Result<Option<StoredJob>, StoreError> {
                let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(stored_job).transpose()
            }

            /// Ended jobs whose player asked through `door` (`discord`,
            /// `telegram`) and has not been told yet, the longest-ended first.
            pub async fn jobs_to_notify(pool: &Pool, door: &str, limit: i64) -> Result<Vec<(StoredJob, String)>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT ", job_columns!(), " FROM jobs WHERE notify IS NOT NULL AND notified_ms IS NULL \
                     AND status <> 'queued' AND notify LIKE $1 ORDER BY finished_ms, id LIMIT $2"
                ))
                .bind(format!("{door}:%"))
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let job = stored_job(r)?;
                        let to = job.job.notify.as_deref().and_then(|n| n.split_once(':')).map(|(_, to)| to.to_owned());
                        to.map(|to| (job, to)).ok_or_else(|| StoreError::Corrupt("a job's notify has no address".into()))
                    })
                    .collect()
            }

            /// Fought and paid arena entries whose player joined through
            /// `door` and has not been told yet, each with the address.
            pub async fn arena_to_notify(pool: &Pool, door: &str, limit: i64) -> Result<Vec<(StoredEntry, String)>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT ", entry_columns!(), " FROM arena_entries WHERE notify IS NOT NULL AND notified_ms IS NULL \
                     AND status = 'rewarded' AND notify LIKE $1 ORDER BY closed_ms, id LIMIT $2"
                ))
                .bind(format!("{door}:%"))
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let e = stored_entry(r)?;
                        let to = e.entry.notify.as_deref().and_then(|n| n.split_once(':')).map(|(_, to)| to.to_owned());
                        to.map(|to| (e, to)).ok_or_else(|| StoreError::Corrupt("an arena entry's notify has no address".into()))
                    })
                    .collect()
            }

            pub async fn mark_arena_notified(pool: &Pool, id: &str, at_ms: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE arena_entries SET notified_ms = $1 WHERE id = $2 AND notified_ms IS NULL")
                    .bind(at_ms)
                    .bind(id)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            /// A payment by the provider's id: its player, credits and status.
            pub async fn payment(pool: &Pool, provider_id: &str) -> Result<Option<(UserKey, i64, String)>, StoreError> {
                let row = sqlx::query("SELECT guild_id, user_id, credits, status FROM payments WHERE provider_id = $1")
                    .bind(provider_id)
                    .fetch_optional(pool)
                    .await?;
                row.map(|r| Ok((user_key(r.try_get(0)?, r.try_get(1)?)?, r.try_get(2)?, r.try_get(3)?)))
                    .transpose()
            }

            /// Keeps a member's Linked Roles tokens (the newest replace the old).
            pub async fn save_role_connection(pool: &Pool, c: &crate::store::RoleConnection) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO role_connections (user_id, access_token, refresh_token, expires_ms, linked_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
                     access_token = excluded.access_token, refresh_token = excluded.refresh_token, \
                     expires_ms = excluded.expires_ms, linked_ms = excluded.linked_ms",
                )
                .bind(c.user_id)
                .bind(&c.access_token)
                .bind(&c.refresh_token)
                .bind(c.expires_ms)
                .bind(c.linked_ms)
                .execute(pool)
                .await?;
                Ok(())
            }

            /// Every member who linked, oldest link first.
            pub async fn role_connections(pool: &Pool) -> Result<Vec<crate::store::RoleConnection>, StoreError> {
                let rows = sqlx::query(
                    "SELECT user_id, access_token, refresh_token, expires_ms, linked_ms FROM role_connections ORDER BY linked_ms, user_id",
                )
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(crate::store::RoleConnection {
                            user_id: r.try_get(0)?,
                            access_token: r.try_get(1)?,
                            refresh_token: r.try_get(2)?,
                            expires_ms: r.try_get(3)?,
                            linked_ms: r.try_get(4)?,
                        })
                    })
                    .collect()
            }

            /// Audit rows since `since_ms`, newest first, across guilds.
            pub async fn audit_since(pool: &Pool, since_ms: i64, limit: i64) -> Result<Vec<AuditLine>, StoreError> {
                let rows = sqlx::query(
                    "SELECT guild_id, by_user, action, target_user, key, old_value, new_value, reason, at_ms \
                     FROM audit_log WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
                )
                .bind(since_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditLine {
                            guild: r.try_get(0)?,
                            by: r.try_get(1)?,
                            action: r.try_get(2)?,
                            target: r.try_get(3)?,
                            key: r.try_get(4)?,
                            old: r.try_get(5)?,
                            new: r.try_get(6)?,
                            reason: r.try_get(7)?,
                            at_ms: r.try_get(8)?,
                        })
                    })
                    .collect()
            }

            /// Deletes up to `limit` processed command ids older than
            /// `before_ms`; how many went.
            pub async fn prune_commands(pool: &Pool, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM commands WHERE (guild_id, user_id, command_id) IN \
                     (SELECT guild_id, user_id, command_id FROM commands WHERE at_ms < $1 LIMIT $2)",
                )
                .bind(before_ms)
                .bind(limit)
                .execute(pool)
                .await?;
                Ok(done.rows_affected())
            }

            /// Deletes up to `limit` jobs finished before `before_ms` whose
            /// player has been told (or asked over HTTP), adding their
            /// charges and refunds to `jobs_pruned` in the same transaction.
            pub async fn prune_jobs(pool: &Pool, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
                let mut tx = pool.begin_with($begin_write).await?;
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE status <> 'queued' AND finished_ms < $1 \
                     AND (notify IS NULL OR notified_ms IS NOT NULL) ORDER BY finished_ms LIMIT $2",
                )
                .bind(before_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                if ids.is_empty() {
                    return Ok(0);
                }
                let mut charged = 0i64;
                let mut refunded = 0i64;
                for chunk in ids.chunks(100) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT CAST(COALESCE(SUM(CASE WHEN held = 0 OR status = 'done' THEN cost ELSE 0 END), 0) AS BIGINT), \
                         CAST(COALESCE(SUM(CASE WHEN held = 0 AND status IN ('failed', 'cancelled') THEN cost ELSE 0 END), 0) AS BIGINT) \
                         FROM jobs WHERE id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_str());
                    }
                    qb.push(")");
                    let r = qb.build().fetch_one(&mut *tx).await?;
                    charged += r.try_get::<i64, _>(0)?;
                    refunded += r.try_get::<i64, _>(1)?;
                    let mut del = QueryBuilder::<$db>::new("DELETE FROM jobs WHERE id IN (");
                    let mut list = del.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_str());
                    }
                    del.push(")");
                    del.build().execute(&mut *tx).await?;
                }
                sqlx::query(
                    "INSERT INTO jobs_pruned (id, jobs, charged, refunded) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET jobs = jobs_pruned.jobs + excluded.jobs, \
                     charged = jobs_pruned.charged + excluded.charged, refunded = jobs_pruned.refunded + excluded.refunded",
                )
                .bind(ids.len() as i64)
                .bind(charged)
                .bind(refunded)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(ids.len() as u64)
            }

            /// Records that the player was told `id` ended.
            pub async fn mark_notified(pool: &Pool, id: &str, at_ms: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE jobs SET notified_ms = $1 WHERE id = $2 AND notified_ms IS NULL")
                    .bind(at_ms)
                    .bind(id)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            /// A player's newest jobs, newest first.
            pub async fn jobs_of(pool: &Pool, key: UserKey, limit: i64) -> Result<Vec<StoredJob>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT ", job_columns!(), " FROM jobs WHERE guild_id = $1 AND user_id = $2 ORDER BY created_ms DESC, id DESC LIMIT $3"
                ))
                .bind(key.guild.get())
                .bind(key.user.get())
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter().map(stored_job).collect()
            }

            /// The conventional design kokoro is measured against: one
            /// transaction per command, rows locked for its whole length. Same
            /// rules, same SQL; only the transaction boundary differs.
            pub async fn conventional(pool: &Pool, command: &Command, ctx: &Context<'_>) -> Result<Reply, StoreError> {
                let name = command.kind.name();
                let mut tx = pool.begin_with($begin_write).await?;
                let key = command.key;
                let receiver = match &command.kind {
                    CommandKind::Economy(EconomyCommand::Give { to, .. }) => Some(UserKey::new(key.guild, *to)),
                    _ => None,
                };
                // Lock both players' rows in id order, so opposite transfers cannot deadlock.
                let mut ids = vec![key.user.get()];
                ids.extend(receiver.map(|r| r.user.get()));
                ids.sort_unstable();
                for id in &ids {
                    sqlx::query(concat!("SELECT gold FROM users WHERE guild_id = $1 AND user_id = $2", $lock_rows))
                        .bind(key.guild.get())
                        .bind(*id)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                if let Some(id) = &command.id {
                    let first = sqlx::query("SELECT reply FROM commands WHERE guild_id = $1 AND user_id = $2 AND command_id = $3")
                        .bind(key.guild.get())
                        .bind(key.user.get())
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = first {
                        let json: String = row.try_get(0)?;
                        return serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()));
                    }
                }
                let mut me = load_user_on(&mut tx, key).await?;
                if command.kind.needs_collection() {
                    me.state.set_collection(collection_sql::load_on(&mut tx, key).await?);
                }
                if command.kind.needs_roleplay() {
                    me.state.set_roleplay(roleplay_sql::load_on(&mut tx, key).await?);
                }
                if command.kind.needs_allowance() {
                    me.state.set_allowance(generation_writes::load_allowance_on(&mut tx, key).await?);
                }
                let draft = match game::decide(&me.state, key, &command.kind, command.id.clone(), ctx) {
                    Ok(d) => d,
                    Err(refusal) => return Ok(Reply::error(name, refusal.code, refusal.message)),
                };
                let reply = Reply::ok(name, draft.data.clone(), draft.message.clone());
                let mut writes = draft.writes;
                if command.id.is_some() && !writes.is_empty() {
                    writes.reply_json = serde_json::to_string(&reply).ok();
                }
                let transfer = writes.transfer_out().cloned();
                commit_on(&mut tx, std::slice::from_ref(&writes)).await?;
                if let (Some(t), Some(to)) = (transfer, receiver) {
                    let them = load_user_on(&mut tx, to).await?;
                    let credit = game::economy::receive(&them.state, to, &t, ctx)
                        .map_err(|r| StoreError::Corrupt(r.message))?;
                    commit_on(&mut tx, std::slice::from_ref(&credit.writes)).await?;
                }
                tx.commit().await?;
                Ok(reply)
            }

            pub async fn leaderboard(pool: &Pool, guild: GuildId, by: LeaderboardBy, limit: i64) -> Result<Vec<LeaderboardRow>, StoreError> {
                let sql = match by {
                    LeaderboardBy::Gold => {
                        "SELECT user_id, gold, level, xp FROM users WHERE guild_id = $1 ORDER BY gold DESC, user_id LIMIT $2"
                    }
                    LeaderboardBy::Level => {
                        "SELECT user_id, gold, level, xp FROM users WHERE guild_id = $1 ORDER BY level DESC, xp DESC, user_id LIMIT $2"
                    }
                };
                let rows = sqlx::query(sql).bind(guild.get()).bind(limit).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        let user = UserId::new(r.try_get(0)?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        Ok(LeaderboardRow { user, gold: r.try_get(1)?, level: r.try_get(2)?, xp: r.try_get(3)? })
                    })
                    .collect()
            }

            pub async fn pending_transfers(pool: &Pool, before_ms: i64, limit: i64) -> Result<Vec<Transfer>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, guild_id, from_user, to_user, amount, created_ms FROM transfers \
                     WHERE credited_ms IS NULL AND created_ms <= $1 ORDER BY created_ms LIMIT $2",
                )
                .bind(before_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let from = user_key(r.try_get(1)?, r.try_get(2)?)?;
                        let to = user_key(r.try_get(1)?, r.try_get(3)?)?;
                        Ok(Transfer {
                            id: r.try_get(0)?,
                            guild: from.guild,
                            from: from.user,
                            to: to.user,
                            amount: r.try_get(4)?,
                            created_ms: r.try_get(5)?,
                        })
                    })
                    .collect()
            }

            pub async fn command_ids(pool: &Pool) -> Result<Vec<(UserKey, String)>, StoreError> {
                let rows = sqlx::query("SELECT guild_id, user_id, command_id FROM commands").fetch_all(pool).await?;
                rows.iter().map(|r| Ok((user_key(r.try_get(0)?, r.try_get(1)?)?, r.try_get(2)?))).collect()
            }

            /// Every total is read from one snapshot, so a command that
            /// commits while the audit runs cannot make its sums disagree.
            pub async fn audit(pool: &Pool) -> Result<AuditReport, StoreError> {
                let mut tx = pool.begin_with($begin_snapshot).await?;
                let mut report = AuditReport::default();
                let totals = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(gold), 0) AS BIGINT), CAST(COALESCE(SUM(gems), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(credits), 0) AS BIGINT) FROM users",
                )
                .fetch_one(&mut *tx)
                .await?;
                report.users = totals.try_get(0)?;
                report.gold_total = totals.try_get(1)?;
                report.gems_total = totals.try_get(2)?;
                report.credits_total = totals.try_get(3)?;
                let flight = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfers WHERE credited_ms IS NULL",
                )
                .fetch_one(&mut *tx)
                .await?;
                report.pending_transfers = flight.try_get(0)?;
                report.in_flight_gold = flight.try_get(1)?;
                for r in sqlx::query("SELECT currency, reason, CAST(SUM(amount) AS BIGINT) FROM ledger GROUP BY currency, reason")
                    .fetch_all(&mut *tx)
                    .await?
                {
                    report.by_reason.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
                }
                let mismatched = sqlx::query(
                    "SELECT u.guild_id, u.user_id FROM users u LEFT JOIN ( \
                       SELECT guild_id, user_id, \
                         CAST(SUM(CASE WHEN currency = 'gold' THEN amount ELSE 0 END) AS BIGINT) AS g, \
                         CAST(SUM(CASE WHEN currency = 'gems' THEN amount ELSE 0 END) AS BIGINT) AS m, \
                         CAST(SUM(CASE WHEN currency = 'credits' THEN amount ELSE 0 END) AS BIGINT) AS c \
                       FROM ledger GROUP BY guild_id, user_id) l \
                     ON l.guild_id = u.guild_id AND l.user_id = u.user_id \
                     WHERE u.gold <> COALESCE(l.g, 0) OR u.gems <> COALESCE(l.m, 0) OR u.credits <> COALESCE(l.c, 0) \
                     ORDER BY u.guild_id, u.user_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                for r in mismatched {
                    report.mismatched.push(user_key(r.try_get(0)?, r.try_get(1)?)?);
                }
                for r in sqlx::query("SELECT guild_id, user_id FROM users WHERE gold < 0 OR gems < 0 OR credits < 0").fetch_all(&mut *tx).await? {
                    report.negative.push(user_key(r.try_get(0)?, r.try_get(1)?)?);
                }
                report.collection = collection_sql::audit(&mut tx).await?;
                report.collection.extend(guild_sql::audit(&mut tx).await?);
                report.collection.extend(roleplay_sql::audit(&mut tx).await?);
                let (held, broken) = generation_writes::audit(&mut tx).await?;
                report.credits_held = held;
                report.collection.extend(broken);
                (report.rp_characters, report.rp_xp) = roleplay_sql::totals(&mut tx).await?;
                // Read only: nothing to keep.
                tx.rollback().await?;
                Ok(report)
            }
        }
    };
}

// SQLite has no row locks: BEGIN IMMEDIATE takes the write lock up front.
// A snapshot: SQLite's read transaction in WAL mode sees the database as of
// its first read; PostgreSQL needs REPEATABLE READ for the same.
backend!(
    sqlite,
    sqlx::Sqlite,
    "BEGIN IMMEDIATE",
    "BEGIN",
    "",
    (
        sqlx::Sqlite,
        "BEGIN IMMEDIATE",
        "BEGIN",
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        "",
        // SQLite moves its AUTOINCREMENT counters itself.
        [] as [&str; 0]
    )
);
backend!(
    postgres,
    sqlx::Postgres,
    "BEGIN",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    " FOR UPDATE",
    (
        sqlx::Postgres,
        "BEGIN",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
        "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        // Identity columns take restored ids only when told to.
        " OVERRIDING SYSTEM VALUE",
        // Sequences move past the restored ids.
        ["SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
          WHERE table_schema = current_schema() AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')"]
    )
);
