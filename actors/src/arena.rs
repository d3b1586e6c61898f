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
//! again at start, and waiting players wait again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::domain::arena;
use crate::ids::{GuildId, UserId, UserKey};
use crate::store::Store;
use crate::telemetry as m;

/// One player's place in the arena, paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaEntry {
    pub id: String,
    pub key: UserKey,
    pub fee: i64,
    pub power: i64,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Waiting,
    /// Left before a match: refunded.
    Left,
    /// Fought; the result is on its way to the player's actor.
    Matched,
    /// The result is paid.
    Rewarded,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Left => "left",
            Self::Matched => "matched",
            Self::Rewarded => "rewarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "waiting" => Some(Self::Waiting),
            "left" => Some(Self::Left),
            "matched" => Some(Self::Matched),
            "rewarded" => Some(Self::Rewarded),
            _ => None,
        }
    }
}

/// One side of a resolved battle, for that player's actor to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fought {
    pub entry: ArenaEntry,
    pub battle_id: String,
    pub opponent: UserId,
    pub won: bool,
    /// Gold paid to this player (0 for the loser).
    pub prize: i64,
}

/// An entry as stored, with its battle once matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub entry: ArenaEntry,
    pub status: EntryStatus,
    pub fought: Option<Fought>,
}

enum ArenaMail {
    Enter(ArenaEntry),
    /// The player left (and was refunded): stop waiting for them.
    Forget(GuildId, String),
    Waiting(GuildId, oneshot::Sender<usize>),
    /// Storage failed during a match: try that guild again.
    Retry(GuildId),
}

/// The handle to the arena actor.
#[derive(Clone)]
pub struct ArenaQueue {
    mailbox: mpsc::UnboundedSender<ArenaMail>,
}

impl ArenaQueue {
    /// Starts the arena; each side of each battle goes to `fought`.
    pub fn start(
        store: Store,
        fought: mpsc::UnboundedSender<Fought>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // Unbounded: each player has at most one entry, so players bound it.
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = ArenaActor {
            store,
            mailbox: rx,
            retry: tx.clone(),
            waiting: HashMap::new(),
            fought,
        };
        (Self { mailbox: tx }, tokio::spawn(actor.run()))
    }

    /// A paid entry joins its guild's line (also used at start for entries
    /// left waiting by the previous run).
    pub fn enter(&self, entry: ArenaEntry) {
        let _ = self.mailbox.send(ArenaMail::Enter(entry));
    }

    pub fn forget(&self, guild: GuildId, entry_id: &str) {
        let _ = self
            .mailbox
            .send(ArenaMail::Forget(guild, entry_id.to_owned()));
    }

    /// Players waiting in `guild`.
    pub async fn waiting(&self, guild: GuildId) -> usize {
        let (tx, rx) = oneshot::channel();
        let _ = self.mailbox.send(ArenaMail::Waiting(guild, tx));
        rx.await.unwrap_or(0)
    }
}

struct ArenaActor {
    store: Store,
    mailbox: mpsc::UnboundedReceiver<ArenaMail>,
    retry: mpsc::UnboundedSender<ArenaMail>,
    waiting: HashMap<GuildId, VecDeque<(ArenaEntry, Instant)>>,
    fought: mpsc::UnboundedSender<Fought>,
}

/// How long to wait before matching again after storage failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl ArenaActor {
    async fn run(mut self) {
        metrics::counter!(m::ARENA_BATTLES_TOTAL).increment(0);
        self.report();
        while let Some(mail) = self.mailbox.recv().await {
            match mail {
                ArenaMail::Enter(entry) => {
                    let guild = entry.key.guild;
                    let line = self.waiting.entry(guild).or_default();
                    // A resent entry (start-up) must not wait twice.
                    if !line.iter().any(|(e, _)| e.id == entry.id) {
                        line.push_back((entry, Instant::now()));
                    }
                    self.match_in(guild).await;
                }
                ArenaMail::Forget(guild, id) => {
                    if let Some(line) = self.waiting.get_mut(&guild) {
                        line.retain(|(e, _)| e.id != id);
                    }
                }
                ArenaMail::Waiting(guild, answer) => {
                    let _ = answer.send(self.waiting.get(&guild).map_or(0, VecDeque::len));
                }
                ArenaMail::Retry(guild) => self.match_in(guild).await,
            }
            self.waiting.retain(|_, line| !line.is_empty());
            self.report();
        }
    }

    /// Matches the players waiting in `guild`, two at a time, oldest first.
    async fn match_in(&mut self, guild: GuildId) {
        loop {
            let Some(line) = self.waiting.get_mut(&guild) else {
                return;
            };
            if line.len() < 2 {
                return;
            }
            let (Some(a), Some(b)) = (line.pop_front(), line.pop_front()) else {
                return;
            };
            let (a_won, battle_id) = (
                arena::first_wins(a.0.power, b.0.power, rand::random()),
                format!("b{:032x}", rand::random::<u128>()),
            );
            let started = Instant::now();
            let at = crate::config::unix_ms();
            match self
                .store
                .arena_match(&a.0, &b.0, &battle_id, a_won, arena::prize(), at)
                .await
            {
                Ok(true) => {
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
                }
                Ok(false) => {
                    // One of them left first. Whoever is still waiting keeps
                    // their place at the front.
                    for side in [b, a] {
                        match self.store.arena_entry(&side.0.id).await {
                            Ok(Some(s)) if s.status == EntryStatus::Waiting => {
                                self.line(guild).push_front(side);
                            }
                            Ok(_) => {}
                            Err(_) => self.line(guild).push_front(side),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "arena match failed; retrying");
                    let line = self.line(guild);
                    line.push_front(b);
                    line.push_front(a);
                    let retry = self.retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry.send(ArenaMail::Retry(guild));
                    });
                    return;
                }
            }
        }
    }

    fn line(&mut self, guild: GuildId) -> &mut VecDeque<(ArenaEntry, Instant)> {
        self.waiting.entry(guild).or_default()
    }

    fn report(&self) {
        let waiting: usize = self.waiting.values().map(VecDeque::len).sum();
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "arena").set(waiting as f64);
    }
}
