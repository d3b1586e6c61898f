//! `JobQueue`: one actor per workflow (image, video) that owns the line of
//! paid-for generation jobs and runs at most `concurrency` of them at once
//! through a `Render` backend.
//!
//! The queue never touches money. A job reaches it only after the player's
//! actor has durably charged for it; the queue reports how rendering ended
//! on its `finished` channel, and the runtime hands that to the player's
//! actor, which records the result or the refund (once: storage closes a job
//! only while it is still `queued`). A crash loses nothing: jobs still
//! `queued` in storage are taken up again at start.
//!
//! Admission is bounded: `try_reserve` counts jobs waiting or running and
//! says no past `capacity`, before anything is charged.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::domain::credits::Workflow;
use crate::job::{Job, Rendered};
use crate::telemetry as m;

/// A generation backend. The application supplies one (an HTTP service);
/// `SimulatedRender` stands in for load tests and local runs.
pub trait Render: Send + Sync + 'static {
    fn render<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>>;
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
    fn render<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>> {
        Box::pin(async move {
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            let latency = match job.workflow {
                Workflow::Image => self.latency,
                Workflow::Video => self.latency * 4,
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

enum QueueMail {
    Submit(Job, Instant),
    /// The job was cancelled (and refunded): drop it, or stop rendering it.
    Forget(String),
    Places(Vec<String>, oneshot::Sender<Vec<Option<Place>>>),
}

/// The handle to one queue actor. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    workflow: Workflow,
    mailbox: mpsc::UnboundedSender<QueueMail>,
    /// Jobs reserved, waiting or running: what admission counts.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// A place in the queue held for a job about to be charged. Dropped without
/// `submit` (the charge was refused or failed), it frees the place.
pub struct Reservation {
    admitted: Arc<AtomicUsize>,
    /// Jobs ahead of this one when reserved.
    pub ahead: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

impl JobQueue {
    /// Starts the queue actor for `workflow`; finished jobs go to `finished`.
    pub fn start(
        workflow: Workflow,
        config: JobQueueConfig,
        render: Arc<dyn Render>,
        finished: mpsc::UnboundedSender<Finished>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // Unbounded, because admission is bounded by `admitted` instead: a
        // charged job must never be turned away at the door.
        let (tx, rx) = mpsc::unbounded_channel();
        let admitted = Arc::new(AtomicUsize::new(0));
        let actor = QueueActor {
            workflow,
            mailbox: rx,
            waiting: VecDeque::new(),
            running: JoinSet::new(),
            running_ids: Vec::new(),
            concurrency: config.concurrency.max(1),
            timeout: config.timeout,
            render,
            finished,
            admitted: admitted.clone(),
        };
        let handle = tokio::spawn(actor.run());
        let queue = Self {
            workflow,
            mailbox: tx,
            admitted,
            capacity: config.capacity.max(1),
        };
        (queue, handle)
    }

    pub fn workflow(&self) -> Workflow {
        self.workflow
    }

    /// Holds a place for a job, or `None` if the queue is full.
    pub fn try_reserve(&self) -> Option<Reservation> {
        let mut now = self.admitted.load(Ordering::Relaxed);
        loop {
            if now >= self.capacity {
                return None;
            }
            match self.admitted.compare_exchange_weak(
                now,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        admitted: self.admitted.clone(),
                        ahead: now,
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Puts a charged job in line, in the place `reservation` held.
    pub fn submit(&self, reservation: Reservation, job: Job) {
        // The place is now the actor's to free, when the job leaves.
        std::mem::forget(reservation);
        self.send(QueueMail::Submit(job, Instant::now()));
    }

    /// Puts a job taken up again after a restart in line. Not bounded by
    /// capacity: these were charged before the restart.
    pub fn resume(&self, job: Job) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        self.send(QueueMail::Submit(job, Instant::now()));
    }

    /// The job was cancelled and refunded: stop spending work on it.
    pub fn forget(&self, job_id: &str) {
        self.send(QueueMail::Forget(job_id.to_owned()));
    }

    /// Where each of `ids` stands; `None` for a job not in this queue.
    pub async fn places(&self, ids: Vec<String>) -> Vec<Option<Place>> {
        let n = ids.len();
        let (tx, rx) = oneshot::channel();
        self.send(QueueMail::Places(ids, tx));
        rx.await.unwrap_or_else(|_| vec![None; n])
    }

    fn send(&self, mail: QueueMail) {
        // Fails only once the actor has stopped (shutdown); jobs still queued
        // in storage are taken up at the next start.
        if self.mailbox.send(mail).is_err() {
            tracing::debug!(queue = self.workflow.as_str(), "job queue stopped");
        }
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

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobQueue> {
        self.queues.iter()
    }
}

struct QueueActor {
    workflow: Workflow,
    mailbox: mpsc::UnboundedReceiver<QueueMail>,
    waiting: VecDeque<(Job, Instant)>,
    running: JoinSet<(Job, Rendered, Instant)>,
    /// Ids of running jobs with their tasks, so a cancelled one can be stopped.
    running_ids: Vec<(String, AbortHandle)>,
    concurrency: usize,
    timeout: Duration,
    render: Arc<dyn Render>,
    finished: mpsc::UnboundedSender<Finished>,
    admitted: Arc<AtomicUsize>,
}

impl QueueActor {
    async fn run(mut self) {
        let queue = self.workflow.as_str();
        for outcome in ["done", "failed", "cancelled"] {
            metrics::counter!(m::JOBS_TOTAL, "queue" => queue, "outcome" => outcome).increment(0);
        }
        self.report();
        loop {
            tokio::select! {
                mail = self.mailbox.recv() => match mail {
                    Some(mail) => self.handle(mail),
                    None => break,
                },
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => {
                    match joined {
                        Ok((job, rendered, started)) => self.finish(job, rendered, started),
                        // Aborted because the job was cancelled: already counted.
                        Err(e) if e.is_cancelled() => {}
                        // The render task panicked: the job stays queued in
                        // storage and is taken up again at the next start.
                        Err(e) => tracing::error!(queue, error = %e, "a render task panicked"),
                    }
                }
            }
            self.start_waiting();
            self.report();
        }
    }

    fn handle(&mut self, mail: QueueMail) {
        match mail {
            QueueMail::Submit(job, at) => self.waiting.push_back((job, at)),
            QueueMail::Forget(id) => {
                if let Some(i) = self.waiting.iter().position(|(j, _)| j.id == id) {
                    self.waiting.remove(i);
                    self.leave("cancelled");
                } else if let Some(i) = self.running_ids.iter().position(|(j, _)| *j == id) {
                    let (_, task) = self.running_ids.swap_remove(i);
                    task.abort();
                    self.leave("cancelled");
                }
            }
            QueueMail::Places(ids, answer) => {
                let places = ids
                    .iter()
                    .map(|id| {
                        if self.running_ids.iter().any(|(j, _)| j == id) {
                            Some(Place::Running)
                        } else {
                            self.waiting
                                .iter()
                                .position(|(j, _)| &j.id == id)
                                .map(|ahead| Place::Waiting { ahead })
                        }
                    })
                    .collect();
                let _ = answer.send(places);
            }
        }
    }

    fn start_waiting(&mut self) {
        while self.running_ids.len() < self.concurrency {
            let Some((job, enqueued)) = self.waiting.pop_front() else {
                return;
            };
            metrics::histogram!(m::QUEUE_WAIT_SECONDS, "queue" => self.workflow.as_str())
                .record(enqueued.elapsed().as_secs_f64());
            let render = self.render.clone();
            let timeout = self.timeout;
            let id = job.id.clone();
            let task = self.running.spawn(async move {
                let started = Instant::now();
                let rendered = match tokio::time::timeout(timeout, render.render(&job)).await {
                    Ok(r) => r,
                    Err(_) => Rendered::Failed(format!(
                        "rendering took longer than {} s",
                        timeout.as_secs()
                    )),
                };
                (job, rendered, started)
            });
            self.running_ids.push((id, task));
        }
    }

    fn finish(&mut self, job: Job, rendered: Rendered, started: Instant) {
        let queue = self.workflow.as_str();
        let Some(i) = self.running_ids.iter().position(|(j, _)| *j == job.id) else {
            // Cancelled while it finished: the refund stands, drop the result.
            return;
        };
        self.running_ids.swap_remove(i);
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
        self.admitted.fetch_sub(1, Ordering::Relaxed);
        metrics::counter!(m::JOBS_TOTAL, "queue" => self.workflow.as_str(), "outcome" => outcome)
            .increment(1);
    }

    fn report(&self) {
        let queue = self.workflow.as_str();
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => queue).set(self.waiting.len() as f64);
        metrics::gauge!(m::QUEUE_RUNNING, "queue" => queue).set(self.running_ids.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GuildId, UserId, UserKey};

    fn job(n: u32) -> Job {
        Job {
            id: format!("j{n}"),
            key: UserKey::new(GuildId::new(1).unwrap(), UserId::new(2).unwrap()),
            workflow: Workflow::Image,
            prompt: "a fox".into(),
            cost: 10,
            created_ms: 0,
        }
    }

    fn start(concurrency: usize, capacity: usize) -> (JobQueue, mpsc::UnboundedReceiver<Finished>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let render = Arc::new(SimulatedRender::new(Duration::from_millis(50), 0));
        let config = JobQueueConfig {
            concurrency,
            capacity,
            timeout: Duration::from_secs(5),
        };
        (JobQueue::start(Workflow::Image, config, render, tx).0, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_jobs_in_order_at_most_concurrency_at_once() {
        let (q, mut done) = start(1, 10);
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

    #[tokio::test(start_paused = true)]
    async fn admission_stops_at_capacity_and_frees_unused_places() {
        let (q, _done) = start(1, 2);
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

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_job_never_reports() {
        let (q, mut done) = start(1, 10);
        q.submit(q.try_reserve().unwrap(), job(0));
        q.submit(q.try_reserve().unwrap(), job(1));
        q.submit(q.try_reserve().unwrap(), job(2));
        q.forget("j0"); // running: aborted
        q.forget("j1"); // waiting: dropped
        let f = done.recv().await.unwrap();
        assert_eq!(f.job.id, "j2");
        assert!(q.try_reserve().is_some_and(|r| r.ahead == 0));
    }
}
