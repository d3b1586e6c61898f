//! `GroupCommit`, the persistence actor: collects WriteSets from every user
//! actor and commits them in one transaction per batch, then answers each.
//!
//! A batch closes when it reaches `max_batch` or when `max_wait` has passed
//! since its first WriteSet. While one batch commits, the next one fills: under
//! load, batches grow by themselves and one fsync serves many commands.
//! The queue is bounded: past `backlog`, `submit` says busy at once.
//!
//! An actix actor on the system thread (see `system.rs`): it only batches;
//! each transaction runs on the main runtime, and its end comes back as a
//! `SlotFree` message. Player actors reach it through `submit`, which answers
//! on a oneshot channel, so no player task ever waits on actix's mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::domain::day::unix_ms;
use crate::store::{Fence, Store, StoreError};
use crate::system::{self, ActorSystem, PanicOnce};
use crate::telemetry as m;
use crate::writeset::{CommitOutcome, WriteSet};

#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// WriteSets that may wait; beyond this, commands are answered busy.
    pub backlog: usize,
    /// Attempts for a batch that fails with a transient error.
    pub attempts: u32,
    /// First pause between attempts; doubles each time.
    pub retry_backoff: Duration,
    /// Batches committing at once. Safe because a player has at most one
    /// WriteSet in flight, so concurrent batches never touch the same rows.
    /// 0: one for SQLite (a single writer), three for PostgreSQL.
    pub parallel: usize,
    /// Chaos testing only: acknowledge every Nth WriteSet as applied without
    /// writing it, to prove that the load tester's invariant check catches a
    /// store that loses writes. Never set in production.
    #[doc(hidden)]
    pub lose_every: Option<u64>,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            max_wait: Duration::from_micros(200),
            backlog: 16_384,
            attempts: 4,
            retry_backoff: Duration::from_millis(25),
            parallel: 0,
            lose_every: None,
        }
    }
}

/// Why a WriteSet was not committed. Either way nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage refused the write: {0}")]
    Rejected(String),
    /// The connection failed while committing: the writes may have landed.
    /// Never retried (that could apply them twice); the writer must reload.
    #[error("the outcome is unknown: {0}")]
    Unknown(String),
    /// Cluster mode: the slot's lease moved to another epoch (another node
    /// took it, or this one handed it over) after the WriteSet was decided.
    /// Nothing was written; its actor's state may be behind storage.
    #[error("this node no longer owns the guild's slot")]
    Fenced,
}

/// The backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("persistence backlog full")]
pub struct Busy;

pub type CommitResult = Result<CommitOutcome, CommitError>;

struct Request {
    writes: WriteSet,
    /// Committed with `writes`, right after it in the same batch, all or
    /// nothing (`WriteSet::paired`): a give's credit. `done` answers for both.
    partner: Option<WriteSet>,
    done: oneshot::Sender<CommitResult>,
    /// The command's span: the batch's span links to each one it commits.
    span: tracing::Span,
    /// When it was queued: a batch closes `max_wait` after its oldest.
    at: Instant,
}

/// Progress the watchdog and readiness look at.
#[derive(Debug, Default)]
pub struct CommitProgress {
    /// Unix ms of the last finished commit, or of the start of work after
    /// an idle spell: with work in flight, a stale value means a stall.
    pub last_commit_ms: AtomicI64,
    /// Batches being committed right now.
    pub in_flight: AtomicU64,
    /// Batches committed (or failed), WriteSets in them, and time spent
    /// committing, in µs: enough for a benchmark to report mean batch size
    /// and commit time without a metrics recorder.
    pub batches: AtomicU64,
    pub writes: AtomicU64,
    pub commit_us: AtomicU64,
    /// Unix ms of the last batch that storage could not take
    /// (`storage_unavailable`), and of the last batch it took.
    pub last_failure_ms: AtomicI64,
    pub last_success_ms: AtomicI64,
    /// Jobs closed and arena battles paid so far: bumped by each commit
    /// that closed one, so the front doors wake to tell their players
    /// (`subscribe`).
    pub jobs_ended: tokio::sync::watch::Sender<u64>,
}

/// The handle: cheap to clone, hides the mailbox.
#[derive(Clone)]
pub struct GroupCommit {
    addr: Addr<Committer>,
    /// WriteSets travel to the actor on this channel, and a `Doorbell`
    /// message tells it there are some: one actix message per burst rather
    /// than per WriteSet, so the system thread is woken once per burst.
    writes: flume::Sender<Request>,
    /// Set while a doorbell is on its way; the actor clears it before it
    /// drains, so a WriteSet sent after the drain rings again.
    bell: Arc<AtomicBool>,
    /// WriteSets accepted and not yet in a committing batch: what the
    /// backlog limit bounds. Counted here rather than by the mailbox because
    /// actix's bounded `try_send` gives every `Addr` clone a slot of its own.
    backlog: Arc<AtomicUsize>,
    limit: usize,
    progress: Arc<CommitProgress>,
    cluster: Option<Arc<Cluster>>,
}

impl GroupCommit {
    /// Starts the persistence actor on the system thread; its transactions
    /// run on the main runtime.
    /// In cluster mode (`cluster`), every WriteSet with an epoch commits
    /// only while its slot's lease still has that epoch (`Fence`).
    pub fn start(
        system: &ActorSystem,
        store: Store,
        mut config: GroupCommitConfig,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        if config.parallel == 0 {
            config.parallel = match store.backend() {
                crate::store::Backend::Sqlite => 1,
                crate::store::Backend::Postgres => 3,
            };
        }
        let progress = Arc::new(CommitProgress::default());
        let backlog = Arc::new(AtomicUsize::new(0));
        let (writes, incoming) = flume::unbounded();
        let bell = Arc::new(AtomicBool::new(false));
        let limit = config.backlog.max(1);
        let committer = Committer {
            free_slots: config.parallel.max(1),
            writer: Arc::new(Writer {
                store,
                config,
                progress: progress.clone(),
                incoming,
                backlog: backlog.clone(),
                seen: AtomicU64::new(0),
                fence: cluster.as_ref().map(|c| c.fence()),
                cluster: cluster.clone(),
            }),
            pending: VecDeque::new(),
            bell: bell.clone(),
            timer: None,
            backlog: backlog.clone(),
            io: system.io().clone(),
        };
        let addr = Supervisor::start_in_arbiter(system.arbiter(), |_| committer);
        Self {
            addr,
            writes,
            bell,
            backlog,
            limit,
            progress,
            cluster,
        }
    }

    /// Queues `writes`; the receiver answers once they are durable (or not).
    pub fn submit(&self, writes: WriteSet) -> Result<oneshot::Receiver<CommitResult>, Busy> {
        self.queue(writes, None)
    }

    /// Queues two WriteSets to commit in one transaction, all or nothing:
    /// `second` (marked `paired`) applies only if `first` does. The
    /// receiver answers for both.
    pub fn submit_pair(
        &self,
        first: WriteSet,
        mut second: WriteSet,
    ) -> Result<oneshot::Receiver<CommitResult>, Busy> {
        second.paired = true;
        self.queue(first, Some(second))
    }

    fn queue(
        &self,
        writes: WriteSet,
        partner: Option<WriteSet>,
    ) -> Result<oneshot::Receiver<CommitResult>, Busy> {
        let n = 1 + usize::from(partner.is_some());
        if self.backlog.fetch_add(n, Ordering::Relaxed) >= self.limit {
            self.backlog.fetch_sub(n, Ordering::Relaxed);
            return Err(Busy);
        }
        if let Some(c) = &self.cluster {
            // A handover waits for these (see `Writer::commit_batch`).
            for ws in std::iter::once(&writes).chain(partner.as_ref()) {
                if ws.epoch.is_some() {
                    c.write_started(ws.key.guild.slot(c.config().slots));
                }
            }
        }
        let (done, rx) = oneshot::channel();
        // Past the admission above nothing refuses: the channel is unbounded.
        // If the actor has stopped (shutdown) the WriteSet is dropped
        // unwritten and the caller hears "unknown".
        let _ = self.writes.send(Request {
            writes,
            partner,
            done,
            span: tracing::Span::current(),
            at: Instant::now(),
        });
        if !self.bell.swap(true, Ordering::AcqRel) {
            self.addr.do_send(Doorbell);
        }
        Ok(rx)
    }

    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    pub fn backlog_limit(&self) -> usize {
        self.limit
    }

    pub fn progress(&self) -> &CommitProgress {
        &self.progress
    }

    /// Test hook: makes the actor's next handler panic.
    #[doc(hidden)]
    pub fn panic_once(&self) {
        self.addr.do_send(PanicOnce);
    }
}

/// WriteSets and their answer channels, side by side so the WriteSets can be
/// handed to storage as one slice without copying.
struct Batch {
    writes: Vec<WriteSet>,
    /// One per WriteSet; a pair's second has `None` (its first answers).
    dones: Vec<Option<oneshot::Sender<CommitResult>>>,
    span: tracing::Span,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Self {
            writes: Vec::with_capacity(n),
            dones: Vec::with_capacity(n),
            span: tracing::info_span!("group_commit", writesets = tracing::field::Empty),
        }
    }

    fn push(&mut self, r: Request) {
        self.writes.push(r.writes);
        self.dones.push(Some(r.done));
        if let Some(partner) = r.partner {
            self.writes.push(partner);
            self.dones.push(None);
        }
        // One transaction serves many commands: the batch's span follows
        // from each command's, so a trace shows which commit made it durable.
        self.span.follows_from(&r.span);
    }

    fn len(&self) -> usize {
        self.writes.len()
    }
}

/// The persistence actor. It owns the WriteSets waiting for a batch and the
/// free commit slots; the transactions themselves run on the main runtime.
struct Committer {
    writer: Arc<Writer>,
    pending: VecDeque<Request>,
    bell: Arc<AtomicBool>,
    /// Commit slots not in use: at most `parallel` batches commit at once.
    free_slots: usize,
    /// The batch deadline, armed while WriteSets wait for a free slot's batch.
    timer: Option<SpawnHandle>,
    backlog: Arc<AtomicUsize>,
    io: tokio::runtime::Handle,
}

impl Actor for Committer {
    type Context = Context<Self>;

    /// At start, and after a restart: WriteSets still waiting get a batch.
    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::counter!(m::SYSTEM_ACTOR_RESTARTS_TOTAL, "actor" => "group_commit").increment(0);
        // A doorbell the restart swallowed must not strand what it rang for.
        self.listen();
        system::guarded(self, ctx, "group_commit", Self::flush_due);
    }
}

impl Supervised for Committer {
    /// A handler panicked. Group commit holds nothing that storage does not
    /// (the WriteSets waiting are not written yet, and stay queued here), so
    /// it only forgets its deadline timer, which the restart cancelled.
    /// Batches committing go on and free their slots as usual.
    fn restarting(&mut self, _: &mut Self::Context) {
        self.timer = None;
    }
}

/// WriteSets are waiting on the channel.
#[derive(Message)]
#[rtype(result = "()")]
struct Doorbell;

impl Handler<Doorbell> for Committer {
    type Result = ();

    fn handle(&mut self, _: Doorbell, ctx: &mut Self::Context) {
        // With every slot busy, the committing batches take what waits on
        // the channel themselves: the bell stays set and nothing is read.
        if self.free_slots == 0 {
            return;
        }
        system::guarded(self, ctx, "group_commit", |act, ctx| {
            act.listen();
            act.flush_due(ctx);
        });
    }
}

impl Handler<PanicOnce> for Committer {
    type Result = ();

    fn handle(&mut self, _: PanicOnce, ctx: &mut Self::Context) {
        system::guarded(self, ctx, "group_commit", |_, _| {
            panic!("PanicOnce: a test asked group commit to panic")
        });
    }
}

/// A batch finished committing: its slot is free again.
#[derive(Message)]
#[rtype(result = "()")]
struct SlotFree;

impl Handler<SlotFree> for Committer {
    type Result = ();

    fn handle(&mut self, _: SlotFree, ctx: &mut Self::Context) {
        self.free_slots += 1;
        system::guarded(self, ctx, "group_commit", |act, ctx| {
            act.listen();
            act.flush_due(ctx);
        });
    }
}

impl Committer {
    /// Starts a batch for each free slot whose batch is due: full, or its
    /// oldest WriteSet has waited `max_wait`. Otherwise arms the deadline.
    /// A batch is closed only once a slot is free, so with one slot
    /// everything that queued up during a commit goes into the next batch.
    fn flush_due(&mut self, ctx: &mut Context<Self>) {
        let (max_batch, max_wait) = (self.writer.config.max_batch, self.writer.config.max_wait);
        while self.free_slots > 0 {
            let Some(oldest) = self.pending.front() else {
                return;
            };
            let waited = oldest.at.elapsed();
            if self.pending.len() < max_batch && waited < max_wait {
                if self.timer.is_none() {
                    let handle = ctx.run_later(max_wait - waited, |act, ctx| {
                        act.timer = None;
                        system::guarded(act, ctx, "group_commit", Self::flush_due);
                    });
                    self.timer = Some(handle);
                }
                return;
            }
            self.start_batch(ctx);
        }
    }

    /// Clears the bell, then takes from the channel what the free slots can
    /// commit now. The rest stays on the channel, where a committing batch
    /// takes it next, so nothing waits here behind newer WriteSets.
    fn listen(&mut self) {
        // A read-modify-write, not a store: it reads the `true` of a sender
        // that did not ring, and so sees what that sender queued before it.
        self.bell.swap(false, Ordering::AcqRel);
        let room = self.free_slots * self.writer.config.max_batch;
        while self.pending.len() < room {
            match self.writer.incoming.try_recv() {
                Ok(r) => self.pending.push_back(r),
                Err(_) => break,
            }
        }
    }

    /// Takes up to `max_batch` WriteSets and commits them on the main
    /// runtime. When that commit ends, the same task commits what waits on
    /// the channel meanwhile, and hands the slot back only once it is empty:
    /// under load the next batch starts at once, not after a round trip
    /// through the system thread (on two busy cores, that wake-up left the
    /// writer idle a quarter of the time).
    fn start_batch(&mut self, ctx: &mut Context<Self>) {
        let n = self.pending.len().min(self.writer.config.max_batch);
        let mut batch = Batch::with_capacity(n);
        for r in self.pending.drain(..n) {
            batch.push(r);
        }
        self.free_slots -= 1;
        // The backlog counts WriteSets, a pair as two.
        let n = batch.len();
        let waiting = self.backlog.fetch_sub(n, Ordering::Relaxed) - n;
        metrics::gauge!(m::PERSISTENCE_BACKLOG).set(waiting as f64);
        let writer = self.writer.clone();
        if writer.progress.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            writer
                .progress
                .last_commit_ms
                .store(unix_ms(), Ordering::Relaxed);
        }
        let me = ctx.address();
        self.io.spawn(async move {
            let mut batch = batch;
            loop {
                writer.commit(batch).await;
                let next: Vec<Request> = writer
                    .incoming
                    .try_iter()
                    .take(writer.config.max_batch)
                    .collect();
                if next.is_empty() {
                    break;
                }
                batch = Batch::with_capacity(next.len());
                for r in next {
                    batch.push(r);
                }
                let n = batch.len();
                let waiting = writer.backlog.fetch_sub(n, Ordering::Relaxed) - n;
                metrics::gauge!(m::PERSISTENCE_BACKLOG).set(waiting as f64);
            }
            writer.progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            me.do_send(SlotFree);
        });
    }
}

/// What a commit needs, shared by the batches committing at once.
struct Writer {
    store: Store,
    config: GroupCommitConfig,
    progress: Arc<CommitProgress>,
    /// The WriteSets' channel, read by the actor and by committing batches.
    incoming: flume::Receiver<Request>,
    backlog: Arc<AtomicUsize>,
    /// WriteSets seen, for `lose_every`.
    seen: AtomicU64,
    /// Cluster mode: the leases WriteSets are checked against.
    fence: Option<Fence>,
    cluster: Option<Arc<Cluster>>,
}

/// Transient errors are worth retrying; anything else is the data's fault.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(db)) => {
            let code = db.code().unwrap_or_default();
            // SQLite: BUSY (5, 517…), LOCKED (6), READONLY (8…), IOERR (10…), FULL (13), CANTOPEN (14).
            // PostgreSQL: connection (08…), serialization (40…), resources (53…), shutdown (57…), system (58…).
            let sqlite_transient = code
                .parse::<i32>()
                .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14));
            sqlite_transient
                || ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|p| code.starts_with(p))
        }
        StoreError::Db(
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. },
        ) => false,
        StoreError::Db(_) => true,
        StoreError::Migrate(_)
        | StoreError::Corrupt(_)
        | StoreError::Config(_)
        | StoreError::Backup(_)
        | StoreError::Ambiguous(_) => false,
    }
}

impl Writer {
    async fn commit(&self, batch: Batch) {
        let span = batch.span.clone();
        span.record("writesets", batch.len());
        self.commit_batch(batch).instrument(span).await
    }

    async fn commit_batch(&self, batch: Batch) {
        let started = Instant::now();
        metrics::histogram!(m::COMMIT_BATCH_SIZE).record(batch.len() as f64);
        let results = match self.config.lose_every {
            None => self.commit_with_retry(&batch.writes).await,
            Some(n) => self.commit_losing_every(n.max(1), &batch.writes).await,
        };
        let took = started.elapsed();
        metrics::histogram!(m::COMMIT_DURATION_SECONDS).record(took.as_secs_f64());
        let p = &self.progress;
        p.last_commit_ms.store(unix_ms(), Ordering::Relaxed);
        p.batches.fetch_add(1, Ordering::Relaxed);
        p.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        p.commit_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if results.iter().any(|r| {
            matches!(
                r,
                Err(CommitError::Unavailable(_) | CommitError::Unknown(_))
            )
        }) {
            p.last_failure_ms.store(unix_ms(), Ordering::Relaxed);
        } else if results.iter().any(Result::is_ok) {
            p.last_success_ms.store(unix_ms(), Ordering::Relaxed);
        }
        let ended = batch
            .writes
            .iter()
            .zip(&results)
            .filter(|(ws, r)| {
                // A job closed, or a battle paid: a front door has someone
                // to tell.
                matches!(r, Ok(CommitOutcome::Applied))
                    && (ws.job_close().is_some()
                        || ws.arena_close().is_some_and(|c| {
                            c.to == crate::game::arena::entry::EntryStatus::Rewarded
                        }))
            })
            .count() as u64;
        if ended > 0 {
            p.jobs_ended.send_modify(|n| *n += ended);
        }
        if let Some(c) = &self.cluster {
            let slots = c.config().slots;
            let mut fenced: Option<(u32, usize)> = None;
            for (ws, r) in batch.writes.iter().zip(&results) {
                if ws.epoch.is_some() {
                    let slot = ws.key.guild.slot(slots);
                    c.write_ended(slot);
                    if matches!(r, Err(CommitError::Fenced)) {
                        let (_, n) = fenced.get_or_insert((slot, 0));
                        *n += 1;
                    }
                }
            }
            if let Some((slot, n)) = fenced {
                c.count_fenced(slot, n);
            }
        }
        for (done, result) in batch.dones.into_iter().zip(results) {
            // The caller may have gone away; its write stands regardless.
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
    }

    /// The broken store of `lose_every`: drops every Nth WriteSet, yet says applied.
    async fn commit_losing_every(&self, n: u64, writes: &[WriteSet]) -> Vec<CommitResult> {
        let lost: Vec<bool> = writes
            .iter()
            .map(|_| self.seen.fetch_add(1, Ordering::Relaxed) % n == n - 1)
            .collect();
        let kept: Vec<WriteSet> = writes
            .iter()
            .zip(&lost)
            .filter(|(_, l)| !**l)
            .map(|(w, _)| w.clone())
            .collect();
        let mut kept_results = self.commit_with_retry(&kept).await.into_iter();
        lost.iter()
            .map(|l| {
                if *l {
                    Ok(CommitOutcome::Applied)
                } else {
                    kept_results.next().unwrap_or(Ok(CommitOutcome::Applied))
                }
            })
            .collect()
    }

    /// Commits `writes`, retrying transient failures with backoff. A batch the
    /// database rejects is split in halves so one bad WriteSet fails alone.
    async fn commit_with_retry(&self, writes: &[WriteSet]) -> Vec<CommitResult> {
        let mut pause = self.config.retry_backoff;
        let mut attempt = 1;
        loop {
            match self.store.commit_fenced(writes, self.fence.as_ref()).await {
                Ok(outcomes) => {
                    return outcomes
                        .into_iter()
                        .map(|o| o.ok_or(CommitError::Fenced))
                        .collect()
                }
                Err(StoreError::Ambiguous(e)) => {
                    metrics::counter!(m::COMMIT_FAILURES_TOTAL, "kind" => "unknown").increment(1);
                    tracing::error!(error = %e, batch = writes.len(), "group commit's outcome unknown; its writers reload");
                    let err = CommitError::Unknown(e);
                    return writes.iter().map(|_| Err(err.clone())).collect();
                }
                Err(e) if is_transient(&e) => {
                    metrics::counter!(m::COMMIT_FAILURES_TOTAL, "kind" => "transient").increment(1);
                    if attempt >= self.config.attempts {
                        tracing::error!(error = %e, batch = writes.len(), attempts = attempt, "group commit failed; answering storage_unavailable");
                        let err = CommitError::Unavailable(e.to_string());
                        return writes.iter().map(|_| Err(err.clone())).collect();
                    }
                    tracing::warn!(error = %e, attempt, "group commit failed; retrying");
                    metrics::counter!(m::COMMIT_RETRIES_TOTAL).increment(1);
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => {
                    metrics::counter!(m::COMMIT_FAILURES_TOTAL, "kind" => "rejected").increment(1);
                    if writes.len() == 1 {
                        tracing::error!(error = %e, user = %writes[0].key, "write rejected by storage");
                        return vec![Err(CommitError::Rejected(e.to_string()))];
                    }
                    // Never between a pair: its two halves go together.
                    let mut mid = writes.len() / 2;
                    if writes[mid].paired {
                        mid += 1;
                    }
                    if mid >= writes.len() {
                        tracing::error!(error = %e, user = %writes[0].key, "write rejected by storage");
                        let err = CommitError::Rejected(e.to_string());
                        return writes.iter().map(|_| Err(err.clone())).collect();
                    }
                    let (a, b) = writes.split_at(mid);
                    let mut out = Box::pin(self.commit_with_retry(a)).await;
                    out.extend(Box::pin(self.commit_with_retry(b)).await);
                    return out;
                }
            }
        }
    }
}
