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
//!
//! The same subjects carry the generation queues' words (`QueueLink`): a
//! workflow's queue runs on the node serving the workflow's slot, so "a
//! job was queued", "forget this job" and "where do these jobs stand" go
//! to that slot's subject, and "this job ended" to the player's guild's
//! slot. Each queue's owner tells its depth on `{cluster}.queue.depth`
//! every half second it changes (and every five seconds regardless), for
//! the other nodes' admission.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::command::{Command, CommandKind};
use actors::game::generation::workflow::Workflow;
use actors::ids::{CommandId, GuildId, UserId, UserKey};
use actors::job::Rendered;
use actors::job_queue::{Place, QueueLink};
use actors::reply::{ErrorCode, Reply};
use actors::runtime::{moving, Forward};
use actors::telemetry as m;
use actors::Runtime;
use futures::StreamExt;
use serde_json::{json, Value};

/// How long a forwarded command waits for its owner's answer: longer than
/// a command takes under load, shorter than an HTTP client's patience.
const FORWARD_PATIENCE: Duration = Duration::from_secs(5);

/// How long `jobs` waits to learn where jobs stand on another node.
const PLACES_PATIENCE: Duration = Duration::from_secs(2);

/// How often a queue's owner looks whether its depth changed.
const DEPTH_EVERY: Duration = Duration::from_millis(500);

/// A depth unchanged this long is told again (for nodes that just came).
const DEPTH_AGAIN: Duration = Duration::from_secs(5);

/// Most job ids one `places` word may ask about (`jobs` lists fewer).
const MAX_PLACES: usize = 100;

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

/// What travels on a slot's subject.
#[derive(Debug)]
enum Carried {
    /// A command, and whether an admin sent it.
    Command(Command, bool),
    /// How a job another node rendered ended, for its player's actor.
    Close { job_id: String, rendered: Rendered },
    /// A word for the queue of `workflow`, which this node runs.
    Queue { workflow: String, word: QueueWord },
}

#[derive(Debug, PartialEq)]
enum QueueWord {
    Queued,
    Forget(String),
    Places(Vec<String>),
}

/// Reads what travels on a slot's subject (from another node of this
/// cluster; a malformed one is answered `invalid_argument`, never trusted).
fn decode(payload: &[u8]) -> Result<Carried, Reply> {
    let bad = |why: String| Reply::error("", ErrorCode::InvalidArgument, why);
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| bad(format!("malformed forward: {e}")))?;
    if let Some(close) = v.get("close") {
        let text = |k: &str| close.get(k).and_then(Value::as_str).map(str::to_owned);
        let job_id = text("job_id").ok_or_else(|| bad("a close without a job_id".into()))?;
        let rendered = match (text("done"), text("failed")) {
            (Some(at), None) => Rendered::Done(at),
            (None, Some(why)) => Rendered::Failed(why),
            _ => return Err(bad("a close needs one of done or failed".into())),
        };
        return Ok(Carried::Close { job_id, rendered });
    }
    if let Some(workflow) = v.get("queue").and_then(Value::as_str) {
        let word = if v.get("queued").is_some() {
            QueueWord::Queued
        } else if let Some(id) = v.get("forget").and_then(Value::as_str) {
            QueueWord::Forget(id.to_owned())
        } else if let Some(ids) = v.get("places").and_then(Value::as_array) {
            if ids.len() > MAX_PLACES {
                return Err(bad(format!("at most {MAX_PLACES} job ids at once")));
            }
            let ids: Option<Vec<String>> =
                ids.iter().map(|i| i.as_str().map(str::to_owned)).collect();
            QueueWord::Places(ids.ok_or_else(|| bad("job ids are strings".into()))?)
        } else {
            return Err(bad("a queue word needs queued, forget or places".into()));
        };
        return Ok(Carried::Queue {
            workflow: workflow.to_owned(),
            word,
        });
    }
    decode_command(&v).map(|(c, admin)| Carried::Command(c, admin))
}

/// A command, as `encode` wrote it.
fn decode_command(v: &Value) -> Result<(Command, bool), Reply> {
    let bad = |why: String| Reply::error("", ErrorCode::InvalidArgument, why);
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

fn encode_close(job_id: &str, rendered: &Rendered) -> Vec<u8> {
    let body = match rendered {
        Rendered::Done(at) => json!({ "close": { "job_id": job_id, "done": at } }),
        Rendered::Failed(why) => json!({ "close": { "job_id": job_id, "failed": why } }),
    };
    body.to_string().into_bytes()
}

/// `Ok`, or the error code why a job could not be closed.
fn encode_closed(closed: Result<(), ErrorCode>) -> Vec<u8> {
    match closed {
        Ok(()) => json!({ "closed": true }),
        Err(code) => json!({ "closed": false, "code": code }),
    }
    .to_string()
    .into_bytes()
}

/// How a close went, as the player's node said; `None`: unreadable.
fn decode_closed(payload: &[u8]) -> Option<Result<(), ErrorCode>> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v.get("closed")?.as_bool()? {
        return Some(Ok(()));
    }
    Some(Err(serde_json::from_value(v.get("code")?.clone()).ok()?))
}

fn encode_places(places: Option<&[Option<Place>]>) -> Vec<u8> {
    let list = places.map(|p| {
        p.iter()
            .map(|p| match p {
                None => Value::Null,
                Some(Place::Running) => json!("running"),
                Some(Place::Waiting { ahead }) => json!({ "ahead": ahead }),
            })
            .collect::<Vec<_>>()
    });
    json!({ "places": list }).to_string().into_bytes()
}

fn decode_places(payload: &[u8]) -> Option<Vec<Option<Place>>> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("places")?
        .as_array()?
        .iter()
        .map(|p| match p {
            Value::Null => Some(None),
            Value::String(s) if s == "running" => Some(Some(Place::Running)),
            other => {
                let ahead = usize::try_from(other.get("ahead")?.as_u64()?).ok()?;
                Some(Some(Place::Waiting { ahead }))
            }
        })
        .collect()
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

/// Answers what comes for one slot (commands, job closes, queue words),
/// each in its own task.
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
            let answer = match decode(&msg.payload) {
                Ok(Carried::Command(command, admin)) => {
                    Some(encode_reply(&runtime.dispatch_here(command, admin).await))
                }
                Ok(Carried::Close { job_id, rendered }) => Some(encode_closed(
                    runtime.close_job_here(&job_id, rendered).await,
                )),
                Ok(Carried::Queue { workflow, word }) => {
                    queue_word(&runtime, &workflow, word).await
                }
                Err(refused) => Some(encode_reply(&refused)),
            };
            drop(runtime);
            let (Some(reply_to), Some(answer)) = (msg.reply, answer) else {
                return;
            };
            if let Err(e) = route.client.publish(reply_to, answer.into()).await {
                tracing::warn!(error = %e, "could not answer another node");
            }
        });
    }
}

/// A word for a queue this node runs (or ran: then `places` says it does
/// not know, and the others are dropped; storage has every job).
async fn queue_word(runtime: &Runtime, workflow: &str, word: QueueWord) -> Option<Vec<u8>> {
    let queue = runtime.queue(workflow).filter(|q| q.runs_here());
    match (word, queue) {
        (QueueWord::Queued, Some(q)) => {
            q.look_again();
            None
        }
        (QueueWord::Forget(id), Some(q)) => {
            q.forget_here(&id);
            None
        }
        (QueueWord::Places(ids), Some(q)) => Some(encode_places(Some(&q.places_here(ids).await))),
        (QueueWord::Places(_), None) => Some(encode_places(None)),
        (_, None) => None,
    }
}

impl NatsRoute {
    /// Publishes a word for a slot's owner, without waiting for it (lost
    /// words are found again in storage; see `QueueLink`).
    fn tell(&self, slot: u32, payload: Vec<u8>) {
        let (client, subject) = (self.client.clone(), slot_subject(&self.cluster, slot));
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload.into()).await {
                tracing::debug!(error = %e, "could not tell a queue's owner");
            }
        });
    }

    fn depth_subject(&self) -> String {
        format!("{}.queue.depth", self.cluster)
    }

    /// Tells the other nodes the depth of every queue this node runs, when
    /// it changes (looked at every half second) and every few seconds.
    pub async fn tell_depths(self: Arc<Self>, runtime: std::sync::Weak<Runtime>) {
        let mut told: std::collections::HashMap<String, (usize, Instant)> =
            std::collections::HashMap::new();
        let mut tick = tokio::time::interval(DEPTH_EVERY);
        loop {
            tick.tick().await;
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            let mut words = Vec::new();
            for q in runtime.queues().iter() {
                let Some(depth) = q.depth_here() else {
                    continue;
                };
                let id = q.workflow().as_str();
                let stale = told
                    .get(id)
                    .is_none_or(|(d, at)| *d != depth || at.elapsed() >= DEPTH_AGAIN);
                if stale {
                    told.insert(id.to_owned(), (depth, Instant::now()));
                    words.push(json!({ "queue": id, "depth": depth }).to_string());
                }
            }
            drop(runtime);
            for word in words {
                if let Err(e) = self
                    .client
                    .publish(self.depth_subject(), word.into_bytes().into())
                    .await
                {
                    tracing::debug!(error = %e, "could not tell a queue's depth");
                }
            }
        }
    }

    /// Hears the depths other nodes tell, for admission here.
    pub async fn hear_depths(self: Arc<Self>, runtime: std::sync::Weak<Runtime>) {
        let mut backoff = Duration::from_millis(100);
        let mut sub = loop {
            match self.client.subscribe(self.depth_subject()).await {
                Ok(sub) => break sub,
                Err(e) => {
                    tracing::warn!(error = %e, "could not listen for queue depths; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        while let Some(msg) = sub.next().await {
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&msg.payload) else {
                continue;
            };
            let depth = v.get("depth").and_then(Value::as_u64);
            let queue = v.get("queue").and_then(Value::as_str);
            if let (Some(depth), Some(q)) = (depth, queue.and_then(|id| runtime.queue(id))) {
                q.heard_depth(usize::try_from(depth).unwrap_or(usize::MAX));
            }
        }
    }
}

impl QueueLink for NatsRoute {
    fn queued(&self, slot: u32, workflow: Workflow) {
        let word = json!({ "queue": workflow.as_str(), "queued": true });
        self.tell(slot, word.to_string().into_bytes());
    }

    fn forget(&self, slot: u32, workflow: Workflow, job_id: &str) {
        let word = json!({ "queue": workflow.as_str(), "forget": job_id });
        self.tell(slot, word.to_string().into_bytes());
    }

    fn places(
        &self,
        slot: u32,
        workflow: Workflow,
        ids: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Option<Vec<Option<Place>>>> {
        let (client, subject) = (self.client.clone(), slot_subject(&self.cluster, slot));
        let word = json!({ "queue": workflow.as_str(), "places": ids });
        Box::pin(async move {
            let asked = tokio::time::timeout(
                PLACES_PATIENCE,
                client.request(subject, word.to_string().into_bytes().into()),
            )
            .await;
            match asked {
                Ok(Ok(msg)) => decode_places(&msg.payload),
                _ => None,
            }
        })
    }

    fn close(
        &self,
        slot: u32,
        job_id: String,
        rendered: Rendered,
    ) -> futures::future::BoxFuture<'static, Result<(), ErrorCode>> {
        let asking = self.ask(slot, encode_close(&job_id, &rendered), |p| {
            let closed = decode_closed(p)?;
            let outcome = match closed {
                Ok(()) => "ok",
                Err(ErrorCode::Busy) => "busy",
                Err(_) => "failed",
            };
            Some((closed, outcome))
        });
        Box::pin(async move {
            match asking.await {
                Ok(Some(closed)) => closed,
                Ok(None) => Err(ErrorCode::Internal),
                Err(no) => {
                    tracing::debug!(job = %job_id, why = ?no, "could not carry a finished job to its player's node yet");
                    Err(ErrorCode::Busy)
                }
            }
        })
    }
}

/// Why a node's request to a slot's owner got no answer.
#[derive(Debug)]
enum NoAnswer {
    /// This node has no NATS connection now.
    Unreachable,
    /// Nobody serves the slot (a takeover or handover under way).
    NoOwner,
    /// The owner did not answer in time: what was asked may have happened.
    TimedOut,
}

impl NatsRoute {
    /// Sends `payload` to the node serving `slot` and reads its answer
    /// with `read` (what it says, and the outcome to count; `None`:
    /// unreadable), counting every outcome in
    /// `kokoro_cluster_forwarded_total` and the round trip's time.
    fn ask<T: Send + 'static>(
        &self,
        slot: u32,
        payload: Vec<u8>,
        read: impl FnOnce(&[u8]) -> Option<(T, &'static str)> + Send + 'static,
    ) -> futures::future::BoxFuture<'static, Result<Option<T>, NoAnswer>> {
        let (client, subject) = (self.client.clone(), slot_subject(&self.cluster, slot));
        let connected = self.connected();
        Box::pin(async move {
            if !connected {
                record("failed", None);
                return Err(NoAnswer::Unreachable);
            }
            let started = Instant::now();
            match client.request(subject, payload.into()).await {
                Ok(msg) => {
                    let read = read(&msg.payload);
                    record(read.as_ref().map_or("failed", |(_, o)| *o), Some(started));
                    Ok(read.map(|(t, _)| t))
                }
                Err(e) => {
                    let (outcome, no) = match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => {
                            ("no_owner", NoAnswer::NoOwner)
                        }
                        async_nats::RequestErrorKind::TimedOut => ("timeout", NoAnswer::TimedOut),
                        async_nats::RequestErrorKind::Other => {
                            tracing::warn!(error = %e, "could not reach another node over NATS");
                            ("failed", NoAnswer::Unreachable)
                        }
                    };
                    record(outcome, Some(started));
                    Err(no)
                }
            }
        })
    }
}

impl Forward for NatsRoute {
    fn forward(
        &self,
        slot: u32,
        command: Command,
        admin: bool,
    ) -> futures::future::BoxFuture<'static, Reply> {
        let name = command.kind.name();
        let asking = self.ask(slot, encode(&command, admin), |p| {
            let reply = decode_reply(p)?;
            let outcome = if reply.code() == Some(ErrorCode::Busy) {
                "busy"
            } else {
                "ok"
            };
            Some((reply, outcome))
        });
        Box::pin(async move {
            match asking.await {
                Ok(Some(reply)) => reply,
                Ok(None) => Reply::error(
                    name,
                    ErrorCode::Internal,
                    "the node that serves this server sent an unreadable answer; retry with the same id to learn the outcome",
                ),
                Err(NoAnswer::NoOwner) => moving(name),
                Err(NoAnswer::TimedOut) => Reply::error(
                    name,
                    ErrorCode::Busy,
                    "the node that serves this server did not answer in time; the command may have been applied: retry with the same id to learn its outcome",
                ),
                Err(NoAnswer::Unreachable) => Reply::error(
                    name,
                    ErrorCode::Busy,
                    "this node cannot reach the node that serves this server right now; retry shortly with the same id",
                ),
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
        let Ok(Carried::Command(back, admin)) = decode(&encode(&command, true)) else {
            panic!("a command comes back a command");
        };
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
            br#"{"close":{"job_id":"j1"}}"#,
            br#"{"close":{"job_id":"j1","done":"results/a.png","failed":"both"}}"#,
            br#"{"queue":"image"}"#,
            br#"{"queue":"image","places":[1,2]}"#,
        ] {
            let refused = decode(bad).map(|_| ()).unwrap_err();
            assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument));
        }
    }

    #[test]
    fn job_closes_and_queue_words_travel_unchanged() {
        for rendered in [
            Rendered::Done("results/j1-a.png".into()),
            Rendered::Failed("ComfyUI said no".into()),
        ] {
            let Ok(Carried::Close {
                job_id,
                rendered: back,
            }) = decode(&encode_close("j1", &rendered))
            else {
                panic!("a close comes back a close");
            };
            assert_eq!((job_id.as_str(), back), ("j1", rendered));
        }
        assert_eq!(decode_closed(&encode_closed(Ok(()))), Some(Ok(())));
        assert_eq!(
            decode_closed(&encode_closed(Err(ErrorCode::Busy))),
            Some(Err(ErrorCode::Busy))
        );
        assert_eq!(decode_closed(b"garbage"), None);
        assert_eq!(
            decode_closed(br#"{"closed":false,"code":"nonsense"}"#),
            None
        );
        let places = vec![
            None,
            Some(Place::Running),
            Some(Place::Waiting { ahead: 3 }),
        ];
        assert_eq!(decode_places(&encode_places(Some(&places))), Some(places));
        assert_eq!(decode_places(&encode_places(None)), None);
        let Ok(Carried::Queue { workflow, word }) =
            decode(br#"{"queue":"image","places":["a","b"]}"#)
        else {
            panic!("a queue word");
        };
        assert_eq!(workflow, "image");
        assert_eq!(word, QueueWord::Places(vec!["a".into(), "b".into()]));
        let too_many = json!({ "queue": "image", "places": vec!["j"; MAX_PLACES + 1] });
        assert!(decode(too_many.to_string().as_bytes()).is_err());
    }
}
