//! Rendering on ComfyUI, against a fake ComfyUI on loopback that answers as
//! ComfyUI's server does, on real SQLite and real PostgreSQL: a job's
//! parameters reach the graph and its picture is kept; a graph ComfyUI
//! refuses, a node that fails mid-run and a render past its time limit are
//! failed and refunded once; while ComfyUI is down jobs wait and none fails;
//! a job rendering when kokoro stops is followed after the restart and never
//! submitted twice; a cancelled job is dropped at ComfyUI too. After each,
//! every job is final and the books balance.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actors::{Runtime, RuntimeConfig};
use kokoro::comfyui::prompt_id;
use serde_json::{json, Value};
use support::fake_comfyui::{FakeComfy, PICTURE};
use support::*;

fn config(comfy: &FakeComfy, db: &TestDb, time_limit: Duration) -> RuntimeConfig {
    comfy.runtime_config(db.dir.path(), time_limit)
}

async fn generate(rt: &Runtime, user: i64, prompt: &str) -> String {
    let r = rt
        .dispatch(cmd(
            user,
            "generate",
            json!({"workflow": "image", "prompt": prompt}),
        ))
        .await;
    assert!(r.ok, "{r:?}");
    r.data["job_id"].as_str().unwrap().to_owned()
}

async fn job(rt: &Runtime, user: i64, id: &str) -> Option<Value> {
    let r = rt.dispatch(cmd(user, "jobs", json!({}))).await;
    r.data["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["job_id"] == id)
        .cloned()
}

/// Waits until the job is `status`, or fails after `within`.
async fn wait_for(rt: &Runtime, user: i64, id: &str, status: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let j = job(rt, user, id).await;
        if j.as_ref().is_some_and(|j| j["status"] == status) {
            return j.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never became {status}: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn credits(rt: &Runtime, user: i64) -> i64 {
    let r = rt.dispatch(cmd(user, "credits", json!({}))).await;
    r.data["credits"].as_i64().unwrap()
}

async fn assert_books_balance(rt: &Runtime) {
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    assert_eq!(audit.pending_transfers, 0);
}

both_backends!(a_job_renders_and_its_picture_is_kept, |backend| {
    let db = TestDb::new(backend).await;
    let comfy = FakeComfy::start().await;
    let rt = db
        .runtime(config(&comfy, &db, Duration::from_secs(20)))
        .await;
    let a = generate(&rt, 1, "a lighthouse at dusk").await;
    let b = generate(&rt, 2, "a fox in the snow").await;
    let done = wait_for(&rt, 1, &a, "done", Duration::from_secs(10)).await;
    wait_for(&rt, 2, &b, "done", Duration::from_secs(10)).await;

    // Kept under the data dir, byte for byte what /view served.
    let at = done["result"].as_str().unwrap();
    assert!(at.starts_with("results/") && at.ends_with(".png"), "{done}");
    assert_eq!(std::fs::read(db.dir.path().join(at)).unwrap(), PICTURE);

    // The job's prompt and seed reached the graph's mapped inputs; the
    // prompt id is the job's; every prompt went under the process's one
    // client id, the one its socket listens on.
    let submitted = comfy.submitted();
    assert_eq!(submitted.len(), 2);
    let (id, client, graph) = &submitted[0];
    assert_eq!(id, &prompt_id(&a));
    assert_eq!(graph["6"]["inputs"]["text"], "a lighthouse at dusk");
    assert_ne!(graph["3"]["inputs"]["seed"], 0, "a seed from the job id");
    assert_eq!(
        graph["7"]["inputs"]["text"],
        "blurry, low quality, watermark, text, nsfw"
    );
    assert_eq!(client, &submitted[1].1, "one client id for every prompt");
    assert!(
        comfy.connected().iter().all(|c| c == client),
        "the socket listens under it: {:?}",
        comfy.connected()
    );

    assert_eq!(
        credits(&rt, 1).await,
        40,
        "charged the workflow's price once"
    );
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(refused_and_failed_renders_are_refunded_once, |backend| {
    let db = TestDb::new(backend).await;
    let comfy = FakeComfy::start().await;
    let rt = db
        .runtime(config(&comfy, &db, Duration::from_secs(20)))
        .await;
    let refused = generate(&rt, 1, "a bad checkpoint").await;
    let exploded = generate(&rt, 1, "explode").await;

    let r = wait_for(&rt, 1, &refused, "failed", Duration::from_secs(10)).await;
    let why = r["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("node 4 (CheckpointLoaderSimple): Value not in list"),
        "ComfyUI's own reason: {why}"
    );
    assert!(
        !why.contains("safetensors"),
        "details stay in the log: {why}"
    );
    let e = wait_for(&rt, 1, &exploded, "failed", Duration::from_secs(10)).await;
    let why = e["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("OutOfMemoryError") && why.contains("node 3 (KSampler)"),
        "{why}"
    );
    assert!(
        !why.contains("/srv/comfyui"),
        "no server path reaches the player: {why}"
    );
    assert!(!why.contains('\n'), "one line: {why:?}");

    assert_eq!(credits(&rt, 1).await, 50, "both refunded, once");
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    a_render_past_its_time_limit_fails_and_is_refunded,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(1)))
            .await;
        let slow = generate(&rt, 1, "a slow sunrise").await;
        let j = wait_for(&rt, 1, &slow, "failed", Duration::from_secs(10)).await;
        assert!(
            j["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("longer than 1 s"),
            "{j}"
        );
        assert_eq!(credits(&rt, 1).await, 50);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(while_comfyui_is_down_jobs_wait_and_none_fails, |backend| {
    kokoro::telemetry::prometheus();
    let db = TestDb::new(backend).await;
    let comfy = FakeComfy::start().await;
    comfy.down();
    let rt = db
        .runtime(config(&comfy, &db, Duration::from_secs(3)))
        .await;
    let a = generate(&rt, 1, "a quiet harbour").await;
    let b = generate(&rt, 2, "a busy market").await;
    // Longer than the time limit: had they started, they would have failed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (user, id) in [(1, &a), (2, &b)] {
        let j = job(&rt, user, id).await.unwrap();
        assert_eq!(j["status"], "queued", "waits, not failed: {j}");
    }
    let metrics = kokoro::telemetry::render(&rt).await;
    assert!(
        metrics.contains("kokoro_renderer_up 0"),
        "the breaker is open"
    );
    let ready = rt.readiness().await;
    assert_eq!(ready.renderer_up, Some(false), "/readyz says so");
    assert!(ready.is_ready(), "and everything else is still served");

    comfy.up().await;
    wait_for(&rt, 1, &a, "done", Duration::from_secs(15)).await;
    assert_eq!(
        rt.readiness().await.renderer_up,
        Some(true),
        "closed by itself"
    );
    wait_for(&rt, 2, &b, "done", Duration::from_secs(15)).await;
    assert_eq!(comfy.submitted().len(), 2);
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    a_render_in_flight_at_a_restart_is_followed_not_resubmitted,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(30)))
            .await;
        let id = generate(&rt, 1, "a slow tide").await;
        // kokoro stops while ComfyUI renders.
        for _ in 0..200 {
            if comfy.running().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(comfy.running(), Some(prompt_id(&id)));
        Arc::try_unwrap(rt)
            .ok()
            .expect("sole owner")
            .shutdown()
            .await;

        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(30)))
            .await;
        let done = wait_for(&rt, 1, &id, "done", Duration::from_secs(20)).await;
        assert!(done["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("results/")));
        let times = comfy
            .submitted()
            .iter()
            .filter(|s| s.0 == prompt_id(&id))
            .count();
        assert_eq!(times, 1, "rendered once");
        assert_eq!(credits(&rt, 1).await, 40);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(a_cancelled_render_is_dropped_at_comfyui, |backend| {
    let db = TestDb::new(backend).await;
    let comfy = FakeComfy::start().await;
    let rt = db
        .runtime(config(&comfy, &db, Duration::from_secs(30)))
        .await;
    let id = generate(&rt, 1, "a slow glacier").await;
    for _ in 0..200 {
        if comfy.running().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While it renders, `jobs` says how far along it is.
    let mut seen = None;
    for _ in 0..300 {
        let j = job(&rt, 1, &id).await.unwrap();
        if let Some(p) = j["progress_pct"].as_u64() {
            seen = Some((j["status"].clone(), p));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, pct) = seen.expect("progress reported while rendering");
    assert_eq!(status, "running");
    assert!((1..=100).contains(&pct), "{pct}");
    let r = rt.dispatch(cmd(1, "cancel", json!({ "job_id": id }))).await;
    assert!(r.ok, "{r:?}");
    for _ in 0..200 {
        if !comfy.interrupted().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        comfy.interrupted(),
        [prompt_id(&id)],
        "interrupted at ComfyUI"
    );
    assert_eq!(job(&rt, 1, &id).await.unwrap()["status"], "cancelled");
    assert_eq!(credits(&rt, 1).await, 50, "refunded");
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    an_input_picture_reaches_the_graph_under_the_name_comfyui_gave,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(20)))
            .await;
        let uploads = rt.config().uploads.clone().unwrap();
        let picture = png(640, 480);
        let up = uploads.store(key(1), &picture).await.unwrap();

        // Without its picture, an image-taking workflow is refused, unpaid.
        let bare = rt
            .dispatch(cmd(1, "generate", json!({"workflow": "upscale"})))
            .await;
        assert_eq!(
            bare.code(),
            Some(actors::ErrorCode::InvalidArgument),
            "{bare:?}"
        );
        // Another player's upload is not theirs to use.
        let theirs = rt
            .dispatch(cmd(
                2,
                "generate",
                json!({"workflow": "upscale", "image": up.id}),
            ))
            .await;
        assert_eq!(
            theirs.code(),
            Some(actors::ErrorCode::NotFound),
            "{theirs:?}"
        );

        let r = rt
            .dispatch(cmd(
                1,
                "generate",
                json!({"workflow": "upscale", "image": up.id}),
            ))
            .await;
        assert!(r.ok, "{r:?}");
        let id = r.data["job_id"].as_str().unwrap().to_owned();
        wait_for(&rt, 1, &id, "done", Duration::from_secs(10)).await;

        let sent = comfy.uploads();
        assert_eq!(sent.len(), 1);
        let (kept_as, bytes) = &sent[0];
        assert_eq!(bytes, &picture, "the player's picture, byte for byte");
        assert_ne!(kept_as, &format!("{}.png", up.id), "the fake renamed it");
        let (_, _, graph) = &comfy.submitted()[0];
        assert_eq!(
            &graph["1"]["inputs"]["image"], kept_as,
            "the name ComfyUI answered"
        );
        assert_eq!(credits(&rt, 1).await, 45, "upscale costs 5");
        assert_eq!(credits(&rt, 2).await, 50, "nothing charged for the refusal");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    two_hundred_generates_from_twenty_players_settle_exactly,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(60)))
            .await;
        let uploads = rt.config().uploads.clone().unwrap();
        let mut pictures = Vec::new();
        for user in 1..=20 {
            pictures.push(uploads.store(key(user), &png(320, 240)).await.unwrap().id);
        }
        // Three workflows; every fifth image job fails mid-run at ComfyUI.
        let commands: Vec<_> = (0..200usize)
            .map(|i| {
                let user = (i % 20) as i64 + 1;
                let picture = &pictures[i % 20];
                let args = match i % 3 {
                    0 if i % 5 == 0 => json!({"workflow": "image", "prompt": "explode"}),
                    0 => json!({"workflow": "image", "prompt": format!("a lantern {i}")}),
                    1 => json!({"workflow": "upscale", "image": picture}),
                    _ => json!({"workflow": "video_zoom", "image": picture}),
                };
                cmd(user, "generate", args)
            })
            .collect();
        let replies = futures::future::join_all(commands.into_iter().map(|c| {
            let rt = rt.clone();
            async move { rt.dispatch(c).await }
        }))
        .await;
        let mut queued: Vec<(i64, String)> = Vec::new();
        for (i, r) in replies.iter().enumerate() {
            match r.code() {
                None => queued.push((
                    (i % 20) as i64 + 1,
                    r.data["job_id"].as_str().unwrap().to_owned(),
                )),
                // Three open jobs a player, and each queue's length: refused unpaid.
                Some(
                    actors::ErrorCode::LimitReached
                    | actors::ErrorCode::InsufficientFunds
                    | actors::ErrorCode::Busy,
                ) => {}
                Some(other) => panic!("unexpected {other:?}: {r:?}"),
            }
        }
        assert!(queued.len() >= 40, "{} queued", queued.len());
        // While they render, each player's queued jobs hold their prices
        // and nothing is charged yet.
        let audit = rt.audit().await.unwrap();
        let held: i64 = replies
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.data["held"].as_i64().unwrap())
            .sum();
        assert!(
            audit.credits_held <= held && held > 0,
            "{} of {held} held",
            audit.credits_held
        );
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        // Every queued job reaches a final state.
        for (user, id) in &queued {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let status = job(&rt, *user, id).await.unwrap()["status"].clone();
                if status == "done" || status == "failed" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} stuck {status}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Each job was submitted once; every balance is its ledger's sum, and
        // is 50 less what its done jobs cost.
        let submitted = comfy.submitted();
        let mut ids: Vec<&String> = submitted.iter().map(|s| &s.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), submitted.len(), "no job submitted twice");
        assert_eq!(submitted.len(), queued.len());
        let (mut done, mut failed) = (0, 0);
        for user in 1..=20 {
            let r = rt.dispatch(cmd(user, "jobs", json!({}))).await;
            let jobs = r.data["jobs"].as_array().unwrap();
            done += jobs.iter().filter(|j| j["status"] == "done").count();
            failed += jobs.iter().filter(|j| j["status"] == "failed").count();
            let spent: i64 = jobs
                .iter()
                .filter(|j| j["status"] == "done")
                .map(|j| j["cost"].as_i64().unwrap())
                .sum();
            assert_eq!(credits(&rt, user).await, 50 - spent, "player {user}");
        }
        assert_eq!(done + failed, queued.len());
        let audit = rt.audit().await.unwrap();
        assert_eq!(audit.credits_held, 0, "every hold charged or released");
        assert!(
            done > 0 && failed > 0,
            "{done} done, {failed} failed and refunded"
        );
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    a_result_is_served_to_its_player_by_a_signed_link,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(20)))
            .await;
        let token = "results-token-0123456789";
        let links = kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap();
        let app = kokoro::http::router(kokoro::http::AppState {
            runtime: rt.clone(),
            token: Some(Arc::from(token)),
            admin_token: None,
            payment_secret: None,
            results: Some(links),
            doors: Default::default(),
        });
        let base = serve_app(app, std::time::Duration::from_secs(5)).await;

        let id = generate(&rt, 1, "a paper boat").await;
        wait_for(&rt, 1, &id, "done", Duration::from_secs(10)).await;
        let http = reqwest::Client::new();
        let jobs = post_command(
            &http,
            &base,
            token,
            &json!({"guild_id": GUILD.to_string(), "user_id": "1", "command": "jobs"}),
        )
        .await;
        let link = jobs["data"]["jobs"][0]["result"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            link.starts_with("/results/") && link.contains("&sig="),
            "{jobs}"
        );

        // The link works without a token, and serves the picture itself.
        let got = http.get(format!("{base}{link}")).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.headers()["content-type"], "image/png");
        assert_eq!(got.bytes().await.unwrap().as_ref(), PICTURE);
        // A changed link does not.
        let forged = link.replace("sig=", "sig=00");
        assert_eq!(
            http.get(format!("{base}{forged}"))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
        let other = link.replacen("/results/", "/results/x", 1);
        assert_eq!(
            http.get(format!("{base}{other}"))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
        db.drop_db().await;
    }
);

/// How many times ComfyUI queued the job's prompt id.
fn times_queued(comfy: &FakeComfy, job: &str) -> usize {
    comfy
        .submitted()
        .iter()
        .filter(|s| s.0 == prompt_id(job))
        .count()
}

async fn until_running(comfy: &FakeComfy, job: &str) {
    for _ in 0..500 {
        if comfy.running() == Some(prompt_id(job)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ComfyUI never started {job}");
}

both_backends!(
    a_lost_answer_to_a_submit_is_never_rendered_twice,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(20)))
            .await;
        // ComfyUI takes each of the next three submits but the answers
        // never arrive.
        comfy.drop_answers(3);
        let a = generate(&rt, 1, "a lighthouse at dusk").await;
        let b = generate(&rt, 2, "a fox in the snow").await;
        wait_for(&rt, 1, &a, "done", Duration::from_secs(15)).await;
        wait_for(&rt, 2, &b, "done", Duration::from_secs(15)).await;
        assert_eq!(times_queued(&comfy, &a), 1, "queued once");
        assert_eq!(times_queued(&comfy, &b), 1, "queued once");
        assert_eq!(credits(&rt, 1).await, 40);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    a_comfyui_restart_mid_render_submits_the_job_again_once,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(30)))
            .await;
        let id = generate(&rt, 1, "a slow tide").await;
        until_running(&comfy, &id).await;
        comfy.restart().await;
        let done = wait_for(&rt, 1, &id, "done", Duration::from_secs(25)).await;
        assert!(done["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("results/")));
        assert_eq!(times_queued(&comfy, &id), 2, "submitted again, once");
        assert_eq!(credits(&rt, 1).await, 40, "charged once");

        // Lost twice: the job fails and is refunded, not submitted forever.
        let id = generate(&rt, 2, "a slow storm").await;
        until_running(&comfy, &id).await;
        comfy.restart().await;
        for _ in 0..500 {
            if times_queued(&comfy, &id) == 2 && comfy.running() == Some(prompt_id(&id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        comfy.restart().await;
        let failed = wait_for(&rt, 2, &id, "failed", Duration::from_secs(25)).await;
        assert!(
            failed["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("lost the job twice"),
            "{failed}"
        );
        assert_eq!(times_queued(&comfy, &id), 2);
        assert_eq!(credits(&rt, 2).await, 50, "refunded");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    a_job_past_its_time_limit_is_dropped_at_comfyui_and_its_late_result_never_kept,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(1)))
            .await;
        let slow = generate(&rt, 1, "a slow sunrise").await;
        wait_for(&rt, 1, &slow, "failed", Duration::from_secs(10)).await;
        for _ in 0..300 {
            if !comfy.interrupted().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            comfy.interrupted(),
            [prompt_id(&slow)],
            "interrupted at ComfyUI"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kept: Vec<_> = std::fs::read_dir(db.dir.path().join("results"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(kept.is_empty(), "nothing kept: {kept:?}");
        assert_eq!(credits(&rt, 1).await, 50, "refunded, never charged");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    the_time_limit_runs_from_when_comfyui_starts_the_job,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        // A slow render takes about 4.5 s; two are started at once, and
        // ComfyUI runs one at a time: the second waits about 4.5 s in its
        // queue, so it ends 9 s after it was started, past the 6 s limit.
        let rt = db
            .runtime(comfy.runtime_config_with(db.dir.path(), Duration::from_secs(6), 2))
            .await;
        let a = generate(&rt, 1, "a slow dawn").await;
        let b = generate(&rt, 2, "a slow dusk").await;
        wait_for(&rt, 1, &a, "done", Duration::from_secs(20)).await;
        let j = wait_for(&rt, 2, &b, "done", Duration::from_secs(20)).await;
        assert!(j["result"].as_str().is_some(), "{j}");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    events_follow_the_one_client_id_across_a_reconnect,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let rt = db
            .runtime(config(&comfy, &db, Duration::from_secs(30)))
            .await;
        // Only progress_state, as built-in nodes of a newer ComfyUI send.
        let id = generate(&rt, 1, "a slow stateonly meadow").await;
        until_running(&comfy, &id).await;
        // The socket drops before any progress; kokoro connects again
        // under the same client id and hears the rest.
        comfy.drop_sockets();
        let mut seen = None;
        for _ in 0..400 {
            let j = job(&rt, 1, &id).await.unwrap();
            if let Some(p) = j["progress_pct"].as_u64() {
                seen = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pct = seen.expect("progress heard after the reconnect");
        assert!((1..=100).contains(&pct), "{pct}");
        wait_for(&rt, 1, &id, "done", Duration::from_secs(20)).await;
        let connected = comfy.connected();
        assert!(connected.len() >= 2, "connected again: {connected:?}");
        assert!(
            connected.iter().all(|c| c == &connected[0]),
            "{connected:?}"
        );
        assert_eq!(comfy.submitted()[0].1, connected[0]);
        db.drop_db().await;
    }
);
