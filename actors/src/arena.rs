//! `ArenaQueue`: the matchmaking actor. Players who joined (and paid their
//! entry fee, durably, through their own actor) wait here per guild; two
//! waiting players of a guild are matched first come, first served, and the
//! battle is resolved at once.
//!
//! Exactly once, without locks: matching is one transaction that moves both
//! entries from `waiting` to `matched`, and it only succeeds if both are
//! still waiting, so a player who left a moment earlier (their own actor
//! moved the entry to `left` and refunded it) cannot be fought. The results
//! then go to each player's actor, which pays the prize and XP in the same
//! transaction that moves the entry on to `rewarded`; a result delivered
//! twice pays once. Results not yet paid when the process stops are sent
//! again at start, and waiting players wait again; the same reload runs
//! when the supervisor restarts the actor after a panic.
//!
//! An actix actor on the system thread (see `system.rs`); the match
//! transaction runs on the main runtime while the actor's mailbox waits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::game::arena::battle as arena;
// The entry's types are the arena feature's; named here too for the application.
use crate::cluster::Cluster;
pub use crate::game::arena::entry::{ArenaEntry, EntryStatus, Fought, StoredEntry};
use crate::ids::GuildId;
use crate::store::{Store, StoreError};
use crate::system::{self, ActorSystem, Loaded, PanicOnce};
use crate::telemetry as m;

/// A paid entry for its guild's line.
#[derive(Message)]
#[rtype(result = "()")]
struct Enter(ArenaEntry);

/// The player left (and was refunded): stop waiting for them.
#[derive(Message)]
#[rtype(result = "()")]
struct Forget(GuildId, String);

/// The handle to the arena actor.
#[derive(Clone)]
pub struct ArenaQueue {
    addr: Addr<ArenaActor>,
    /// Players waiting per guild, as the actor last published them: read
    /// without a round trip, so `arena_status` never waits behind a match
    /// being written.
    waiting: Arc<DashMap<GuildId, usize>>,
}

impl ArenaQueue {
    /// Starts the arena under a supervisor; each side of each battle goes to
    /// `fought`. At start (and after a restart) it reads storage: waiting
    /// players wait again, and battles fought but not yet paid are sent on.
    /// In cluster mode (`cluster`) it keeps only the lines of the guilds
    /// whose slots this node serves, and reads them again (`reload`) when
    /// those change.
    pub fn start(
        system: &ActorSystem,
        store: Store,
        fought: mpsc::UnboundedSender<Fought>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let published = Arc::new(DashMap::new());
        let actor = ArenaActor {
            store,
            cluster,
            io: system.io().clone(),
            waiting: HashMap::new(),
            published: published.clone(),
            fought,
        };
        Self {
            addr: Supervisor::start_in_arbiter(system.arbiter(), |_| actor),
            waiting: published,
        }
    }

    /// A paid entry joins its guild's line. Unbounded (`do_send`): each
    /// player has at most one entry, so players bound it.
    pub fn enter(&self, entry: ArenaEntry) {
        self.addr.do_send(Enter(entry));
    }

    pub fn forget(&self, guild: GuildId, entry_id: &str) {
        self.addr.do_send(Forget(guild, entry_id.to_owned()));
    }

    /// Players waiting in `guild`.
    pub fn waiting(&self, guild: GuildId) -> usize {
        self.waiting.get(&guild).map_or(0, |n| *n)
    }

    /// Returns once the arena has read its line back from storage.
    pub async fn loaded(&self) {
        system::ask(&self.addr, Loaded).await;
    }

    /// Cluster mode: the slots this node serves changed; the lines are read
    /// again from storage for the guilds it serves now.
    pub fn reload(&self) {
        self.addr.do_send(Reload);
    }

    /// Test hook: makes the actor's next handler panic.
    #[doc(hidden)]
    pub fn panic_once(&self) {
        self.addr.do_send(PanicOnce);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload;

impl Handler<Reload> for ArenaActor {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Self::Context) {
        system::reload(self, ctx);
    }
}

struct ArenaActor {
    store: Store,
    cluster: Option<Arc<Cluster>>,
    io: tokio::runtime::Handle,
    waiting: HashMap<GuildId, VecDeque<(ArenaEntry, Instant)>>,
    /// Each guild's line length, for the handle to read.
    published: Arc<DashMap<GuildId, usize>>,
    fought: mpsc::UnboundedSender<Fought>,
}

/// How long to wait before matching (or reading storage) again after
/// storage failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Actor for ArenaActor {
    type Context = Context<Self>;

    /// At start and after every restart: the line and the unpaid battles
    /// are read from storage, the mailbox waiting meanwhile.
    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded by players (one entry each), not by the mailbox: unbounded,
        // so a `send` never parks behind the `do_send`s queued ahead of it.
        ctx.set_mailbox_capacity(0);
        metrics::counter!(m::ARENA_BATTLES_TOTAL).increment(0);
        metrics::counter!(m::SYSTEM_ACTOR_RESTARTS_TOTAL, "actor" => "arena").increment(0);
        // No report before the reload: after a restart the published line
        // lengths stay as they were until storage has said what they are.
        system::reload(self, ctx);
    }
}

impl Supervised for ArenaActor {
    /// A handler panicked: the lines held in memory may be half-changed, so
    /// they are dropped and read again from storage by `started`. A match
    /// that was being written is either durable (its results are re-sent
    /// from storage and paid once) or not (both players wait again).
    fn restarting(&mut self, _: &mut Self::Context) {
        self.waiting.clear();
    }
}

impl system::Reloads for ArenaActor {
    type State = Vec<StoredEntry>;

    fn name(&self) -> &str {
        "arena"
    }

    fn io(&self) -> &tokio::runtime::Handle {
        &self.io
    }

    fn load(&self) -> BoxFuture<'static, Result<Self::State, StoreError>> {
        let store = self.store.clone();
        Box::pin(async move { store.arena_open().await })
    }

    fn loaded(&mut self, open: Self::State, ctx: &mut Context<Self>) {
        self.resume(open, ctx);
    }
}

impl Handler<Enter> for ArenaActor {
    type Result = ();

    fn handle(&mut self, Enter(entry): Enter, ctx: &mut Self::Context) {
        system::guarded(self, ctx, "arena", |act, ctx| {
            let guild = entry.key.guild;
            if act.line_up(entry) {
                act.match_in(guild, ctx);
            }
        });
    }
}

impl Handler<Forget> for ArenaActor {
    type Result = ();

    fn handle(&mut self, Forget(guild, id): Forget, ctx: &mut Self::Context) {
        system::guarded(self, ctx, "arena", |act, _| {
            if let Some(line) = act.waiting.get_mut(&guild) {
                line.retain(|(e, _)| e.id != id);
            }
            act.report();
        });
    }
}

impl Handler<Loaded> for ArenaActor {
    type Result = ();

    fn handle(&mut self, _: Loaded, _: &mut Self::Context) {}
}

impl Handler<PanicOnce> for ArenaActor {
    type Result = ();

    fn handle(&mut self, _: PanicOnce, ctx: &mut Self::Context) {
        system::guarded(self, ctx, "arena", |_, _| {
            panic!("PanicOnce: a test asked the arena to panic")
        });
    }
}

impl ArenaActor {
    /// Whether this arena serves `guild`'s line: `Some(None)` outside
    /// cluster mode, `Some(Some(epoch))` while this node serves its slot.
    fn lease_of(&self, guild: GuildId) -> Option<Option<i64>> {
        match &self.cluster {
            None => Some(None),
            Some(c) => c.serving_guild(guild).map(Some),
        }
    }

    /// Puts `entry` in its guild's line unless it is there already (an entry
    /// sent again after a reload). Says whether it was added.
    fn line_up(&mut self, entry: ArenaEntry) -> bool {
        let line = self.waiting.entry(entry.key.guild).or_default();
        if line.iter().any(|(e, _)| e.id == entry.id) {
            return false;
        }
        line.push_back((entry, Instant::now()));
        self.report();
        true
    }

    /// Waiting players wait again (oldest first, ahead of anyone who joined
    /// meanwhile); battles fought but not paid go to the players' actors,
    /// which pay each once.
    fn resume(&mut self, open: Vec<StoredEntry>, ctx: &mut Context<Self>) {
        let mut arrived = std::mem::take(&mut self.waiting);
        arrived.retain(|guild, _| self.lease_of(*guild).is_some());
        let mut guilds = Vec::new();
        for stored in open {
            if self.lease_of(stored.entry.key.guild).is_none() {
                continue;
            }
            match (stored.status, stored.fought) {
                (EntryStatus::Waiting, _) => {
                    guilds.push(stored.entry.key.guild);
                    self.line_up(stored.entry);
                }
                (EntryStatus::Matched, Some(f)) => {
                    let _ = self.fought.send(f);
                }
                _ => {}
            }
        }
        for (guild, line) in arrived {
            guilds.push(guild);
            for (entry, _) in line {
                self.line_up(entry);
            }
        }
        guilds.sort_unstable();
        guilds.dedup();
        for guild in guilds {
            self.match_in(guild, ctx);
        }
    }

    /// Matches the two oldest players waiting in `guild`, if there are two.
    /// The mailbox waits while the match is written, then the next pair is
    /// tried: one battle at a time, as the match transaction requires.
    fn match_in(&mut self, guild: GuildId, ctx: &mut Context<Self>) {
        let Some(epoch) = self.lease_of(guild) else {
            // Another node's now: it read this line from storage.
            self.waiting.remove(&guild);
            self.report();
            return;
        };
        let Some(line) = self.waiting.get_mut(&guild) else {
            return;
        };
        if line.len() < 2 {
            return;
        }
        let (Some(a), Some(b)) = (line.pop_front(), line.pop_front()) else {
            return;
        };
        self.report();
        let battle = Battle {
            guild,
            a_won: arena::first_wins(a.0.power, b.0.power, rand::random()),
            id: format!("b{:032x}", rand::random::<u128>()),
            started: Instant::now(),
            a,
            b,
        };
        let store = self.store.clone();
        let fence = self
            .cluster
            .as_ref()
            .zip(epoch)
            .map(|(c, epoch)| (c.fence(), epoch));
        let (ea, eb, id, a_won) = (
            battle.a.0.clone(),
            battle.b.0.clone(),
            battle.id.clone(),
            battle.a_won,
        );
        let write = async move {
            let at = crate::config::unix_ms();
            let matched = store
                .arena_match(
                    &ea,
                    &eb,
                    &id,
                    a_won,
                    arena::prize(),
                    at,
                    fence.as_ref().map(|(f, e)| (f, *e)),
                )
                .await;
            // Who is still waiting, if one of them left first.
            let still = match &matched {
                Ok(false) => Some((
                    still_waiting(&store, &ea.id).await,
                    still_waiting(&store, &eb.id).await,
                )),
                _ => None,
            };
            Written { matched, still }
        };
        ctx.wait(
            system::on_main(&self.io, write).map(move |written, act: &mut Self, ctx| {
                system::guarded(act, ctx, "arena", |act, ctx| {
                    act.matched(battle, written, ctx)
                });
            }),
        );
    }

    fn matched(&mut self, battle: Battle, written: Option<Written>, ctx: &mut Context<Self>) {
        let Battle {
            guild,
            a,
            b,
            a_won,
            id: battle_id,
            started,
        } = battle;
        match written {
            Some(Written {
                matched: Ok(true), ..
            }) => {
                metrics::histogram!(m::QUEUE_RUN_SECONDS, "queue" => "arena")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(m::ARENA_BATTLES_TOTAL).increment(1);
                for (me, them, won) in [(&a, &b, a_won), (&b, &a, !a_won)] {
                    metrics::histogram!(m::QUEUE_WAIT_SECONDS, "queue" => "arena")
                        .record(me.1.elapsed().as_secs_f64());
                    let _ = self.fought.send(Fought {
                        entry: me.0.clone(),
                        battle_id: battle_id.clone(),
                        opponent: them.0.key.user,
                        won,
                        prize: if won { arena::prize() } else { 0 },
                    });
                }
                self.match_in(guild, ctx);
            }
            Some(Written {
                matched: Ok(false),
                still,
            }) => {
                // One of them left first. Whoever is still waiting keeps
                // their place at the front (when unsure, they wait: a stale
                // entry fails the next match's guard and is dropped then).
                let (a_waits, b_waits) = still.unwrap_or((true, true));
                let line = self.waiting.entry(guild).or_default();
                for (side, waits) in [(b, b_waits), (a, a_waits)] {
                    if waits {
                        line.push_front(side);
                    }
                }
                self.report();
                self.match_in(guild, ctx);
            }
            failed => {
                let why = match failed {
                    Some(Written {
                        matched: Err(e), ..
                    }) => e.to_string(),
                    _ => "the write was lost".to_owned(),
                };
                tracing::warn!(error = %why, "arena match failed; retrying");
                let line = self.waiting.entry(guild).or_default();
                line.push_front(b);
                line.push_front(a);
                self.report();
                ctx.run_later(RETRY_AFTER, move |act, ctx| act.match_in(guild, ctx));
            }
        }
    }

    fn report(&self) {
        let waiting: usize = self.waiting.values().map(VecDeque::len).sum();
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "arena").set(waiting as f64);
        // Few guilds wait at once, and lines change a battle at a time.
        self.published
            .retain(|g, _| self.waiting.get(g).is_some_and(|l| !l.is_empty()));
        for (g, line) in &self.waiting {
            if !line.is_empty() {
                self.published.insert(*g, line.len());
            }
        }
    }
}

/// A player in line, and since when.
type Waiter = (ArenaEntry, Instant);

/// Two players taken from a line to fight, while their match is written.
struct Battle {
    guild: GuildId,
    a: Waiter,
    b: Waiter,
    a_won: bool,
    id: String,
    started: Instant,
}

/// What writing a match found: whether both still waited (and the match
/// is durable), and if not, which of the two still wait.
struct Written {
    matched: Result<bool, StoreError>,
    still: Option<(bool, bool)>,
}

/// Whether the entry is still waiting in storage; when storage cannot say,
/// yes (see `matched`).
async fn still_waiting(store: &Store, id: &str) -> bool {
    match store.arena_entry(id).await {
        Ok(Some(s)) => s.status == EntryStatus::Waiting,
        Ok(None) => false,
        Err(_) => true,
    }
}
