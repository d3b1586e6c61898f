//! The HTTP API as an integration would use it: bearer token, the documented
//! status codes, and bad input that is refused with a clear message and
//! leaves the database byte-for-byte unchanged.

mod support;

use std::sync::Arc;

use actors::{Runtime, RuntimeConfig};
use kokoro::http::{router, AppState};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "test-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-9876543210";
const PAYMENT_SECRET: &str = "whsec-test-0123456789";

struct Server {
    base: String,
    client: reqwest::Client,
    runtime: Arc<Runtime>,
}

async fn serve(db: &TestDb, token: Option<&str>) -> Server {
    kokoro::telemetry::prometheus();
    let config = RuntimeConfig {
        uploads: Some(actors::uploads::Uploads::new(db.dir.path().join("uploads"))),
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
    let app = router(AppState {
        runtime: runtime.clone(),
        token: token.map(Arc::from),
        admin_token: Some(Arc::from(ADMIN_TOKEN)),
        payment_secret: Some(Arc::from(PAYMENT_SECRET)),
        results: Some(kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap()),
        doors: Default::default(),
    });
    // kokoro's own accept loop, with a short header-read timeout.
    let base = serve_app(app, std::time::Duration::from_secs(1)).await;
    Server {
        base,
        client: reqwest::Client::new(),
        runtime,
    }
}

impl Server {
    async fn post_raw(&self, body: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/v1/commands", self.base))
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        self.post_raw(&body.to_string(), Some(TOKEN)).await
    }

    async fn post_admin(&self, body: Value) -> (StatusCode, Value) {
        self.post_raw(&body.to_string(), Some(ADMIN_TOKEN)).await
    }

    /// Delivers a payment event as the provider does, signed with `secret`.
    async fn webhook(&self, event: &Value, secret: &str) -> (StatusCode, Value) {
        let body = event.to_string();
        let resp = self
            .client
            .post(format!("{}/v1/payments/webhook", self.base))
            .header(
                kokoro::payments::SIGNATURE_HEADER,
                kokoro::payments::sign(secret.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A fingerprint of everything stored, to prove bad input wrote nothing.
async fn snapshot(db: &TestDb, rt: &Runtime) -> String {
    match db.backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for suffix in ["", "-wal"] {
                let p = format!("{}{suffix}", db.sqlite_path().display());
                all.extend(std::fs::read(&p).unwrap_or_default());
            }
            format!(
                "{:x}",
                all.iter()
                    .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b))
                        .wrapping_mul(0x100000001b3))
            )
        }
        Backend::Postgres => {
            let actors::Store::Postgres(pool) = rt.store() else {
                unreachable!()
            };
            let mut out = String::new();
            for table in [
                "users",
                "ledger",
                "inventory",
                "transfers",
                "commands",
                "guild_settings",
                "audit_log",
            ] {
                let row: (Option<String>,) = sqlx::query_as(&format!(
                    "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
                ))
                .fetch_one(pool)
                .await
                .unwrap();
                out.push_str(&format!("{table}={:?};", row.0));
            }
            out
        }
    }
}

both_backends!(bad_input_gets_its_code_and_changes_nothing, |backend| {
    let db = TestDb::new(backend).await;
    let s = serve(&db, Some(TOKEN)).await;
    let (status, r) = s
        .post(json!({"guild_id": "1", "user_id": "2", "command": "daily"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let before = snapshot(&db, &s.runtime).await;

    let cases: Vec<(&str, String, StatusCode, &str, &str)> = vec![
        ("malformed JSON", "{\"guild_id\": \"1\",".into(), StatusCode::BAD_REQUEST, "invalid_argument", "malformed"),
        ("not an object", "[1,2]".into(), StatusCode::BAD_REQUEST, "invalid_argument", "malformed"),
        ("unknown field", json!({"guild_id":"1","user_id":"2","command":"daily","admin":true}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "admin"),
        ("unknown command", json!({"guild_id":"1","user_id":"2","command":"rob_bank"}).to_string(), StatusCode::NOT_FOUND, "unknown_command", "rob_bank"),
        ("numeric guild id", json!({"guild_id":1,"user_id":"2","command":"daily"}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "guild_id"),
        ("non-decimal user id", json!({"guild_id":"1","user_id":"0x2","command":"daily"}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "user_id"),
        ("id over i64", json!({"guild_id":"1","user_id":"99999999999999999999","command":"daily"}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "user_id"),
        ("numeric recipient", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":3,"amount":5}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "to"),
        ("negative amount", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"3","amount":-5}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "amount"),
        ("zero amount", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"3","amount":0}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "amount"),
        ("huge amount", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"3","amount":9223372036854775807i64}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "amount"),
        ("fractional amount", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"3","amount":2.5}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "amount"),
        ("string amount", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"3","amount":"5"}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "amount"),
        ("self give", json!({"guild_id":"1","user_id":"2","command":"give","args":{"to":"2","amount":5}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "yourself"),
        ("bad idempotency key", json!({"id":"has space","guild_id":"1","user_id":"2","command":"daily"}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "id"),
        ("bad item name", json!({"guild_id":"1","user_id":"2","command":"buy","args":{"item":"DROP TABLE users;"}}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "item"),
        ("args not object", json!({"guild_id":"1","user_id":"2","command":"buy","args":"bait"}).to_string(), StatusCode::BAD_REQUEST, "invalid_argument", "args"),
    ];
    for (what, body, want_status, want_code, mentions) in cases {
        let (status, r) = s.post_raw(&body, Some(TOKEN)).await;
        assert_eq!(status, want_status, "{what}: {r}");
        assert_eq!(r["ok"], false, "{what}");
        assert_eq!(r["error"]["code"], want_code, "{what}: {r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(mentions),
            "{what}: message {msg:?} should mention {mentions:?}"
        );
    }
    let (status, r) = s.post_raw(&"x".repeat(64 * 1024), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r["ok"], false, "a JSON error body: {r}");
    assert_eq!(r["error"]["code"], "invalid_argument", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("16 KiB")),
        "{r}"
    );
    // Wrong routes and methods answer in the same JSON shape. A fresh
    // client: the server closes the connection that sent the oversized body
    // without reading it, and a pooled client could reuse it mid-close.
    let client = reqwest::Client::new();
    let missing = client
        .get(format!("{}/v2/commands", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let wrong = client
        .get(format!("{}/v1/commands", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(
        snapshot(&db, &s.runtime).await,
        before,
        "bad input changed the database"
    );
    db.drop_db().await;
});

both_backends!(the_documented_flow_works_over_http, |backend| {
    let db = TestDb::new(backend).await;
    let s = serve(&db, Some(TOKEN)).await;
    let (status, _) = s
        .post_raw(
            &json!({"guild_id":"1","user_id":"2","command":"balance"}).to_string(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post_raw(
            &json!({"guild_id":"1","user_id":"2","command":"balance"}).to_string(),
            Some("wrong-token-0123456789"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, r) = s.post(json!({"id": "i-1", "guild_id": "123", "user_id": "456", "command": "give", "args": {"to": "789", "amount": 50}})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["ok"].clone(),
            r["command"].clone(),
            r["data"]["gold"].clone()
        ),
        (json!(true), json!("give"), json!(50))
    );
    let (_, again) = s.post(json!({"id": "i-1", "guild_id": "123", "user_id": "456", "command": "give", "args": {"to": "789", "amount": 50}})).await;
    assert_eq!(again, r, "same id, same reply");
    let (status, r) = s.post(json!({"guild_id": "123", "user_id": "456", "command": "give", "args": {"to": "789", "amount": 51}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(r["error"]["code"], "insufficient_funds");
    s.runtime
        .settle(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let (_, r) = s
        .post(json!({"guild_id": "123", "user_id": "789", "command": "balance"}))
        .await;
    assert_eq!(r["data"]["gold"], 150);

    let get = |path: &'static str| {
        let c = s.client.clone();
        let url = format!("{}{path}", s.base);
        async move { c.get(url).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), StatusCode::OK);
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["ready"], true);
    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("kokoro_commands_total{command=\"give\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kokoro_commands_total{command=\"give\",outcome=\"insufficient_funds\"}")
    );
    assert!(
        metrics.contains("kokoro_command_duration_seconds_bucket{command=\"give\",le=\"0.0001\"}")
    );
    assert!(metrics.contains("kokoro_commit_batch_size"));
    assert!(!metrics.contains("user=\""), "no per-user label");
    db.drop_db().await;
});

#[tokio::test]
async fn without_a_configured_token_every_v1_route_is_401() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = serve(&db, None).await;
    let (status, r) = s
        .post_raw(
            &json!({"guild_id":"1","user_id":"2","command":"balance"}).to_string(),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(r["error"]["code"], "unauthorized");
}

both_backends!(
    admin_commands_need_the_admin_token_and_are_audited,
    |backend| {
        let db = TestDb::new(backend).await;
        let s = serve(&db, Some(TOKEN)).await;
        let admin = |command: &str, args: Value| json!({"guild_id": "1", "user_id": "9", "command": command, "args": args});
        let (status, _) = s
            .post(json!({"guild_id": "1", "user_id": "5", "command": "balance"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let before = snapshot(&db, &s.runtime).await;

        // With the plain API token: 403, and nothing changes.
        for body in [
            admin("config_set", json!({"key": "daily_gold", "value": 250})),
            admin("config_show", json!({})),
            admin(
                "grant",
                json!({"user": "5", "currency": "gems", "amount": 30, "reason": "event"}),
            ),
        ] {
            let (status, r) = s.post(body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {r}");
            assert_eq!(r["error"]["code"], "forbidden");
        }
        // Bad keys and values: 400 naming the key and what it allows.
        let (status, r) = s
            .post_admin(admin(
                "config_set",
                json!({"key": "colour", "value": "red"}),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("\"colour\"") && msg.contains("daily_rp_cap"),
            "{msg}"
        );
        let (status, r) = s
            .post_admin(admin(
                "config_set",
                json!({"key": "char_per_rp", "value": "0"}),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r["error"]["message"],
            "char_per_rp must be a whole number from 1 to 100000"
        );
        assert_eq!(
            snapshot(&db, &s.runtime).await,
            before,
            "refusals wrote nothing"
        );

        // With the admin token: the change lands, once per command id.
        let set = json!({"id": "set-1", "guild_id": "1", "user_id": "9", "command": "config_set",
                     "args": {"key": "daily_gold", "value": 250}});
        let (status, first) = s.post_admin(set.clone()).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(
            (first["data"]["old"].as_str(), first["data"]["new"].as_str()),
            (Some("100"), Some("250"))
        );
        let (_, again) = s.post_admin(set).await;
        assert_eq!(again, first, "a retry answers the first reply");
        let (status, r) = s
            .post_admin(admin(
                "config_set",
                json!({"key": "rp_channels", "value": "<#10>, 11"}),
            ))
            .await;
        assert_eq!(
            (status, r["data"]["new"].as_str()),
            (StatusCode::OK, Some("10,11")),
            "{r}"
        );

        // The setting shapes the game: today's daily pays the guild's amount.
        let (_, daily) = s
            .post(json!({"guild_id": "1", "user_id": "5", "command": "daily"}))
            .await;
        assert_eq!(daily["data"]["reward"]["gold"], 250, "{daily}");
        let (_, other_guild) = s
            .post(json!({"guild_id": "2", "user_id": "5", "command": "daily"}))
            .await;
        assert_eq!(
            other_guild["data"]["reward"]["gold"], 100,
            "settings are per guild"
        );

        // A grant and a correction: ledger rows and audit rows.
        let (status, g) = s
            .post_admin(admin(
                "grant",
                json!({"user": "5", "currency": "gems", "amount": 30, "reason": "event prize"}),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{g}");
        assert_eq!(g["data"]["gems"], 30);
        let (status, r) = s
            .post_admin(admin(
                "grant",
                json!({"user": "5", "currency": "gems", "amount": -31, "reason": "typo"}),
            ))
            .await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("insufficient_funds"))
        );
        let (status, _) = s
            .post_admin(admin(
                "grant",
                json!({"user": "5", "currency": "gems", "amount": -10, "reason": "typo"}),
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, bal) = s
            .post(json!({"guild_id": "1", "user_id": "5", "command": "balance"}))
            .await;
        assert_eq!(bal["data"]["gems"], 20, "{bal}");

        // The admin token works for every other command too.
        let (status, _) = s
            .post_admin(json!({"guild_id": "1", "user_id": "9", "command": "balance"}))
            .await;
        assert_eq!(status, StatusCode::OK);

        let (status, shown) = s.post_admin(admin("config_show", json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown["data"]["settings"]["daily_gold"], "250");
        assert_eq!(shown["data"]["settings"]["rp_channels"], "10,11");
        let changes = shown["data"]["recent_changes"].as_array().unwrap();
        let summary: Vec<(String, String, String, String)> = changes
            .iter()
            .map(|c| {
                let f = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
                (f("action"), f("by"), f("key"), f("new"))
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("grant".into(), "9".into(), "gems".into(), "20".into()),
                ("grant".into(), "9".into(), "gems".into(), "30".into()),
                (
                    "config_set".into(),
                    "9".into(),
                    "rp_channels".into(),
                    "10,11".into()
                ),
                (
                    "config_set".into(),
                    "9".into(),
                    "daily_gold".into(),
                    "250".into()
                ),
            ],
            "newest first, the retried change once"
        );
        assert_eq!(changes[0]["reason"], "typo");
        assert_eq!(changes[0]["target"], "5");

        let audit = s.runtime.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(audit.ledger(actors::domain::Currency::Gems, "grant"), 20);

        // Settings survive a restart (read back by the guild's actor).
        drop(s);
        let s = serve(&db, Some(TOKEN)).await;
        let (_, shown) = s.post_admin(admin("config_show", json!({}))).await;
        assert_eq!(shown["data"]["settings"]["daily_gold"], "250");
        db.drop_db().await;
    }
);

both_backends!(
    a_signed_payment_grants_credits_once_and_a_chargeback_takes_them_back,
    |backend| {
        let db = TestDb::new(backend).await;
        let s = serve(&db, Some(TOKEN)).await;
        let bought = json!({"id": "pay_123", "type": "payment.succeeded", "guild_id": "1", "user_id": "2", "credits": 500});
        let credits = |r: &Value| r["data"]["credits"].as_i64();

        // A forged or unsigned event is refused and changes nothing.
        let before = snapshot(&db, &s.runtime).await;
        let (status, r) = s.webhook(&bought, "not-the-secret").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{r}");
        let unsigned = s
            .client
            .post(format!("{}/v1/payments/webhook", s.base))
            .body(bought.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
        let (status, _) = s
        .webhook(&json!({"id": "pay_x", "type": "payment.succeeded", "guild_id": "1", "user_id": "2", "credits": -5}), PAYMENT_SECRET)
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a negative purchase");
        assert_eq!(
            snapshot(&db, &s.runtime).await,
            before,
            "refused events wrote nothing"
        );

        let (status, r) = s.webhook(&bought, PAYMENT_SECRET).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(credits(&r), Some(550), "50 to start, 500 bought: {r}");
        // The provider retries: the same payment adds nothing.
        for _ in 0..3 {
            let (status, again) = s.webhook(&bought, PAYMENT_SECRET).await;
            assert_eq!((status, credits(&again)), (StatusCode::OK, Some(550)));
        }
        // Players cannot send themselves payments.
        let (status, _) = s
        .post(json!({"guild_id": "1", "user_id": "2", "command": "payment", "args": {"payment_id": "pay_9", "credits": 900}}))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // The player spends most of it, then the payment is charged back: what
        // is left is taken, the rest is owed, and the balance stays at zero.
        let (_, g) = s
        .post(json!({"guild_id": "1", "user_id": "2", "command": "grant", "args": {"user": "2", "currency": "credits", "amount": -400, "reason": "spent"}}))
        .await;
        assert_eq!(g["ok"], false, "grant needs the admin token");
        let (_, g) = s
        .post_admin(json!({"guild_id": "1", "user_id": "9", "command": "grant", "args": {"user": "2", "currency": "credits", "amount": -400, "reason": "spent elsewhere"}}))
        .await;
        assert_eq!(g["ok"], true, "{g}");
        let refunded = json!({"id": "pay_123", "type": "payment.refunded", "guild_id": "1", "user_id": "2", "credits": 500});
        let (status, r) = s.webhook(&refunded, PAYMENT_SECRET).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(
            (
                credits(&r),
                r["data"]["clawed_back"].as_i64(),
                r["data"]["owed"].as_i64()
            ),
            (Some(0), Some(150), Some(350)),
            "{r}"
        );
        let (_, again) = s.webhook(&refunded, PAYMENT_SECRET).await;
        assert_eq!(credits(&again), Some(0), "charged back once");

        let audit = s.runtime.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "topup"),
            500
        );
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "chargeback"),
            -150
        );
        db.drop_db().await;
    }
);

both_backends!(
    an_upload_is_checked_by_content_and_kept_for_its_player,
    |backend| {
        let db = TestDb::new(backend).await;
        let s = serve(&db, Some(TOKEN)).await;
        let send = |bytes: Vec<u8>, file_name: &'static str, token: Option<&'static str>| {
            let form = reqwest::multipart::Form::new()
                .text("guild_id", "1")
                .text("user_id", "2")
                .part(
                    "image",
                    reqwest::multipart::Part::bytes(bytes).file_name(file_name),
                );
            let mut req = s
                .client
                .post(format!("{}/v1/uploads", s.base))
                .multipart(form);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            async move {
                let resp = req.send().await.unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let kept = db.dir.path().join("uploads");
        let files = || walk(&kept);

        let (status, _) = send(png(256, 256), "cat.png", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A script named like a picture is refused by its content.
        let (status, r) = send(b"#!/bin/sh\necho hi".to_vec(), "cat.png", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not a PNG, JPEG or WebP"),
            "{r}"
        );
        let (status, r) = send(png(10_000, 10), "wide.png", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
        assert!(files().is_empty(), "nothing kept for refused files");

        // A real picture is far larger than a command body may be.
        let mut picture = png(640, 480);
        picture.resize(3 * 1024 * 1024, 7);
        let (status, r) = send(picture, "cat.jpg", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(
            (r["data"]["type"].as_str(), r["data"]["width"].as_u64()),
            (Some("image/png"), Some(640))
        );
        let id = r["data"]["upload_id"].as_str().unwrap().to_owned();
        assert_eq!(files().len(), 1);

        // generate takes it as `image`; another player cannot.
        let (status, r) = s
        .post(json!({"guild_id": "1", "user_id": "3", "command": "generate", "args": {"workflow": "upscale", "image": id}}))
        .await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("not_found")),
            "{r}"
        );
        db.drop_db().await;
    }
);

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

both_backends!(
    every_error_of_every_route_is_the_json_error_body,
    |backend| {
        let db = TestDb::new(backend).await;
        let s = serve(&db, Some(TOKEN)).await;
        let json_error = |status: StatusCode, text: &str, want: StatusCode, code: &str| {
            assert_eq!(status, want, "{text}");
            let v: Value =
                serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
            assert_eq!(v["ok"], false, "{text}");
            assert_eq!(v["error"]["code"], code, "{text}");
        };
        let send = |req: reqwest::RequestBuilder| async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        };
        // The payment webhook's oversized body.
        // Over the limit, yet small enough to be sent whole before the answer.
        let big = "x".repeat(kokoro::http::MAX_BODY + 1);
        let (st, t) = send(
            s.client
                .post(format!("{}/v1/payments/webhook", s.base))
                .body(big),
        )
        .await;
        json_error(st, &t, StatusCode::PAYLOAD_TOO_LARGE, "invalid_argument");
        // An upload that is not multipart: the token is checked first.
        let url = format!("{}/v1/uploads", s.base);
        let (st, t) = send(s.client.post(&url).body("{}")).await;
        json_error(st, &t, StatusCode::UNAUTHORIZED, "unauthorized");
        let (st, t) = send(s.client.post(&url).bearer_auth(TOKEN).body("{}")).await;
        json_error(st, &t, StatusCode::BAD_REQUEST, "invalid_argument");
        // Result links: without a signature, with a wrong one, for no file.
        let url = format!("{}/results/j1-result.png", s.base);
        let (st, t) = send(s.client.get(&url)).await;
        json_error(st, &t, StatusCode::BAD_REQUEST, "invalid_argument");
        let (st, t) = send(s.client.get(format!("{url}?exp=99999999999&sig=00"))).await;
        json_error(st, &t, StatusCode::FORBIDDEN, "forbidden");
        let links = kokoro::results::ResultLinks::new(db.dir.path(), None, &s.base).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let signed = links.link("results/j1-gone.png", now).unwrap();
        let (st, t) = send(s.client.get(signed)).await;
        json_error(st, &t, StatusCode::NOT_FOUND, "not_found");
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_server_serves_on() {
    use tokio::io::AsyncReadExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let s = serve(&db, Some(TOKEN)).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Half send part of a request and stop; half send nothing at all.
    for c in idle.iter_mut().step_by(2) {
        use tokio::io::AsyncWriteExt;
        c.write_all(b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut closed = 0;
    for mut c in idle {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), c.read(&mut buf)).await;
        if matches!(read, Ok(Ok(_)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 300, "every silent connection was closed");
    let (status, r) = s
        .post(json!({"guild_id": "1", "user_id": "2", "command": "balance"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    db.drop_db().await;
}
