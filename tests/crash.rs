//! Acknowledged means durable: start the real binary, stream commands at it,
//! `kill -9` it mid-stream, restart it, and check that every command it
//! answered "ok" is there (a retry with the same id returns the same reply)
//! and that every transfer either completed or never started.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "crash-test-token-0123456789";

fn request(client: usize, i: usize) -> Value {
    let user = (client % 8) + 1;
    let (command, args) = match i % 3 {
        0 => (
            "give",
            json!({"to": ((client + i) % 8 + 11).to_string(), "amount": 1 + i % 20}),
        ),
        1 => ("buy", json!({"item": "bait", "quantity": 1})),
        _ => ("daily", json!({})),
    };
    json!({"id": format!("c{client}-{i}"), "guild_id": "77", "user_id": user.to_string(), "command": command, "args": args})
}

both_backends!(acknowledged_commands_survive_kill_9, |backend| {
    let db = TestDb::new(backend).await;
    let (mut server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
    let http = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<(Value, Value)>>> = Arc::default();
    let clients: Vec<_> = (0..24)
        .map(|c| {
            let (http, base, acked) = (http.clone(), base.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0..10_000 {
                    let req = request(c, i);
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
                    }
                }
            })
        })
        .collect();
    // Let the stream get going, then pull the plug mid-stream.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.start_kill().expect("SIGKILL");
    server.wait().await.unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 300,
        "the stream was running when the server died ({} acked)",
        acked.len()
    );

    let (_server, base) = serve_binary(kokoro_binary(&db, TOKEN), &[]).await;
    for (req, first) in &acked {
        let again = post_command(&http, &base, TOKEN, req).await;
        assert_eq!(
            &again, first,
            "acknowledged command {} was lost or changed by the crash",
            req["id"]
        );
    }
    // Start-up credited every transfer the crash left in flight: the books balance.
    let check = kokoro_binary(&db, TOKEN)
        .arg("check")
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "kokoro check failed:\n{out}");
    assert!(out.contains(", 0 transfers in flight"), "{out}");
    db.drop_db().await;
});
