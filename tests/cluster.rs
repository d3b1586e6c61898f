//! Cluster mode, on loopback: several real `kokoro serve` processes over
//! one real PostgreSQL database, commands routed over real NATS (the
//! machine's server with a cluster name of the test's own, or a
//! `nats-server` the test starts and stops). Load goes to every node, each
//! command with its own id, retried on `busy` or a dead node at another
//! node; one node is killed, one paused past its lease, all restarted one
//! by one. Afterwards every command's outcome is settled by asking its id
//! again, every balance is what the acknowledged gives imply, gold is
//! conserved, and `kokoro verify` passes.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "cluster-test-token-0123456789";
const SLOTS: u32 = 16;
const TTL_SECS: u64 = 3;
const GUILDS: u64 = 8;
const PLAYERS: u64 = 6;
const STARTING_GOLD: i64 = 1000;

fn nats_url() -> String {
    std::env::var("KOKORO_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Guild `k`'s id: its slot is `2k`, so the guilds spread over the slots.
fn guild(k: u64) -> u64 {
    ((2 * k) << 22) | 1
}

fn cluster_name() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

/// One node: a `kokoro serve` process in cluster mode.
struct Node {
    id: String,
    child: tokio::process::Child,
    base: String,
    _data: tempfile::TempDir,
}

async fn start_node(db: &TestDb, cluster: &str, id: &str, nats: &str, extra: &[&str]) -> Node {
    start_node_with(db, cluster, id, nats, extra, &[]).await
}

/// `start_node` with environment variables of its own (a bot token).
async fn start_node_with(
    db: &TestDb,
    cluster: &str,
    id: &str,
    nats: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Node {
    let data = tempfile::tempdir().unwrap();
    start_node_in(data, db, cluster, id, nats, extra, env).await
}

/// `start_node_with`, its data dir `data`.
async fn start_node_in(
    data: tempfile::TempDir,
    db: &TestDb,
    cluster: &str,
    id: &str,
    nats: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Node {
    let mut command = kokoro_binary(db, TOKEN);
    command.env("KOKORO_DATA_DIR", data.path());
    for (k, v) in env {
        command.env(k, v);
    }
    let ttl = format!("{TTL_SECS}s");
    let slots = SLOTS.to_string();
    let mut flags = vec![
        "--nats-url",
        nats,
        "--node-id",
        id,
        "--cluster",
        cluster,
        "--lease-ttl",
        &ttl,
        "--slots",
        &slots,
    ];
    flags.extend_from_slice(extra);
    let (child, base) = serve_binary(command, &flags).await;
    Node {
        id: id.to_owned(),
        child,
        base,
        _data: data,
    }
}

fn signal(node: &Node, sig: &str) {
    let pid = node.child.id().expect("running");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Who owns which slot now, from the database: live leases per owner,
/// and the slots with no live lease.
async fn owners(db: &TestDb, cluster: &str) -> (HashMap<String, usize>, usize) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(Option<String>, bool)> =
        sqlx::query_as("SELECT owner, expires_at > now() FROM cluster_leases WHERE cluster = $1")
            .bind(cluster)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut by = HashMap::new();
    let mut unowned = 0;
    for (owner, live) in rows {
        match (owner, live) {
            (Some(o), true) => *by.entry(o).or_insert(0) += 1,
            _ => unowned += 1,
        }
    }
    (by, unowned)
}

/// Waits until every slot has a live owner and `ok` holds of the owners;
/// how long it took.
async fn await_owners(
    db: &TestDb,
    cluster: &str,
    within: Duration,
    ok: impl Fn(&HashMap<String, usize>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (by, unowned) = owners(db, cluster).await;
        if unowned == 0 && ok(&by) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "slots not owned as wanted within {within:?}: {by:?}, {unowned} unowned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the load saw: every request sent, each command's last definitive
/// reply, and every error code met on the way (retried or not).
#[derive(Default)]
struct Seen {
    sent: Vec<Value>,
    codes: Vec<String>,
}

/// Answers that are the command's outcome (not "try again").
fn definitive(reply: &Value) -> bool {
    reply["ok"] == true
        || matches!(
            reply["error"]["code"].as_str(),
            Some("insufficient_funds" | "invalid_argument" | "not_found")
        )
}

/// Sends `req` until it has a definitive answer, trying the nodes in turn
/// from `first` (a node that is down or answers `busy` is passed over).
async fn until_settled(
    http: &reqwest::Client,
    bases: &[String],
    first: usize,
    req: &Value,
    codes: &Mutex<Vec<String>>,
    patience: Duration,
) -> Option<Value> {
    let started = Instant::now();
    let mut n = first;
    let mut pause = Duration::from_millis(20);
    while started.elapsed() < patience {
        let base = &bases[n % bases.len()];
        n += 1;
        let answer = http
            .post(format!("{base}/v1/commands"))
            .bearer_auth(TOKEN)
            .json(req)
            .send()
            .await;
        match answer {
            Ok(r) => match r.json::<Value>().await {
                Ok(reply) if definitive(&reply) => return Some(reply),
                Ok(reply) => codes
                    .lock()
                    .unwrap()
                    .push(reply["error"]["code"].as_str().unwrap_or("?").to_owned()),
                Err(_) => codes.lock().unwrap().push("unreadable".into()),
            },
            Err(_) => codes.lock().unwrap().push("connection".into()),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
    None
}

/// Gives between the players of each guild from `clients` tasks, over every
/// node of `bases` (shared, so a test can swap a restarted node's address
/// in), until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
    codes: Arc<Mutex<Vec<String>>>,
    acked: Arc<AtomicUsize>,
}

impl Load {
    fn start(bases: Arc<Mutex<Vec<String>>>, run: &str, clients: usize) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let stop: Arc<AtomicBool> = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let codes: Arc<Mutex<Vec<String>>> = Arc::default();
        let acked: Arc<AtomicUsize> = Arc::default();
        let tasks = (0..clients)
            .map(|c| {
                let (http, bases, run) = (http.clone(), bases.clone(), run.to_owned());
                let (stop, seen, codes, acked) =
                    (stop.clone(), seen.clone(), codes.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut rng =
                        <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(c as u64 * 7919);
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let g = guild(rand::Rng::random_range(&mut rng, 0..GUILDS));
                        let from = rand::Rng::random_range(&mut rng, 1..=PLAYERS);
                        let to = from % PLAYERS + 1;
                        let amount = rand::Rng::random_range(&mut rng, 1..=40);
                        let req = json!({
                            "id": format!("{run}-{c}-{i}"), "guild_id": g.to_string(),
                            "user_id": from.to_string(), "command": "give",
                            "args": {"to": to.to_string(), "amount": amount},
                        });
                        seen.lock().unwrap().sent.push(req.clone());
                        let now: Vec<String> = bases.lock().unwrap().clone();
                        let reply = until_settled(
                            &http,
                            &now,
                            c + i,
                            &req,
                            &codes,
                            Duration::from_secs(20),
                        )
                        .await;
                        if reply.is_some_and(|r| r["ok"] == true) {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            seen,
            codes,
            acked,
        }
    }

    async fn await_acked(&self, n: usize, within: Duration) {
        let started = Instant::now();
        while self.acked.load(Ordering::Relaxed) < n {
            assert!(
                started.elapsed() < within,
                "only {} acknowledged within {within:?}",
                self.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.codes = std::mem::take(&mut *self.codes.lock().unwrap());
        seen
    }
}

/// Settles every command sent by asking its id again (a command never
/// applied is applied now, once), then checks the books: each player's
/// gold is what the settled gives imply, gold is conserved, and
/// `kokoro verify` passes.
async fn assert_books(db: &TestDb, bases: &[String], sent: &[Value]) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let codes = Mutex::new(Vec::new());
    let mut expected: HashMap<(u64, u64), i64> = HashMap::new();
    for k in 0..GUILDS {
        for p in 1..=PLAYERS {
            expected.insert((guild(k), p), STARTING_GOLD);
        }
    }
    let mut ok = 0;
    for (i, req) in sent.iter().enumerate() {
        let reply = until_settled(&http, bases, i, req, &codes, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("command {} never settled", req["id"]));
        if reply["ok"] == true {
            ok += 1;
            let g: u64 = req["guild_id"].as_str().unwrap().parse().unwrap();
            let from: u64 = req["user_id"].as_str().unwrap().parse().unwrap();
            let to: u64 = req["args"]["to"].as_str().unwrap().parse().unwrap();
            let amount = req["args"]["amount"].as_i64().unwrap();
            *expected.get_mut(&(g, from)).unwrap() -= amount;
            *expected.get_mut(&(g, to)).unwrap() += amount;
        }
    }
    assert!(ok > 0, "no give of {} went through", sent.len());
    // A give's credit may still be on its way (the outbox relay of the
    // slot's new owner): the books must come right, and stay right.
    let started = Instant::now();
    loop {
        let mut wrong = Vec::new();
        for ((g, p), want) in &expected {
            let req =
                json!({"guild_id": g.to_string(), "user_id": p.to_string(), "command": "balance"});
            let reply = until_settled(&http, bases, 0, &req, &codes, Duration::from_secs(10))
                .await
                .expect("balance answers");
            let gold = reply["data"]["gold"].as_i64().unwrap();
            if gold != *want {
                wrong.push(format!("guild {g} player {p}: {gold}, expected {want}"));
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "balances differ from what the acknowledged gives imply:\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total: i64 = expected.values().sum();
    assert_eq!(
        total,
        STARTING_GOLD * (GUILDS * PLAYERS) as i64,
        "gold is conserved"
    );
    assert_verify(db, TOKEN).await;
}

/// A counter's value from a node's `/metrics`.
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every series the dashboard's Cluster row asks for is exported by the
/// nodes (Prometheus itself is run against a single node in
/// tests/prometheus_e2e.rs, which has none of them).
async fn assert_cluster_row_has_series(bases: &[String]) {
    let mut exported = String::new();
    for b in bases {
        exported += &reqwest::get(format!("{b}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/kokoro.json"),
    )
    .unwrap();
    let mut names = Vec::new();
    for expr in text.split("\"expr\": \"").skip(1) {
        let expr = expr.split("\",").next().unwrap_or_default();
        let mut rest = expr;
        while let Some(at) = rest.find("kokoro_cluster_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.push(name);
        }
    }
    assert!(names.len() >= 8, "the Cluster row: {names:?}");
    for name in names {
        assert!(
            exported.lines().any(|l| l.starts_with(&name)),
            "no node exports {name}, which the dashboard's Cluster row shows"
        );
    }
}

/// The only errors a player may meet on the way are "try again" ones.
fn assert_only_retried(codes: &[String]) {
    let bad: Vec<&String> = codes
        .iter()
        .filter(|c| !matches!(c.as_str(), "busy" | "connection"))
        .collect();
    assert!(bad.is_empty(), "errors other than a retried busy: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_a_kill_9_under_load() {
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(start_node(&db, &cluster, id, &nats, &[]).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| {
        by.len() == 3 && by.values().all(|n| *n >= 4)
    })
    .await;
    let bases = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
    ));
    let load = Load::start(bases.clone(), "kill", 12);
    load.await_acked(150, Duration::from_secs(30)).await;
    let victim = nodes.remove(1);
    let killed = Instant::now();
    let mut victim_child = victim.child;
    victim_child.start_kill().unwrap();
    victim_child.wait().await.unwrap();
    let victim_id = victim.id.clone();
    let reowned = await_owners(&db, &cluster, Duration::from_secs(TTL_SECS + 2), |by| {
        !by.contains_key(&victim_id)
    })
    .await;
    println!(
        "slots of the killed node owned again {:?} after the kill",
        killed.elapsed().max(reowned)
    );
    let before = load.acked.load(Ordering::Relaxed);
    load.await_acked(before + 150, Duration::from_secs(30))
        .await;
    let seen = load.finish().await;
    let live: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    assert_books(&db, &live, &seen.sent).await;
    assert_only_retried(&seen.codes);
    let takeovers = metric(&live[0], "kokoro_cluster_takeovers_total").await
        + metric(&live[1], "kokoro_cluster_takeovers_total").await;
    assert!(takeovers >= 1.0, "the survivors count their takeovers");
    assert_cluster_row_has_series(&live).await;
    drop(nodes);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_writes_nothing_after_the_takeover() {
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    // The paused node holds its batches open for 200 ms: whatever it has
    // decided when it stops is still waiting to commit when it wakes.
    let mut nodes = vec![
        start_node(
            &db,
            &cluster,
            "p",
            &nats,
            &["--commit-max-wait-us", "200000"],
        )
        .await,
    ];
    for id in ["q", "r"] {
        nodes.push(start_node(&db, &cluster, id, &nats, &[]).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 3).await;
    // All of the load enters at the node that will be paused: its own
    // slots' commands are decided there, the others' forwarded.
    let bases = Arc::new(Mutex::new(vec![nodes[0].base.clone()]));
    let load = Load::start(bases.clone(), "pause", 16);
    load.await_acked(100, Duration::from_secs(30)).await;
    // From now on, the load's retries go to the nodes that stay awake.
    *bases.lock().unwrap() = vec![nodes[1].base.clone(), nodes[2].base.clone()];
    signal(&nodes[0], "-STOP");
    let paused = nodes[0].id.clone();
    await_owners(&db, &cluster, Duration::from_secs(TTL_SECS * 3), |by| {
        !by.contains_key(&paused)
    })
    .await;
    let before = load.acked.load(Ordering::Relaxed);
    load.await_acked(before + 100, Duration::from_secs(30))
        .await;
    signal(&nodes[0], "-CONT");
    // It wakes, finds its leases gone, and refuses what it had decided.
    let started = Instant::now();
    let fenced = loop {
        let n = metric(&nodes[0].base, "kokoro_cluster_fenced_total").await;
        if n > 0.0 || started.elapsed() > Duration::from_secs(10) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        fenced > 0.0,
        "the woken node refused its stale writes (kokoro_cluster_fenced_total)"
    );
    // Then it takes its share again, and the load spreads over all three.
    await_owners(&db, &cluster, Duration::from_secs(TTL_SECS * 4), |by| {
        by.len() == 3
    })
    .await;
    *bases.lock().unwrap() = nodes.iter().map(|n| n.base.clone()).collect();
    let before = load.acked.load(Ordering::Relaxed);
    load.await_acked(before + 100, Duration::from_secs(30))
        .await;
    let seen = load.finish().await;
    let all: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    assert_books(&db, &all, &seen.sent).await;
    assert_only_retried(&seen.codes);
    drop(nodes);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_and_a_fourth_node_lose_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    let mut nodes = Vec::new();
    for id in ["x", "y", "z"] {
        nodes.push(start_node(&db, &cluster, id, &nats, &[]).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 3).await;
    let bases = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
    ));
    let load = Load::start(bases.clone(), "roll", 12);
    load.await_acked(100, Duration::from_secs(30)).await;
    for (i, node) in nodes.iter_mut().enumerate() {
        let id = node.id.clone();
        signal(node, "-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), node.child.wait())
            .await
            .expect("a node stops within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "node {id} exited with {status:?}");
        // Handed over, not left to run out: owned again at once.
        await_owners(&db, &cluster, Duration::from_secs(TTL_SECS), |by| {
            !by.contains_key(&id)
        })
        .await;
        *node = start_node(&db, &cluster, &id, &nats, &[]).await;
        bases.lock().unwrap()[i] = node.base.clone();
        let before = load.acked.load(Ordering::Relaxed);
        load.await_acked(before + 50, Duration::from_secs(30)).await;
    }
    nodes.push(start_node(&db, &cluster, "w", &nats, &[]).await);
    bases.lock().unwrap().push(nodes[3].base.clone());
    // About a quarter each: the slot count divided by four, rounded up.
    await_owners(&db, &cluster, Duration::from_secs(TTL_SECS * 5), |by| {
        by.len() == 4 && by.values().all(|n| *n == SLOTS as usize / 4)
    })
    .await;
    let before = load.acked.load(Ordering::Relaxed);
    load.await_acked(before + 100, Duration::from_secs(30))
        .await;
    let seen = load.finish().await;
    let all: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    assert_books(&db, &all, &seen.sent).await;
    assert_only_retried(&seen.codes);
    // `kokoro cluster status` shows where every slot is.
    let out = kokoro_binary(&db, TOKEN)
        .args(["cluster", "status", "--json", "--cluster", &cluster])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["unowned"], 0);
    assert_eq!(status["slots"], SLOTS);
    let nodes_seen = status["nodes"].as_array().unwrap();
    assert_eq!(nodes_seen.len(), 4, "{status}");
    assert!(nodes_seen
        .iter()
        .all(|n| n["live"] == true && n["slots"] == SLOTS / 4));
    drop(nodes);
    db.drop_db().await;
}

/// A `nats-server` of the test's own, on a free port: stopped and started
/// again on the same port.
struct OwnNats {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut me = Self { port, child: None };
        me.restart();
        me
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian's nats-server package) starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_nats_each_node_serves_its_own_slots_and_recovers() {
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let mut nats = OwnNats::start();
    let a = start_node(&db, &cluster, "n1", &nats.url(), &[]).await;
    let b = start_node(&db, &cluster, "n2", &nats.url(), &[]).await;
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 2).await;
    let http = reqwest::Client::new();
    // Which guilds node a serves itself, and which it forwards to b.
    let owner_of = |by_slot: &HashMap<i32, String>, k: u64| by_slot[&((2 * k) as i32)].clone();
    let by_slot: HashMap<i32, String> = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as::<_, (i32, String)>(
            "SELECT slot, owner FROM cluster_leases WHERE cluster = $1 AND owner IS NOT NULL",
        )
        .bind(&cluster)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
    };
    let local = (0..GUILDS)
        .find(|k| owner_of(&by_slot, *k) == "n1")
        .unwrap();
    let remote = (0..GUILDS)
        .find(|k| owner_of(&by_slot, *k) == "n2")
        .unwrap();
    let balance =
        |k: u64| json!({"guild_id": guild(k).to_string(), "user_id": "1", "command": "balance"});
    let ask = |k: u64| {
        let (http, base, body) = (http.clone(), a.base.clone(), balance(k));
        async move { post_command(&http, &base, TOKEN, &body).await }
    };
    assert_eq!(ask(remote).await["ok"], true, "forwarded while NATS is up");
    assert_eq!(
        reqwest::get(format!("{}/readyz", a.base))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["cluster"]["routing"],
        "up"
    );

    nats.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forwarded = ask(remote).await;
    assert_eq!(forwarded["error"]["code"], "busy", "{forwarded}");
    assert_eq!(ask(local).await["ok"], true, "its own slots are served");
    let ready: Value = reqwest::get(format!("{}/readyz", a.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready["cluster"]["routing"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{ready}"
    );
    assert_eq!(metric(&a.base, "kokoro_cluster_nats_connected").await, 0.0);

    nats.restart();
    let started = Instant::now();
    loop {
        if ask(remote).await["ok"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "forwarding came back by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&a.base, "kokoro_cluster_nats_connected").await, 1.0);
    drop((a, b));
    db.drop_db().await;
}

/// `kokoro serve` in cluster mode with `args` (and without the environment
/// variable `unset`): it must refuse to start; what it said.
async fn refused(db: &TestDb, args: &[&str], unset: Option<&str>) -> String {
    let mut command = kokoro_binary(db, TOKEN);
    if let Some(name) = unset {
        command.env_remove(name);
    }
    let out = command
        .args(["serve", "--http", "127.0.0.1:0", "--nats-url", &nats_url()])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn cluster_mode_refuses_sqlite_and_another_slot_count() {
    let db = TestDb::new(Backend::Sqlite).await;
    let err = refused(&db, &[], None).await;
    assert!(err.contains("cluster mode needs PostgreSQL"), "{err}");

    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let node = start_node(&db, &cluster, "s1", &nats_url(), &[]).await;
    let err = refused(
        &db,
        &["--cluster", &cluster, "--slots", "32", "--node-id", "s2"],
        None,
    )
    .await;
    assert!(err.contains("was made with 16 slots"), "{err}");
    // Results rendered on one node are shown by others: one key for links.
    let renderer = [
        "--cluster",
        &cluster,
        "--renderer",
        "comfyui:http://127.0.0.1:9",
    ];
    let err = refused(&db, &renderer, Some("KOKORO_RESULT_SECRET")).await;
    assert!(err.contains("KOKORO_RESULT_SECRET"), "{err}");
    // Telegram may send an update to any node: one secret for all.
    let webhook = [
        "--cluster",
        &cluster,
        "--telegram-webhook",
        "https://bot.example/hook",
    ];
    let err = refused(&db, &webhook, Some("KOKORO_TELEGRAM_WEBHOOK_SECRET")).await;
    assert!(err.contains("KOKORO_TELEGRAM_WEBHOOK_SECRET"), "{err}");
    drop(node);
    db.drop_db().await;
}

/// Discord in cluster mode: two nodes, each running one of the bot's two
/// shards against a fake Discord that routes each guild's events to its
/// shard's connection only. Half the guilds' slots are owned by the node
/// that does not run their shard: their interactions are forwarded to the
/// owner, and answered once, through the node that received them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discord_shards_split_over_nodes_and_events_reach_their_guilds_owner() {
    use support::fake_discord::{fake_discord, interaction};
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    let discord = fake_discord(usize::MAX).await;
    discord.shard(2);
    let mut nodes = Vec::new();
    for (id, shards) in [("d0", "0-0"), ("d1", "1-1")] {
        let flags = [
            "--discord-proxy",
            &discord.base,
            "--discord-shards",
            shards,
            "--discord-shard-total",
            "2",
        ];
        let env = [("DISCORD_TOKEN", "fake-token")];
        nodes.push(start_node_with(&db, &cluster, id, &nats, &flags, &env).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 2).await;
    // Discord delivers nothing to a shard not connected: wait for both.
    let started = Instant::now();
    while discord.fake.identified_shards.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "both shards connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Slots 0..8: shards 0 and 1 alike (16 slots, 2 shards: shard = slot % 2).
    let guilds: Vec<u64> = (0..8u64).map(|s| (s << 22) | 1).collect();
    let mut ids = Vec::new();
    for (k, g) in guilds.iter().enumerate() {
        for u in 1..=3u64 {
            let id = format!("9{k}{u}000");
            let mut i = interaction(
                &id,
                &(600_000_000_000_000_000 + u).to_string(),
                "daily",
                json!([]),
                json!({}),
            );
            i["guild_id"] = json!(g.to_string());
            discord.send(i);
            ids.push((id, *g, u));
        }
    }
    for (id, g, u) in &ids {
        let answer = discord.answer(id, 1).await;
        assert!(
            answer.to_string().contains("+100 gold"),
            "guild {g} player {u}: {answer}"
        );
    }
    let mut shards = discord.fake.identified_shards.lock().unwrap().clone();
    shards.sort_unstable();
    assert_eq!(shards, [(0, 2), (1, 2)], "each node runs its own shard");
    assert_eq!(*discord.fake.undelivered.lock().unwrap(), 0);
    assert_eq!(
        *discord.fake.refused_callbacks.lock().unwrap(),
        0,
        "each interaction answered once"
    );
    let forwarded = metric(
        &nodes[0].base,
        r#"kokoro_cluster_forwarded_total{outcome="ok"}"#,
    )
    .await
        + metric(
            &nodes[1].base,
            r#"kokoro_cluster_forwarded_total{outcome="ok"}"#,
        )
        .await;
    assert!(
        forwarded > 0.0,
        "a guild whose slot the other node owns is served by forwarding"
    );
    // Each daily paid once, in the books of its guild.
    let http = reqwest::Client::new();
    for (_, g, u) in &ids {
        let player = (600_000_000_000_000_000 + u).to_string();
        let balance = json!({"guild_id": g.to_string(), "user_id": player, "command": "balance"});
        let reply = post_command(&http, &nodes[0].base, TOKEN, &balance).await;
        assert_eq!(reply["data"]["gold"], STARTING_GOLD + 100, "{reply}");
    }
    drop(nodes);
    db.drop_db().await;
}

/// Telegram in cluster mode: the bot is one guild, so one slot, and only
/// the node holding it polls (the fake ends an overtaken poll with 409, as
/// Telegram does when two instances poll). Its owner killed as it answers
/// an update not yet confirmed, the other node takes the slot and the
/// polling, and every update is paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telegram_is_polled_by_the_owner_of_the_bots_slot_alone() {
    use support::fake_telegram::{FakeTelegram, BOT_ID, TOKEN as BOT_TOKEN};
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    let telegram = FakeTelegram::start().await;
    let mut nodes = Vec::new();
    for id in ["t0", "t1"] {
        let flags = ["--telegram-api-url", &telegram.url];
        let env = [("TELEGRAM_BOT_TOKEN", BOT_TOKEN)];
        nodes.push(start_node_with(&db, &cluster, id, &nats, &flags, &env).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 2).await;
    let bot_slot = ((BOT_ID as u64 >> 22) % u64::from(SLOTS)) as i32;
    let owner: String = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT owner FROM cluster_leases WHERE cluster = $1 AND slot = $2")
            .bind(&cluster)
            .bind(bot_slot)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    let players = |from: i64| (from..from + 10).collect::<Vec<i64>>();
    let wait = Duration::from_secs(20);
    let mut last = 0;
    for p in players(500) {
        last = telegram.text(p, "/daily");
    }
    telegram
        .wait_for(wait, "every first player's reward", |f| {
            players(500).iter().all(|p| !f.said(*p).is_empty())
        })
        .await;
    // Killed only once its offset has confirmed them all: what it answered
    // is not sent again.
    telegram
        .wait_for(wait, "the offset past them", |f| f.confirmed(last))
        .await;
    // Both nodes up all this while, and only the slot's owner polled.
    assert_eq!(
        telegram.conflicts(),
        0,
        "no two nodes polled at once (Telegram ends the older poll with 409)"
    );
    let (dead, alive): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(|n| n.id == owner);
    // The owner is killed at the worst instant: the first later player's
    // daily committed and its answer on the wire, its update not yet
    // confirmed. The other node takes the slot, polls, and is sent that
    // update (and the rest of the batch) again.
    let mut dead = dead.into_iter().next().expect("the owner");
    telegram.kill_on_answer(dead.child.id().expect("running"), 600);
    for p in players(600) {
        telegram.text(p, "/daily");
    }
    let status = tokio::time::timeout(wait, dead.child.wait())
        .await
        .expect("the owner is killed as it answers")
        .unwrap();
    assert!(!status.success(), "killed: {status:?}");
    telegram
        .wait_for(
            wait,
            "every later player's reward, from the other node",
            |f| players(600).iter().all(|p| !f.said(*p).is_empty()),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in players(500).into_iter().chain(players(600)) {
        let said = telegram.said(p);
        assert!(said[0].starts_with("+100 gold"), "{said:?}");
        if p < 600 {
            assert_eq!(said.len(), 1, "player {p} answered once: {said:?}");
        } else {
            // An update sent again is answered again, with the first reply.
            assert!(said.iter().all(|m| *m == said[0]), "player {p}: {said:?}");
        }
        let balance =
            json!({"guild_id": BOT_ID.to_string(), "user_id": p.to_string(), "command": "balance"});
        let reply = post_command(&reqwest::Client::new(), &alive[0].base, TOKEN, &balance).await;
        assert_eq!(
            reply["data"]["gold"],
            STARTING_GOLD + 100,
            "paid once: {reply}"
        );
    }
    drop(alive);
    db.drop_db().await;
}

/// The slot whose owner runs a workflow's queue.
fn workflow_slot(workflow: &str) -> u32 {
    actors::game::generation::workflow::Workflow::intern(workflow).slot(SLOTS)
}

async fn slot_owner(db: &TestDb, cluster: &str, slot: u32) -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar(
        "SELECT owner FROM cluster_leases WHERE cluster = $1 AND slot = $2 AND expires_at > now()",
    )
    .bind(cluster)
    .bind(slot as i32)
    .fetch_optional(&mut conn)
    .await
    .unwrap()
    .flatten()
}

/// Every job in storage: (id, status, result).
async fn stored_jobs(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_as("SELECT id, status, result FROM jobs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// The shipped image workflow with paid jobs only (no free allowance, no
/// trial), `concurrency` and `queue_length` its own, under `dir`: the
/// workflows dir and the credits file.
fn paid_image_workflow(
    dir: &std::path::Path,
    concurrency: usize,
    queue_length: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let workflows = dir.join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let toml = std::fs::read_to_string(format!("{root}/assets/workflows/image.toml")).unwrap();
    for shipped in ["daily_free = 5", "concurrency = 2", "queue_length = 1000"] {
        assert!(toml.contains(shipped), "image.toml changed: {shipped}");
    }
    let toml = toml
        .replace("daily_free = 5", "daily_free = 0")
        .replace("concurrency = 2", &format!("concurrency = {concurrency}"))
        .replace(
            "queue_length = 1000",
            &format!("queue_length = {queue_length}"),
        );
    std::fs::write(workflows.join("image.toml"), toml).unwrap();
    std::fs::copy(
        format!("{root}/assets/workflows/image.json"),
        workflows.join("image.json"),
    )
    .unwrap();
    let credits = dir.join("credits.toml");
    std::fs::write(
        &credits,
        "[trial]\ndays = 2\ndaily_free = 0\n\n[vip]\ndaily_free = 0\n",
    )
    .unwrap();
    (workflows, credits)
}

/// Nodes `ids` rendering on one fake ComfyUI with `paid_image_workflow`,
/// their results in one shared directory (`files/results`), once every
/// slot is owned: the fake, the files, the nodes.
async fn start_rendering(
    db: &TestDb,
    cluster: &str,
    ids: &[&str],
    concurrency: usize,
    queue_length: usize,
) -> (
    support::fake_comfyui::FakeComfy,
    tempfile::TempDir,
    Vec<Node>,
) {
    let comfy = support::fake_comfyui::FakeComfy::start().await;
    let files = tempfile::tempdir().unwrap();
    let (workflows, credits) = paid_image_workflow(files.path(), concurrency, queue_length);
    let shared = files.path().join("results");
    std::fs::create_dir(&shared).unwrap();
    let renderer = format!("comfyui:{}", comfy.url());
    let extra = [
        "--renderer",
        &renderer,
        "--workflows-dir",
        workflows.to_str().unwrap(),
        "--credits-file",
        credits.to_str().unwrap(),
    ];
    let env = [("KOKORO_RESULT_SECRET", "cluster-test-result-secret")];
    let mut nodes = Vec::new();
    for id in ids {
        let data = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&shared, data.path().join("results")).unwrap();
        nodes.push(start_node_in(data, db, cluster, id, &nats_url(), &extra, &env).await);
    }
    await_owners(db, cluster, Duration::from_secs(20), |by| {
        by.len() == ids.len()
    })
    .await;
    (comfy, files, nodes)
}

/// Generation in cluster mode: three nodes render on one ComfyUI (a fake
/// as harsh as it: no dedupe of prompt ids, one prompt at a time). The
/// workflow's queue runs on one node, so ComfyUI never holds more than
/// the workflow's concurrency however many nodes take jobs; `jobs` on
/// another node says where a job stands; the queue's node is killed
/// mid-render, another takes the queue up and follows the prompts in
/// flight instead of submitting them again; every job is rendered once,
/// closed once, charged once, its result in the shared results volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflows_queue_runs_on_one_node_and_every_job_closes_once() {
    const JOBS_EACH: usize = 2;
    const PRICE: i64 = 10;
    const CREDITS: i64 = 50;
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let (comfy, files, mut nodes) =
        start_rendering(&db, &cluster, &["g1", "g2", "g3"], 2, 1000).await;
    let shared = files.path().join("results");
    let queue_slot = workflow_slot("image");
    let runner = slot_owner(&db, &cluster, queue_slot).await.unwrap();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let http = reqwest::Client::new();
    let codes = Mutex::new(Vec::new());

    // Every player asks on a node of its own choosing, all at once.
    let asks = (0..GUILDS).flat_map(|k| (0..JOBS_EACH).map(move |n| (k, n)));
    let asked = futures::future::join_all(asks.map(|(k, n)| {
        let req = json!({
            "id": format!("gen-{k}-{n}"), "guild_id": guild(k).to_string(), "user_id": "7",
            "command": "generate", "args": {"workflow": "image", "prompt": format!("a steady fox {k} {n}")},
        });
        let (http, bases, codes) = (&http, &bases, &codes);
        async move {
            let reply = until_settled(http, bases, k as usize + n, &req, codes, Duration::from_secs(30))
                .await
                .expect("generate settled");
            assert_eq!(reply["ok"], true, "{reply}");
            reply["data"]["job_id"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    assert_eq!(asked.len(), GUILDS as usize * JOBS_EACH);

    // A player whose guild another node serves: `jobs` there asks the
    // queue's node where its jobs stand.
    let mut told = false;
    for k in 0..GUILDS {
        let slot = ((guild(k) >> 22) % u64::from(SLOTS)) as u32;
        if slot_owner(&db, &cluster, slot).await.as_deref() == Some(&runner) {
            continue;
        }
        let req = json!({"guild_id": guild(k).to_string(), "user_id": "7", "command": "jobs"});
        // A job just queued is lined up by the queue's node a moment later.
        let asked = Instant::now();
        loop {
            let reply = until_settled(&http, &bases, 0, &req, &codes, Duration::from_secs(10))
                .await
                .unwrap();
            let jobs = reply["data"]["jobs"].as_array().unwrap().clone();
            let open: Vec<&Value> = jobs.iter().filter(|j| j["status"] != "done").collect();
            if open.is_empty() {
                break;
            }
            if open
                .iter()
                .all(|j| j["status"] == "running" || j["ahead"].is_u64())
            {
                told = true;
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "where the jobs stand, from the queue's node: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if told {
            break;
        }
    }
    assert!(
        told,
        "no player with open jobs on a node other than the queue's"
    );

    // One node says it runs the queue: the one serving its slot.
    for node in &nodes {
        let here = metric(&node.base, "kokoro_queue_here{queue=\"image\"}").await;
        assert_eq!(here, f64::from(node.id == runner), "{}", node.id);
    }
    // The queue's node dies at the worst instant: a render done and its
    // file being fetched, the job not closed, the next prompts in ComfyUI.
    let at = nodes.iter().position(|n| n.id == runner).unwrap();
    comfy.kill_on_view(nodes[at].child.id().expect("running"));
    let status = tokio::time::timeout(Duration::from_secs(30), nodes[at].child.wait())
        .await
        .expect("the queue's node is killed as it fetches a result")
        .unwrap();
    assert!(!status.success(), "killed: {status:?}");
    // No other node runs the queue before the lease runs out (3 s).
    let most_before = comfy.most_lined();
    let dead = nodes.remove(at);
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    // Every job ends, through whichever node takes the queue up.
    let started = Instant::now();
    loop {
        let jobs = stored_jobs(&db).await;
        if jobs.iter().all(|(_, status, _)| status != "queued") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "jobs still queued a minute after the kill: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (1..=2).contains(&most_before),
        "ComfyUI held {most_before} prompts at once from three nodes; the workflow's concurrency is 2"
    );
    let new_runner = slot_owner(&db, &cluster, queue_slot).await.unwrap();
    assert_ne!(new_runner, runner);
    for node in &nodes {
        let here = metric(&node.base, "kokoro_queue_here{queue=\"image\"}").await;
        assert_eq!(here, f64::from(node.id == new_runner), "{}", node.id);
    }

    // Rendered once: no prompt id submitted twice, before or after the kill.
    let submitted = comfy.submitted();
    let mut times: HashMap<String, usize> = HashMap::new();
    for (id, _, _) in &submitted {
        *times.entry(id.clone()).or_default() += 1;
    }
    let jobs = stored_jobs(&db).await;
    assert_eq!(jobs.len(), asked.len());
    for (id, status, result) in &jobs {
        assert_eq!(status, "done", "{id}: {result:?}");
        assert_eq!(
            times.get(&kokoro::comfyui::prompt_id(id)),
            Some(&1),
            "{id} submitted to ComfyUI other than once: {submitted:?}"
        );
        let file = result
            .as_deref()
            .and_then(|r| r.strip_prefix("results/"))
            .unwrap_or_else(|| panic!("{id}: result {result:?}"));
        assert!(
            shared.join(file).is_file(),
            "{id}: no {file} in the shared results"
        );
    }

    // Charged once each: every player paid exactly for their two jobs.
    for k in 0..GUILDS {
        let req = json!({"guild_id": guild(k).to_string(), "user_id": "7", "command": "credits"});
        let reply = until_settled(
            &http,
            &bases,
            k as usize,
            &req,
            &codes,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(
            reply["data"]["credits"],
            json!(CREDITS - PRICE * JOBS_EACH as i64),
            "guild {k}: {reply}"
        );
    }
    assert_only_retried(&codes.lock().unwrap());
    drop(dead);
    drop(nodes);
    assert_verify(&db, TOKEN).await;
    db.drop_db().await;
}

/// A Telegram update: `player` sends `/daily`.
fn daily_update(update_id: i64, player: i64) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_764_590_400,
        "chat": {"id": player, "type": "private", "first_name": "P"},
        "from": support::fake_telegram::user(player), "text": "/daily",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    }})
}

/// Telegram by webhook in cluster mode: Telegram sends each update to
/// whichever node its address leads to, so every node registers the one
/// secret and takes updates; a node that does not serve the bot's guild
/// forwards the commands to the one that does, and when that one dies the
/// other serves them once it has taken the slot. Every player is paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telegram_webhook_updates_are_taken_by_every_node() {
    use support::fake_telegram::{FakeTelegram, BOT_ID, TOKEN as BOT_TOKEN};
    const SECRET: &str = "cluster-webhook-secret_0123456789";
    const HOOK: &str = "https://bot.example/telegram/hook";
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let nats = nats_url();
    let telegram = FakeTelegram::start().await;
    let mut nodes = Vec::new();
    for id in ["w0", "w1"] {
        let flags = [
            "--telegram-api-url",
            &telegram.url,
            "--telegram-webhook",
            HOOK,
        ];
        let env = [
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
            ("KOKORO_TELEGRAM_WEBHOOK_SECRET", SECRET),
        ];
        nodes.push(start_node_with(&db, &cluster, id, &nats, &flags, &env).await);
    }
    await_owners(&db, &cluster, Duration::from_secs(15), |by| by.len() == 2).await;
    let wait = Duration::from_secs(20);
    telegram
        .wait_for(wait, "both nodes' setWebhook", |f| {
            f.calls("setWebhook").len() >= 2
        })
        .await;
    for set in telegram.calls("setWebhook") {
        assert_eq!(set.body["url"], HOOK);
        assert_eq!(
            set.body["secret_token"], SECRET,
            "one secret for every node"
        );
    }
    assert!(telegram.calls("getUpdates").is_empty(), "no polling");
    let http = reqwest::Client::new();
    let deliver = |base: String, secret: &'static str, update: Value| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/telegram/hook"))
                .header("X-Telegram-Bot-Api-Secret-Token", secret)
                .json(&update)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    for node in &nodes {
        let status = deliver(node.base.clone(), "forged", daily_update(1, 699)).await;
        assert_eq!(status, 401, "a forged update is refused by {}", node.id);
    }
    // Telegram's delivery: the same update again until a node answers 2xx
    // (to whichever node the address leads to); a player told to try
    // again sends a new /daily.
    let update_ids = AtomicUsize::new(10);
    let play = |player: i64, nodes: Vec<String>| {
        let (telegram, update_ids) = (&telegram, &update_ids);
        async move {
            let started = Instant::now();
            let mut n = player as usize;
            loop {
                assert!(started.elapsed() < wait, "player {player} never paid");
                let id = update_ids.fetch_add(1, Ordering::Relaxed) as i64;
                let update = daily_update(id, player);
                let before = telegram.said(player).len();
                while deliver(nodes[n % nodes.len()].clone(), SECRET, update.clone()).await != 200 {
                    assert!(started.elapsed() < wait, "update {id} never taken");
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Taken (200) only once handled: its answer is sent.
                let said = telegram.said(player);
                assert!(said.len() > before, "update {id} taken but not answered");
                if said.iter().any(|m| m.starts_with("+100 gold")) {
                    return;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    futures::future::join_all((700..710).map(|p| play(p, bases.clone()))).await;
    assert!(
        metric(&bases[0], "kokoro_cluster_forwarded_total").await
            + metric(&bases[1], "kokoro_cluster_forwarded_total").await
            > 0.0,
        "updates that reached the node without the bot's guild were forwarded"
    );

    // The node serving the bot's guild dies; the other takes updates on.
    let bot_slot = ((BOT_ID as u64 >> 22) % u64::from(SLOTS)) as u32;
    let owner = slot_owner(&db, &cluster, bot_slot).await.unwrap();
    let (dead, alive): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(|n| n.id == owner);
    let dead = dead.into_iter().next().unwrap();
    signal(&dead, "-9");
    let survivor = vec![alive[0].base.clone()];
    futures::future::join_all((800..810).map(|p| play(p, survivor.clone()))).await;
    for p in (700..710).chain(800..810) {
        let balance =
            json!({"guild_id": BOT_ID.to_string(), "user_id": p.to_string(), "command": "balance"});
        let reply = post_command(&http, &alive[0].base, TOKEN, &balance).await;
        assert_eq!(
            reply["data"]["gold"],
            STARTING_GOLD + 100,
            "player {p} paid once: {reply}"
        );
    }
    drop(dead);
    drop(alive);
    db.drop_db().await;
}

/// Admission and cancels across nodes: a full queue is full on every node
/// (the queue's node tells its depth), and a cancel on another node stops
/// the job where it runs and frees its place there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_is_full_on_every_node_and_a_cancel_anywhere_frees_it() {
    let db = TestDb::new(Backend::Postgres).await;
    let cluster = cluster_name();
    let (comfy, _files, nodes) = start_rendering(&db, &cluster, &["q1", "q2"], 1, 2).await;
    let runner = slot_owner(&db, &cluster, workflow_slot("image"))
        .await
        .unwrap();
    let here = nodes.iter().find(|n| n.id == runner).unwrap();
    let other = nodes.iter().find(|n| n.id != runner).unwrap();
    // A player on each node (their guild served there), asking there.
    let mut on: HashMap<String, String> = HashMap::new();
    for k in 0..GUILDS {
        let slot = ((guild(k) >> 22) % u64::from(SLOTS)) as u32;
        if let Some(owner) = slot_owner(&db, &cluster, slot).await {
            on.entry(owner).or_insert_with(|| guild(k).to_string());
        }
    }
    let http = reqwest::Client::new();
    let ask = |node: &Node, command: &str, args: Value| {
        let body =
            json!({"guild_id": on[&node.id], "user_id": "7", "command": command, "args": args});
        let (http, base) = (http.clone(), node.base.clone());
        async move { post_command(&http, &base, TOKEN, &body).await }
    };
    let generate = |n: u32| json!({"workflow": "image", "prompt": format!("a slow owl {n}")});
    // Two jobs fill the queue: one from each node's player (one rendering,
    // one waiting).
    let reply = ask(here, "generate", generate(0)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = ask(other, "generate", generate(1)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let waiting = reply["data"]["job_id"].as_str().unwrap().to_owned();
    // Once the queue's node has told its depth (2), the other node, which
    // queued only one of them, is full too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = ask(other, "generate", generate(2)).await;
    assert_eq!(reply["error"]["code"], "busy", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full"),
        "{reply}"
    );
    // The waiting job cancelled on the other node: gone from the line on
    // the queue's node, its credits back, its place free again.
    let reply = ask(other, "cancel", json!({"job_id": waiting})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let started = Instant::now();
    loop {
        let reply = ask(other, "generate", generate(3)).await;
        if reply["ok"] == true {
            break;
        }
        assert_eq!(reply["error"]["code"], "busy", "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cancelled job's place never came free: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ComfyUI was never sent the cancelled job, and renders the others.
    let cancelled = kokoro::comfyui::prompt_id(&waiting);
    let started = Instant::now();
    while comfy.submitted().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the third job never rendered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        comfy.submitted().iter().all(|(id, _, _)| *id != cancelled),
        "a job cancelled while waiting was rendered"
    );
    assert!(comfy.most_lined() <= 1, "concurrency 1 over two nodes");
    let started = Instant::now();
    while stored_jobs(&db)
        .await
        .iter()
        .any(|(_, status, _)| status == "queued")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "jobs never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<String> = stored_jobs(&db).await.into_iter().map(|j| j.1).collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "done").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "cancelled").count(),
        1,
        "{statuses:?}"
    );
    for node in [here, other] {
        let reply = ask(node, "credits", json!({})).await;
        assert_eq!(
            reply["data"]["credits"],
            json!(40),
            "one job charged each, the cancelled one not: {reply}"
        );
    }
    // A job queued whose word to the queue's node was lost (here: never
    // sent) is found in storage by the queue's own look, every 5 s.
    let lost = "j0000000000000000000000000000051a";
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, guild_id, user_id, workflow, prompt, cost, status, created_ms) \
             VALUES ($1, $2, 7, 'image', 'a word lost', 0, 'queued', 0)",
        )
        .bind(lost)
        .bind(on[&other.id].parse::<i64>().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let started = Instant::now();
    loop {
        let jobs = stored_jobs(&db).await;
        let status = jobs.iter().find(|j| j.0 == lost).map(|j| j.1.clone());
        if status.as_deref() == Some("done") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a job whose word was lost never rendered: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(nodes);
    db.drop_db().await;
}
