//! `GuildSettingsActor`: one actor per guild owns that guild's settings.
//! It reads them from storage when it starts (and after a restart), answers
//! `config_show`, and decides `config_set` one at a time: the new value and
//! its audit row go to group commit as one WriteSet, and only once they are
//! durable does the actor adopt them and publish the new snapshot.
//!
//! Players' actors never wait on it in the common case: each decision reads
//! the snapshot the actor last published (an `Arc`, from a map), and asks
//! the actor only the first time a guild is seen, which starts it.
//!
//! An actix actor on the system thread (see `system.rs`); its reads and
//! commits run on the main runtime.

use std::sync::Arc;
use std::time::Duration;

use actix::fut::{self as afut, ActorFutureExt};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use dashmap::DashMap;
use futures::future::BoxFuture;
use serde_json::json;

use crate::cluster::Cluster;
use crate::config::Clock;
use crate::game::guild::settings::{GuildSettings, Key};
use crate::game::guild::{self, CHANGES_SHOWN};
use crate::group_commit::{CommitError, GroupCommit};
use crate::ids::{CommandId, GuildId, UserKey};
use crate::reply::{ErrorCode, Reply};
use crate::store::{Store, StoreError};
use crate::system::{self, ActorSystem, PanicOnce};
use crate::writeset::{CommitOutcome, WriteSet};

/// How long a player's command waits for a guild's settings to be read
/// the first time before it is answered `storage_unavailable`.
const FIRST_READ_WITHIN: Duration = Duration::from_secs(3);

/// The guild's settings as they are now (after the start-up read).
#[derive(Message)]
#[rtype(result = "Arc<GuildSettings>")]
struct Snapshot;

#[derive(Message)]
#[rtype(result = "Reply")]
struct Set {
    /// Cluster mode: the epoch of the guild's slot the change is decided under.
    epoch: Option<i64>,
    by: UserKey,
    id: Option<CommandId>,
    key: Key,
    value: String,
}

#[derive(Message)]
#[rtype(result = "Reply")]
struct Show;

/// The handle to every guild's settings actor; starts one the first time a
/// guild is seen.
#[derive(Clone)]
pub struct Guilds {
    arbiter: ArbiterHandle,
    io: tokio::runtime::Handle,
    store: Store,
    commit: GroupCommit,
    clock: Clock,
    actors: Arc<DashMap<GuildId, Addr<GuildSettingsActor>>>,
    /// Each guild's settings as its actor last published them.
    published: Arc<DashMap<GuildId, Arc<GuildSettings>>>,
    cluster: Option<Arc<Cluster>>,
}

impl Guilds {
    pub fn new(
        system: &ActorSystem,
        store: Store,
        commit: GroupCommit,
        clock: Clock,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Self {
            cluster,
            arbiter: system.arbiter().clone(),
            io: system.io().clone(),
            store,
            commit,
            clock,
            actors: Arc::default(),
            published: Arc::default(),
        }
    }

    fn actor(&self, guild: GuildId) -> Addr<GuildSettingsActor> {
        if let Some(a) = self.actors.get(&guild) {
            return a.clone();
        }
        self.actors
            .entry(guild)
            .or_insert_with(|| {
                let actor = GuildSettingsActor {
                    guild,
                    store: self.store.clone(),
                    io: self.io.clone(),
                    commit: self.commit.clone(),
                    clock: self.clock.clone(),
                    settings: Arc::default(),
                    published: self.published.clone(),
                };
                Supervisor::start_in_arbiter(&self.arbiter, |_| actor)
            })
            .clone()
    }

    /// The guild's settings: the published snapshot, or, the first time,
    /// what its actor reads from storage. `None` if storage did not answer
    /// in time.
    pub async fn settings(&self, guild: GuildId) -> Option<Arc<GuildSettings>> {
        if let Some(s) = self.published.get(&guild) {
            return Some(s.clone());
        }
        let addr = self.actor(guild);
        tokio::time::timeout(FIRST_READ_WITHIN, system::ask(&addr, Snapshot))
            .await
            .ok()
            .flatten()
    }

    /// The guild's settings if they were read already; never waits.
    pub fn published(&self, guild: GuildId) -> Option<Arc<GuildSettings>> {
        self.published.get(&guild).map(|s| s.clone())
    }

    pub async fn set(&self, by: UserKey, id: Option<CommandId>, key: Key, value: String) -> Reply {
        let epoch =
            match &self.cluster {
                None => None,
                Some(c) => match c.serving_guild(by.guild) {
                    Some(epoch) => Some(epoch),
                    None => return Reply::error(
                        "config_set",
                        ErrorCode::Busy,
                        "this server is moving to another node; nothing was changed, retry shortly",
                    ),
                },
            };
        let addr = self.actor(by.guild);
        let set = Set {
            epoch,
            by,
            id,
            key,
            value,
        };
        system::ask(&addr, set)
            .await
            .unwrap_or_else(|| lost("config_set"))
    }

    pub async fn show(&self, guild: GuildId) -> Reply {
        let addr = self.actor(guild);
        system::ask(&addr, Show)
            .await
            .unwrap_or_else(|| lost("config_show"))
    }

    /// Cluster mode: forgets the settings of every guild `served` says this
    /// node no longer serves, stopping their actors; a guild served again
    /// later is read again from storage, where its last owner left it.
    pub fn keep_only(&self, served: impl Fn(GuildId) -> bool) {
        self.actors.retain(|g, _| served(*g));
        self.published.retain(|g, _| served(*g));
    }

    /// Test hook: makes the guild's actor panic once; returns once it has
    /// read its settings back.
    #[doc(hidden)]
    pub async fn panic_once(&self, guild: GuildId) {
        let addr = self.actor(guild);
        addr.do_send(PanicOnce);
        system::ask(&addr, Snapshot).await;
    }
}

fn lost(name: &str) -> Reply {
    Reply::error(
        name,
        ErrorCode::Internal,
        "the guild's settings actor stopped; nothing was changed, retry",
    )
}

struct GuildSettingsActor {
    guild: GuildId,
    store: Store,
    io: tokio::runtime::Handle,
    commit: GroupCommit,
    clock: Clock,
    settings: Arc<GuildSettings>,
    published: Arc<DashMap<GuildId, Arc<GuildSettings>>>,
}

impl Actor for GuildSettingsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(0);
        system::reload(self, ctx);
    }
}

impl Supervised for GuildSettingsActor {
    /// The settings are read again from storage, where every change the
    /// actor adopted already is.
    fn restarting(&mut self, _: &mut Self::Context) {
        self.settings = Arc::default();
    }
}

impl system::Reloads for GuildSettingsActor {
    type State = GuildSettings;

    fn name(&self) -> &str {
        "guild_settings"
    }

    fn io(&self) -> &tokio::runtime::Handle {
        &self.io
    }

    fn load(&self) -> BoxFuture<'static, Result<Self::State, StoreError>> {
        let (store, guild) = (self.store.clone(), self.guild);
        Box::pin(async move { store.guild_settings(guild).await })
    }

    fn loaded(&mut self, settings: Self::State, _: &mut Context<Self>) {
        self.settings = Arc::new(settings);
        self.published.insert(self.guild, self.settings.clone());
    }
}

impl Handler<Snapshot> for GuildSettingsActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.settings.clone())
    }
}

impl Handler<PanicOnce> for GuildSettingsActor {
    type Result = ();

    fn handle(&mut self, _: PanicOnce, ctx: &mut Self::Context) {
        system::guarded(self, ctx, "guild_settings", |_, _| {
            panic!("PanicOnce: a test asked a guild's settings actor to panic")
        });
    }
}

/// What committing a change came to.
enum Committed {
    Applied,
    /// The command id was recorded before: its first reply (if readable).
    Retry(Option<Reply>),
    Failed(Reply),
    /// Storage failed while committing: the change may have landed, so
    /// the snapshot is read again from storage.
    Unknown(Reply),
}

impl Handler<Set> for GuildSettingsActor {
    /// Atomic: the mailbox waits until the change is durable and adopted, so
    /// the next change is decided from this one's result.
    type Result = AtomicResponse<Self, Reply>;

    fn handle(&mut self, m: Set, ctx: &mut Self::Context) -> Self::Result {
        let decided = system::guarded(self, ctx, "guild_settings", |act, _| {
            guild::set(&act.settings, m.by.user, m.key, &m.value)
        });
        let (next, writes, data, message) = match decided {
            Some(Ok(d)) => d,
            Some(Err(refusal)) => {
                let reply = Reply::error("config_set", refusal.code, refusal.message);
                return AtomicResponse::new(Box::pin(afut::ready(reply)));
            }
            None => return AtomicResponse::new(Box::pin(afut::ready(lost("config_set")))),
        };
        let reply = Reply::ok("config_set", data, message);
        let mut ws = WriteSet::new(m.by, (self.clock)(), m.id.clone());
        ws.writes = writes;
        ws.epoch = m.epoch;
        if m.id.is_some() {
            ws.reply_json = serde_json::to_string(&reply).ok();
        }
        let (commit, store, by, id) = (self.commit.clone(), self.store.clone(), m.by, m.id);
        let work = async move {
            let Ok(durable) = commit.submit(ws) else {
                return Committed::Failed(Reply::error(
                    "config_set",
                    ErrorCode::Busy,
                    "the server is busy; nothing was changed, retry shortly",
                ));
            };
            match durable.await {
                Ok(Ok(CommitOutcome::Applied)) => Committed::Applied,
                Ok(Ok(CommitOutcome::AlreadyApplied)) => {
                    let first = match &id {
                        Some(id) => store.find_reply(by, id).await.ok().flatten(),
                        None => None,
                    };
                    Committed::Retry(first.and_then(|j| serde_json::from_str(&j).ok()))
                }
                Ok(Err(CommitError::Unavailable(_))) => Committed::Failed(Reply::error(
                    "config_set",
                    ErrorCode::StorageUnavailable,
                    "storage is unavailable; nothing was changed, retry shortly",
                )),
                Ok(Err(CommitError::Fenced)) => Committed::Unknown(Reply::error(
                    "config_set",
                    ErrorCode::Busy,
                    "this server is moving to another node; nothing was changed, retry shortly",
                )),
                Ok(Err(CommitError::Unknown(_))) => Committed::Unknown(Reply::error(
                    "config_set",
                    ErrorCode::StorageUnavailable,
                    "storage failed while saving; retry with the same id to find out whether it was made",
                )),
                Ok(Err(CommitError::Rejected(_))) | Err(_) => Committed::Failed(Reply::error(
                    "config_set",
                    ErrorCode::Internal,
                    "the change was not saved",
                )),
            }
        };
        let done = system::on_main(&self.io, work).map(move |out, act: &mut Self, ctx| match out {
            Some(Committed::Applied) => {
                act.settings = Arc::new(next);
                act.published.insert(act.guild, act.settings.clone());
                reply
            }
            Some(Committed::Retry(first)) => first.unwrap_or(reply),
            Some(Committed::Failed(r)) => r,
            Some(Committed::Unknown(r)) => {
                system::reload(act, ctx);
                r
            }
            None => lost("config_set"),
        });
        AtomicResponse::new(Box::pin(done))
    }
}

impl Handler<Show> for GuildSettingsActor {
    type Result = ResponseActFuture<Self, Reply>;

    fn handle(&mut self, _: Show, _: &mut Self::Context) -> Self::Result {
        let settings = self.settings.clone();
        let (store, guild) = (self.store.clone(), self.guild);
        let read = async move { store.recent_changes(guild, CHANGES_SHOWN).await };
        Box::pin(system::on_main(&self.io, read).map(move |changes, _, _| {
            let changes = match changes {
                Some(Ok(c)) => c,
                _ => {
                    return Reply::error(
                        "config_show",
                        ErrorCode::StorageUnavailable,
                        "could not read the audit log; retry shortly",
                    )
                }
            };
            let list: Vec<_> = changes.iter().map(guild::AuditEntry::to_json).collect();
            Reply::ok(
                "config_show",
                json!({ "settings": settings.to_json(), "recent_changes": list }),
                format!(
                    "{} settings; {} recent change(s).",
                    Key::ALL.len(),
                    list.len()
                ),
            )
        }))
    }
}
