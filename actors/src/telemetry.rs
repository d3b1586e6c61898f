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

/// Every metric name with its help text, for `describe_*` and the README.
pub const CATALOGUE: &[(&str, &str)] = &[
    (COMMANDS_TOTAL, "Commands answered, by command and outcome."),
    (
        COMMAND_DURATION_SECONDS,
        "Command latency from front door to reply, by command.",
    ),
    (
        BUSY_REJECTIONS_TOTAL,
        "Commands answered busy, by stage (mailbox, backlog).",
    ),
    (ACTORS_RESIDENT, "Player actors resident in memory."),
    (ACTIVATIONS_TOTAL, "Player actors activated (state loaded)."),
    (PASSIVATIONS_TOTAL, "Player actors passivated, by reason."),
    (
        ACTIVATION_DURATION_SECONDS,
        "Time to load a player's state on activation.",
    ),
    (PERSISTENCE_BACKLOG, "WriteSets waiting for group commit."),
    (COMMIT_BATCH_SIZE, "WriteSets per group-commit transaction."),
    (
        COMMIT_DURATION_SECONDS,
        "Duration of one group-commit transaction, retries included.",
    ),
    (
        COMMIT_FAILURES_TOTAL,
        "Group-commit transactions that failed, by kind.",
    ),
    (
        COMMIT_RETRIES_TOTAL,
        "Group-commit transactions retried after a transient error.",
    ),
    (
        TRANSFERS_REDELIVERED_TOTAL,
        "Transfers credited by the outbox relay rather than directly.",
    ),
];
