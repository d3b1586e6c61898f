//! Chaos, bounded and on loopback only: the real binary under a stream of
//! HTTP commands (each with an id, so its reply can be asked for again) is
//! killed with SIGKILL ten times at random moments; cut off from PostgreSQL
//! for ten seconds by a TCP proxy this test runs (the shared server is never
//! touched); run out of disk under SQLite on a small tmpfs; and stopped with
//! SIGTERM. Afterwards every command it acknowledged is there, with the
//! reply it gave (so it was durable when acknowledged), every transfer in
//! flight was credited at start-up, and `kokoro verify` passes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "chaos-test-token-0123456789";

type Acked = Arc<Mutex<Vec<(Value, Value)>>>;

/// A mix of writes: transfers, purchases, claims, new players.
fn request(run: &str, client: usize, i: usize) -> Value {
    let user = (client % 8) + 1;
    // Gives go up to players 11..18 (the sender's actor pairs the credit)
    // and, every other time, to another of 1..8, often a lower key (the
    // recipient's actor pairs the debit): both ways of a give's one
    // transaction are killed mid-flight.
    let to = if (i / 4).is_multiple_of(2) {
        (client + i) % 8 + 11
    } else {
        // (user + k) % 8 + 1 is never the sender itself for k in 0..7.
        (user + (i / 8) % 7) % 8 + 1
    };
    let (command, args) = match i % 4 {
        0 => ("give", json!({"to": to.to_string(), "amount": 1 + i % 20})),
        1 => ("buy", json!({"item": "bait", "quantity": 1})),
        2 => ("daily", json!({})),
        _ => ("balance", json!({})),
    };
    let user = if i % 4 == 3 {
        1000 + client * 10_000 + i
    } else {
        user
    };
    json!({"id": format!("{run}-c{client}-{i}"), "guild_id": "77", "user_id": user.to_string(), "command": command, "args": args})
}

/// Streams commands from `clients` tasks until `stop` or the server goes
/// away; every "ok" is kept with its request, and every other answer's
/// code counted.
struct Stream {
    acked: Acked,
    refused: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sent: Arc<AtomicUsize>,
}

impl Stream {
    fn start(base: &str, run: &str, clients: usize) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let acked: Acked = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let sent: Arc<AtomicUsize> = Arc::default();
        let tasks = (0..clients)
            .map(|c| {
                let (http, base, run) = (http.clone(), base.to_owned(), run.to_owned());
                let (acked, refused, stop, sent) =
                    (acked.clone(), refused.clone(), stop.clone(), sent.clone());
                tokio::spawn(async move {
                    for i in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let req = request(&run, c, i);
                        sent.fetch_add(1, Ordering::Relaxed);
                        let Ok(resp) = http
                            .post(format!("{base}/v1/commands"))
                            .bearer_auth(TOKEN)
                            .json(&req)
                            .send()
                            .await
                        else {
                            return; // the server is gone
                        };
                        let Ok(reply) = resp.json::<Value>().await else {
                            return;
                        };
                        if reply["ok"] == true {
                            acked.lock().unwrap().push((req, reply));
                        } else {
                            let code = reply["error"]["code"].as_str().unwrap_or("?").to_owned();
                            refused.lock().unwrap().push(code);
                        }
                    }
                })
            })
            .collect();
        Self {
            acked,
            refused,
            stop,
            tasks,
            sent,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_acks(&self, n: usize) {
        for _ in 0..3000 {
            if self.acked() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} acknowledgements", self.acked());
    }

    async fn finish(self) -> (Vec<(Value, Value)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        let refused = std::mem::take(&mut *self.refused.lock().unwrap());
        (acked, refused)
    }
}

/// Asks every acknowledged command again: the same reply, so it is there.
async fn assert_durable(base: &str, acked: &[(Value, Value)]) {
    let http = reqwest::Client::new();
    for (req, first) in acked {
        let again = post_command(&http, base, TOKEN, req).await;
        assert_eq!(
            &again, first,
            "acknowledged command {} was lost or changed",
            req["id"]
        );
    }
}

async fn verify(db: &TestDb) {
    assert_verify(db, TOKEN).await;
}

both_backends!(
    ten_kill_9s_at_random_moments_lose_nothing_acknowledged,
    |backend| {
        let db = TestDb::new(backend).await;
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
        let mut all = Vec::new();
        for round in 0..10 {
            let (mut server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
            let stream = Stream::start(&base, &format!("r{round}"), 16);
            stream.wait_for_acks(20).await;
            let wait = rand::Rng::random_range(&mut rng, 50..600);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            server.start_kill().expect("SIGKILL");
            server.wait().await.unwrap();
            let (acked, _) = stream.finish().await;
            all.extend(acked);
        }
        assert!(all.len() >= 200, "{} acknowledged in all", all.len());
        let (_server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
        assert_durable(&base, &all).await;
        verify(&db).await;
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_in_flight_and_exits_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
    let stream = Stream::start(&base, "term", 24);
    stream.wait_for_acks(300).await;
    let pid = server.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), server.wait_with_output())
        .await
        .expect("it stops within 30 s")
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let (acked, refused) = stream.finish().await;
    assert!(
        refused
            .iter()
            .all(|c| c == "busy" || c.ends_with("claimed") || c == "insufficient_funds"),
        "{refused:?}"
    );
    let (_server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
    assert_durable(&base, &acked).await;
    verify(&db).await;
    db.drop_db().await;
}

/// A TCP proxy to PostgreSQL that can be cut: every connection dropped and
/// new ones refused until it is mended.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut: Arc<AtomicBool> = Arc::default();
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (c, g, upstream) = (cut.clone(), generation.clone(), upstream.to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound); // refused while cut
                    continue;
                }
                let mut cut_now = g.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_now.changed() => {} // both sides dropped
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_for_ten_seconds_loses_nothing_and_recovers_by_itself() {
    let db = TestDb::new(Backend::Postgres).await;
    // The test database, reached through the proxy.
    let (host_part, name) = db.url.rsplit_once('/').unwrap();
    let upstream = host_part.rsplit('@').next().unwrap().to_owned();
    let proxy = Proxy::start(&upstream).await;
    let user = host_part
        .split("//")
        .nth(1)
        .and_then(|s| s.split_once('@'))
        .map_or("postgres", |(u, _)| u);
    let through = format!("postgres://{user}@127.0.0.1:{}/{name}", proxy.port);
    let mut command = kokoro_binary(&db, TOKEN);
    command.env("DATABASE_URL", &through);
    let (_server, base) = serve_binary(command, &["--db-acquire-timeout-secs", "1"]).await;
    let stream = Stream::start(&base, "cut", 16);
    stream.wait_for_acks(300).await;
    let acked_before_cut = stream.acked();
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let acked_during = stream.acked() - acked_before_cut;
    proxy.mend();
    // It recovers by itself: acknowledgements resume.
    let resumed_from = stream.acked();
    stream.wait_for_acks(resumed_from + 200).await;
    let sent = stream.sent.load(Ordering::Relaxed);
    let (acked, refused) = stream.finish().await;
    assert!(
        acked_during < 200,
        "few acknowledgements while cut off: {acked_during} (those in flight as it was cut)"
    );
    let unavailable = refused
        .iter()
        .filter(|c| *c == "storage_unavailable" || *c == "busy")
        .count();
    assert!(unavailable > 0, "the cut was felt: {refused:?}");
    assert!(
        refused.iter().all(|c| matches!(
            c.as_str(),
            "storage_unavailable" | "busy" | "insufficient_funds" | "already_claimed"
        )),
        "only honest refusals: {refused:?}"
    );
    println!(
        "{sent} sent, {} acknowledged, {unavailable} storage_unavailable or busy",
        acked.len()
    );
    assert_durable(&base, &acked).await;
    verify(&db).await;
    db.drop_db().await;
}

/// A small tmpfs the test mounts, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill it up; it needs root (CAP_SYS_ADMIN)"
        );
        Self { dir }
    }
}

impl Drop for SmallDisk {
    /// Lazily: the killed server may still hold its files for a moment.
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_and_they_resume_when_space_returns() {
    let disk = SmallDisk::mount(48);
    let db = TestDb::new(Backend::Sqlite).await;
    let data = disk.dir.path().join("data");
    let mut command = kokoro_binary(&db, TOKEN);
    command
        .env("KOKORO_DATA_DIR", &data)
        .env("KOKORO_BACKUP_EVERY", "0");
    let (_server, base) = serve_binary(command, &[]).await;
    let stream = Stream::start(&base, "full", 16);
    stream.wait_for_acks(200).await;
    // Ballast fills the disk but for a sliver.
    let ballast = disk.dir.path().join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        // Until the disk says no (the server's writes race for the space).
        while fs_free(disk.dir.path()) > 128 * 1024 && f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // Writes run into the wall: refused as storage_unavailable, none lost.
    for _ in 0..3000 {
        if stream
            .refused
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "storage_unavailable")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        stream
            .refused
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "storage_unavailable"),
        "the full disk was felt"
    );
    let http = reqwest::Client::new();
    let read = post_command(
        &http,
        &base,
        TOKEN,
        &json!({"guild_id": "77", "user_id": "1", "command": "balance", "args": {}}),
    )
    .await;
    assert_eq!(read["ok"], true, "reads still answer: {read}");
    // Space returns: writes resume by themselves.
    std::fs::remove_file(&ballast).unwrap();
    let resumed_from = stream.acked();
    stream.wait_for_acks(resumed_from + 200).await;
    let (acked, refused) = stream.finish().await;
    assert!(
        refused.iter().all(|c| matches!(
            c.as_str(),
            "storage_unavailable" | "busy" | "insufficient_funds" | "already_claimed"
        )),
        "only honest refusals: {refused:?}"
    );
    assert_durable(&base, &acked).await;
    let out = {
        let mut c = kokoro_binary(&db, TOKEN);
        c.env("KOKORO_DATA_DIR", &data).arg("verify");
        c.output().await.unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(_server);
    db.drop_db().await;
}

/// Bytes free on the filesystem holding `path`.
fn fs_free(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}
