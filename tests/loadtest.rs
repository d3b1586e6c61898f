//! `kokoro loadtest` as a load tester would rely on it: a short run reports
//! what it measured and passes its invariant check; a store that loses writes
//! fails the check with the players named; the HTTP target works against a
//! running server; a broken threshold fails the exit code.

mod support;

use std::path::Path;
use std::sync::Arc;

use actors::{Runtime, RuntimeConfig};
use kokoro::loadtest::scenario::{LoadModel, Scenario};
use kokoro::loadtest::{run_scenario, Options};
use support::*;

fn smoke(seconds: f64) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let mut s = Scenario::load(&path).expect("smoke scenario");
    s.duration_secs = seconds;
    s
}

both_backends!(
    a_smoke_run_reports_and_passes_its_invariant_check,
    |backend| {
        let database_url = (backend == Backend::Postgres).then(pg_admin_url);
        let opts = Options {
            database_url,
            ..Default::default()
        };
        let mut report = run_scenario(&smoke(1.5), &opts).await.expect("run");
        report.judge(&Default::default(), &["errors < 0.1%".parse().unwrap()]);
        assert!(report.ok > 100, "the run did work: {} ok", report.ok);
        assert!(
            report.rate > 0.0
                && report.latency.p99_ms > 0.0
                && report.latency.p50_ms <= report.latency.p99_ms
        );
        assert!(!report.timeline.is_empty() && report.by_command.contains_key("give"));
        assert!(
            report.by_command.contains_key("message"),
            "roleplay posts are in the mix"
        );
        assert!(
            report
                .invariants
                .checked
                .iter()
                .any(|c| c.starts_with("roleplay:") && !c.contains(" 0 XP")),
            "posts earned XP: {:?}",
            report.invariants.checked
        );
        assert!(
            report.invariants.violations.is_empty(),
            "{:?}",
            report.invariants.violations
        );
        assert!(
            report
                .invariants
                .checked
                .iter()
                .any(|c| c.contains("0 missing")),
            "{:?}",
            report.invariants.checked
        );
        assert!(report.passed());
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "rate",
            "latency",
            "errors",
            "timeline",
            "spectrum",
            "invariants",
            "thresholds",
        ] {
            assert!(json.get(field).is_some(), "JSON report lacks {field}");
        }
        let html = kokoro::loadtest::html::render(&report);
        assert!(
            html.contains("<svg")
                && html.contains("Latency over time")
                && !html.contains("http://")
                && !html.contains("https://")
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_loses_writes_fails_the_check_and_names_the_players() {
    let opts = Options {
        lose_every: Some(100),
        ..Default::default()
    };
    let report = run_scenario(&smoke(1.5), &opts).await.expect("run");
    assert!(
        !report.invariants.violations.is_empty(),
        "lost writes must be caught"
    );
    assert!(
        report
            .invariants
            .violations
            .iter()
            .any(|v| v.contains("not in storage")),
        "{:?}",
        report.invariants.violations
    );
    assert!(
        !report.invariants.users.is_empty(),
        "the players involved are named"
    );
    assert!(
        report.invariants.users.iter().all(|u| u.contains('/')),
        "{:?}",
        report.invariants.users
    );
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_target_drives_a_running_server() {
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Arc::new(
        Runtime::start(
            db.store().await,
            RuntimeConfig {
                starting_gold: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    let token = "loadtest-token-0123456789";
    let admin_token = "loadtest-admin-token-0123456789";
    let app = kokoro::http::router(kokoro::http::AppState {
        runtime,
        token: Some(Arc::from(token)),
        admin_token: Some(Arc::from(admin_token)),
        payment_secret: None,
        results: None,
        doors: Default::default(),
    });
    let base = serve_app(app, std::time::Duration::from_secs(5)).await;

    let mut scenario = smoke(1.0);
    scenario.model = LoadModel::Closed {
        concurrency: 8,
        think_ms: 0,
    };
    // The smoke scenario sets its guilds' roleplay channels first: without
    // the admin token it is refused before any load.
    let no_admin = Options {
        target: Some(base.clone()),
        token: Some(token.into()),
        ..Default::default()
    };
    let err = run_scenario(&scenario, &no_admin)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("KOKORO_ADMIN_TOKEN"), "{err}");
    let opts = Options {
        target: Some(base.clone()),
        token: Some(token.into()),
        admin_token: Some(admin_token.into()),
        ..Default::default()
    };
    let report = run_scenario(&scenario, &opts).await.expect("run");
    assert!(report.target.starts_with("HTTP http://127.0.0.1:"));
    assert!(report.ok > 50, "{} ok", report.ok);
    assert!(!report.errors.contains_key("unauthorized"));
    assert!(
        report.invariants.violations.is_empty(),
        "{:?}",
        report.invariants.violations
    );
    assert!(
        report.invariants.checked[0].contains("0 answered differently"),
        "{:?}",
        report.invariants.checked
    );

    let remote = Options {
        target: Some("http://192.0.2.1:8080".into()),
        token: Some(token.into()),
        ..Default::default()
    };
    let err = run_scenario(&scenario, &remote).await.expect_err("refused");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
}

#[test]
fn a_broken_threshold_fails_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let run = |threshold: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kokoro"))
            .args([
                "loadtest",
                scenario.to_str().unwrap(),
                "--quiet",
                "--duration",
                "0.5",
                "--threshold",
                threshold,
            ])
            .arg("--html")
            .arg(dir.path().join("r.html"))
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let fail = run("p99 < 1us");
    assert_eq!(
        fail.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&fail.stdout)
    );
    assert!(String::from_utf8_lossy(&fail.stdout).contains("FAILED"));
    let pass = run("p99 < 60s");
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stdout)
    );
    assert!(dir.path().join("r.html").exists());
}

#[test]
fn a_malformed_scenario_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nusers = 10\nduration_secs = 1\n[load]\nmodel = \"open\"\nrate = -1\n[[mix]]\ncommand = \"balance\"\nweight = 100\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kokoro"))
        .args(["loadtest", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:6:") && err.contains("rate"), "{err}");
}
