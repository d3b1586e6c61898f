//! The metrics catalogue: every metric kokoro exports, named in one place.
//! Names carry their unit; no label ever holds a user or guild id, so
//! cardinality stays bounded however many players there are.

/// Commands answered, by `command` and `outcome` (`ok` or an error code).
pub const COMMANDS_TOTAL: &str = "kokoro_commands_total";
/// Time from a front door handing over a command to its reply, by `command`.
pub const COMMAND_DURATION_SECONDS: &str = "kokoro_command_duration_seconds";
/// Commands answered `busy`, by `stage` (`mailbox` or `backlog`).
pub const BUSY_REJECTIONS_TOTAL: &str = "kokoro_busy_rejections_total";
/// Player actors currently resident in memory.
pub const ACTORS_RESIDENT: &str = "kokoro_actors_resident";
pub const ACTIVATIONS_TOTAL: &str = "kokoro_activations_total";
/// Passivations by `reason` (`idle`, `evicted`, `panic`, `load_failed`, `unknown_outcome`).
pub const PASSIVATIONS_TOTAL: &str = "kokoro_passivations_total";
/// Time to load a player's state on activation.
pub const ACTIVATION_DURATION_SECONDS: &str = "kokoro_activation_duration_seconds";
/// WriteSets waiting for group commit.
pub const PERSISTENCE_BACKLOG: &str = "kokoro_persistence_backlog";
pub const COMMIT_BATCH_SIZE: &str = "kokoro_commit_batch_size";
pub const COMMIT_DURATION_SECONDS: &str = "kokoro_commit_duration_seconds";
/// Batches that failed, by `kind` (`transient` or `rejected`).
pub const COMMIT_FAILURES_TOTAL: &str = "kokoro_commit_failures_total";
pub const COMMIT_RETRIES_TOTAL: &str = "kokoro_commit_retries_total";
/// Transfers redelivered by the outbox relay (after a crash or a busy receiver).
pub const TRANSFERS_REDELIVERED_TOTAL: &str = "kokoro_transfers_redelivered_total";
/// Gives answered before their credit was taken (storage or the recipient's
/// mailbox kept it out for seconds): the recipient may read the old balance.
pub const TRANSFERS_ANSWERED_PENDING_TOTAL: &str = "kokoro_transfers_answered_pending_total";
/// Gives by how their credit was committed: `paired` in the debit's own
/// transaction, `after` it (delivered to the recipient's actor next).
pub const GIVE_CREDITS_TOTAL: &str = "kokoro_give_credits_total";
/// From a give's durable debit to its durable credit, which its answer waits for.
pub const TRANSFER_CREDIT_SECONDS: &str = "kokoro_transfer_credit_seconds";
/// Mail waiting in a player's mailbox, sampled as each mail is posted.
pub const MAILBOX_DEPTH: &str = "kokoro_mailbox_depth";
/// Database pool connections, by `state` (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "kokoro_db_connections";
/// 1 while group commit has work in flight and has not finished a commit for 10 s.
pub const PERSISTENCE_STALLED: &str = "kokoro_persistence_stalled";
/// 1 when `/readyz` would answer ready.
pub const READY: &str = "kokoro_ready";
/// Generation jobs waiting (not yet rendering), by `queue` (`image`, `video`).
pub const QUEUE_DEPTH: &str = "kokoro_queue_depth";
/// Generation jobs rendering, by `queue`.
pub const QUEUE_RUNNING: &str = "kokoro_queue_running";
/// 1 on the node running a queue's line (always, outside cluster mode).
pub const QUEUE_HERE: &str = "kokoro_queue_here";
/// 1 while the renderer answers, 0 while its circuit breaker is open.
pub const RENDERER_UP: &str = "kokoro_renderer_up";
/// Time a job waited in its queue before it started, by `queue`.
pub const QUEUE_WAIT_SECONDS: &str = "kokoro_queue_wait_seconds";
/// Time a job took to render, by `queue`.
pub const QUEUE_RUN_SECONDS: &str = "kokoro_queue_run_seconds";
/// Jobs that left a queue, by `queue` and `outcome` (`done`, `failed`, `cancelled`).
pub const JOBS_TOTAL: &str = "kokoro_jobs_total";
/// Arena battles fought (each matches two waiting players). The arena's
/// line is `queue="arena"` in the queue depth and wait metrics.
pub const ARENA_BATTLES_TOTAL: &str = "kokoro_arena_battles_total";
/// System actors restarted by their supervisor after a panic, by `actor`
/// (`group_commit`, `arena`, or the workflow whose queue it is).
pub const SYSTEM_ACTOR_RESTARTS_TOTAL: &str = "kokoro_system_actor_restarts_total";
/// Discord gateway heartbeat round trip, by `shard`.
pub const DISCORD_SHARD_LATENCY_SECONDS: &str = "kokoro_discord_shard_latency_seconds";
/// 1 while a Discord shard is connected, by `shard`.
pub const DISCORD_SHARD_CONNECTED: &str = "kokoro_discord_shard_connected";
/// Times a connected Discord shard lost its connection, by `shard`.
pub const DISCORD_RECONNECTS_TOTAL: &str = "kokoro_discord_gateway_reconnects_total";
/// Metrics that exist only while the Discord front door runs.
pub const DISCORD_PREFIX: &str = "kokoro_discord_";
/// Unix time of the last scheduled backup that succeeded.
pub const BACKUP_LAST_SUCCESS_SECONDS: &str = "kokoro_backup_last_success_timestamp_seconds";
/// Seconds since the last scheduled backup that succeeded.
pub const BACKUP_AGE_SECONDS: &str = "kokoro_backup_age_seconds";
/// The schedule's interval, for the staleness alert.
pub const BACKUP_INTERVAL_SECONDS: &str = "kokoro_backup_interval_seconds";
/// Scheduled backups that failed.
pub const BACKUP_FAILURES_TOTAL: &str = "kokoro_backup_failures_total";
/// Metrics that exist only while `serve` takes scheduled backups.
pub const BACKUP_PREFIX: &str = "kokoro_backup_";
/// 1 while a front door reaches its service, by `door` (discord, telegram).
pub const FRONT_DOOR_UP: &str = "kokoro_front_door_up";
/// Metrics that exist only while a front door runs.
pub const FRONT_DOOR_PREFIX: &str = "kokoro_front_door_";
/// Times a front door failed to reach its service, by `door` and `stage`.
pub const FRONT_DOOR_FAILURES_TOTAL: &str = "kokoro_front_door_failures_total";
/// Telegram Stars payments granted by reconciliation (their update never
/// arrived).
pub const TELEGRAM_PAYMENTS_RECONCILED_TOTAL: &str = "kokoro_telegram_payments_reconciled_total";
/// Discord notices delivered whose 2xx answer could not be read.
pub const DISCORD_UNREADABLE_ANSWERS_TOTAL: &str = "kokoro_discord_unreadable_answers_total";
/// Telegram 429 answers waited out (`retry_after`) before calling again.
pub const TELEGRAM_RETRY_AFTER_TOTAL: &str = "kokoro_telegram_retry_after_total";
/// Metrics that exist only while the Telegram front door runs.
pub const TELEGRAM_PREFIX: &str = "kokoro_telegram_";
/// Always 1, labelled with the running `version`.
pub const BUILD_INFO: &str = "kokoro_build_info";
/// The role-connection metrics share this prefix: they move only in guilds
/// with `role_rules` (and the Discord door applying them).
pub const ROLE_PREFIX: &str = "kokoro_role_";
/// Members who joined a guild (with `--discord-verification`, which asks
/// for the Server Members intent).
pub const DISCORD_MEMBER_JOINS_TOTAL: &str = "kokoro_discord_member_joins_total";
/// Members with a role change waiting for a front door to apply it.
pub const ROLE_CHANGES_WAITING: &str = "kokoro_role_changes_waiting";
/// Role changes a front door tried, by `action` (`add`, `remove`) and
/// `outcome` (`ok`, `forbidden`, `failed`).
pub const ROLE_CHANGES_TOTAL: &str = "kokoro_role_changes_total";
/// Role changes the rules would have decided but could not, because the
/// guild's settings were not read yet.
pub const ROLE_RULES_UNREAD_TOTAL: &str = "kokoro_role_rules_unread_total";
/// Every cluster-mode metric starts with this (a single node exports none).
pub const CLUSTER_PREFIX: &str = "kokoro_cluster_";
/// Cluster mode: the cluster's slot count (for "slots without an owner").
pub const CLUSTER_SLOTS: &str = "kokoro_cluster_slots";
/// Cluster mode: slots whose lease this node holds and serves.
pub const CLUSTER_SLOTS_OWNED: &str = "kokoro_cluster_slots_owned";
/// Cluster mode: slots this node took from another node whose lease ran out.
pub const CLUSTER_TAKEOVERS_TOTAL: &str = "kokoro_cluster_takeovers_total";
/// Cluster mode: WriteSets refused because their slot's lease moved on.
pub const CLUSTER_FENCED_TOTAL: &str = "kokoro_cluster_fenced_total";
/// Cluster mode: commands sent to the slot's owner over NATS, by outcome.
pub const CLUSTER_FORWARDED_TOTAL: &str = "kokoro_cluster_forwarded_total";
/// Cluster mode: round trip of a forwarded command.
pub const CLUSTER_FORWARD_SECONDS: &str = "kokoro_cluster_forward_seconds";
/// Cluster mode: one lease renewal (heartbeat and renew, one transaction).
pub const CLUSTER_LEASE_RENEWAL_SECONDS: &str = "kokoro_cluster_lease_renewal_seconds";
/// Cluster mode: lease renewals, takes and releases that failed.
pub const CLUSTER_LEASE_FAILURES_TOTAL: &str = "kokoro_cluster_lease_failures_total";
/// Cluster mode: 1 while this node reaches NATS.
pub const CLUSTER_NATS_CONNECTED: &str = "kokoro_cluster_nats_connected";
/// Process metrics (`kokoro_process_*`: memory, CPU seconds, open file
/// descriptors) come from the `metrics-process` collector with this prefix.
pub const PROCESS_PREFIX: &str = "kokoro_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric kokoro defines, with its kind and help text: for `describe_*`,
/// for the README, and for the test that checks dashboards and alert rules
/// only use names that exist.
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        COMMANDS_TOTAL,
        Kind::Counter,
        "Commands answered, by command and outcome.",
    ),
    (
        COMMAND_DURATION_SECONDS,
        Kind::Histogram,
        "Command latency from front door to reply, by command.",
    ),
    (
        BUSY_REJECTIONS_TOTAL,
        Kind::Counter,
        "Commands answered busy, by stage (mailbox, backlog).",
    ),
    (
        MAILBOX_DEPTH,
        Kind::Histogram,
        "Mail waiting in a player's mailbox when mail is posted.",
    ),
    (
        ACTORS_RESIDENT,
        Kind::Gauge,
        "Player actors resident in memory.",
    ),
    (
        ACTIVATIONS_TOTAL,
        Kind::Counter,
        "Player actors activated (state loaded).",
    ),
    (
        PASSIVATIONS_TOTAL,
        Kind::Counter,
        "Player actors passivated, by reason.",
    ),
    (
        ACTIVATION_DURATION_SECONDS,
        Kind::Histogram,
        "Time to load a player's state on activation.",
    ),
    (
        PERSISTENCE_BACKLOG,
        Kind::Gauge,
        "WriteSets waiting for group commit.",
    ),
    (
        PERSISTENCE_STALLED,
        Kind::Gauge,
        "1 while group commit has work but finished no commit for 10 s.",
    ),
    (
        COMMIT_BATCH_SIZE,
        Kind::Histogram,
        "WriteSets per group-commit transaction.",
    ),
    (
        COMMIT_DURATION_SECONDS,
        Kind::Histogram,
        "Duration of one group-commit transaction, retries included.",
    ),
    (
        COMMIT_FAILURES_TOTAL,
        Kind::Counter,
        "Group-commit transactions that failed, by kind (transient, rejected).",
    ),
    (
        COMMIT_RETRIES_TOTAL,
        Kind::Counter,
        "Group-commit transactions retried after a transient error.",
    ),
    (
        TRANSFERS_REDELIVERED_TOTAL,
        Kind::Counter,
        "Transfers credited by the outbox relay rather than directly.",
    ),
    (
        TRANSFERS_ANSWERED_PENDING_TOTAL,
        Kind::Counter,
        "Gives answered before their credit was durable (left to the outbox relay).",
    ),
    (
        GIVE_CREDITS_TOTAL,
        Kind::Counter,
        "Gives by how their credit was committed: paired (in the debit's transaction) or after it.",
    ),
    (
        TRANSFER_CREDIT_SECONDS,
        Kind::Histogram,
        "Seconds from a give's durable debit to its durable credit, which its answer waits for (0 when both are in one transaction).",
    ),
    (
        DB_CONNECTIONS,
        Kind::Gauge,
        "Database pool connections, by state (in_use, idle).",
    ),
    (
        QUEUE_DEPTH,
        Kind::Gauge,
        "Generation jobs waiting to start, by queue.",
    ),
    (
        QUEUE_RUNNING,
        Kind::Gauge,
        "Generation jobs rendering, by queue.",
    ),
    (
        QUEUE_HERE,
        Kind::Gauge,
        "1 on the node that runs a queue's line, by queue (cluster mode: one node per workflow).",
    ),
    (
        RENDERER_UP,
        Kind::Gauge,
        "1 while the renderer (ComfyUI) answers; 0 while jobs wait for it.",
    ),
    (
        QUEUE_WAIT_SECONDS,
        Kind::Histogram,
        "Time a job waited before it started rendering, by queue.",
    ),
    (
        QUEUE_RUN_SECONDS,
        Kind::Histogram,
        "Time a job took to render, by queue.",
    ),
    (
        JOBS_TOTAL,
        Kind::Counter,
        "Jobs that left a queue, by queue and outcome (done, failed, cancelled).",
    ),
    (ARENA_BATTLES_TOTAL, Kind::Counter, "Arena battles fought."),
    (
        DISCORD_MEMBER_JOINS_TOTAL,
        Kind::Counter,
        "Members who joined a guild (needs --discord-verification and the Server Members intent).",
    ),
    (
        ROLE_CHANGES_WAITING,
        Kind::Gauge,
        "Members with a role change waiting for a front door to apply it.",
    ),
    (
        ROLE_CHANGES_TOTAL,
        Kind::Counter,
        "Role changes a front door tried, by action (add, remove) and outcome (ok, forbidden, failed).",
    ),
    (
        ROLE_RULES_UNREAD_TOTAL,
        Kind::Counter,
        "Commits whose role changes were not decided: the guild's settings were not read yet.",
    ),
    (
        SYSTEM_ACTOR_RESTARTS_TOTAL,
        Kind::Counter,
        "System actors restarted by their supervisor after a panic, by actor (group_commit, arena, or a workflow's queue).",
    ),
    (
        DISCORD_SHARD_LATENCY_SECONDS,
        Kind::Gauge,
        "Discord gateway heartbeat round trip, by shard.",
    ),
    (
        DISCORD_SHARD_CONNECTED,
        Kind::Gauge,
        "1 while a Discord shard is connected, by shard.",
    ),
    (
        DISCORD_RECONNECTS_TOTAL,
        Kind::Counter,
        "Times a connected Discord shard lost its connection, by shard.",
    ),
    (
        BACKUP_LAST_SUCCESS_SECONDS,
        Kind::Gauge,
        "Unix time of the last scheduled backup that succeeded.",
    ),
    (
        BACKUP_AGE_SECONDS,
        Kind::Gauge,
        "Seconds since the last scheduled backup that succeeded.",
    ),
    (
        BACKUP_INTERVAL_SECONDS,
        Kind::Gauge,
        "Seconds between scheduled backups.",
    ),
    (
        BACKUP_FAILURES_TOTAL,
        Kind::Counter,
        "Scheduled backups that failed.",
    ),
    (
        TELEGRAM_RETRY_AFTER_TOTAL,
        Kind::Counter,
        "Telegram 429 answers waited out before calling again.",
    ),
    (
        FRONT_DOOR_UP,
        Kind::Gauge,
        "1 while a front door reaches its service, by door.",
    ),
    (
        FRONT_DOOR_FAILURES_TOTAL,
        Kind::Counter,
        "Times a front door failed to reach its service, by door and stage.",
    ),
    (
        TELEGRAM_PAYMENTS_RECONCILED_TOTAL,
        Kind::Counter,
        "Telegram Stars payments granted by reconciliation, their update never having arrived.",
    ),
    (
        DISCORD_UNREADABLE_ANSWERS_TOTAL,
        Kind::Counter,
        "Discord notices delivered (2xx) whose answer could not be read.",
    ),
    (
        CLUSTER_SLOTS,
        Kind::Gauge,
        "Cluster mode: the cluster's slot count; minus the sum of slots owned, the slots without an owner.",
    ),
    (
        CLUSTER_SLOTS_OWNED,
        Kind::Gauge,
        "Cluster mode: slots whose lease this node holds and serves.",
    ),
    (
        CLUSTER_TAKEOVERS_TOTAL,
        Kind::Counter,
        "Cluster mode: slots taken from a node whose lease ran out.",
    ),
    (
        CLUSTER_FENCED_TOTAL,
        Kind::Counter,
        "Cluster mode: WriteSets refused because their slot's lease had moved to another epoch.",
    ),
    (
        CLUSTER_FORWARDED_TOTAL,
        Kind::Counter,
        "Cluster mode: commands forwarded to their slot's owner over NATS, by outcome (ok, busy, no_owner, timeout, failed).",
    ),
    (
        CLUSTER_FORWARD_SECONDS,
        Kind::Histogram,
        "Cluster mode: round trip of a command forwarded over NATS.",
    ),
    (
        CLUSTER_LEASE_RENEWAL_SECONDS,
        Kind::Histogram,
        "Cluster mode: one heartbeat and lease renewal.",
    ),
    (
        CLUSTER_LEASE_FAILURES_TOTAL,
        Kind::Counter,
        "Cluster mode: lease renewals, takes and releases that failed.",
    ),
    (
        CLUSTER_NATS_CONNECTED,
        Kind::Gauge,
        "Cluster mode: 1 while this node is connected to NATS.",
    ),
    (READY, Kind::Gauge, "1 when /readyz answers ready."),
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1, labelled with the running version.",
    ),
];
