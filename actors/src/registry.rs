//! The `Registry`: maps each player to the address of their actor, activating
//! one on first mail and keeping at most `max_resident` in memory.
//!
//! Race-freedom rests on two rules. Activation happens inside the map's entry
//! lock, so two callers never start two actors for one player. Passivation
//! unregisters the actor (only its own generation) before it stops reading
//! its mailbox, and it only passivates between commands, after its last
//! commit is durable, so the next activation never loads state older than
//! that commit. Mail it never read is dropped unread, which answers
//! `NotDelivered`, and the sender tries again at the new address.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::arena::ArenaQueue;
use crate::command::Command;
use crate::config::RuntimeConfig;
use crate::game::arena::entry::Fought;
use crate::game::Refusal;
use crate::group_commit::GroupCommit;
use crate::ids::UserKey;
use crate::job_queue::{Finished, Queues};
use crate::mailbox::{Answer, Delivery, Half, Mail, NotDelivered, Unread, Why};
use crate::postbox;
use crate::reply::{ErrorCode, Reply};
use crate::store::Store;
use crate::telemetry as m;
use crate::user_actor::UserActor;
use crate::writeset::Transfer;

/// What every actor shares: read-only after start.
pub(crate) struct Shared {
    pub store: Store,
    pub commit: GroupCommit,
    pub config: RuntimeConfig,
    pub queues: Queues,
    pub arena: ArenaQueue,
    pub guilds: crate::guild_settings::Guilds,
    pub roles: Arc<crate::role_desk::RoleDesk>,
    /// Cluster mode: the slots this node serves.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Cluster mode: how queues and finished jobs reach other nodes.
    pub queue_link: crate::job_queue::Link,
}

struct Slot {
    mailbox: postbox::Sender<Mail>,
    generation: u64,
    /// Set on every use, cleared by the eviction clock: a second chance.
    used: AtomicBool,
    /// Milliseconds since the registry started, at the last use: the idle sweep reads it.
    last_used_ms: AtomicU64,
}

pub struct Registry {
    actors: DashMap<UserKey, Slot>,
    next_generation: AtomicU64,
    resident: AtomicUsize,
    activations: AtomicU64,
    /// Activation order, for eviction by the clock (second-chance) algorithm:
    /// an approximation of least-recently-used that costs nothing per command.
    clock_hand: Mutex<VecDeque<(UserKey, u64)>>,
    pub(crate) shared: Shared,
    started: Instant,
}

/// Most actors asked to passivate per activation over the cap.
const EVICTIONS_PER_ACTIVATION: usize = 4;

/// How long a give's answer waits for its credit to be taken before it is
/// answered without it (the debit is durable by then; the relay credits it).
const CREDIT_PATIENCE: Duration = Duration::from_secs(3);

/// How many times a command is re-sent after `NotDelivered` before giving up.
const MAX_REDELIVERIES: usize = 16;

impl Registry {
    pub(crate) fn new(shared: Shared) -> Arc<Self> {
        Arc::new(Self {
            actors: DashMap::new(),
            next_generation: AtomicU64::new(1),
            resident: AtomicUsize::new(0),
            activations: AtomicU64::new(0),
            clock_hand: Mutex::new(VecDeque::new()),
            shared,
            started: Instant::now(),
        })
    }

    pub fn resident(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    /// Actors activated since start (the metric, readable without a recorder).
    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }

    /// Sends a command to its player's actor and waits for the reply.
    pub async fn dispatch(self: &Arc<Self>, command: Command) -> Reply {
        let name = command.kind.name();
        let key = command.key;
        match self
            .send(key, |reply| Mail::command(command.clone(), reply))
            .await
        {
            Ok(reply) => reply,
            Err(code) => {
                let msg = match code {
                    ErrorCode::Busy => "this player has too many commands waiting; retry shortly",
                    _ => "internal error: the command's outcome is unknown",
                };
                Reply::error(name, code, msg)
            }
        }
    }

    /// Credits a transfer to its receiver. `Ok` once credited (or found
    /// credited before); errors leave it for the outbox relay.
    pub async fn deliver(self: &Arc<Self>, transfer: Transfer) -> Result<Reply, ErrorCode> {
        let key = UserKey::new(transfer.guild, transfer.to);
        self.hand_over(key, |reply| Mail::credit(transfer.clone(), reply))
            .await
    }

    /// Hands a finished job to its player's actor to record (or refund).
    /// `Ok` once recorded, or found recorded before.
    pub(crate) async fn close_job(
        self: &Arc<Self>,
        finished: Finished,
    ) -> Result<Reply, ErrorCode> {
        let key = finished.job.key;
        self.hand_over(key, |reply| Mail::job_done(finished.clone(), reply))
            .await
    }

    /// Hands one side of a battle to its player's actor to pay. `Ok` once
    /// paid, or found paid before.
    pub(crate) async fn pay_battle(self: &Arc<Self>, fought: Fought) -> Result<Reply, ErrorCode> {
        let key = fought.entry.key;
        self.hand_over(key, |reply| Mail::fought(fought.clone(), reply))
            .await
    }

    /// Sends what another actor produced (a credit, a result) to a player's
    /// actor; an error reply is an `Err`, so callers retry or leave it for
    /// their relay.
    async fn hand_over(
        self: &Arc<Self>,
        key: UserKey,
        mail: impl Fn(Unread) -> Mail,
    ) -> Result<Reply, ErrorCode> {
        let reply = self.send(key, mail).await?;
        match reply.code() {
            Some(code) => Err(code),
            None => Ok(reply),
        }
    }

    /// Asks the recipient's actor (activating it) for its half of a give,
    /// or `None` when its mailbox is full: the give is then answered `busy`
    /// with nothing written. A half asked for and never read (the recipient
    /// passivated) closes the receiver, and the debit commits alone.
    pub(crate) fn ask_half(
        self: &Arc<Self>,
        transfer: &Transfer,
    ) -> Option<oneshot::Receiver<Result<Half, Refusal>>> {
        let key = UserKey::new(transfer.guild, transfer.to);
        let (tx, rx) = oneshot::channel();
        self.forward(key, Mail::half(transfer.clone(), tx)).ok()?;
        Some(rx)
    }

    /// Puts `mail` in `key`'s mailbox (activating its actor) without
    /// waiting, or hands it back when the mailbox is full.
    pub(crate) fn forward(self: &Arc<Self>, key: UserKey, mail: Mail) -> Result<(), Mail> {
        self.post(key, mail)
            .map_err(postbox::TrySendError::into_inner)
    }

    /// Whether this node takes mail for `guild`'s players now (always,
    /// outside cluster mode).
    pub(crate) fn serves(&self, guild: crate::ids::GuildId) -> bool {
        self.shared
            .cluster
            .as_ref()
            .is_none_or(|c| c.serving_guild(guild).is_some())
    }

    /// Puts `mail` in `key`'s mailbox, activating its actor. A slot whose
    /// actor stopped without unregistering (it panicked) is cleared and the
    /// mail goes to a new activation; a full mailbox hands it back, counted.
    fn post(
        self: &Arc<Self>,
        key: UserKey,
        mut mail: Mail,
    ) -> Result<(), postbox::TrySendError<Mail>> {
        if !self.serves(key.guild) {
            // Another node's, or moving: answered `busy` (see `send`), and
            // no actor is activated for a player this node may not write.
            metrics::counter!(m::BUSY_REJECTIONS_TOTAL, "stage" => "moving").increment(1);
            return Err(postbox::TrySendError::Full(mail));
        }
        for _ in 0..2 {
            // The address is let go of before any wait: mail a passivating
            // actor never read is dropped (answering NotDelivered) with it.
            let (mailbox, generation) = self.address(key);
            match mailbox.try_send(mail) {
                Ok(depth) => {
                    metrics::histogram!(m::MAILBOX_DEPTH).record(depth as f64);
                    return Ok(());
                }
                Err(postbox::TrySendError::Disconnected(back)) => {
                    self.unregister(key, generation);
                    mail = back;
                }
                Err(full) => {
                    metrics::counter!(m::BUSY_REJECTIONS_TOTAL, "stage" => "mailbox").increment(1);
                    return Err(full);
                }
            }
        }
        Err(postbox::TrySendError::Disconnected(mail))
    }

    /// Credits a give's transfer and only then answers the give, so the
    /// recipient's first read after "sent" already shows the gold. Runs
    /// beside the sender's actor, which goes on with its mail: waiting
    /// inside it would deadlock two players giving to each other (each
    /// actor waiting for the other to take its credit).
    ///
    /// The debit is durable before this starts, so the give has happened
    /// whatever follows. A credit that storage or a full mailbox keeps out
    /// for `CREDIT_PATIENCE` is left to the outbox relay, counted and
    /// logged, and the give answered as it was recorded (a retry's replay
    /// must equal it), rather than holding the sender for ever.
    pub(crate) fn credit_then_answer(
        self: &Arc<Self>,
        transfer: Transfer,
        answer: Answer,
        reply: Reply,
    ) {
        let me = self.clone();
        // Its own span: the credit outlives the command that sent it.
        let span = tracing::info_span!("transfer", transfer = %transfer.id, to = %transfer.to);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let mut pause = Duration::from_millis(2);
                loop {
                    match me.deliver(transfer.clone()).await {
                        Ok(_) => break,
                        Err(code) if started.elapsed() + pause < CREDIT_PATIENCE => {
                            tracing::debug!(code = code.as_str(), "credit not taken yet; trying again");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(200));
                        }
                        Err(code) => {
                            metrics::counter!(m::TRANSFERS_ANSWERED_PENDING_TOTAL).increment(1);
                            tracing::warn!(
                                code = code.as_str(),
                                "a give's credit was not taken in time; answered, the outbox relay credits it"
                            );
                            break;
                        }
                    }
                }
                metrics::histogram!(m::TRANSFER_CREDIT_SECONDS).record(started.elapsed().as_secs_f64());
                answer.send(reply);
            }
            .instrument(span),
        );
    }

    async fn send(
        self: &Arc<Self>,
        key: UserKey,
        mail: impl Fn(Unread) -> Mail,
    ) -> Result<Reply, ErrorCode> {
        for _ in 0..MAX_REDELIVERIES {
            let (tx, rx) = oneshot::channel::<Delivery>();
            match self.post(key, mail(Unread::new(tx))) {
                Ok(()) => match rx.await {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(NotDelivered)) => continue,
                    // The actor died while handling it: the outcome is unknown.
                    Err(_) => return Err(ErrorCode::Internal),
                },
                Err(postbox::TrySendError::Full(_)) => return Err(ErrorCode::Busy),
                Err(postbox::TrySendError::Disconnected(_)) => continue,
            }
        }
        Err(ErrorCode::Busy)
    }

    /// The mailbox of `key`'s actor, activating one if none is resident.
    fn address(self: &Arc<Self>, key: UserKey) -> (postbox::Sender<Mail>, u64) {
        let now = self.elapsed_ms();
        if let Some(slot) = self.actors.get(&key) {
            slot.used.store(true, Ordering::Relaxed);
            slot.last_used_ms.store(now, Ordering::Relaxed);
            return (slot.mailbox.clone(), slot.generation);
        }
        let (address, activated) = match self.actors.entry(key) {
            Entry::Occupied(e) => {
                let slot = e.get();
                slot.used.store(true, Ordering::Relaxed);
                slot.last_used_ms.store(now, Ordering::Relaxed);
                ((slot.mailbox.clone(), slot.generation), None)
            }
            Entry::Vacant(e) => {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = postbox::bounded(self.shared.config.mailbox_capacity.max(1));
                let epoch = self
                    .shared
                    .cluster
                    .as_ref()
                    .and_then(|c| c.serving_guild(key.guild));
                let actor = UserActor::new(key, generation, self.clone(), rx, epoch);
                e.insert(Slot {
                    mailbox: tx.clone(),
                    generation,
                    used: AtomicBool::new(true),
                    last_used_ms: AtomicU64::new(now),
                });
                // Counted before the actor runs: it may passivate (and
                // uncount itself) before this thread gets any further.
                let resident = self.resident.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::spawn(actor.run());
                ((tx, generation), Some(resident))
            }
        };
        if let Some(resident) = activated {
            self.activations.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::ACTIVATIONS_TOTAL).increment(1);
            metrics::gauge!(m::ACTORS_RESIDENT).set(resident as f64);
            self.note_activation(key, address.1, resident);
        }
        address
    }

    fn note_activation(&self, key: UserKey, generation: u64, resident: usize) {
        let Ok(mut hand) = self.clock_hand.lock() else {
            return;
        };
        hand.push_back((key, generation));
        // Entries of passivated actors are dropped lazily; compact before
        // they outnumber the living.
        if hand.len() > 2 * resident + 1024 {
            hand.retain(|(k, g)| self.actors.get(k).is_some_and(|s| s.generation == *g));
        }
        // A few per activation keeps residency near the cap without a burst
        // of evictions; one sweep of the clock at most.
        let mut to_evict = resident
            .saturating_sub(self.shared.config.max_resident)
            .min(EVICTIONS_PER_ACTIVATION);
        // One full turn of the clock clears every second chance; the extra
        // steps then evict instead of giving up with the cap exceeded.
        let mut budget = hand.len() + to_evict;
        while to_evict > 0 && budget > 0 {
            budget -= 1;
            let Some((k, g)) = hand.pop_front() else {
                break;
            };
            let Some(slot) = self.actors.get(&k) else {
                continue;
            };
            if slot.generation != g {
                continue;
            }
            if slot.used.swap(false, Ordering::Relaxed) {
                drop(slot);
                hand.push_back((k, g));
                continue;
            }
            // A full mailbox means busy: skip it, it is not idle.
            if slot.mailbox.try_send(Mail::Passivate(Why::Evicted)).is_ok() {
                to_evict -= 1;
            } else {
                drop(slot);
                hand.push_back((k, g));
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Asks every actor unused for the idle timeout to passivate, forever.
    /// One sweeper instead of a timer per actor: idle actors cost no timer,
    /// and commands do not re-arm one.
    pub(crate) async fn sweep_idle(self: Arc<Self>) {
        let idle = self.shared.config.idle_timeout;
        let every = (idle / 2).clamp(Duration::from_millis(1), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cutoff) = self.elapsed_ms().checked_sub(idle.as_millis() as u64) else {
                continue;
            };
            for slot in self.actors.iter() {
                if slot.last_used_ms.load(Ordering::Relaxed) <= cutoff {
                    // Full mailbox: not idle after all.
                    let _ = slot.mailbox.try_send(Mail::Passivate(Why::Idle));
                }
            }
        }
    }

    /// Removes `key`'s slot if it still belongs to `generation`.
    pub(crate) fn unregister(&self, key: UserKey, generation: u64) {
        if self
            .actors
            .remove_if(&key, |_, s| s.generation == generation)
            .is_some()
        {
            let resident = self
                .resident
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1);
            metrics::gauge!(m::ACTORS_RESIDENT).set(resident as f64);
        }
    }
}
