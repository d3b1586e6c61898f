//! The SRE's view holds together: the dashboard is well-formed, and every
//! metric the dashboard and the alert rules name is exported by a running
//! kokoro and moves with what players do, so no panel is empty because a
//! metric was renamed.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use actors::{Runtime, RuntimeConfig};
use serde_json::{json, Value};
use support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join("grafana/dashboards/kokoro.json")).unwrap();
    serde_json::from_str(&text).expect("dashboard is valid JSON")
}

pub fn dashboard_exprs() -> Vec<String> {
    let d = dashboard();
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// Identifiers in PromQL or YAML text: metric names, recorded series, labels, functions.
fn identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            cur.push(c);
        } else if !cur.is_empty() {
            out.insert(std::mem::take(&mut cur));
        }
    }
    out
}

fn recorded_series() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("prometheus/kokoro.rules.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn the_dashboard_is_well_formed() {
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
    let provisioned =
        std::fs::read_to_string(root().join("grafana/provisioning/datasources/kokoro.yml"))
            .unwrap();
    for p in panels {
        let id = p["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        let title = p["title"].as_str().unwrap().to_owned();
        assert!(
            w > 0 && h > 0 && x >= 0 && y >= 0 && x + w <= 24,
            "{title}: bad grid position {g}"
        );
        for (bx, by, bw, bh, other) in &boxes {
            let overlap = x < bx + bw && *bx < x + w && y < by + bh && *by < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((x, y, w, h, title.clone()));
        if p["type"] == "row" {
            continue;
        }
        let uid = p["datasource"]["uid"].as_str().unwrap();
        assert!(
            provisioned.contains(&format!("uid: {uid}")),
            "{title}: datasource {uid} is not provisioned"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], json!(uid));
            assert!(
                t["expr"].as_str().unwrap().contains("$instance"),
                "{title}: query ignores the instance variable"
            );
        }
    }
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "instance"),
        "template variable for the instance"
    );
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Service overview",
            "Actors and mailboxes",
            "Persistence (group commit)",
            "Queues (generation and arena)",
            "Discord",
            "Cluster",
            "Process"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_is_exported_and_moves() {
    let db = TestDb::new(Backend::Sqlite).await;
    kokoro::telemetry::prometheus();
    let config = RuntimeConfig {
        jobs: actors::config::JobsConfig {
            render: Some(Arc::new(actors::job_queue::SimulatedRender::new(
                std::time::Duration::from_millis(5),
                0,
            ))),
        },
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
    let scrape = || async { kokoro::telemetry::render(&runtime).await };

    let before = scrape().await;
    for u in 1..=20 {
        runtime.dispatch(cmd(u, "balance", json!({}))).await;
    }
    runtime
        .dispatch(cmd(1, "give", json!({"to": "2", "amount": 5})))
        .await;
    runtime
        .dispatch(cmd(1, "buy", json!({"item": "bait"})))
        .await;
    let job = runtime
        .dispatch(cmd(
            3,
            "generate",
            json!({"workflow": "image", "prompt": "a fox"}),
        ))
        .await;
    assert!(job.ok, "{job:?}");
    let mut rendered = false;
    for _ in 0..500 {
        let jobs = runtime.dispatch(cmd(3, "jobs", json!({}))).await;
        if jobs.data["jobs"][0]["status"] == "done" {
            rendered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(rendered, "the job was rendered");
    let after = scrape().await;

    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let ok = r#"kokoro_commands_total{command="balance",outcome="ok"}"#;
    assert_eq!(
        value(&after, ok) - value(&before, ok),
        20.0,
        "command counter moved by what the test did"
    );
    let count = r#"kokoro_command_duration_seconds_count{command="balance"}"#;
    assert_eq!(
        value(&after, count) - value(&before, count),
        20.0,
        "latency histogram moved too"
    );
    assert!(value(&after, "kokoro_commit_batch_size_count") >= 1.0);
    let done = r#"kokoro_jobs_total{queue="image",outcome="done"}"#;
    assert_eq!(
        value(&after, done) - value(&before, done),
        1.0,
        "the job counted once"
    );
    let waited = r#"kokoro_queue_wait_seconds_count{queue="image"}"#;
    assert_eq!(value(&after, waited) - value(&before, waited), 1.0);

    let exported: BTreeSet<String> = after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let recorded = recorded_series();
    let mut sources = dashboard_exprs();
    for f in ["prometheus/kokoro.rules.yml", "prometheus/alerts.rules.yml"] {
        sources.push(std::fs::read_to_string(root().join(f)).unwrap());
    }
    for text in &sources {
        for name in identifiers(text) {
            if name.contains(':') && name.contains("kokoro_") {
                assert!(
                    recorded.contains(&name),
                    "{name} is used but no recording rule defines it"
                );
            } else if only_while_serving(&name) {
                // A histogram is queried by its series' names.
                let metric = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                assert!(
                    actors::telemetry::CATALOGUE
                        .iter()
                        .any(|(n, _, _)| *n == metric),
                    "{name} is used by the dashboard or rules but is not in the catalogue"
                );
            } else if name.starts_with("kokoro_") {
                assert!(
                    exported.contains(&name),
                    "{name} is used by the dashboard or rules but kokoro does not export it"
                );
            }
        }
    }
    // The Discord and Telegram metrics exist only with their front door
    // running, the backup metrics only while `serve` takes backups:
    // tests/discord.rs, tests/telegram.rs, tests/operations.rs and
    // tests/prometheus_e2e.rs prove those; the role metrics move only in
    // guilds with role rules (tests/roles.rs).
    for (name, kind, _) in actors::telemetry::CATALOGUE
        .iter()
        .filter(|(n, _, _)| !only_while_serving(n))
    {
        let exposed = match kind {
            actors::telemetry::Kind::Histogram => format!("{name}_count"),
            _ => (*name).to_owned(),
        };
        assert!(
            exported.contains(&exposed),
            "catalogued {name} is not exported"
        );
    }
    assert!(
        !after.contains("user=") && !after.contains("guild="),
        "no per-user or per-guild label"
    );
    // Queue waits are measured up to an hour, so the two-minute objective
    // of the wait alert can be seen broken.
    assert!(
        after.contains("kokoro_queue_wait_seconds_bucket{queue=\"image\",le=\"3600\"}"),
        "queue waits have buckets past the objective"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_go_to_daily_files_as_json_without_secrets() {
    let db = TestDb::new(Backend::Sqlite).await;
    let logs = db.dir.path().join("logs");
    let token = "log-test-secret-token-0123456789";
    let mut binary = kokoro_binary(&db, token);
    binary
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::null());
    let (mut child, base) = serve_binary(binary, &["--log-dir", logs.to_str().unwrap()]).await;
    let body =
        json!({"guild_id": "1", "user_id": "2", "command": "buy", "args": {"item": "unicorn"}});
    let reply = post_command(&reqwest::Client::new(), &base, token, &body).await;
    assert_eq!(reply["error"]["code"], "not_found");
    // SIGTERM: a graceful stop flushes the log writer.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    child.wait().await.unwrap();

    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("kokoro.") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "kokoro started"),
        "start-up report is logged"
    );
    assert!(
        !text.contains(token),
        "the API token never reaches the logs"
    );
}

/// Records span names and follows-from links, to check how a command's
/// trace reaches the transaction that made it durable.
#[derive(Default, Clone)]
struct Links {
    names: Arc<std::sync::Mutex<std::collections::HashMap<u64, &'static str>>>,
    follows: Arc<std::sync::Mutex<Vec<(&'static str, &'static str)>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Links {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.names
            .lock()
            .unwrap()
            .insert(id.into_u64(), attrs.metadata().name());
    }

    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let names = self.names.lock().unwrap();
        let name = |id: &tracing::span::Id| names.get(&id.into_u64()).copied().unwrap_or("?");
        self.follows
            .lock()
            .unwrap()
            .push((name(span), name(follows)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_trace_links_to_the_group_commit_that_made_it_durable() {
    use tracing_subscriber::layer::SubscriberExt;
    let links = Links::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(links.clone()))
        .expect("this test's process has no other subscriber");
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Runtime::start(db.store().await, RuntimeConfig::default())
        .await
        .unwrap();
    let r = runtime.dispatch(cmd(1, "daily", json!({}))).await;
    assert!(r.ok);
    let follows = links.follows.lock().unwrap().clone();
    assert!(
        follows.contains(&("group_commit", "command")),
        "the batch's span follows from the command's: {follows:?}"
    );
}

/// Metrics that exist only with a front door running, or while `serve`
/// takes scheduled backups.
fn only_while_serving(name: &str) -> bool {
    use actors::telemetry::{
        BACKUP_PREFIX, CLUSTER_PREFIX, DISCORD_PREFIX, FRONT_DOOR_PREFIX, ROLE_PREFIX,
        TELEGRAM_PREFIX,
    };
    [
        CLUSTER_PREFIX,
        DISCORD_PREFIX,
        TELEGRAM_PREFIX,
        BACKUP_PREFIX,
        FRONT_DOOR_PREFIX,
        ROLE_PREFIX,
    ]
    .iter()
    .any(|p| name.starts_with(p))
}
