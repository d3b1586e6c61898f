//! `Cluster`: this node's share of the guilds when several kokoro nodes
//! serve one PostgreSQL database.
//!
//! Every guild belongs to one slot, `(guild_id >> 22) % slots`, and a slot
//! to at most one node at a time: the one holding its lease, a row in
//! `cluster_leases` (owner, epoch, expiry on the database's clock). A node
//! takes a free or expired lease, raising its epoch, and renews what it
//! holds; it stops serving a slot by its own monotonic clock before the
//! lease could have run out. Every transaction that writes a slot's rows
//! locks the lease row `FOR SHARE` and checks that its epoch is still the
//! one its writer was activated under (`Fence`), so a node that lost a slot
//! (paused, partitioned, slow) can never write it again, and a takeover
//! waits for the commit in flight.
//!
//! What is here: the slot table every part of the runtime reads on its
//! hot path (atomics, no lock), and the keeper that renews, takes and hands
//! over leases (`keeper.rs`; its SQL is `leases.rs`). No consensus of its
//! own: PostgreSQL's row locks and clock decide.

mod keeper;
pub mod leases;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::watch;

use crate::ids::GuildId;
use crate::store::{Fence, Store};

pub use leases::{ClusterStatus, LeaseRow, MemberRow};

/// The settings of cluster mode (`--cluster`, `--node-id`, `--slots`,
/// `--lease-ttl`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster's name: the prefix of every NATS subject, and the key
    /// of its rows (several clusters may share one database).
    pub name: String,
    pub node_id: String,
    pub slots: u32,
    pub lease_ttl: Duration,
}

/// Bounds of the settings, documented in `kokoro serve --help`.
pub const MAX_SLOTS: u32 = 65_536;
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(300);
const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Config(String),
    #[error(
        "cluster {cluster:?} was made with {found} slots; this node was started with {given} \
         (the slot count is fixed when a cluster is first made: start it with --slots {found})"
    )]
    Slots {
        cluster: String,
        found: u32,
        given: u32,
    },
    #[error(
        "cluster mode needs PostgreSQL (SQLite serves one node): set DATABASE_URL=postgres://…"
    )]
    NotPostgres,
    #[error("cluster storage: {0}")]
    Db(#[from] sqlx::Error),
}

impl ClusterConfig {
    /// Checks the names (they go into NATS subjects) and the bounds.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let subject_safe = |what: &str, s: &str| {
            if s.is_empty() || s.len() > MAX_NAME {
                return Err(ClusterError::Config(format!(
                    "{what} must be 1 to {MAX_NAME} characters, got {}",
                    s.len()
                )));
            }
            match s
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                Some(c) => Err(ClusterError::Config(format!(
                    "{what} {s:?} may use only letters, digits, '-' and '_' (it names NATS subjects), not {c:?}"
                ))),
                None => Ok(()),
            }
        };
        subject_safe("--cluster", &self.name)?;
        subject_safe("--node-id", &self.node_id)?;
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(ClusterError::Config(format!(
                "--slots must be 1 to {MAX_SLOTS}, got {}",
                self.slots
            )));
        }
        if self.lease_ttl < MIN_LEASE_TTL || self.lease_ttl > MAX_LEASE_TTL {
            return Err(ClusterError::Config(format!(
                "--lease-ttl must be {}s to {}s, got {:?}",
                MIN_LEASE_TTL.as_secs(),
                MAX_LEASE_TTL.as_secs(),
                self.lease_ttl
            )));
        }
        Ok(())
    }

    /// What `--node-id` defaults to: the host's name and this process's id.
    pub fn default_node_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "node".to_owned());
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        format!("{host}-{}", std::process::id())
    }
}

/// One slot as this node sees it. `epoch` 0: not held.
#[derive(Default)]
struct SlotLease {
    epoch: AtomicI64,
    /// Milliseconds since the cluster started until which the lease is
    /// surely still this node's (by the monotonic clock, with a margin).
    until_ms: AtomicU64,
    /// Being handed over: no new command is taken; commits in flight finish.
    draining: AtomicBool,
    /// WriteSets of this slot in group commit: a handover waits for them.
    in_flight: AtomicU32,
}

pub struct Cluster {
    config: ClusterConfig,
    pool: PgPool,
    slots: Box<[SlotLease]>,
    started: Instant,
    /// Bumped whenever the slots this node serves change.
    changed: watch::Sender<u64>,
    leaving: AtomicBool,
}

impl Cluster {
    /// Joins the cluster: makes its tables' rows (first node) or checks the
    /// slot count, registers this node, and starts the keeper, which takes
    /// this node's share at once. Commands for slots not yet taken are
    /// answered `busy` (or forwarded) meanwhile.
    pub async fn join(store: &Store, config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        config.validate()?;
        let Store::Postgres(pool) = store else {
            return Err(ClusterError::NotPostgres);
        };
        leases::prepare(pool, &config).await?;
        leases::await_own_predecessor(pool, &config).await?;
        let slots = (0..config.slots).map(|_| SlotLease::default()).collect();
        let (changed, _) = watch::channel(0);
        let cluster = Arc::new(Self {
            config,
            pool: pool.clone(),
            slots,
            started: Instant::now(),
            changed,
            leaving: AtomicBool::new(false),
        });
        for outcome in ["ok", "busy", "no_owner", "timeout", "failed"] {
            metrics::counter!(crate::telemetry::CLUSTER_FORWARDED_TOTAL, "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!(crate::telemetry::CLUSTER_FENCED_TOTAL).increment(0);
        metrics::counter!(crate::telemetry::CLUSTER_TAKEOVERS_TOTAL).increment(0);
        metrics::counter!(crate::telemetry::CLUSTER_LEASE_FAILURES_TOTAL).increment(0);
        metrics::gauge!(crate::telemetry::CLUSTER_SLOTS_OWNED).set(0.0);
        metrics::gauge!(crate::telemetry::CLUSTER_SLOTS).set(f64::from(cluster.config.slots));
        cluster.tick().await;
        tokio::spawn(cluster.clone().keep());
        Ok(cluster)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn slot_of(&self, guild: GuildId) -> u32 {
        guild.slot(self.config.slots)
    }

    /// The epoch under which this node takes commands for `guild` now, if
    /// it does (`serving` of the guild's slot).
    pub fn serving_guild(&self, guild: GuildId) -> Option<i64> {
        self.serving(self.slot_of(guild))
    }

    fn lease(&self, slot: u32) -> Option<&SlotLease> {
        self.slots.get(slot as usize)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The epoch under which this node takes commands for `slot` now, if
    /// it does: held, not being handed over, and surely not expired.
    pub fn serving(&self, slot: u32) -> Option<i64> {
        let l = self.lease(slot)?;
        if l.draining.load(Ordering::Acquire) {
            return None;
        }
        self.holds(slot)
    }

    /// The epoch of `slot`'s lease if this node surely still holds it (a
    /// slot being handed over included: its last commits finish).
    pub fn holds(&self, slot: u32) -> Option<i64> {
        let l = self.lease(slot)?;
        let epoch = l.epoch.load(Ordering::Acquire);
        (epoch > 0 && self.now_ms() < l.until_ms.load(Ordering::Acquire)).then_some(epoch)
    }

    /// The slots this node takes commands for now, in order.
    pub fn served(&self) -> Vec<u32> {
        (0..self.config.slots)
            .filter(|s| self.serving(*s).is_some())
            .collect()
    }

    /// Wakes whenever the slots this node serves change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What a commit checks its WriteSets' epochs against.
    pub fn fence(&self) -> Fence {
        Fence {
            cluster: self.config.name.clone(),
            node: self.config.node_id.clone(),
            slots: self.config.slots,
            idle_limit_ms: self.config.lease_ttl.as_millis() as u64,
        }
    }

    /// Group commit took a WriteSet of `slot` / answered it: a handover
    /// waits until none is in flight.
    pub fn write_started(&self, slot: u32) {
        if let Some(l) = self.lease(slot) {
            l.in_flight.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn write_ended(&self, slot: u32) {
        if let Some(l) = self.lease(slot) {
            let _ = l
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// A write of `slot` refused by fencing (counted once, here).
    pub fn count_fenced(&self, slot: u32, n: usize) {
        metrics::counter!(crate::telemetry::CLUSTER_FENCED_TOTAL).increment(n as u64);
        tracing::warn!(
            slot,
            writesets = n,
            "writes refused: this node no longer holds the slot's lease (fenced)"
        );
    }

    /// SIGTERM: stops taking slots, leaves the members (so the others' share
    /// grows at once), and hands every slot over, draining each first.
    pub async fn leave(&self) {
        if self.leaving.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = leases::leave(&self.pool, &self.config).await {
            tracing::warn!(error = %e, "could not leave the cluster's members; its heartbeat runs out");
        }
        let held: Vec<u32> = (0..self.config.slots)
            .filter(|s| self.holds(*s).is_some())
            .collect();
        self.hand_over(&held).await;
        tracing::info!(slots = held.len(), "handed every slot over");
    }

    fn announce(&self) {
        let owned = self.served().len();
        metrics::gauge!(crate::telemetry::CLUSTER_SLOTS_OWNED).set(owned as f64);
        self.changed.send_modify(|n| *n += 1);
    }
}
