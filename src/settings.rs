//! Every setting of `kokoro serve`: a flag and an environment variable each
//! (flags win), validated at start with errors that name the setting.
//! Secrets (the API token) come from the environment only, never a flag, so
//! they do not show in `ps`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actors::config::JobsConfig;
use actors::game::collection::roster::Roster;
use actors::game::data_file::DataFileError;
use actors::game::economy::shop::Catalogue;
use actors::game::generation::allowance::CreditRules;
use actors::game::generation::lucky::LuckyTiers;
use actors::game::generation::workflow::Workflows;
use actors::game::generation::GenerationData;
use actors::group_commit::GroupCommitConfig;
use actors::job_queue::{Render, SimulatedRender};

use crate::comfyui::ComfyRender;
use actors::store::StoreOptions;
use actors::RuntimeConfig;

use crate::render::HttpRender;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded SQLite database.
    #[arg(long, env = "KOKORO_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// `postgres://…` for PostgreSQL; unset for embedded SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Database connections in the pool.
    #[arg(long, env = "KOKORO_DB_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Seconds to wait for a database connection before answering storage_unavailable.
    #[arg(long, env = "KOKORO_DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub db_acquire_timeout_secs: u64,
}

impl StorageArgs {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout_secs),
            ..StoreOptions::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Messages one player's mailbox holds before commands get `busy`.
    #[arg(long, env = "KOKORO_MAILBOX_CAPACITY", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub mailbox_capacity: u64,

    /// Seconds without mail after which a player's actor is passivated.
    #[arg(long, env = "KOKORO_IDLE_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub idle_timeout_secs: u64,

    /// Most player actors resident in memory.
    #[arg(long, env = "KOKORO_MAX_RESIDENT", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_resident: u64,

    /// Most WriteSets in one group-commit transaction.
    #[arg(long, env = "KOKORO_COMMIT_MAX_BATCH", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub commit_max_batch: u64,

    /// Microseconds a batch waits for more WriteSets before committing.
    #[arg(long, env = "KOKORO_COMMIT_MAX_WAIT_US", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub commit_max_wait_us: u64,

    /// WriteSets that may wait for commit before commands get `busy`.
    #[arg(long, env = "KOKORO_COMMIT_BACKLOG", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub commit_backlog: u64,

    /// Group-commit transactions in flight at once; 0 picks for the backend
    /// (1 for SQLite, which has one writer; 3 for PostgreSQL).
    #[arg(long, env = "KOKORO_COMMIT_PARALLEL", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub commit_parallel: u64,

    /// Gold every new player starts with.
    #[arg(long, env = "KOKORO_STARTING_GOLD", default_value_t = 100, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub starting_gold: i64,

    /// A shop catalogue (TOML) to use instead of the shipped one.
    #[arg(long, env = "KOKORO_SHOP_FILE")]
    pub shop_file: Option<PathBuf>,

    /// Characters and banners (TOML) to use instead of the shipped ones.
    #[arg(long, env = "KOKORO_CHARACTERS_FILE")]
    pub characters_file: Option<PathBuf>,

    /// Credits every new player starts with.
    #[arg(long, env = "KOKORO_STARTING_CREDITS", default_value_t = 50, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub starting_credits: i64,

    /// Gems every new player starts with.
    #[arg(long, env = "KOKORO_STARTING_GEMS", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub starting_gems: i64,

    /// What renders image and video jobs: `off` (generate is refused),
    /// `simulated` (waits and answers a sim:// location; for load tests and
    /// trying kokoro out), `comfyui:http://host:8188` (a ComfyUI server,
    /// spoken to with its own API), or the http:// URL of a render service
    /// that answers POST {job_id, workflow, prompt} with {"url": ...}.
    #[arg(long, env = "KOKORO_RENDERER", default_value = "off")]
    pub renderer: String,

    /// Milliseconds the simulated renderer takes per image (video: 4×).
    #[arg(long, env = "KOKORO_RENDER_SIMULATED_MS", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub render_simulated_ms: u64,

    /// A directory of workflow files (TOML, each beside its ComfyUI graph
    /// in API format): replaces the shipped examples. Each workflow sets
    /// its price, free allowance, concurrency, queue length and time limit.
    #[arg(long, env = "KOKORO_WORKFLOWS_DIR")]
    pub workflows_dir: Option<PathBuf>,

    /// The lucky draw's tiers (TOML): replaces the shipped table.
    #[arg(long, env = "KOKORO_LUCKY_FILE")]
    pub lucky_file: Option<PathBuf>,

    /// The free-job rules (TOML: the trial, VIP): replaces the shipped ones.
    #[arg(long, env = "KOKORO_CREDITS_FILE")]
    pub credits_file: Option<PathBuf>,

    /// The credit packs sold for Telegram Stars (TOML): replaces the
    /// shipped ones.
    #[arg(long, env = "KOKORO_PACKS_FILE")]
    pub packs_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--shop-file {path}: {why}")]
    Shop { path: PathBuf, why: String },
    #[error("--characters-file {path}: {why}")]
    CharactersFile { path: PathBuf, why: String },
    /// A data file (characters, workflows, lucky tiers) that does not check: `file:line: message`.
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    #[error(
        "refusing to serve the API on {addr}, which is not loopback, without KOKORO_API_TOKEN set"
    )]
    PublicWithoutToken { addr: SocketAddr },
    #[error("KOKORO_API_TOKEN must be at least 16 characters")]
    WeakToken,
    #[error("--renderer {0:?}: expected off, simulated, comfyui:http://host:8188, or the http:// URL of a render service")]
    Renderer(String),
    #[error("Linked Roles need DISCORD_TOKEN, DISCORD_CLIENT_SECRET, --discord-application-id, --linked-roles-guild and --public-url; missing: {0}")]
    LinkedRoles(String),
}

impl RuntimeArgs {
    /// `data_dir` is where a ComfyUI renderer keeps results (`results/`).
    pub fn runtime_config(&self, data_dir: &Path) -> Result<RuntimeConfig, SettingsError> {
        let catalogue = match &self.shop_file {
            None => Catalogue::shipped(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Shop {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                Catalogue::parse(&text).map_err(|e| SettingsError::Shop {
                    path: path.clone(),
                    why: e.to_string(),
                })?
            }
        };
        let roster = match &self.characters_file {
            None => Roster::shipped()?,
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| SettingsError::CharactersFile {
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                Roster::parse(&text, &path.display().to_string())?
            }
        };
        let generation = GenerationData {
            workflows: match &self.workflows_dir {
                None => Workflows::shipped()?,
                Some(dir) => Workflows::load_dir(dir)?,
            },
            lucky: match &self.lucky_file {
                None => LuckyTiers::default(),
                Some(path) => LuckyTiers::load(path)?,
            },
            rules: match &self.credits_file {
                None => CreditRules::default(),
                Some(path) => CreditRules::load(path)?,
            },
            packs: match &self.packs_file {
                None => actors::game::generation::packs::Packs::shipped(),
                Some(path) => actors::game::generation::packs::Packs::load(path)?,
            },
        };
        Ok(RuntimeConfig {
            mailbox_capacity: self.mailbox_capacity as usize,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_resident: self.max_resident as usize,
            commit: GroupCommitConfig {
                max_batch: self.commit_max_batch as usize,
                max_wait: Duration::from_micros(self.commit_max_wait_us),
                backlog: self.commit_backlog as usize,
                parallel: self.commit_parallel as usize,
                ..GroupCommitConfig::default()
            },
            starting_gold: self.starting_gold,
            catalogue: Arc::new(catalogue),
            roster: Arc::new(roster),
            starting_credits: self.starting_credits,
            starting_gems: self.starting_gems,
            jobs: self.jobs_config(&generation, data_dir)?,
            uploads: Some(actors::uploads::Uploads::new(data_dir.join("uploads"))),
            generation: Arc::new(generation),
            ..RuntimeConfig::default()
        })
    }

    fn jobs_config(
        &self,
        generation: &GenerationData,
        data_dir: &Path,
    ) -> Result<JobsConfig, SettingsError> {
        // The queue enforces each workflow's own time limit; the HTTP client
        // only needs to outlast the longest.
        let longest = generation
            .workflows
            .iter()
            .map(|w| w.time_limit)
            .max()
            .unwrap_or(Duration::from_secs(300));
        let render: Option<Arc<dyn Render>> = match self.renderer.as_str() {
            "off" | "" => None,
            "simulated" => Some(Arc::new(SimulatedRender::new(
                Duration::from_millis(self.render_simulated_ms),
                0,
            ))),
            comfy if comfy.starts_with("comfyui:") => {
                let url = &comfy["comfyui:".len()..];
                let render = ComfyRender::new(url, data_dir)
                    .map_err(|_| SettingsError::Renderer(comfy.into()))?;
                Some(render as Arc<dyn Render>)
            }
            url => Some(Arc::new(
                HttpRender::new(url, longest).map_err(|_| SettingsError::Renderer(url.into()))?,
            )),
        };
        Ok(JobsConfig { render })
    }
}

/// Cluster mode: several nodes over one PostgreSQL database, commands
/// routed over NATS. On when `--nats-url` is given.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// NATS server of the cluster (`nats://host:4222`); unset: one node.
    #[arg(long, env = "KOKORO_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,

    /// This node's name in the cluster (letters, digits, '-', '_'); default:
    /// the host name and the process id.
    #[arg(long, env = "KOKORO_NODE_ID")]
    pub node_id: Option<String>,

    /// The cluster's name: the prefix of its NATS subjects and the key of
    /// its rows. Nodes of one cluster share one database.
    #[arg(long = "cluster", env = "KOKORO_CLUSTER", default_value = "kokoro")]
    pub cluster: String,

    /// How long a slot's lease lasts without renewal (2s to 300s; renewed
    /// every third, at most every second). A dead node's slots are taken
    /// again about this long after it stopped.
    #[arg(long, env = "KOKORO_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Slots guilds are spread over (1 to 65536), fixed when the cluster is
    /// first made: a node started with another number refuses to start.
    #[arg(long, env = "KOKORO_SLOTS", default_value_t = 1024)]
    pub slots: u32,
}

impl ClusterArgs {
    /// The runtime's cluster settings, or `None` outside cluster mode.
    pub fn cluster_config(&self) -> Option<actors::cluster::ClusterConfig> {
        self.nats_url.as_ref()?;
        Some(actors::cluster::ClusterConfig {
            name: self.cluster.clone(),
            node_id: self
                .node_id
                .clone()
                .unwrap_or_else(actors::cluster::ClusterConfig::default_node_id),
            slots: self.slots,
            lease_ttl: self.lease_ttl,
        })
    }
}

/// A duration as operators write it: `10s`, `1500ms`, `2m`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 10s, 1500ms, 2m)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(
        long = "http",
        env = "KOKORO_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,

    /// Seconds a connection may take to send a request's headers (and an
    /// idle kept-alive connection to start its next request) before it is
    /// closed.
    #[arg(long, env = "KOKORO_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_header_timeout_secs: u64,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Log format on stderr.
    #[arg(long, env = "KOKORO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Also write JSON-lines logs here, one file a day.
    #[arg(long, env = "KOKORO_LOG_DIR")]
    pub log_dir: Option<PathBuf>,

    /// Send Discord HTTP API calls to this proxy (e.g. twilight-http-proxy,
    /// which then does the rate limiting) instead of discord.com. The bot
    /// token comes from DISCORD_TOKEN, never a flag.
    #[arg(long, env = "KOKORO_DISCORD_PROXY")]
    pub discord_proxy: Option<String>,

    /// Run only Discord shards A-B (with --discord-shard-total): several
    /// processes split a large bot's shards. Cluster mode needs it, each
    /// node its own range. Unset: every shard (Discord's recommended count).
    #[arg(long, env = "KOKORO_DISCORD_SHARDS", requires = "discord_shard_total")]
    pub discord_shards: Option<String>,

    /// The bot's shard count in all, across processes (a divisor of
    /// --slots in cluster mode, so a shard's guilds are whole slots).
    #[arg(long, env = "KOKORO_DISCORD_SHARD_TOTAL", requires = "discord_shards")]
    pub discord_shard_total: Option<u32>,

    /// Talk to this Telegram Bot API server (a self-hosted
    /// telegram-bot-api) instead of api.telegram.org. The bot token comes
    /// from TELEGRAM_BOT_TOKEN, never a flag.
    #[arg(long, env = "KOKORO_TELEGRAM_API_URL")]
    pub telegram_api_url: Option<String>,

    /// Receive Telegram updates by webhook at this public https URL (e.g.
    /// https://bot.example/telegram): its path is served by kokoro's HTTP
    /// server, checked with a secret token Telegram sends. Unset: long
    /// polling.
    #[arg(long, env = "KOKORO_TELEGRAM_WEBHOOK")]
    pub telegram_webhook: Option<String>,

    /// Telegram user ids allowed admin commands (`/refund`), comma-separated.
    #[arg(long, env = "KOKORO_TELEGRAM_ADMINS", value_delimiter = ',')]
    pub telegram_admins: Vec<i64>,

    /// Count members' Discord posts for roleplay XP (the `message` event).
    /// Discord sends a post's text only with the privileged message-content
    /// intent: enable it for the bot in the developer portal first, or
    /// Discord refuses the connection. Only lengths are used; no text is
    /// stored or logged.
    #[arg(long, env = "KOKORO_DISCORD_ROLEPLAY_POSTS")]
    pub discord_roleplay_posts: bool,

    /// Watch members join, for verification: joins are counted and a burst
    /// of them (a raid) is told to the guild's admin_channel. Needs the
    /// privileged Server Members intent: enable it for the bot in the
    /// developer portal first, or Discord refuses the connection (the
    /// verification button works without it).
    #[arg(long, env = "KOKORO_DISCORD_VERIFICATION")]
    pub discord_verification: bool,

    /// The Discord application's id, for Linked Roles (with
    /// DISCORD_CLIENT_SECRET, --linked-roles-guild and --public-url).
    #[arg(long, env = "KOKORO_DISCORD_APPLICATION_ID")]
    pub discord_application_id: Option<u64>,

    /// The guild whose players' state kokoro's Linked Roles connection
    /// shows (level, roleplay level, SSR characters, VIP).
    #[arg(long, env = "KOKORO_LINKED_ROLES_GUILD")]
    pub linked_roles_guild: Option<i64>,

    /// How often every linked member's connection is written again.
    #[arg(long, env = "KOKORO_LINKED_ROLES_REFRESH_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub linked_roles_refresh_secs: u64,

    /// Export spans to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318).
    /// Needs a build with `--features otel`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Where players reach this server's HTTP API (e.g. https://bot.example),
    /// for the links to their results; unset: the links are relative.
    #[arg(long, env = "KOKORO_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Days a processed command id is kept for answering retries; a retry
    /// older than that is treated as a new command.
    #[arg(long, env = "KOKORO_COMMANDS_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub commands_retention_days: u64,

    /// Days a finished job stays listed in `jobs` (its charge or refund
    /// stays in the ledger for ever).
    #[arg(long, env = "KOKORO_JOBS_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub jobs_retention_days: u64,

    /// How often `serve` takes a backup (24h, 30m, 7d; 0: never).
    #[arg(long, env = "KOKORO_BACKUP_EVERY", default_value = "24h", value_parser = crate::ops::parse_every)]
    pub backup_every: std::time::Duration,

    /// Scheduled backups kept; older ones are deleted.
    #[arg(long, env = "KOKORO_BACKUP_KEEP", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub backup_keep: u64,

    /// Where scheduled backups (and the ones taken before a migration or a
    /// forced restore) go; default: the data dir's backups/.
    #[arg(long, env = "KOKORO_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Days a finished job's picture or video is kept under the data dir's
    /// results/; older ones are deleted (their links then answer 404).
    #[arg(long, env = "KOKORO_RESULTS_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub results_retention_days: u64,

    /// Daily log files kept in --log-dir; older ones are deleted.
    #[arg(long, env = "KOKORO_LOG_RETENTION_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub log_retention_days: u64,
}

/// A secret from the environment only (never a flag, so never in `ps`);
/// unset and empty are the same.
fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|t| !t.is_empty())
}

/// The API token.
pub fn api_token() -> Option<String> {
    secret("KOKORO_API_TOKEN")
}

/// The admin token: as a bearer token it allows admin commands over HTTP.
/// Unset: admin commands answer 403.
pub fn admin_token() -> Option<String> {
    secret("KOKORO_ADMIN_TOKEN")
}

/// The Telegram webhook's secret token, if given (cluster mode needs one
/// shared by the nodes).
pub fn telegram_webhook_secret() -> Option<String> {
    secret("KOKORO_TELEGRAM_WEBHOOK_SECRET")
}

/// The key that signs links to results; unset: kokoro keeps one of its
/// own in the data dir.
pub fn result_secret() -> Option<String> {
    secret("KOKORO_RESULT_SECRET")
}

/// The payment webhook's signing secret.
pub fn payment_secret() -> Option<String> {
    secret("KOKORO_PAYMENT_SECRET")
}

/// The Telegram bot token; unset: no Telegram.
pub fn telegram_token() -> Option<String> {
    secret("TELEGRAM_BOT_TOKEN")
}

/// The Discord application's OAuth2 client secret (Linked Roles).
pub fn discord_client_secret() -> Option<String> {
    secret("DISCORD_CLIENT_SECRET")
}

/// The Discord bot token; unset: no Discord.
pub fn discord_token() -> Option<String> {
    secret("DISCORD_TOKEN")
}

/// Refuses an API reachable from the network without a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), SettingsError> {
    match token {
        Some(t) if t.len() < 16 => Err(SettingsError::WeakToken),
        None if !addr.ip().is_loopback() => Err(SettingsError::PublicWithoutToken { addr }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_address_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(matches!(
            check_exposure(public, None),
            Err(SettingsError::PublicWithoutToken { .. })
        ));
        assert!(check_exposure(local, None).is_ok());
        assert!(check_exposure(public, Some("a-long-enough-token")).is_ok());
        assert!(matches!(
            check_exposure(local, Some("short")),
            Err(SettingsError::WeakToken)
        ));
    }
}
