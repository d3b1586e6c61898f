//! Test support: a fresh store per test on either backend, and a macro that
//! runs one test body against real SQLite and real PostgreSQL.
//!
//! PostgreSQL is reached at `KOKORO_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own
//! database and drops it at the end.

#![allow(dead_code)]

pub mod fake_comfyui;
pub mod fake_discord;
pub mod fake_telegram;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use actors::store::{Store, StoreOptions};
use actors::{Command, CommandId, CommandKind, GuildId, Reply, UserId, UserKey};
use serde_json::Value;
use sqlx::{Connection, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("KOKORO_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test.
pub struct TestDb {
    pub backend: Backend,
    /// `sqlite:PATH` or `postgres://…/NAME`: what `DATABASE_URL` would hold.
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("kokoro.db").display());
                Self {
                    backend,
                    url,
                    dir,
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "kokoro_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL is needed for this test at {admin}: {e}")
                    });
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(b, _)| b)
                    .to_owned();
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("kokoro.db")
    }

    pub async fn store(&self) -> Store {
        self.store_with(&StoreOptions::default()).await
    }

    /// The runtime over this database, shareable between tasks.
    pub async fn runtime(&self, config: actors::RuntimeConfig) -> std::sync::Arc<actors::Runtime> {
        std::sync::Arc::new(
            actors::Runtime::start(self.store().await, config)
                .await
                .expect("runtime starts"),
        )
    }

    pub async fn store_with(&self, opts: &StoreOptions) -> Store {
        Store::open(Some(&self.url), self.dir.path(), opts)
            .await
            .expect("open store")
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        }
    }
}

/// Runs `$body` (an async block using `backend: Backend`) on both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Backend::Postgres).await
            }
        }
    };
}

pub const GUILD: i64 = 1000;

pub fn key(user: i64) -> UserKey {
    UserKey::new(GuildId::new(GUILD).unwrap(), UserId::new(user).unwrap())
}

pub fn cmd(user: i64, name: &str, args: Value) -> Command {
    Command {
        id: None,
        key: key(user),
        kind: CommandKind::parse(name, &args).expect("valid test command"),
    }
}

pub fn cmd_with_id(user: i64, id: &str, name: &str, args: Value) -> Command {
    Command {
        id: Some(id.parse::<CommandId>().unwrap()),
        ..cmd(user, name, args)
    }
}

/// Dispatches, retrying `busy` the way a well-behaved client honours Retry-After.
pub async fn dispatch_retrying(rt: &actors::Runtime, command: Command) -> Reply {
    for _ in 0..2000 {
        let r = rt.dispatch(command.clone()).await;
        if r.code() != Some(actors::ErrorCode::Busy) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("still busy after 2000 retries")
}

pub fn gold(r: &Reply) -> i64 {
    r.data["gold"]
        .as_i64()
        .unwrap_or_else(|| panic!("reply has no gold: {r:?}"))
}

/// Runs `command` (see `kokoro_binary`) as `serve` on a free loopback port,
/// plus `extra` flags. Returns the process (killed when dropped) and its base
/// URL, read from the address line it prints once it is listening.
pub async fn serve_binary(
    mut command: tokio::process::Command,
    extra: &[&str],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    command
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the kokoro binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("kokoro printed its address within 30 s")
        .expect("read stdout")
        .expect("an address line");
    let base = line
        .strip_prefix("kokoro listening on ")
        .expect("the address line")
        .to_owned();
    (child, base)
}

/// The `kokoro` binary with `db` as its storage, `token` as its API token
/// and new players starting with 1,000 gold.
pub fn kokoro_binary(db: &TestDb, token: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_kokoro"));
    c.env("KOKORO_API_TOKEN", token)
        .env("KOKORO_STARTING_GOLD", "1000")
        .env("RUST_LOG", "warn");
    // The data dir holds backups and keys on PostgreSQL too: the test's own.
    c.env("KOKORO_DATA_DIR", db.dir.path());
    match db.backend {
        Backend::Sqlite => c.env_remove("DATABASE_URL"),
        Backend::Postgres => c.env("DATABASE_URL", &db.url),
    };
    c
}

/// Runs `kokoro verify` on `db` and fails the test with its output unless
/// it passes.
pub async fn assert_verify(db: &TestDb, token: &str) {
    let out = kokoro_binary(db, token)
        .arg("verify")
        .output()
        .await
        .expect("kokoro verify runs");
    assert!(
        out.status.success(),
        "kokoro verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// POSTs a command body to `base` with `token`; the JSON reply.
pub async fn post_command(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> Value {
    http.post(format!("{base}/v1/commands"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON reply")
}

/// A PNG's header, enough for its format and size to be read.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend(w.to_be_bytes());
    v.extend(h.to_be_bytes());
    v.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

/// Runs one SQL statement as it is, on either backend: what a test does to
/// a store behind kokoro's back.
pub async fn sql(store: &actors::Store, statement: &str) {
    match store {
        actors::Store::Sqlite(p) => sqlx::query(statement).execute(p).await.map(|_| ()),
        actors::Store::Postgres(p) => sqlx::query(statement).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// kokoro's HTTP API over `runtime` on a free loopback port, with `token`
/// as the API token and `admin` as the admin token; its base URL.
pub async fn http_api(
    runtime: std::sync::Arc<actors::Runtime>,
    token: &str,
    admin: &str,
) -> String {
    let app = kokoro::http::router(kokoro::http::AppState {
        runtime,
        token: Some(std::sync::Arc::from(token)),
        admin_token: Some(std::sync::Arc::from(admin)),
        payment_secret: None,
        results: None,
        doors: Default::default(),
    });
    serve_app(app, std::time::Duration::from_secs(5)).await
}

/// Serves `app` with kokoro's own accept loop (closing connections that
/// send no request headers within `header_timeout`) on a free loopback
/// port; its base URL.
pub async fn serve_app(app: axum::Router, header_timeout: std::time::Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kokoro::http::serve(
        listener,
        app,
        header_timeout,
        std::future::pending(),
    ));
    base
}

/// POSTs a command with `token`: the status and the JSON reply.
pub async fn post_with(base: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/commands"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON reply"))
}

/// The data a decision reads (the shipped shop, an empty roster, the
/// default generation data), for tests that call the game's rules
/// directly: `Rules::default().context(id)` is what a player's actor
/// would pass, at instant 1 with no guild settings and no starting gold.
pub struct Rules {
    catalogue: actors::game::economy::shop::Catalogue,
    roster: actors::game::collection::roster::Roster,
    generation: actors::game::generation::GenerationData,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            catalogue: actors::game::economy::shop::Catalogue::shipped(),
            roster: actors::game::collection::roster::Roster::default(),
            generation: actors::game::generation::GenerationData::default(),
        }
    }
}

impl Rules {
    pub fn context(&self, fresh_id: u128) -> actors::game::Context<'_> {
        actors::game::Context {
            now_ms: 1,
            catalogue: &self.catalogue,
            roster: &self.roster,
            generation: &self.generation,
            guild: actors::game::guild::settings::GuildSettings::fallback(),
            starting_gold: 0,
            starting_credits: 0,
            starting_gems: 0,
            fresh_id,
            draw: 0,
        }
    }
}
