//! `Runtime`: the one dispatch path. Every front door (HTTP, Discord, the load
//! tester) hands a `Command` to `Runtime::dispatch` and gets a `Reply`.
//!
//! Start-up runs migrations, starts group commit and the registry, and
//! re-delivers transfers a crash left debited but not credited (the outbox),
//! before the first command is served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::Instrument;

use crate::arena::ArenaQueue;
use crate::command::{Command, CommandKind};
use crate::config::RuntimeConfig;
use crate::game::arena::entry::EntryStatus;
use crate::game::arena::ArenaCommand;
use crate::game::economy::EconomyCommand;
use crate::game::generation::job::JobStatus;
use crate::game::generation::GenerationCommand;
use crate::game::guild::GuildCommand;
use crate::group_commit::GroupCommit;
use crate::guild_settings::Guilds;
use crate::ids::UserKey;
use crate::job_queue::{JobQueue, Place, Queues};
use crate::outbox_relay::{relay_pending, OutboxRelay};
use crate::registry::{Registry, Shared};
use crate::reply::{ErrorCode, Reply};
use crate::store::{AuditReport, Store, StoreError};
use crate::system::ActorSystem;
use crate::telemetry as m;

pub struct Runtime {
    registry: Arc<Registry>,
    /// Cluster mode: how a command reaches its slot's owner (set by the
    /// application once its NATS client is up; until then, `busy`).
    forward: std::sync::OnceLock<Arc<dyn Forward>>,
    /// Group commit, the queues, the arena and the outbox relay: actix
    /// actors on their own thread.
    system: ActorSystem,
    sweeper: tokio::task::JoinHandle<()>,
    /// The tasks that hand finished jobs and battles on to players' actors.
    job_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Cluster mode: carries a command to the node that serves its guild's
/// slot and brings its reply back (the application's NATS client). The
/// owner answers it with `Runtime::dispatch_here`.
pub trait Forward: Send + Sync {
    fn forward(
        &self,
        slot: u32,
        command: Command,
        admin: bool,
    ) -> futures::future::BoxFuture<'static, Reply>;

    /// Whether commands can be carried now (`Err`: why not, for `/readyz`).
    fn up(&self) -> Result<(), String>;
}

/// The answer to a command for a guild no node serves right now (a
/// takeover or a handover in progress): retried with the same id, it is
/// safe.
pub fn moving(name: &str) -> Reply {
    Reply::error(
        name,
        ErrorCode::Busy,
        "this server is moving between nodes; retry shortly with the same id",
    )
}

/// Who sent a command, as the front door established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Player,
    Admin,
}

/// Where a command may be answered (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Here if this node serves its guild, else forwarded to the owner.
    ToOwner,
    /// Here or not at all: it was forwarded here already.
    HereOnly,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub storage: Result<(), String>,
    pub migrations: Result<i64, String>,
    pub backlog: usize,
    pub backlog_limit: usize,
    /// Work has been waiting this long with no commit finishing, in ms.
    pub stalled_ms: Option<i64>,
    /// The last group commit failed for want of storage, recently, and none
    /// has succeeded since: reads may work while writes do not.
    pub commits_failing: bool,
    /// Whether the renderer answers (`None`: no renderer). Reported, not
    /// part of readiness: while it is down generation jobs wait, and every
    /// other command is served as usual.
    pub renderer_up: Option<bool>,
    /// Cluster mode: this node's share, and whether it reaches the others.
    /// Reported, not part of readiness: without NATS a node still serves
    /// the slots it owns, and commands for the others answer `busy`.
    pub cluster: Option<ClusterReadiness>,
}

/// What `/readyz` says of cluster mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterReadiness {
    pub node: String,
    pub slots_served: usize,
    pub slots: u32,
    /// `Err`: why commands cannot be forwarded to other nodes now.
    pub routing: Result<(), String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.storage.is_ok()
            && self.migrations.is_ok()
            && self.backlog < self.backlog_limit
            && self.stalled_ms.is_none()
            && !self.commits_failing
    }
}

/// A commit that has not finished within this long while work waits means
/// group commit is stalled.
const STALL_AFTER_MS: i64 = 10_000;

/// How long a failed commit, with no success since, keeps the instance unready.
const FAILING_FOR_MS: i64 = 10_000;

/// How long a starting runtime waits for another kokoro's open transactions
/// (see `Store::await_predecessors`): far past any commit's length.
const PREDECESSOR_PATIENCE: Duration = Duration::from_secs(10);

impl Runtime {
    /// Migrates the store and starts serving. Transfers left in flight by a
    /// previous run are credited before this returns.
    pub async fn start(store: Store, config: RuntimeConfig) -> Result<Self, StoreError> {
        store.migrate().await?;
        let cluster = match &config.cluster {
            // Peers write the same database: fencing, not waiting, keeps
            // a predecessor's late commit from being overwritten.
            Some(c) => Some(
                crate::cluster::Cluster::join(&store, c.clone())
                    .await
                    .map_err(|e| StoreError::Config(e.to_string()))?,
            ),
            None => {
                // Nothing is loaded before a killed predecessor's last commit lands.
                store.await_predecessors(PREDECESSOR_PATIENCE).await?;
                None
            }
        };
        register_counters();
        let system = ActorSystem::start()
            .map_err(|e| StoreError::Config(format!("could not start the system actors: {e}")))?;
        let commit = GroupCommit::start(
            &system,
            store.clone(),
            config.commit.clone(),
            cluster.clone(),
        );
        let relay_interval = config.relay_interval;
        let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let queue_link = crate::job_queue::Link::default();
        let home = cluster.as_ref().map(|c| crate::job_queue::Home {
            cluster: c.clone(),
            link: queue_link.clone(),
        });
        let mut queues = Vec::new();
        if let Some(render) = &config.jobs.render {
            for def in config.generation.workflows.iter() {
                queues.push(JobQueue::start(
                    &system,
                    def.clone(),
                    crate::job_queue::JobQueueConfig::of(def),
                    store.clone(),
                    render.clone(),
                    finished_tx.clone(),
                    home.clone(),
                ));
            }
            refund_orphans(&store, &config, &finished_tx).await?;
            // The renderer keeps it current from here (ComfyUI's breaker).
            let up = if render.available() { 1.0 } else { 0.0 };
            metrics::gauge!(crate::telemetry::RENDERER_UP).set(up);
        } else {
            warn_if_jobs_wait(&store).await?;
        }
        let (fought_tx, fought_rx) = tokio::sync::mpsc::unbounded_channel();
        let arena = ArenaQueue::start(&system, store.clone(), fought_tx, cluster.clone());
        let guilds = Guilds::new(
            &system,
            store.clone(),
            commit.clone(),
            config.clock.clone(),
            cluster.clone(),
        );
        let registry = Registry::new(Shared {
            store,
            commit,
            config,
            queues: Queues::new(queues),
            arena,
            guilds,
            roles: Arc::default(),
            cluster,
            queue_link,
        });
        // The way back from the system actors to the players' actors.
        let job_tasks = vec![
            tokio::spawn(hand_on(registry.clone(), finished_rx, close_anywhere)),
            tokio::spawn(hand_on(
                registry.clone(),
                fought_rx,
                |r: Arc<Registry>, f: crate::game::arena::entry::Fought| async move {
                    if !r.serves(f.entry.key.guild) {
                        // Cluster mode: the guild moved (its arena with
                        // it); its new owner reads the battle from storage.
                        return Ok(());
                    }
                    r.pay_battle(f).await.map(|_| ())
                },
            )),
        ];
        let mut job_tasks = job_tasks;
        if let Some(c) = &registry.shared.cluster {
            job_tasks.push(tokio::spawn(follow_slots(registry.clone(), c.changes())));
        }
        // The queues and the arena read their state back before we serve.
        for queue in registry.shared.queues.iter() {
            queue.loaded().await;
        }
        registry.shared.arena.loaded().await;
        let recovered = relay_pending(&registry, i64::MAX).await?;
        if recovered > 0 {
            tracing::info!(
                transfers = recovered,
                "credited transfers left in flight by the previous run"
            );
        }
        let _relay = OutboxRelay::start(&system, registry.clone(), relay_interval);
        let sweeper = tokio::spawn(registry.clone().sweep_idle());
        Ok(Self {
            registry,
            forward: std::sync::OnceLock::new(),
            system,
            sweeper,
            job_tasks,
        })
    }

    /// A guild's settings (read from storage the first time it is seen;
    /// `None` if storage did not answer in time).
    pub async fn guild_settings(
        &self,
        guild: crate::ids::GuildId,
    ) -> Option<Arc<crate::game::guild::settings::GuildSettings>> {
        self.registry.shared.guilds.settings(guild).await
    }

    /// The role changes players' commits decide, for a front door to apply
    /// (it calls `attach` first; without it nothing is kept).
    pub fn role_desk(&self) -> &Arc<crate::role_desk::RoleDesk> {
        &self.registry.shared.roles
    }

    /// Cluster mode: this node's view of the slots (`None`: single node).
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.registry.shared.cluster.as_ref()
    }

    /// Whether this node serves `guild` now: always outside cluster mode;
    /// in it, while it holds the guild's slot. What only the owner does for
    /// a guild (tell its players their jobs and battles) asks this.
    pub fn serves_guild(&self, guild: crate::ids::GuildId) -> bool {
        self.registry.serves(guild)
    }

    /// Cluster mode: how commands for other nodes' slots are carried. Set
    /// once; later calls are ignored.
    pub fn set_forward(&self, forward: Arc<dyn Forward>) {
        let _ = self.forward.set(forward);
    }

    /// Cluster mode: how queues reach the node running them, and finished
    /// jobs the node serving their players. Set once.
    pub fn set_queue_link(&self, link: Arc<dyn crate::job_queue::QueueLink>) {
        let _ = self.registry.shared.queue_link.set(link);
    }

    /// The queue of the workflow named `id`, if generation is on.
    pub fn queue(&self, id: &str) -> Option<&JobQueue> {
        self.registry.shared.queues.find(id)
    }

    /// Every workflow's queue (none when generation is off).
    pub fn queues(&self) -> &Queues {
        &self.registry.shared.queues
    }

    /// Cluster mode: how a job another node rendered ended, for the player's
    /// actor here. The job is read from storage (what the message says of
    /// it is not trusted beyond its id); `Ok` once closed, now or before;
    /// `busy` if this node does not serve the player's guild now.
    pub async fn close_job_here(
        &self,
        job_id: &str,
        rendered: crate::game::generation::job::Rendered,
    ) -> Result<(), ErrorCode> {
        let stored = match self.registry.shared.store.job(job_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ErrorCode::NotFound),
            Err(e) => {
                tracing::warn!(error = %e, "could not read a job another node finished");
                return Err(ErrorCode::StorageUnavailable);
            }
        };
        if stored.status != JobStatus::Queued {
            return Ok(());
        }
        if !self.registry.serves(stored.job.key.guild) {
            return Err(ErrorCode::Busy);
        }
        self.registry
            .close_job(crate::job_queue::Finished {
                job: stored.job,
                rendered,
            })
            .await
            .map(|_| ())
    }

    /// Cluster mode: a command forwarded by another node. Answered here if
    /// this node serves its slot, `busy` if not (never forwarded again: the
    /// sender retries and finds the new owner).
    pub async fn dispatch_here(&self, command: Command, admin: bool) -> Reply {
        let caller = if admin { Caller::Admin } else { Caller::Player };
        self.dispatch_as(command, caller, Route::HereOnly).await
    }

    pub fn store(&self) -> &Store {
        &self.registry.shared.store
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.registry.shared.config
    }

    pub fn resident(&self) -> usize {
        self.registry.resident()
    }

    pub fn activations(&self) -> u64 {
        self.registry.activations()
    }

    /// Group commit's counters: batches, WriteSets, µs spent committing.
    pub fn commit_progress(&self) -> &crate::group_commit::CommitProgress {
        self.registry.shared.commit.progress()
    }

    pub fn backlog(&self) -> usize {
        self.registry.shared.commit.backlog()
    }

    /// Answers one command from a player: the single path every front door
    /// uses. Admin commands are refused (`forbidden`) on this path.
    pub async fn dispatch(&self, command: Command) -> Reply {
        self.dispatch_as(command, Caller::Player, Route::ToOwner)
            .await
    }

    /// Answers one command from a guild admin (Discord checked Manage
    /// Guild; HTTP the admin token): the same path, admin commands allowed.
    pub async fn dispatch_admin(&self, command: Command) -> Reply {
        self.dispatch_as(command, Caller::Admin, Route::ToOwner)
            .await
    }

    async fn dispatch_as(&self, command: Command, caller: Caller, route: Route) -> Reply {
        let name = command.kind.name();
        let span = tracing::info_span!(
            "command",
            command = name,
            guild = %command.key.guild,
            user = %command.key.user,
            command_id = command.id.as_ref().map(|c| c.as_str()),
        );
        let started = Instant::now();
        let reply = self
            .answer(command, caller, route)
            .instrument(span.clone())
            .await;
        metrics::histogram!(m::COMMAND_DURATION_SECONDS, "command" => name)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::COMMANDS_TOTAL, "command" => name, "outcome" => reply.outcome())
            .increment(1);
        if let Some(e) = &reply.error {
            if matches!(e.code, ErrorCode::Internal | ErrorCode::StorageUnavailable) {
                span.in_scope(|| tracing::warn!(code = e.code.as_str(), message = %e.message, "command failed"));
            }
        }
        reply
    }

    async fn answer(&self, mut command: Command, caller: Caller, route: Route) -> Reply {
        let shared = &self.registry.shared;
        let name = command.kind.name();
        if command.kind.is_admin() && caller != Caller::Admin {
            return Reply::error(
                name,
                ErrorCode::Forbidden,
                "only the server's admins may use this command",
            );
        }
        // No player state: answered by whichever node has the command.
        if let Some(reply) = answer_without_actor(&shared.store, &shared.config, &command).await {
            return reply;
        }
        if let Some(cluster) = &shared.cluster {
            let slot = cluster.slot_of(command.key.guild);
            if cluster.serving(slot).is_none() {
                return match (route, self.forward.get()) {
                    (Route::ToOwner, Some(forward)) => {
                        forward
                            .forward(slot, command, caller == Caller::Admin)
                            .await
                    }
                    _ => moving(name),
                };
            }
        }
        match &command.kind {
            CommandKind::Guild(GuildCommand::Show) => {
                return shared.guilds.show(command.key.guild).await
            }
            CommandKind::Guild(GuildCommand::Set { key, value }) => {
                return shared
                    .guilds
                    .set(command.key, command.id, *key, value.clone())
                    .await
            }
            _ => {}
        }
        // An admin command acting on a player is decided by that player's
        // actor, like every change to their state.
        if let Some(target) = command.kind.readdress(command.key.user) {
            command.key = UserKey::new(command.key.guild, target);
        }
        match command.kind {
            CommandKind::Generation(GenerationCommand::Jobs) => {
                return self.list_jobs(command.key).await
            }
            CommandKind::Arena(ArenaCommand::Status) => {
                return self.arena_status(command.key).await
            }
            _ => {}
        }
        self.registry.dispatch(command).await
    }

    /// A player's newest jobs from storage (everything acknowledged is
    /// there), with where the open ones stand in their queues.
    async fn list_jobs(&self, key: UserKey) -> Reply {
        let shared = &self.registry.shared;
        let stored = match shared.store.jobs_of(key, JOBS_LISTED).await {
            Ok(s) => s,
            Err(e) => return read_failed("jobs", &e),
        };
        let mut places = std::collections::HashMap::new();
        for queue in shared.queues.iter() {
            let ids: Vec<String> = stored
                .iter()
                .filter(|s| s.status == JobStatus::Queued && s.job.workflow == queue.workflow())
                .map(|s| s.job.id.clone())
                .collect();
            if !ids.is_empty() {
                let found = queue.places(ids.clone()).await;
                places.extend(ids.into_iter().zip(found));
            }
        }
        let mut open = 0;
        let entries: Vec<_> = stored
            .iter()
            .map(|s| {
                let mut e = json!({
                    "job_id": s.job.id, "workflow": s.job.workflow.as_str(), "prompt": s.job.prompt,
                    "cost": s.job.cost, "status": s.status.as_str(), "created_ms": s.job.created_ms,
                });
                match (s.status, places.get(&s.job.id).copied().flatten()) {
                    (JobStatus::Queued, Some(Place::Running)) => {
                        open += 1;
                        e["status"] = json!("running");
                        let render = self.config().jobs.render.as_ref();
                        if let Some(pct) = render.and_then(|r| r.progress(&s.job.id)) {
                            e["progress_pct"] = json!(pct);
                        }
                    }
                    (JobStatus::Queued, Some(Place::Waiting { ahead })) => {
                        open += 1;
                        e["ahead"] = json!(ahead);
                    }
                    (JobStatus::Queued, None) => open += 1,
                    (JobStatus::Done, _) => e["result"] = json!(s.result),
                    (_, _) => e["reason"] = json!(s.result),
                }
                if let Some(f) = s.finished_ms {
                    e["finished_ms"] = json!(f);
                }
                e
            })
            .collect();
        let msg = if entries.is_empty() {
            "You have no jobs.".to_owned()
        } else {
            format!("{} jobs, {open} open.", entries.len())
        };
        Reply::ok("jobs", json!({ "jobs": entries }), msg)
    }

    /// Whether the player waits in the arena, how many wait with them, and
    /// their last battles, from storage and the arena actor.
    async fn arena_status(&self, key: UserKey) -> Reply {
        let shared = &self.registry.shared;
        let entries = match shared.store.arena_of(key, ARENA_LISTED).await {
            Ok(e) => e,
            Err(e) => return read_failed("arena_status", &e),
        };
        let waiting = shared.arena.waiting(key.guild);
        let status = entries.first().map_or("out", |e| match e.status {
            EntryStatus::Waiting => "waiting",
            EntryStatus::Matched => "fighting",
            _ => "out",
        });
        let battles: Vec<_> = entries
            .iter()
            .filter_map(|e| e.fought.as_ref())
            .map(|f| json!({"battle_id": f.battle_id, "opponent": f.opponent.to_string(), "won": f.won, "prize": f.prize}))
            .collect();
        let wins = battles.iter().filter(|b| b["won"] == true).count();
        // The latest battle, said in full: an HTTP client is told here.
        let last = entries.iter().find_map(|e| e.fought.as_ref()).map(|f| {
            if f.won {
                format!(
                    " Your last battle: you beat <@{}> and won {} gold.",
                    f.opponent, f.prize
                )
            } else {
                format!(" Your last battle: <@{}> beat you.", f.opponent)
            }
        });
        let msg = match status {
            "waiting" => format!("Waiting for an opponent; {waiting} in line in this guild."),
            "fighting" => "Your battle is being paid out.".to_owned(),
            _ => format!(
                "Not in the arena; {waiting} waiting in this guild. Last {} battles: {wins} won.{}",
                battles.len(),
                last.unwrap_or_default()
            ),
        };
        Reply::ok(
            "arena_status",
            json!({ "status": status, "waiting_in_guild": waiting, "recent_battles": battles }),
            msg,
        )
    }

    /// Credits every transfer still in flight and waits until none is left
    /// (or `within` passes). Used before audits and at shutdown.
    pub async fn settle(&self, within: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + within;
        loop {
            relay_pending(&self.registry, i64::MAX).await?;
            if self
                .store()
                .pending_transfers(i64::MAX, 1)
                .await?
                .is_empty()
                || Instant::now() >= deadline
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn audit(&self) -> Result<AuditReport, StoreError> {
        self.store().audit().await
    }

    pub async fn readiness(&self) -> Readiness {
        let store = self.store();
        let storage = store.ping().await.map_err(|e| e.to_string());
        let migrations = match (
            store.migration_version().await,
            store.expected_migration_version(),
        ) {
            (Ok(Some(v)), Some(want)) if v >= want => Ok(v),
            (Ok(v), want) => Err(format!("migrations at {v:?}, expected {want:?}")),
            (Err(e), _) => Err(e.to_string()),
        };
        let commit = &self.registry.shared.commit;
        let stalled_ms = self.stalled_ms();
        Readiness {
            storage,
            migrations,
            backlog: commit.backlog(),
            backlog_limit: commit.backlog_limit(),
            stalled_ms,
            commits_failing: self.commits_failing(),
            renderer_up: self.config().jobs.render.as_ref().map(|r| r.available()),
            cluster: self.cluster().map(|c| ClusterReadiness {
                node: c.config().node_id.clone(),
                slots_served: c.served().len(),
                slots: c.config().slots,
                routing: match self.forward.get() {
                    Some(f) => f.up(),
                    None => Err("not started".to_owned()),
                },
            }),
        }
    }

    /// A commit failed within `FAILING_FOR_MS` and none has succeeded since.
    /// The window expires so that an idle instance, taken out of rotation
    /// for failing, is tried again rather than left out for good.
    pub fn commits_failing(&self) -> bool {
        let p = self.registry.shared.commit.progress();
        let failed = p.last_failure_ms.load(std::sync::atomic::Ordering::Relaxed);
        let succeeded = p.last_success_ms.load(std::sync::atomic::Ordering::Relaxed);
        failed > succeeded && crate::config::unix_ms() - failed < FAILING_FOR_MS
    }

    /// How long group commit has had work in flight without finishing a
    /// commit, if that is longer than the stall limit.
    pub fn stalled_ms(&self) -> Option<i64> {
        let progress = self.registry.shared.commit.progress();
        let in_flight = progress
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        let since = crate::config::unix_ms()
            - progress
                .last_commit_ms
                .load(std::sync::atomic::Ordering::Relaxed);
        (in_flight > 0 && since > STALL_AFTER_MS).then_some(since)
    }

    /// Test hook: makes a system actor's next handler panic, to prove that
    /// its supervisor restarts it and it reloads its durable state; returns
    /// once a queue or the arena has reloaded. `actor` is `group_commit`,
    /// `arena` or a workflow's name; false if no such actor runs.
    #[doc(hidden)]
    pub async fn panic_system_actor_once(&self, actor: &str) -> bool {
        let shared = &self.registry.shared;
        match actor {
            "group_commit" => {
                shared.commit.panic_once();
                return true;
            }
            "arena" => {
                shared.arena.panic_once();
                shared.arena.loaded().await;
                return true;
            }
            _ => {}
        }
        match shared
            .queues
            .iter()
            .find(|q| q.workflow().as_str() == actor)
        {
            Some(q) => {
                q.panic_once();
                q.loaded().await;
                true
            }
            None => false,
        }
    }

    /// Stops the background tasks; what was acknowledged is already durable.
    /// In cluster mode the node first hands every slot over (draining each),
    /// so the other nodes take them at once rather than after a lease.
    pub async fn shutdown(self) {
        if let Some(c) = &self.registry.shared.cluster {
            c.leave().await;
        }
        self.sweeper.abort();
        for task in self.job_tasks {
            task.abort();
        }
        self.system.stop().await;
        self.registry.shared.store.close().await;
    }
}

/// Cluster mode: whenever the slots this node serves change, the guilds'
/// settings and the arena's lines of slots it no longer serves are let go,
/// and the arena reads the lines of the slots it serves now.
async fn follow_slots(registry: Arc<Registry>, mut changes: tokio::sync::watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        let shared = &registry.shared;
        if let Some(c) = &shared.cluster {
            shared.guilds.keep_only(|g| c.serving_guild(g).is_some());
        }
        shared.arena.reload();
        for queue in shared.queues.iter() {
            queue.owner_changed();
        }
    }
}

/// Registers the counters of rare events at zero, so their `rate()` reads 0
/// in a healthy system instead of no data.
fn register_counters() {
    for stage in ["mailbox", "backlog", "moving"] {
        metrics::counter!(m::BUSY_REJECTIONS_TOTAL, "stage" => stage).increment(0);
    }
    for reason in [
        "idle",
        "evicted",
        "panic",
        "load_failed",
        "unknown_outcome",
        "closed",
        "moved",
    ] {
        metrics::counter!(m::PASSIVATIONS_TOTAL, "reason" => reason).increment(0);
    }
    for kind in ["transient", "rejected"] {
        metrics::counter!(m::COMMIT_FAILURES_TOTAL, "kind" => kind).increment(0);
    }
    metrics::counter!(m::COMMIT_RETRIES_TOTAL).increment(0);
    metrics::counter!(m::TRANSFERS_REDELIVERED_TOTAL).increment(0);
    metrics::counter!(m::TRANSFERS_ANSWERED_PENDING_TOTAL).increment(0);
    for path in ["paired", "after"] {
        metrics::counter!(m::GIVE_CREDITS_TOTAL, "path" => path).increment(0);
    }
    metrics::counter!(m::ACTIVATIONS_TOTAL).increment(0);
}

/// Answers the commands that need no player state (`shop`, `leaderboard`),
/// or `None` for those that go to the player's actor. Shared with the
/// conventional baseline so both answer these the same way.
pub async fn answer_without_actor(
    store: &Store,
    config: &RuntimeConfig,
    command: &Command,
) -> Option<Reply> {
    match &command.kind {
        CommandKind::Economy(EconomyCommand::Shop) => {
            let items: Vec<_> = config
                .catalogue
                .items()
                .map(|i| json!({"item": i.id, "name": i.name, "price": i.price, "currency": i.currency.as_str(), "limit": i.limit}))
                .collect();
            Some(Reply::ok(
                "shop",
                json!({ "items": items }),
                format!("{} items for sale.", items.len()),
            ))
        }
        CommandKind::Economy(EconomyCommand::Leaderboard { by }) => Some(
            match store
                .leaderboard(command.key.guild, *by, config.leaderboard_size)
                .await
            {
                Ok(rows) => {
                    let entries: Vec<_> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| json!({"rank": i + 1, "user_id": r.user.to_string(), "gold": r.gold, "level": r.level, "xp": r.xp}))
                    .collect();
                    Reply::ok(
                        "leaderboard",
                        json!({ "by": by.as_str(), "entries": entries }),
                        format!("Top {} by {}.", entries.len(), by.as_str()),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leaderboard query failed");
                    Reply::error(
                        "leaderboard",
                        ErrorCode::StorageUnavailable,
                        "storage is unavailable; retry shortly",
                    )
                }
            },
        ),
        _ => None,
    }
}

/// The answer to a read-only command whose query failed (logged here).
fn read_failed(name: &str, e: &StoreError) -> Reply {
    tracing::warn!(command = name, error = %e, "query failed");
    Reply::error(
        name,
        ErrorCode::StorageUnavailable,
        "storage is unavailable; retry shortly",
    )
}

/// Entries read for `arena_status`.
const ARENA_LISTED: i64 = 5;

/// Jobs listed by `jobs`.
const JOBS_LISTED: i64 = 10;

/// Without a renderer there are no queues to take up the jobs a previous
/// run left queued: they wait, charged, until one is configured again.
async fn warn_if_jobs_wait(store: &Store) -> Result<(), StoreError> {
    let open = store.open_jobs().await?;
    if !open.is_empty() {
        tracing::warn!(
            jobs = open.len(),
            "jobs are queued in storage but no renderer is configured; they wait"
        );
    }
    Ok(())
}

/// Jobs left queued for a workflow this server no longer offers (its file
/// was removed or renamed) have no queue to take them up: they fail, and
/// their players' actors refund them, once, as any failed job.
async fn refund_orphans(
    store: &Store,
    config: &RuntimeConfig,
    finished: &tokio::sync::mpsc::UnboundedSender<crate::job_queue::Finished>,
) -> Result<(), StoreError> {
    for open in store.open_jobs().await? {
        let workflow = open.job.workflow;
        if config.generation.workflows.get(workflow.as_str()).is_none() {
            tracing::warn!(job = %open.job.id, %workflow, "a queued job's workflow is no longer offered; refunding it");
            let _ = finished.send(crate::job_queue::Finished {
                job: open.job,
                rendered: crate::game::generation::job::Rendered::Failed(format!(
                    "the {workflow} workflow is no longer offered"
                )),
            });
        }
    }
    Ok(())
}

/// How long a queue's result may wait to be recorded before it is said.
const STILL_HANDING_ON: Duration = Duration::from_secs(30);

/// A finished job to its player's actor: here if this node serves the
/// player's guild, else carried to the node that does (cluster mode).
async fn close_anywhere(
    registry: Arc<Registry>,
    finished: crate::job_queue::Finished,
) -> Result<(), ErrorCode> {
    let shared = &registry.shared;
    match &shared.cluster {
        Some(c) if !registry.serves(finished.job.key.guild) => {
            let slot = c.slot_of(finished.job.key.guild);
            let Some(link) = shared.queue_link.get() else {
                return Err(ErrorCode::Busy);
            };
            link.close(slot, finished.job.id, finished.rendered).await
        }
        _ => registry.close_job(finished).await.map(|_| ()),
    }
}

/// Hands each result a queue produced (a finished job, one side of a
/// battle) to its player's actor, retrying while storage or the actor is
/// busy. Until recorded, the result is still open in storage and is sent
/// again at the next start, so a crash here loses nothing.
async fn hand_on<T, F, Fut>(
    registry: Arc<Registry>,
    mut results: tokio::sync::mpsc::UnboundedReceiver<T>,
    deliver: F,
) where
    T: Clone + Send + 'static,
    F: Fn(Arc<Registry>, T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ErrorCode>> + Send,
{
    while let Some(result) = results.recv().await {
        let (registry, deliver) = (registry.clone(), deliver.clone());
        tokio::spawn(
            async move {
                let mut pause = Duration::from_millis(50);
                let since = Instant::now();
                let mut said = false;
                loop {
                    match deliver(registry.clone(), result.clone()).await {
                        Ok(_) => return,
                        Err(code) if code.is_retryable() || code == ErrorCode::Internal => {
                            // Said once, not every try: storage or the
                            // player's node (cluster mode) is away this long.
                            if !said && since.elapsed() >= STILL_HANDING_ON {
                                said = true;
                                tracing::warn!(
                                    code = code.as_str(),
                                    waited_s = since.elapsed().as_secs(),
                                    "a queue's result is still waiting to be recorded; retrying"
                                );
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                        }
                        Err(code) => {
                            tracing::error!(
                                code = code.as_str(),
                                "a queue's result could not be recorded"
                            );
                            return;
                        }
                    }
                }
            }
            .in_current_span(),
        );
    }
}
