//! `ActorSystem`: the thread where kokoro's few long-lived system actors live
//! (group commit, one queue per workflow, the arena), on actix, and the one
//! boundary between them and the player actors, which are tokio tasks.
//!
//! Why two kinds: players are many (a million resident) and hot, and a
//! tokio task with a small mailbox of its own (`postbox`) is smaller and a
//! tenth of the round trip of an actix actor called from a tokio worker (the
//! README has the figures).
//! System actors are few and long-lived, and want what actix gives: typed
//! messages with a `Handler` each, timers on their own context, and
//! `Supervised` restart.
//!
//! The boundary, both ways, is here and nowhere else:
//! - a tokio task talks to a system actor through its `Addr`: `do_send` for
//!   mail that needs no answer, `ask` (below) for one it awaits. Both are
//!   channel sends, so they work from any thread.
//! - a system actor never runs storage or network I/O on its own thread: it
//!   hands the work to the main tokio runtime (`on_main`), where the
//!   database pool and the HTTP clients live, and takes the output back as
//!   an actor future. Connections thus stay on one runtime's reactor, and a
//!   slow query never blocks the other system actors.
//! - results going back to players (a finished job, one side of a battle)
//!   leave on unbounded tokio channels that the runtime hands on to each
//!   player's actor.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::fut::{wrap_future, ActorFutureExt};
use actix::prelude::*;
use actix_rt::ArbiterHandle;

/// The actix system on its own thread, and the main runtime's handle for I/O.
pub struct ActorSystem {
    system: actix::System,
    arbiter: ArbiterHandle,
    io: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ActorSystem {
    /// Starts the system thread. Must be called from within the main tokio
    /// runtime: its handle is where the actors' I/O will run.
    pub fn start() -> std::io::Result<Self> {
        let io = tokio::runtime::Handle::current();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kokoro-system".into())
            .spawn(move || {
                let runner = actix::System::new();
                let _ = tx.send((actix::System::current(), actix::Arbiter::current()));
                if let Err(e) = runner.run() {
                    tracing::error!(error = %e, "the system actors' thread stopped with an error");
                }
            })?;
        let (system, arbiter) = rx
            .recv()
            .map_err(|_| std::io::Error::other("the system actors' thread did not start"))?;
        Ok(Self {
            system,
            arbiter,
            io,
            thread: Some(thread),
        })
    }

    /// Where system actors are started.
    pub fn arbiter(&self) -> &ArbiterHandle {
        &self.arbiter
    }

    /// The main runtime, for the actors' I/O.
    pub fn io(&self) -> &tokio::runtime::Handle {
        &self.io
    }

    /// Stops every system actor and waits for the thread to end. Mail still
    /// queued is dropped: what it carried is either durable already or is
    /// taken up again from storage at the next start.
    pub async fn stop(mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ActorSystem {
    fn drop(&mut self) {
        // A runtime dropped without `shutdown` must not leave the thread behind.
        self.system.stop();
    }
}

/// Sends `msg` from a tokio task and awaits the answer; `None` if the actor
/// has stopped (shutdown) or was restarted before answering.
pub async fn ask<A, M>(addr: &Addr<A>, msg: M) -> Option<M::Result>
where
    A: Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    addr.send(msg).await.ok()
}

/// Runs `work` on the main runtime; as an actor future, its output (`None`
/// if the task was lost: a panic, or the runtime shutting down).
pub fn on_main<A, F>(
    io: &tokio::runtime::Handle,
    work: F,
) -> impl ActorFuture<A, Output = Option<F::Output>>
where
    A: Actor,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    wrap_future::<_, A>(io.spawn(work)).map(|joined, _, _| joined.ok())
}

/// Runs a handler's body. A panic in it stops the actor, and its
/// `Supervisor` restarts it: `restarting` drops what it held in memory and
/// `started` reloads its durable state. Without this, a panic would unwind
/// through the arbiter's task and take the actor down for good.
pub fn guarded<A, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    what: &str,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Option<R>
where
    A: Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(r) => Some(r),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(actor = what, panic = %why, "a system actor panicked; restarting it");
            metrics::counter!(crate::telemetry::SYSTEM_ACTOR_RESTARTS_TOTAL, "actor" => what.to_owned())
                .increment(1);
            ctx.stop();
            None
        }
    }
}

/// A supervised system actor whose durable state is read back from storage
/// when it starts and after every restart.
pub trait Reloads: Actor<Context = Context<Self>> + Sized {
    type State: Send + 'static;
    /// The actor's name in logs and metrics.
    fn name(&self) -> &str;
    fn io(&self) -> &tokio::runtime::Handle;
    /// The read, to run on the main runtime.
    fn load(
        &self,
    ) -> futures::future::BoxFuture<'static, Result<Self::State, crate::store::StoreError>>;
    /// Takes in what was read.
    fn loaded(&mut self, state: Self::State, ctx: &mut Context<Self>);
}

/// How long to wait before reading storage again when a reload failed.
const RELOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads an actor's durable state back. The mailbox waits meanwhile (so
/// nothing is served out of order), and a failed read is tried again.
pub fn reload<A: Reloads>(act: &mut A, ctx: &mut Context<A>) {
    let load = act.load();
    ctx.wait(on_main(act.io(), load).map(|read, act: &mut A, ctx| match read {
        Some(Ok(state)) => {
            let name = act.name().to_owned();
            guarded(act, ctx, &name, |act, ctx| act.loaded(state, ctx));
        }
        failed => {
            let why = match failed {
                Some(Err(e)) => e.to_string(),
                _ => "the read was lost".to_owned(),
            };
            tracing::warn!(actor = act.name(), error = %why, "could not read state back from storage; retrying");
            ctx.run_later(RELOAD_RETRY, |act, ctx| reload(act, ctx));
        }
    }));
}

/// Answered once the actor has read its durable state (its `started`
/// reload holds the mailbox until then): what start-up awaits, so the
/// runtime serves nothing before the queues and the arena are back.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Loaded;

/// Test hook: makes a supervised actor's handler panic once, to prove it is
/// restarted and reloads its durable state. Never sent in production.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PanicOnce;
