//! The runtime's tunables, with defaults that serve a busy guild on a small
//! machine. The application maps each to a flag and an environment variable.

use std::sync::Arc;
use std::time::Duration;

use crate::game::collection::roster::Roster;
use crate::game::economy::shop::Catalogue;
use crate::game::generation::workflow::WorkflowDef;
use crate::game::generation::GenerationData;
use crate::group_commit::GroupCommitConfig;
use crate::job_queue::{JobQueueConfig, Render};

/// Unix time in milliseconds. Injected so tests can move days forward.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub use crate::domain::day::unix_ms;

pub fn system_clock() -> Clock {
    Arc::new(unix_ms)
}

#[derive(Clone)]
pub struct RuntimeConfig {
    /// Messages one player's mailbox holds; beyond, commands get `busy`.
    pub mailbox_capacity: usize,
    /// A player actor with no mail for this long is passivated.
    pub idle_timeout: Duration,
    /// Most player actors resident at once; the least recently used idle
    /// actor is passivated to make room.
    pub max_resident: usize,
    pub commit: GroupCommitConfig,
    /// Gold a new player starts with (a `welcome` ledger row).
    pub starting_gold: i64,
    pub catalogue: Arc<Catalogue>,
    /// Characters and banners of the collection game.
    pub roster: Arc<Roster>,
    pub clock: Clock,
    /// How often the outbox relay looks for transfers not yet credited.
    pub relay_interval: Duration,
    /// Players listed per leaderboard.
    pub leaderboard_size: i64,
    /// Credits a new player starts with (a `welcome` ledger row).
    pub starting_credits: i64,
    /// Gems every new player starts with (what their first summons cost).
    pub starting_gems: i64,
    pub jobs: JobsConfig,
    /// Workflows and lucky tiers.
    pub generation: Arc<GenerationData>,
    /// Where players' input pictures are kept (`None`: uploads are off).
    pub uploads: Option<crate::uploads::Uploads>,
    /// Cluster mode (`None`: this process serves every guild alone).
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// The generation queues: off unless a renderer is configured. Each
/// workflow's queue takes its limits from its workflow file.
#[derive(Clone, Default)]
pub struct JobsConfig {
    pub render: Option<Arc<dyn Render>>,
}

impl JobQueueConfig {
    /// A workflow's queue limits.
    pub fn of(w: &WorkflowDef) -> Self {
        Self {
            concurrency: w.concurrency,
            capacity: w.queue_length,
            timeout: w.time_limit,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 64,
            idle_timeout: Duration::from_secs(600),
            max_resident: 2_000_000,
            commit: GroupCommitConfig::default(),
            starting_gold: 100,
            catalogue: Arc::new(Catalogue::shipped()),
            roster: Arc::new(Roster::shipped().unwrap_or_default()),
            clock: system_clock(),
            relay_interval: Duration::from_secs(1),
            leaderboard_size: 10,
            starting_credits: 50,
            starting_gems: 0,
            jobs: JobsConfig::default(),
            generation: Arc::new(GenerationData::default()),
            uploads: None,
            cluster: None,
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_resident", &self.max_resident)
            .field("commit", &self.commit)
            .field("starting_gold", &self.starting_gold)
            .field("relay_interval", &self.relay_interval)
            .field("starting_credits", &self.starting_credits)
            .field("starting_gems", &self.starting_gems)
            .field("rendering", &self.jobs.render.is_some())
            .field(
                "workflows",
                &self.generation.workflows.ids().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}
