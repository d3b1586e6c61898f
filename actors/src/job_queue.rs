//! `JobQueue`: one actor per workflow (a workflow file) that owns the line of
//! paid-for generation jobs and runs at most `concurrency` of them at once
//! through a `Render` backend.
//!
//! The queue never touches money. A job reaches it only after the player's
//! actor has durably charged for it; the queue reports how rendering ended
//! on its `finished` channel, and the runtime hands that to the player's
//! actor, which records the result or the refund (once: storage closes a job
//! only while it is still `queued`). A crash loses nothing: jobs still
//! `queued` in storage are lined up again when the actor starts, and again
//! when its supervisor restarts it after a panic.
//!
//! An actix actor on the system thread (see `system.rs`); renders run on the
//! main runtime and come back to it as `RenderEnded` messages.
//!
//! Admission is bounded: `try_reserve` counts jobs waiting or running and
//! says no past `capacity`, before anything is charged.
//!
//! **Cluster mode**: a workflow's queue runs on one node at a time, the
//! owner of the workflow's slot (`Workflow::slot`), so its
//! renderer concurrency is the cluster's. Every node keeps a `JobQueue`
//! handle; on the others it reaches the line through a `QueueLink` (NATS):
//! a charged job is already queued in storage, so the owner is only told
//! to read storage again, and it also reads it every few seconds, so a
//! lost word delays a job and loses none. A node that takes the slot
//! lines up what storage holds; one that loses it lets its renders go
//! without cancelling them (the renderer keeps them; the next owner finds
//! them by job id and follows them instead of rendering again). A finished
//! job goes to the node serving its player, whose actor closes it once.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::game::generation::job::{Job, Rendered, StoredJob};
use crate::game::generation::workflow::{Kind, Workflow, WorkflowDef};
use crate::reply::ErrorCode;
use crate::store::{Store, StoreError};
use crate::system::{self, ActorSystem, Loaded, PanicOnce};
use crate::telemetry as m;

/// A generation backend. The application supplies one (an HTTP service);
/// `SimulatedRender` stands in for load tests and local runs. It gets the
/// job and its workflow (the graph, where each parameter goes).
pub trait Render: Send + Sync + 'static {
    fn render<'a>(
        &'a self,
        job: &'a Job,
        workflow: &'a WorkflowDef,
    ) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>>;

    /// Whether the backend can take a job now. While it says no (a circuit
    /// breaker open: the backend is unreachable), queues start no job; jobs
    /// wait, and none fails for it.
    fn available(&self) -> bool {
        true
    }

    /// How far along a rendering job is, in percent, if the backend says.
    fn progress(&self, _job_id: &str) -> Option<u8> {
        None
    }

    /// Whether the job still waits in the backend's own queue (ComfyUI
    /// runs one prompt at a time): its time limit starts when it starts.
    fn waiting(&self, _job_id: &str) -> bool {
        false
    }

    /// A job that was rendering was cancelled, or ran past its time limit:
    /// stop it at the backend too (best effort; its render future has
    /// already been dropped, so a result that still comes is never
    /// fetched, delivered or charged).
    fn cancel(&self, _job: Job) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// How often a queue looks again at a backend that was unavailable.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Cluster mode: how often the node running a queue reads the jobs queued
/// in storage, for those whose word from another node was lost.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Cluster mode: words from other nodes that a job was queued, gathered
/// this long into one read of storage.
const LOOK_GATHER: Duration = Duration::from_millis(50);

/// A job this queue finished is not lined up again from storage for this
/// long (its close is on its way to the player's actor, maybe on another
/// node); past it, a job still open is lined up again, and the renderer
/// finds its result by job id.
const FINISHED_MEMORY: Duration = Duration::from_secs(600);

/// Cluster mode: how a queue reaches the node that runs it, and a finished
/// job the node that serves its player (the application's NATS client).
/// What is lost here is found again in storage: the node running a queue
/// reads the queued jobs every few seconds, and a job not closed is
/// finished again.
pub trait QueueLink: Send + Sync {
    /// A job of `workflow` was charged and is queued in storage: the node
    /// serving `slot` (which runs the queue) should line it up.
    fn queued(&self, slot: u32, workflow: Workflow);

    /// A job was cancelled: the node running its queue stops working on it.
    fn forget(&self, slot: u32, workflow: Workflow, job_id: &str);

    /// Where `ids` stand in the line the node serving `slot` holds;
    /// `None` when it could not be asked.
    fn places(
        &self,
        slot: u32,
        workflow: Workflow,
        ids: Vec<String>,
    ) -> BoxFuture<'static, Option<Vec<Option<Place>>>>;

    /// Carries how a job ended to the node serving its player's guild
    /// (`slot`), whose actor closes it: `Ok` once closed, now or before.
    fn close(
        &self,
        slot: u32,
        job_id: String,
        rendered: Rendered,
    ) -> BoxFuture<'static, Result<(), ErrorCode>>;
}

/// Set once the application's link is up (cluster mode).
pub type Link = Arc<std::sync::OnceLock<Arc<dyn QueueLink>>>;

/// Cluster mode: where a queue runs.
#[derive(Clone)]
pub struct Home {
    pub cluster: Arc<Cluster>,
    pub link: Link,
}

/// Whether this node runs the line of the queue at `home` (the cluster
/// and the workflow's slot): always outside cluster mode; in it, while it
/// serves the slot.
fn runs_here(home: Option<&(Home, u32)>) -> bool {
    home.is_none_or(|(h, slot)| h.cluster.serving(*slot).is_some())
}

/// Renders nothing: waits `latency` (four times as long for video) and
/// answers a `sim://` location; every `fail_every`th job fails. For load
/// tests and trying kokoro out, never a stand-in for a real backend.
#[derive(Debug, Clone)]
pub struct SimulatedRender {
    pub latency: Duration,
    pub fail_every: u64,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl SimulatedRender {
    pub fn new(latency: Duration, fail_every: u64) -> Self {
        Self {
            latency,
            fail_every,
            count: Arc::default(),
        }
    }
}

impl Render for SimulatedRender {
    fn render<'a>(
        &'a self,
        job: &'a Job,
        workflow: &'a WorkflowDef,
    ) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>> {
        Box::pin(async move {
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            let latency = match workflow.kind {
                Kind::Image => self.latency,
                Kind::Video => self.latency * 4,
            };
            tokio::time::sleep(latency).await;
            if n.checked_rem(self.fail_every) == Some(0) {
                Rendered::Failed("the simulated renderer failed this job on purpose".into())
            } else {
                Rendered::Done(format!("sim://{}/{}", job.workflow.as_str(), job.id))
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct JobQueueConfig {
    /// Jobs rendering at once.
    pub concurrency: usize,
    /// Jobs waiting or running; beyond this, `generate` answers busy.
    pub capacity: usize,
    /// A render taking longer fails (and is refunded).
    pub timeout: Duration,
}

/// Where a job stands in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Waiting, with this many jobs ahead of it (0: next to start).
    Waiting {
        ahead: usize,
    },
    Running,
}

/// A job whose rendering ended, for the player's actor to record.
#[derive(Debug, Clone)]
pub struct Finished {
    pub job: Job,
    pub rendered: Rendered,
}

/// The handle to one queue actor. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    workflow: Workflow,
    /// Cluster mode: the cluster, and the workflow's slot.
    home: Option<(Home, u32)>,
    addr: Addr<QueueActor>,
    /// Places held by reservations whose job has not reached the actor yet.
    reserved: Arc<AtomicUsize>,
    /// Jobs in line (waiting or running), as the actor last counted them.
    lined: Arc<AtomicUsize>,
    capacity: usize,
}

/// A place in the queue held for a job about to be charged. Dropped without
/// `submit` (the charge was refused or failed), it frees the place.
pub struct Reservation {
    reserved: Arc<AtomicUsize>,
    /// Jobs ahead of this one when reserved.
    pub ahead: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.fetch_sub(1, Ordering::Relaxed);
    }
}

impl JobQueue {
    /// Starts the queue actor for `workflow` under a supervisor; finished
    /// jobs go to `finished`. The actor lines up the jobs storage holds as
    /// queued for its workflow when it starts, and again after a restart.
    /// In cluster mode (`home`), the actor runs the line only while this
    /// node serves the workflow's slot.
    pub fn start(
        system: &ActorSystem,
        def: Arc<WorkflowDef>,
        config: JobQueueConfig,
        store: Store,
        render: Arc<dyn Render>,
        finished: mpsc::UnboundedSender<Finished>,
        home: Option<Home>,
    ) -> Self {
        let reserved = Arc::new(AtomicUsize::new(0));
        let lined = Arc::new(AtomicUsize::new(0));
        let workflow = def.id;
        let home = home.map(|h| {
            let slot = workflow.slot(h.cluster.config().slots);
            (h, slot)
        });
        let actor = QueueActor {
            workflow,
            home: home.clone(),
            active: false,
            look_scheduled: false,
            finished_lately: std::collections::HashMap::new(),
            retry_scheduled: false,
            def,
            store,
            io: system.io().clone(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            concurrency: config.concurrency.max(1),
            timeout: config.timeout,
            render,
            finished,
            reserved: reserved.clone(),
            lined: lined.clone(),
        };
        let addr = Supervisor::start_in_arbiter(system.arbiter(), |_| actor);
        Self {
            workflow,
            home,
            addr,
            reserved,
            lined,
            capacity: config.capacity.max(1),
        }
    }

    pub fn workflow(&self) -> Workflow {
        self.workflow
    }

    /// Whether this node runs the line: always outside cluster mode; in
    /// it, while it serves the workflow's slot.
    pub fn runs_here(&self) -> bool {
        runs_here(self.home.as_ref())
    }

    /// Jobs waiting or running, if this node runs the line (what it tells
    /// the other nodes, for their admission).
    pub fn depth_here(&self) -> Option<usize> {
        self.runs_here().then(|| self.lined.load(Ordering::Relaxed))
    }

    /// The depth the node running the line told: what admission here
    /// counts until it says otherwise.
    pub fn heard_depth(&self, depth: usize) {
        if !self.runs_here() {
            self.lined.store(depth, Ordering::Relaxed);
        }
    }

    /// Another node queued a job in storage: read storage again (gathered).
    pub fn look_again(&self) {
        self.addr.do_send(LookAgain);
    }

    /// The slots this node serves changed: take up the line, or let it go.
    pub fn owner_changed(&self) {
        self.addr.do_send(OwnerChanged);
    }

    /// The link, once the application has set it up.
    fn link(&self) -> Option<(&Arc<dyn QueueLink>, u32)> {
        let (home, slot) = self.home.as_ref()?;
        Some((home.link.get()?, *slot))
    }

    /// Holds a place for a job, or `None` if the queue is full.
    pub fn try_reserve(&self) -> Option<Reservation> {
        let mut held = self.reserved.load(Ordering::Relaxed);
        loop {
            let ahead = held + self.lined.load(Ordering::Relaxed);
            if ahead >= self.capacity {
                return None;
            }
            match self.reserved.compare_exchange_weak(
                held,
                held + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        reserved: self.reserved.clone(),
                        ahead,
                    })
                }
                Err(actual) => held = actual,
            }
        }
    }

    /// Puts a charged job in line, in the place `reservation` held.
    pub fn submit(&self, reservation: Reservation, job: Job) {
        if !self.runs_here() {
            // Another node runs the line; the job is queued in storage,
            // where it reads it. Counted here until it says its depth.
            drop(reservation);
            self.lined.fetch_add(1, Ordering::Relaxed);
            if let Some((link, slot)) = self.link() {
                link.queued(slot, self.workflow);
            }
            return;
        }
        // The place is now the actor's to free, when it lines the job up.
        std::mem::forget(reservation);
        // Unbounded on purpose (`do_send`): admission is bounded by the
        // reservation instead, and a charged job must never be turned away.
        // If the actor has stopped (shutdown), the job stays queued in
        // storage and is lined up at the next start.
        self.addr.do_send(Submit {
            job,
            reserved: true,
        });
    }

    /// The job was cancelled and refunded: stop spending work on it.
    pub fn forget(&self, job_id: &str) {
        if !self.runs_here() {
            if let Some((link, slot)) = self.link() {
                link.forget(slot, self.workflow, job_id);
            }
        }
        self.addr.do_send(Forget(job_id.to_owned()));
    }

    /// Another node says a job was cancelled: drop it from the line here.
    pub fn forget_here(&self, job_id: &str) {
        self.addr.do_send(Forget(job_id.to_owned()));
    }

    /// Where each of `ids` stands; `None` for a job not in this queue (or
    /// not known now: the node running it could not be asked).
    pub async fn places(&self, ids: Vec<String>) -> Vec<Option<Place>> {
        let n = ids.len();
        if !self.runs_here() {
            let asked = match self.link() {
                Some((link, slot)) => link.places(slot, self.workflow, ids).await,
                None => None,
            };
            return asked
                .filter(|p| p.len() == n)
                .unwrap_or_else(|| vec![None; n]);
        }
        self.places_here(ids).await
    }

    /// Where each of `ids` stands in the line this node holds (another
    /// node asking; `None` for each when it holds none).
    pub async fn places_here(&self, ids: Vec<String>) -> Vec<Option<Place>> {
        let n = ids.len();
        system::ask(&self.addr, Places(ids))
            .await
            .unwrap_or_else(|| vec![None; n])
    }

    /// Returns once the queue has lined up the jobs storage holds.
    pub async fn loaded(&self) {
        system::ask(&self.addr, Loaded).await;
    }

    /// Test hook: makes the actor's next handler panic.
    #[doc(hidden)]
    pub fn panic_once(&self) {
        self.addr.do_send(PanicOnce);
    }
}

/// The queue of each workflow; empty when no renderer is configured, and
/// then `generate` says generation is off.
#[derive(Clone, Default)]
pub struct Queues {
    queues: Vec<JobQueue>,
}

impl Queues {
    pub fn new(queues: Vec<JobQueue>) -> Self {
        Self { queues }
    }

    pub fn get(&self, workflow: Workflow) -> Option<&JobQueue> {
        self.queues.iter().find(|q| q.workflow == workflow)
    }

    /// The queue of the workflow a player named.
    pub fn find(&self, id: &str) -> Option<&JobQueue> {
        self.queues.iter().find(|q| q.workflow.as_str() == id)
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobQueue> {
        self.queues.iter()
    }
}

/// A charged job for the line.
#[derive(Message)]
#[rtype(result = "()")]
struct Submit {
    job: Job,
    /// It holds a reservation, which the actor frees when it lines it up.
    reserved: bool,
}

/// The job was cancelled (and refunded): drop it, or stop rendering it.
#[derive(Message)]
#[rtype(result = "()")]
struct Forget(String);

#[derive(Message)]
#[rtype(result = "Vec<Option<Place>>")]
struct Places(Vec<String>);

/// Read the jobs queued in storage again (another node queued one).
#[derive(Message)]
#[rtype(result = "()")]
struct LookAgain;

/// The slots this node serves changed.
#[derive(Message)]
#[rtype(result = "()")]
struct OwnerChanged;

/// A render ended (on the main runtime); `started` is when it began.
#[derive(Message)]
#[rtype(result = "()")]
struct RenderEnded {
    job: Job,
    rendered: Rendered,
    started: Instant,
}

/// A job rendering on the main runtime.
struct Running {
    id: String,
    job: Job,
    task: tokio::task::AbortHandle,
}

struct QueueActor {
    workflow: Workflow,
    /// Cluster mode: the cluster, and the workflow's slot.
    home: Option<(Home, u32)>,
    /// Whether this node runs the line now (always, outside cluster mode).
    active: bool,
    /// A read of storage, gathering words from other nodes, is scheduled.
    look_scheduled: bool,
    /// Jobs this queue finished lately, by id: not lined up again while
    /// their closes are on their way.
    finished_lately: std::collections::HashMap<String, Instant>,
    /// A look at an unavailable backend is already scheduled.
    retry_scheduled: bool,
    def: Arc<WorkflowDef>,
    store: Store,
    io: tokio::runtime::Handle,
    waiting: VecDeque<(Job, Instant)>,
    running: Vec<Running>,
    concurrency: usize,
    timeout: Duration,
    render: Arc<dyn Render>,
    finished: mpsc::UnboundedSender<Finished>,
    reserved: Arc<AtomicUsize>,
    lined: Arc<AtomicUsize>,
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    /// At start and after every restart: line up what storage holds.
    fn started(&mut self, ctx: &mut Self::Context) {
        // Admission is bounded by reservations, not by the mailbox:
        // unbounded, so `places` never parks behind the jobs queued ahead.
        ctx.set_mailbox_capacity(0);
        let queue = self.workflow.as_str();
        for outcome in ["done", "failed", "cancelled"] {
            metrics::counter!(m::JOBS_TOTAL, "queue" => queue, "outcome" => outcome).increment(0);
        }
        metrics::counter!(m::SYSTEM_ACTOR_RESTARTS_TOTAL, "actor" => queue).increment(0);
        self.active = self.runs_here();
        self.report();
        if self.home.is_some() {
            ctx.run_interval(LOOK_EVERY, |act, ctx| {
                if act.active {
                    system::reload(act, ctx);
                }
            });
        }
        if self.active {
            system::reload(self, ctx);
        }
    }
}

impl Supervised for QueueActor {
    /// A handler panicked: what the line held in memory may be half-changed,
    /// so it is dropped and read again from storage by `started`. Renders in
    /// flight go on; they report back as usual, so none runs twice.
    fn restarting(&mut self, _: &mut Self::Context) {
        self.waiting.clear();
        self.retry_scheduled = false;
    }
}

impl system::Reloads for QueueActor {
    type State = Vec<StoredJob>;

    fn name(&self) -> &str {
        self.workflow.as_str()
    }

    fn io(&self) -> &tokio::runtime::Handle {
        &self.io
    }

    fn load(&self) -> BoxFuture<'static, Result<Self::State, StoreError>> {
        let store = self.store.clone();
        Box::pin(async move { store.open_jobs().await })
    }

    fn loaded(&mut self, stored: Self::State, ctx: &mut Context<Self>) {
        if !self.active {
            return;
        }
        self.line_up(stored.into_iter().map(|s| s.job).collect());
        self.start_waiting(ctx);
    }
}

impl Handler<Submit> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) {
        system::guarded(self, ctx, self.workflow.as_str(), |act, ctx| {
            if msg.reserved {
                act.reserved.fetch_sub(1, Ordering::Relaxed);
            }
            // Handed over meanwhile: the job is in storage for the new owner.
            if !act.active {
                return;
            }
            // A job storage already lined up after a reload must not wait twice.
            if !act.knows(&msg.job.id) {
                act.waiting.push_back((msg.job, Instant::now()));
            }
            act.start_waiting(ctx);
        });
    }
}

impl Handler<Forget> for QueueActor {
    type Result = ();

    fn handle(&mut self, Forget(id): Forget, ctx: &mut Self::Context) {
        system::guarded(self, ctx, self.workflow.as_str(), |act, ctx| {
            if let Some(i) = act.waiting.iter().position(|(j, _)| j.id == id) {
                act.waiting.remove(i);
                act.leave("cancelled");
            } else if let Some(i) = act.running.iter().position(|r| r.id == id) {
                let gone = act.running.swap_remove(i);
                gone.task.abort();
                act.io.spawn(act.render.cancel(gone.job));
                act.leave("cancelled");
            }
            act.start_waiting(ctx);
        });
    }
}

impl Handler<Places> for QueueActor {
    type Result = MessageResult<Places>;

    fn handle(&mut self, Places(ids): Places, _: &mut Self::Context) -> Self::Result {
        let places = ids
            .iter()
            .map(|id| {
                if self.running.iter().any(|r| &r.id == id) {
                    Some(Place::Running)
                } else {
                    self.waiting
                        .iter()
                        .position(|(j, _)| &j.id == id)
                        .map(|ahead| Place::Waiting { ahead })
                }
            })
            .collect();
        MessageResult(places)
    }
}

impl Handler<RenderEnded> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: RenderEnded, ctx: &mut Self::Context) {
        system::guarded(self, ctx, self.workflow.as_str(), |act, ctx| {
            act.finish(msg.job, msg.rendered, msg.started);
            act.start_waiting(ctx);
        });
    }
}

impl Handler<LookAgain> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: LookAgain, ctx: &mut Self::Context) {
        if !self.active || self.look_scheduled {
            return;
        }
        self.look_scheduled = true;
        ctx.run_later(LOOK_GATHER, |act, ctx| {
            // Words arriving from here on wait for the next read: theirs
            // may have committed after this one reads.
            act.look_scheduled = false;
            if act.active {
                system::reload(act, ctx);
            }
        });
    }
}

impl Handler<OwnerChanged> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: OwnerChanged, ctx: &mut Self::Context) {
        system::guarded(self, ctx, self.workflow.as_str(), |act, ctx| {
            let runs = act.runs_here();
            if runs && !act.active {
                tracing::info!(
                    queue = act.workflow.as_str(),
                    "this node runs the queue now"
                );
                act.active = true;
                act.report();
                system::reload(act, ctx);
            } else if !runs && act.active {
                act.step_down();
            }
        });
    }
}

impl Handler<Loaded> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: Loaded, _: &mut Self::Context) {}
}

impl Handler<PanicOnce> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: PanicOnce, ctx: &mut Self::Context) {
        system::guarded(self, ctx, self.workflow.as_str(), |_, _| {
            panic!("PanicOnce: a test asked the job queue to panic")
        });
    }
}

impl QueueActor {
    fn runs_here(&self) -> bool {
        runs_here(self.home.as_ref())
    }

    /// Another node runs the line now: its renders are let go, not
    /// cancelled (the renderer keeps them and the next owner follows them
    /// by job id), and nothing of the line is kept.
    fn step_down(&mut self) {
        tracing::info!(
            queue = self.workflow.as_str(),
            running = self.running.len(),
            waiting = self.waiting.len(),
            "another node runs the queue now; its jobs stay queued in storage for it"
        );
        self.active = false;
        for r in self.running.drain(..) {
            r.task.abort();
        }
        self.waiting.clear();
        self.report();
    }

    fn knows(&self, id: &str) -> bool {
        self.running.iter().any(|r| r.id == id) || self.waiting.iter().any(|(j, _)| j.id == id)
    }

    /// Lines up this workflow's queued jobs not in line yet, oldest first,
    /// ahead of what arrived meanwhile (newer by construction).
    fn line_up(&mut self, stored: Vec<Job>) {
        let now = Instant::now();
        self.finished_lately
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        let mut line: VecDeque<(Job, Instant)> = stored
            .into_iter()
            .filter(|j| {
                j.workflow == self.workflow
                    && !self.knows(&j.id)
                    && !self.finished_lately.contains_key(&j.id)
            })
            .map(|j| (j, now))
            .collect();
        if !line.is_empty() {
            tracing::info!(
                queue = self.workflow.as_str(),
                jobs = line.len(),
                "lined up jobs queued in storage"
            );
        }
        line.extend(self.waiting.drain(..));
        self.waiting = line;
        self.report();
    }

    /// Starts waiting jobs while fewer than `concurrency` run. Each render
    /// runs on the main runtime and reports back with `RenderEnded`.
    fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        if !self.active {
            return;
        }
        if !self.runs_here() {
            // The slot was lost and the word of it has not come yet.
            self.step_down();
            return;
        }
        if !self.waiting.is_empty() && !self.render.available() {
            if !self.retry_scheduled {
                self.retry_scheduled = true;
                ctx.run_later(UNAVAILABLE_RETRY, |act, ctx| {
                    act.retry_scheduled = false;
                    act.start_waiting(ctx);
                });
            }
            return;
        }
        while self.running.len() < self.concurrency {
            let Some((job, enqueued)) = self.waiting.pop_front() else {
                break;
            };
            metrics::histogram!(m::QUEUE_WAIT_SECONDS, "queue" => self.workflow.as_str())
                .record(enqueued.elapsed().as_secs_f64());
            let (render, timeout, me) = (self.render.clone(), self.timeout, ctx.address());
            // However long the backend's own queue may hold it behind this
            // queue's other jobs, and a little more.
            let wait_limit = timeout.saturating_mul(self.concurrency as u32 + 1);
            let def = self.def.clone();
            let id = job.id.clone();
            let job_copy = job.clone();
            let task = self.io.spawn(async move {
                let started = Instant::now();
                let rendered = match render_within(&*render, &job, &def, timeout, wait_limit).await
                {
                    Ok(r) => r,
                    Err(why) => {
                        // Given up: the backend stops it too.
                        render.cancel(job.clone()).await;
                        Rendered::Failed(why)
                    }
                };
                me.do_send(RenderEnded {
                    job,
                    rendered,
                    started,
                });
            });
            self.running.push(Running {
                id,
                job: job_copy,
                task: task.abort_handle(),
            });
        }
        self.report();
    }

    fn finish(&mut self, job: Job, rendered: Rendered, started: Instant) {
        let queue = self.workflow.as_str();
        let Some(i) = self.running.iter().position(|r| r.id == job.id) else {
            // Cancelled while it finished: the refund stands, drop the result.
            return;
        };
        self.running.swap_remove(i);
        if self.home.is_some() {
            self.finished_lately.insert(job.id.clone(), Instant::now());
        }
        metrics::histogram!(m::QUEUE_RUN_SECONDS, "queue" => queue)
            .record(started.elapsed().as_secs_f64());
        self.leave(match rendered {
            Rendered::Done(_) => "done",
            Rendered::Failed(_) => "failed",
        });
        if let Rendered::Failed(why) = &rendered {
            tracing::info!(queue, job = %job.id, reason = %why, "job failed; refunding");
        }
        // Closed only at shutdown; the job stays queued in storage then.
        let _ = self.finished.send(Finished { job, rendered });
    }

    fn leave(&mut self, outcome: &'static str) {
        metrics::counter!(m::JOBS_TOTAL, "queue" => self.workflow.as_str(), "outcome" => outcome)
            .increment(1);
        self.report();
    }

    fn report(&self) {
        let queue = self.workflow.as_str();
        let here = if self.active { 1.0 } else { 0.0 };
        metrics::gauge!(m::QUEUE_HERE, "queue" => queue).set(here);
        // Not running the line: admission counts what its node says.
        if self.active {
            self.lined
                .store(self.waiting.len() + self.running.len(), Ordering::Relaxed);
        }
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => queue).set(self.waiting.len() as f64);
        metrics::gauge!(m::QUEUE_RUNNING, "queue" => queue).set(self.running.len() as f64);
    }
}

/// Renders `job` with its time limit running from when the backend starts
/// it (a job waiting in the backend's own queue is not rendering yet), and
/// no longer than `wait_limit` waiting there. `Err`: why it was given up.
async fn render_within(
    render: &dyn Render,
    job: &Job,
    def: &WorkflowDef,
    limit: Duration,
    wait_limit: Duration,
) -> Result<Rendered, String> {
    let rendering = AssertUnwindSafe(render.render(job, def)).catch_unwind();
    tokio::pin!(rendering);
    let begun = Instant::now();
    let mut running_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            r = &mut rendering => {
                return Ok(r.unwrap_or_else(|_| {
                    Rendered::Failed("the renderer crashed on this job".into())
                }));
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if running_since.is_none() && !render.waiting(&job.id) {
                    running_since = Some(now);
                }
                match running_since {
                    Some(s) if now.duration_since(s) >= limit => {
                        return Err(format!("rendering took longer than {} s", limit.as_secs()));
                    }
                    None if now.duration_since(begun) >= wait_limit => {
                        return Err(format!(
                            "waited longer than {} s in the renderer's own queue",
                            wait_limit.as_secs()
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GuildId, UserId, UserKey};
    use crate::store::StoreOptions;

    fn job(n: u32) -> Job {
        Job {
            id: format!("j{n}"),
            key: UserKey::new(GuildId::new(1).unwrap(), UserId::new(2).unwrap()),
            workflow: Workflow::intern("image"),
            prompt: "a fox".into(),
            image: None,
            cost: 10,
            held: true,
            notify: None,
            created_ms: 0,
        }
    }

    /// A queue over an empty store, with its system thread and data dir.
    struct Fixture {
        queue: JobQueue,
        done: mpsc::UnboundedReceiver<Finished>,
        _system: ActorSystem,
        _dir: tempfile::TempDir,
    }

    async fn start(concurrency: usize, capacity: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let system = ActorSystem::start().unwrap();
        let (tx, done) = mpsc::unbounded_channel();
        let render = Arc::new(SimulatedRender::new(Duration::from_millis(20), 0));
        let config = JobQueueConfig {
            concurrency,
            capacity,
            timeout: Duration::from_secs(5),
        };
        let generation = crate::game::generation::GenerationData::default();
        let def = generation.workflows.get("image").unwrap().clone();
        let queue = JobQueue::start(&system, def, config, store, render, tx, None);
        Fixture {
            queue,
            done,
            _system: system,
            _dir: dir,
        }
    }

    #[tokio::test]
    async fn runs_jobs_in_order_at_most_concurrency_at_once() {
        let mut f = start(1, 10).await;
        let (q, done) = (&f.queue, &mut f.done);
        for n in 0..3 {
            q.submit(q.try_reserve().unwrap(), job(n));
        }
        let places = q
            .places(vec!["j0".into(), "j1".into(), "j2".into(), "j9".into()])
            .await;
        assert_eq!(
            places,
            [
                Some(Place::Running),
                Some(Place::Waiting { ahead: 0 }),
                Some(Place::Waiting { ahead: 1 }),
                None
            ]
        );
        for n in 0..3 {
            let f = done.recv().await.unwrap();
            assert_eq!(f.job.id, format!("j{n}"));
            assert_eq!(f.rendered, Rendered::Done(format!("sim://image/j{n}")));
        }
    }

    #[tokio::test]
    async fn admission_stops_at_capacity_and_frees_unused_places() {
        let f = start(1, 2).await;
        let q = &f.queue;
        let a = q.try_reserve().unwrap();
        let b = q.try_reserve().unwrap();
        assert!(q.try_reserve().is_none(), "full");
        drop(b);
        let c = q
            .try_reserve()
            .expect("a dropped reservation frees its place");
        assert_eq!(c.ahead, 1);
        q.submit(a, job(0));
        drop(c);
    }

    #[tokio::test]
    async fn a_forgotten_job_never_reports() {
        let mut f = start(1, 10).await;
        let (q, done) = (&f.queue, &mut f.done);
        q.submit(q.try_reserve().unwrap(), job(0));
        q.submit(q.try_reserve().unwrap(), job(1));
        q.submit(q.try_reserve().unwrap(), job(2));
        q.forget("j0"); // running: aborted
        q.forget("j1"); // waiting: dropped
        let f = done.recv().await.unwrap();
        assert_eq!(f.job.id, "j2");
        assert!(q.try_reserve().is_some_and(|r| r.ahead == 0));
    }

    #[tokio::test]
    async fn a_queue_restarted_after_a_panic_keeps_its_running_jobs_and_serves_on() {
        let mut f = start(1, 10).await;
        let (q, done) = (&f.queue, &mut f.done);
        q.submit(q.try_reserve().unwrap(), job(0));
        q.panic_once();
        // Mail sent after the panic is served by the restarted actor.
        q.submit(q.try_reserve().unwrap(), job(1));
        let places = q.places(vec!["j0".into(), "j1".into()]).await;
        assert_eq!(
            places,
            [Some(Place::Running), Some(Place::Waiting { ahead: 0 })],
            "the render in flight survived the restart"
        );
        for n in 0..2 {
            assert_eq!(done.recv().await.unwrap().job.id, format!("j{n}"));
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), done.recv())
                .await
                .is_err(),
            "no job reported twice"
        );
    }
}
