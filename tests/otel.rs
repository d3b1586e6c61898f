//! With `--features otel`, spans reach an OpenTelemetry collector: a fake
//! OTLP/HTTP collector on loopback receives the command's span (with its
//! fields) and the group-commit span that made it durable. Run with
//! `cargo nextest run --features otel`; `.ci/run` does.
#![cfg(feature = "otel")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::json;
use support::*;

const TOKEN: &str = "otel-test-token-0123456789";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_commit_spans_reach_the_collector() {
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Arc<Mutex<Vec<u8>>>>, body: Bytes| async move {
                    r.lock().unwrap().extend_from_slice(&body);
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::new(Backend::Sqlite).await;
    let (_kokoro, base) =
        serve_binary(kokoro_binary(&db, TOKEN), &["--otlp-endpoint", &collector]).await;
    let http = reqwest::Client::new();
    let body = json!({"guild_id": "1", "user_id": "2", "command": "daily"});
    let reply = post_command(&http, &base, TOKEN, &body).await;
    assert_eq!(reply["ok"], true, "{reply}");

    // The exporter sends in batches, every few seconds.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = received.lock().unwrap().clone();
        if contains(&seen, b"group_commit") && contains(&seen, b"daily") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(contains(&seen, b"command"), "the command span was exported");
    assert!(contains(&seen, b"daily"), "with its command field");
    assert!(contains(&seen, b"group_commit"), "and the commit's span");
    assert!(contains(&seen, b"kokoro"), "as service kokoro");
}
