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

use crate::game::generation::job::{Job, Rendered, StoredJob};
use crate::game::generation::workflow::{Kind, Workflow, WorkflowDef};
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
    pub fn start(
        system: &ActorSystem,
        def: Arc<WorkflowDef>,
        config: JobQueueConfig,
        store: Store,
        render: Arc<dyn Render>,
        finished: mpsc::UnboundedSender<Finished>,
    ) -> Self {
        let reserved = Arc::new(AtomicUsize::new(0));
        let lined = Arc::new(AtomicUsize::new(0));
        let workflow = def.id;
        let actor = QueueActor {
            workflow,
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
            addr,
            reserved,
            lined,
            capacity: config.capacity.max(1),
        }
    }

    pub fn workflow(&self) -> Workflow {
        self.workflow
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
        self.addr.do_send(Forget(job_id.to_owned()));
    }

    /// Where each of `ids` stands; `None` for a job not in this queue.
    pub async fn places(&self, ids: Vec<String>) -> Vec<Option<Place>> {
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
        self.report();
        system::reload(self, ctx);
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
    fn knows(&self, id: &str) -> bool {
        self.running.iter().any(|r| r.id == id) || self.waiting.iter().any(|(j, _)| j.id == id)
    }

    /// Lines up this workflow's queued jobs not in line yet, oldest first,
    /// ahead of what arrived meanwhile (newer by construction).
    fn line_up(&mut self, stored: Vec<Job>) {
        let now = Instant::now();
        let mut line: VecDeque<(Job, Instant)> = stored
            .into_iter()
            .filter(|j| j.workflow == self.workflow && !self.knows(&j.id))
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
        self.lined
            .store(self.waiting.len() + self.running.len(), Ordering::Relaxed);
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
        let queue = JobQueue::start(&system, def, config, store, render, tx);
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
