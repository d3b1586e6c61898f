//! Cluster mode's routing over NATS: a command for a guild whose slot
//! another node serves travels to it by request/reply, and its reply comes
//! back the same way. Each node subscribes to `{cluster}.slot.{n}` for
//! every slot it serves (and drops the subscription when it stops), so a
//! sender needs no table of owners: NATS delivers to whoever serves the
//! slot now, and answers "no responders" while nobody does, which the
//! caller hears as `busy` and retries with the same command id.
//!
//! Ownership is not decided here: PostgreSQL's leases decide it (see
//! `actors::cluster`). A command that reaches a node which has just lost
//! the slot is answered `busy`, never forwarded again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::command::{Command, CommandKind};
use actors::ids::{CommandId, GuildId, UserId, UserKey};
use actors::reply::{ErrorCode, Reply};
use actors::runtime::{moving, Forward};
use actors::telemetry as m;
use actors::Runtime;
use futures::StreamExt;
use serde_json::{json, Value};

/// How long a forwarded command waits for its owner's answer: longer than
/// a command takes under load, shorter than an HTTP client's patience.
const FORWARD_PATIENCE: Duration = Duration::from_secs(5);

/// The subject a slot's owner listens on.
fn slot_subject(cluster: &str, slot: u32) -> String {
    format!("{cluster}.slot.{slot}")
}

/// A command as it travels: the HTTP API's body, plus who sent it.
fn encode(command: &Command, admin: bool) -> Vec<u8> {
    let body = json!({
        "admin": admin,
        "id": command.id.as_ref().map(|c| c.as_str()),
        "guild_id": command.key.guild.to_string(),
        "user_id": command.key.user.to_string(),
        "command": command.kind.name(),
        "args": command.kind.args(),
    });
    body.to_string().into_bytes()
}

/// Reads back what `encode` wrote (from another node of this cluster; a
/// malformed one is answered `invalid_argument`, never trusted).
fn decode(payload: &[u8]) -> Result<(Command, bool), Reply> {
    let bad = |why: String| Reply::error("", ErrorCode::InvalidArgument, why);
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| bad(format!("malformed forward: {e}")))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let name = text("command").ok_or_else(|| bad("forward without a command".into()))?;
    let guild: GuildId = text("guild_id")
        .unwrap_or_default()
        .parse()
        .map_err(|e| bad(format!("guild_id {e}")))?;
    let user: UserId = text("user_id")
        .unwrap_or_default()
        .parse()
        .map_err(|e| bad(format!("user_id {e}")))?;
    let id = text("id")
        .map(str::parse::<CommandId>)
        .transpose()
        .map_err(|e| bad(format!("id {e}")))?;
    let kind = CommandKind::parse(name, v.get("args").unwrap_or(&Value::Null))
        .map_err(|e| bad(e.to_string()))?;
    let admin = v.get("admin").and_then(Value::as_bool).unwrap_or(false);
    Ok((
        Command {
            id,
            key: UserKey::new(guild, user),
            kind,
        },
        admin,
    ))
}

fn encode_reply(reply: &Reply) -> Vec<u8> {
    json!({ "reply": reply, "replayed": reply.replayed })
        .to_string()
        .into_bytes()
}

fn decode_reply(payload: &[u8]) -> Option<Reply> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let mut reply: Reply = serde_json::from_value(v.get("reply")?.clone()).ok()?;
    reply.replayed = v.get("replayed").and_then(Value::as_bool).unwrap_or(false);
    Some(reply)
}

/// The NATS side of one node: forwards other nodes' commands, answers
/// those forwarded to it.
pub struct NatsRoute {
    client: async_nats::Client,
    cluster: String,
}

impl NatsRoute {
    /// Connects in the background (retrying with backoff for as long as it
    /// takes), so a node starts and serves its own slots without NATS.
    pub async fn connect(url: &str, cluster: &str, node: &str) -> anyhow::Result<Arc<Self>> {
        metrics::gauge!(m::CLUSTER_NATS_CONNECTED).set(0.0);
        let client = async_nats::ConnectOptions::new()
            .name(format!("kokoro {cluster} {node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(FORWARD_PATIENCE))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => {
                        metrics::gauge!(m::CLUSTER_NATS_CONNECTED).set(1.0);
                        tracing::info!("connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        metrics::gauge!(m::CLUSTER_NATS_CONNECTED).set(0.0);
                        tracing::warn!("lost NATS; commands for other nodes' guilds answer busy until it is back");
                    }
                    other => tracing::info!(event = %other, "NATS"),
                }
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("NATS at {}: {e}", crate::render::describe(url)))?;
        Ok(Arc::new(Self {
            client,
            cluster: cluster.to_owned(),
        }))
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Keeps a subscription for every slot `runtime` serves, for as long as
    /// the runtime runs: on every change of its slots, subscribes to the
    /// new ones and drops the others.
    /// Holds the runtime weakly: it ends when the runtime is let go.
    pub async fn serve_slots(self: Arc<Self>, runtime: std::sync::Weak<Runtime>) {
        let Some(cluster) = runtime.upgrade().and_then(|r| r.cluster().cloned()) else {
            return;
        };
        let mut changes = cluster.changes();
        let mut listening: std::collections::HashMap<u32, tokio::task::JoinHandle<()>> =
            std::collections::HashMap::new();
        loop {
            let served = cluster.served();
            listening.retain(|slot, task| {
                let keep = served.binary_search(slot).is_ok() && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for slot in served {
                if listening.contains_key(&slot) {
                    continue;
                }
                match self
                    .client
                    .subscribe(slot_subject(&self.cluster, slot))
                    .await
                {
                    Ok(sub) => {
                        let task = tokio::spawn(answer(self.clone(), runtime.clone(), sub));
                        listening.insert(slot, task);
                    }
                    Err(e) => {
                        tracing::warn!(slot, error = %e, "could not listen for a slot's commands; trying again")
                    }
                }
            }
            // Woken by a change, or after a while to retry a failed subscribe.
            let _ = tokio::time::timeout(Duration::from_secs(2), changes.changed()).await;
            if runtime.strong_count() == 0 {
                for task in listening.values() {
                    task.abort();
                }
                return;
            }
        }
    }
}

/// Answers the commands forwarded for one slot, each in its own task.
async fn answer(
    route: Arc<NatsRoute>,
    runtime: std::sync::Weak<Runtime>,
    mut sub: async_nats::Subscriber,
) {
    while let Some(msg) = sub.next().await {
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        let route = route.clone();
        tokio::spawn(async move {
            let Some(reply_to) = msg.reply else {
                return;
            };
            let reply = match decode(&msg.payload) {
                Ok((command, admin)) => runtime.dispatch_here(command, admin).await,
                Err(refused) => refused,
            };
            drop(runtime);
            if let Err(e) = route
                .client
                .publish(reply_to, encode_reply(&reply).into())
                .await
            {
                tracing::warn!(error = %e, "could not send a forwarded command's reply");
            }
        });
    }
}

impl Forward for NatsRoute {
    fn forward(
        &self,
        slot: u32,
        command: Command,
        admin: bool,
    ) -> futures::future::BoxFuture<'static, Reply> {
        let client = self.client.clone();
        let subject = slot_subject(&self.cluster, slot);
        let connected = self.connected();
        Box::pin(async move {
            let name = command.kind.name();
            if !connected {
                record("failed", None);
                return Reply::error(
                    name,
                    ErrorCode::Busy,
                    "this node cannot reach the node that serves this server right now; retry shortly with the same id",
                );
            }
            let started = Instant::now();
            let asked = client
                .request(subject, encode(&command, admin).into())
                .await;
            match asked {
                Ok(msg) => match decode_reply(&msg.payload) {
                    Some(reply) => {
                        let outcome = if reply.code() == Some(ErrorCode::Busy) {
                            "busy"
                        } else {
                            "ok"
                        };
                        record(outcome, Some(started));
                        reply
                    }
                    None => {
                        record("failed", Some(started));
                        Reply::error(
                            name,
                            ErrorCode::Internal,
                            "the node that serves this server sent an unreadable answer; retry with the same id to learn the outcome",
                        )
                    }
                },
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        record("no_owner", Some(started));
                        moving(name)
                    }
                    async_nats::RequestErrorKind::TimedOut => {
                        record("timeout", Some(started));
                        Reply::error(
                            name,
                            ErrorCode::Busy,
                            "the node that serves this server did not answer in time; the command may have been applied: retry with the same id to learn its outcome",
                        )
                    }
                    async_nats::RequestErrorKind::Other => {
                        record("failed", Some(started));
                        tracing::warn!(error = %e, "could not forward a command");
                        Reply::error(
                            name,
                            ErrorCode::Busy,
                            "this node cannot reach the node that serves this server right now; retry shortly with the same id",
                        )
                    }
                },
            }
        })
    }

    fn up(&self) -> Result<(), String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            async_nats::connection::State::Pending => Err("connecting to NATS".into()),
            async_nats::connection::State::Disconnected => Err("NATS unreachable".into()),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The cluster's database (`postgres://…`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// The cluster's name.
    #[arg(long = "cluster", env = "KOKORO_CLUSTER", default_value = "kokoro")]
    pub cluster: String,

    /// Print JSON (every lease included) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also list every slot's lease in the table.
    #[arg(long)]
    pub slots: bool,
}

/// `kokoro cluster status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let store = actors::Store::open_postgres(
        &args.database_url,
        &actors::store::StoreOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("opening the cluster's database: {e}"))?;
    let actors::Store::Postgres(pool) = &store else {
        anyhow::bail!("cluster status needs a postgres:// database");
    };
    let Some(status) = actors::cluster::leases::status(pool, &args.cluster)
        .await
        .map_err(|e| anyhow::anyhow!("reading the cluster's leases: {e}"))?
    else {
        anyhow::bail!(
            "no cluster {:?} in this database (it is made when its first node starts)",
            args.cluster
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "cluster {}: {} slots, {} unowned",
            status.cluster, status.slots, status.unowned
        );
        println!(
            "{:<32} {:>10} {:>6} {:>6}",
            "node", "heartbeat", "live", "slots"
        );
        for n in &status.nodes {
            println!(
                "{:<32} {:>8}ms {:>6} {:>6}",
                n.node_id,
                n.heartbeat_age_ms,
                if n.live { "yes" } else { "no" },
                n.slots
            );
        }
        if args.slots {
            println!(
                "{:>6} {:<32} {:>8} {:>12}",
                "slot", "owner", "epoch", "expires_in"
            );
            for l in &status.leases {
                println!(
                    "{:>6} {:<32} {:>8} {:>10}ms",
                    l.slot,
                    l.owner.as_deref().unwrap_or("-"),
                    l.epoch,
                    l.expires_in_ms
                );
            }
        }
    }
    store.close().await;
    Ok(if status.unowned == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn record(outcome: &'static str, started: Option<Instant>) {
    metrics::counter!(m::CLUSTER_FORWARDED_TOTAL, "outcome" => outcome).increment(1);
    if let Some(s) = started {
        metrics::histogram!(m::CLUSTER_FORWARD_SECONDS).record(s.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_and_its_reply_travel_unchanged() {
        let command = Command {
            id: Some("k-1".parse().unwrap()),
            key: UserKey::new(GuildId::new(7).unwrap(), UserId::new(9).unwrap()),
            kind: CommandKind::parse("give", &json!({"to": "11", "amount": 5})).unwrap(),
        };
        let (back, admin) = decode(&encode(&command, true)).unwrap();
        assert!(admin);
        assert_eq!(back.kind, command.kind);
        assert_eq!(back.key, command.key);
        assert_eq!(back.id, command.id);
        let mut reply = Reply::ok("give", json!({"gold": 5}), "sent");
        reply.replayed = true;
        let again = decode_reply(&encode_reply(&reply)).unwrap();
        assert_eq!(again, reply);
        assert!(again.replayed);
    }

    #[test]
    fn a_malformed_forward_is_refused_not_trusted() {
        for bad in [
            &b"not json"[..],
            br#"{"command":"give","guild_id":"1","user_id":"2","args":{"to":"3","amount":-1}}"#,
            br#"{"command":"rob","guild_id":"1","user_id":"2"}"#,
            br#"{"command":"balance","guild_id":"x","user_id":"2"}"#,
        ] {
            let refused = decode(bad).unwrap_err();
            assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument));
        }
    }
}
