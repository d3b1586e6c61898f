//! End to end with a real Prometheus: it scrapes a running kokoro while the
//! load tester drives it, evaluates our recording rules, and every query of
//! every dashboard panel returns data. Grafana cannot be installed here, so
//! this is how the dashboard is proven. Needs `prometheus` on PATH (Debian's
//! package; `.ci/run` installs it).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kokoro::loadtest::scenario::{LoadModel, Scenario};
use kokoro::loadtest::{run_scenario, Options};
use serde_json::Value;
use tokio::process::Command;

const TOKEN: &str = "prometheus-e2e-token-0123456789";
const ADMIN_TOKEN: &str = "prometheus-e2e-admin-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/kokoro.json"),
    )
    .unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            // A single kokoro has no cluster series: tests/cluster.rs
            // checks the Cluster row against real nodes.
            if t["expr"].as_str().unwrap().contains("kokoro_cluster_") {
                continue;
            }
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().replace("$instance", ".*"),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let prometheus =
        which("prometheus").expect("the prometheus binary is needed: apt-get install prometheus");
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let dir = &db.dir;
    // The Discord front door runs too, against a fake Discord, so the
    // Discord row of the dashboard has something to show.
    let discord = support::fake_discord::fake_discord(usize::MAX).await;
    let mut binary = support::kokoro_binary(&db, TOKEN);
    binary.env("DISCORD_TOKEN", "fake-token");
    // The scenario sets its guilds' roleplay channels as an admin.
    binary.env("KOKORO_ADMIN_TOKEN", ADMIN_TOKEN);
    let (_kokoro, base) = support::serve_binary(
        binary,
        &[
            "--renderer",
            "simulated",
            "--render-simulated-ms",
            "50",
            "--discord-proxy",
            &discord.base,
        ],
    )
    .await;
    let target = base.trim_start_matches("http://");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: kokoro\n    static_configs:\n      - targets: [\"{target}\"]\n",
        root.join("prometheus/kokoro.rules.yml").display(),
        root.join("prometheus/alerts.rules.yml").display(),
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let _prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");

    // Load over HTTP, as an integration would, while Prometheus scrapes.
    let path = root.join("scenarios/smoke.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    scenario.duration_secs = 6.0;
    scenario.model = LoadModel::Closed {
        concurrency: 8,
        think_ms: 1,
    };
    let opts = Options {
        target: Some(base.clone()),
        token: Some(TOKEN.into()),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    };
    let report = run_scenario(&scenario, &opts).await.expect("load run");
    assert!(report.ok > 100);

    let http = reqwest::Client::new();
    let query = |q: String| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q.as_str())])
                .send()
                .await
                .ok()?;
            let body: Value = resp.json().await.ok()?;
            let result = body["data"]["result"].as_array()?.clone();
            (!result.is_empty()).then_some(result)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing: Vec<(String, String)> = dashboard_exprs();
    missing.push(("scrape".into(), "up{job=\"kokoro\"} == 1".into()));
    while !missing.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (title, expr) in missing {
            if query(expr.clone()).await.is_none() {
                still.push((title, expr));
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard queries with no data from Prometheus: {missing:#?}"
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
