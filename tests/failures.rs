//! What players see when things break: a panicking handler hurts only its own
//! command, and when storage goes away commands fail cleanly with
//! `storage_unavailable`, memory never runs ahead of the database, and
//! service resumes by itself when storage returns.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::store::StoreOptions;
use actors::{ErrorCode, Runtime, RuntimeConfig};
use serde_json::json;
use sqlx::{Connection, Executor};
use support::*;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

both_backends!(
    a_panicking_handler_fails_one_command_and_reloads,
    |backend| {
        let db = TestDb::new(backend).await;
        let (config, explode) = exploding_clock();
        let rt = Runtime::start(db.store().await, config).await.unwrap();
        assert!(rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await.ok);
        assert!(rt.dispatch(cmd(2, "buy", json!({"item": "bait"}))).await.ok);
        let resident_before = rt.resident();

        explode.store(true, Ordering::SeqCst);
        let r = rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await;
        assert_eq!(r.code(), Some(ErrorCode::Internal), "{r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            rt.resident(),
            resident_before - 1,
            "the panicking player's actor was dropped"
        );

        let other = rt.dispatch(cmd(2, "buy", json!({"item": "bait"}))).await;
        assert!(
            other.ok && other.data["quantity"] == 2,
            "other players are untouched: {other:?}"
        );
        let me = rt.dispatch(cmd(1, "inventory", json!({}))).await;
        assert_eq!(
            me.data["items"][0]["quantity"], 1,
            "the failed purchase left no trace"
        );
        assert_eq!(gold(&rt.dispatch(cmd(1, "balance", json!({}))).await), 95);
        assert!(
            rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await.ok,
            "the player is served again"
        );
        db.drop_db().await;
    }
);

both_backends!(
    group_commit_restarted_after_a_panic_commits_what_it_held,
    |backend| {
        let db = TestDb::new(backend).await;
        let config = RuntimeConfig {
            // A long batch deadline, so the WriteSets below are still
            // waiting in group commit when its handler panics.
            commit: actors::group_commit::GroupCommitConfig {
                max_wait: Duration::from_millis(100),
                ..Default::default()
            },
            ..Default::default()
        };
        let rt = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
        let claims: Vec<_> = (1..=100)
            .map(|u| {
                let rt = rt.clone();
                tokio::spawn(async move { rt.dispatch(cmd(u, "daily", json!({}))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(rt.panic_system_actor_once("group_commit").await);
        for claim in claims {
            let r = tokio::time::timeout(Duration::from_secs(10), claim)
                .await
                .expect("a claim held across the restart is answered")
                .unwrap();
            assert!(r.ok, "every claim held across the restart commits: {r:?}");
        }
        let again = rt.dispatch(cmd(1, "balance", json!({}))).await;
        assert_eq!(gold(&again), 200, "paid once, durably");
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        db.drop_db().await;
    }
);

/// A runtime config whose clock panics once when the returned fuse is set:
/// a fault inside a command handler, on demand. The relay is slowed so only
/// commands read the clock.
fn exploding_clock() -> (RuntimeConfig, Arc<AtomicBool>) {
    let explode = Arc::new(AtomicBool::new(false));
    let fuse = explode.clone();
    let config = RuntimeConfig {
        clock: Arc::new(move || {
            if fuse.swap(false, Ordering::SeqCst) {
                panic!("injected fault inside a command handler");
            }
            1_700_000_000_000
        }),
        relay_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    (config, explode)
}

/// A loopback TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let up_rx = up.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut up = up_rx.clone();
                if !*up.borrow() {
                    continue; // dropped: the client sees its connection closed
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = up.wait_for(|v| !*v) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A way to make storage unavailable and bring it back, per backend.
enum Outage {
    /// Another process holds SQLite's write lock.
    SqliteLock(sqlx::SqliteConnection),
    Proxy(Proxy),
}

both_backends!(storage_outage_fails_cleanly_and_recovers, |backend| {
    let db = TestDb::new(backend).await;
    let opts = StoreOptions {
        acquire_timeout: Duration::from_millis(500),
        busy_timeout: Duration::from_millis(50),
        max_connections: 4,
    };
    let (store, outage_kind) = match backend {
        Backend::Sqlite => (db.store_with(&opts).await, None),
        Backend::Postgres => {
            let proxy = Proxy::start("127.0.0.1:5432".into()).await;
            let url = db
                .url
                .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
            let store = actors::Store::open(Some(&url), db.dir.path(), &opts)
                .await
                .unwrap();
            (store, Some(proxy))
        }
    };
    let config = RuntimeConfig {
        starting_gold: 1000,
        ..Default::default()
    };
    let rt = Runtime::start(store, config).await.unwrap();
    assert!(rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await.ok);

    // Storage goes away.
    let outage = match outage_kind {
        None => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            conn.execute("BEGIN EXCLUSIVE").await.unwrap();
            conn.execute("INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, at_ms) VALUES (0, 0, 'gold', 0, 0, 'lock', 0)").await.unwrap();
            Outage::SqliteLock(conn)
        }
        Some(proxy) => {
            proxy.set_up(false);
            Outage::Proxy(proxy)
        }
    };
    for _ in 0..3 {
        let r = rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await;
        assert_eq!(r.code(), Some(ErrorCode::StorageUnavailable), "{r:?}");
    }
    let r = rt.dispatch(cmd(1, "balance", json!({}))).await;
    assert_eq!(gold(&r), 995, "memory did not run ahead of the database");
    let ready = rt.readiness().await;
    assert!(
        ready.commits_failing && !ready.is_ready(),
        "writes failing means not ready, even while reads work: {ready:?}"
    );

    // Storage comes back; service resumes without a restart.
    match outage {
        Outage::SqliteLock(mut conn) => {
            conn.execute("ROLLBACK").await.unwrap();
        }
        Outage::Proxy(proxy) => {
            proxy.set_up(true);
            std::mem::forget(proxy);
        }
    }
    let mut resumed = None;
    for _ in 0..100 {
        let r = rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await;
        if r.ok {
            resumed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = resumed.expect("service resumed when storage returned");
    assert_eq!((gold(&r), r.data["quantity"].clone()), (990, json!(2)));
    assert!(rt.readiness().await.is_ready());
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    drop(rt);
    db.drop_db().await;
});

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_actor_logs_carries_the_commands_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("first subscriber in this test process");

    let db = TestDb::new(Backend::Sqlite).await;
    let (config, explode) = exploding_clock();
    let rt = Runtime::start(db.store().await, config).await.unwrap();
    rt.dispatch(cmd(41, "balance", json!({}))).await;
    explode.store(true, Ordering::SeqCst);
    let r = rt
        .dispatch(cmd_with_id(
            41,
            "trace-me-1",
            "buy",
            json!({"item": "bait"}),
        ))
        .await;
    assert_eq!(r.code(), Some(ErrorCode::Internal));

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("rule panicked"))
        .unwrap_or_else(|| panic!("no panic log in:\n{text}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &event["span"];
    assert_eq!(span["command"], "buy", "{line}");
    assert_eq!(span["user"], "41", "{line}");
    assert_eq!(span["guild"], GUILD.to_string(), "{line}");
    assert_eq!(span["command_id"], "trace-me-1", "{line}");
}

/// A process killed with SIGKILL may leave a COMMIT behind that the server
/// applies after the process is gone. A runtime started meanwhile must not
/// load a player before it lands: it would write over a balance the
/// ledger had moved (the chaos test caught one such overwrite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_starts_only_after_a_dead_predecessors_last_commit() {
    let db = TestDb::new(Backend::Postgres).await;
    let rt = Runtime::start(db.store().await, RuntimeConfig::default())
        .await
        .unwrap();
    let before = gold(&rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await);
    rt.shutdown().await;

    // The predecessor's last group commit, its COMMIT not yet read: a
    // session named as another kokoro process's, left in its transaction.
    let url = format!("{}?application_name=kokoro%204000000000%20", db.url);
    let mut predecessor = sqlx::PgConnection::connect(&url).await.unwrap();
    predecessor.execute("BEGIN").await.unwrap();
    predecessor
        .execute(
            format!("UPDATE users SET gold = gold + 7 WHERE guild_id = {GUILD} AND user_id = 1")
                .as_str(),
        )
        .await
        .unwrap();
    predecessor
        .execute(
            format!(
                "INSERT INTO ledger (guild_id, user_id, currency, amount, balance_after, reason, at_ms) \
                 SELECT guild_id, 1, 'gold', 7, gold, 'daily', 1 FROM users WHERE guild_id = {GUILD} AND user_id = 1"
            )
            .as_str(),
        )
        .await
        .unwrap();

    // Another kokoro's read-only snapshot (a backup) holds nothing up: it
    // has written nothing to land.
    let url = format!("{}?application_name=kokoro%204000000001%20", db.url);
    let mut backup = sqlx::PgConnection::connect(&url).await.unwrap();
    backup
        .execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    backup.execute("SELECT count(*) FROM users").await.unwrap();

    let store = db.store().await;
    let starting = tokio::spawn(Runtime::start(store, RuntimeConfig::default()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !starting.is_finished(),
        "the runtime waits while another kokoro has a transaction open"
    );
    predecessor.execute("COMMIT").await.unwrap();
    let rt = tokio::time::timeout(Duration::from_secs(5), starting)
        .await
        .expect("the runtime starts once the predecessor's commit landed, the backup still open")
        .unwrap()
        .unwrap();
    let after = gold(&rt.dispatch(cmd(1, "buy", json!({"item": "bait"}))).await);
    assert_eq!(
        after,
        before + 7 - 5,
        "the late commit is read, not overwritten"
    );
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    rt.shutdown().await;
    drop(predecessor);
    drop(backup);
    db.drop_db().await;
}
