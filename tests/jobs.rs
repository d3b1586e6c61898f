//! Credits and the generation queues, as a player would check them, against
//! real SQLite and real PostgreSQL: a job is paid once, a failed or
//! cancelled job is refunded once, a full queue charges nothing, hammering
//! `generate` never overspends, and queued jobs survive a restart.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::config::JobsConfig;
use actors::domain::Currency;
use actors::game::generation::workflow::WorkflowDef;
use actors::job::{Job, JobStatus, Rendered};
use actors::job_queue::{Render, SimulatedRender};
use actors::{ErrorCode, Reply, Runtime, RuntimeConfig};
use futures::future::join_all;
use serde_json::{json, Value};
use support::*;

/// A renderer that holds every job until the test opens the gate, and
/// remembers which jobs it rendered.
struct Gate {
    permits: tokio::sync::Semaphore,
    rendered: Mutex<Vec<String>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(0),
            rendered: Mutex::default(),
        }
    }
}

impl Gate {
    fn open(&self) {
        self.permits.add_permits(10_000);
    }

    fn rendered(&self) -> Vec<String> {
        self.rendered.lock().unwrap().clone()
    }
}

impl Render for Gate {
    fn render<'a>(
        &'a self,
        job: &'a Job,
        _: &'a WorkflowDef,
    ) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>> {
        Box::pin(async move {
            if let Ok(p) = self.permits.acquire().await {
                p.forget();
            }
            self.rendered.lock().unwrap().push(job.id.clone());
            Rendered::Done(format!("https://cdn.example/{}.png", job.id))
        })
    }
}

/// The shipped workflows, each with these queue limits, and no free jobs:
/// these tests are about charges and refunds (tests/credits.rs has the
/// free ones).
fn config(render: Arc<dyn Render>, concurrency: usize, capacity: usize) -> RuntimeConfig {
    let mut generation = actors::game::generation::GenerationData::default();
    generation.workflows = generation.workflows.each(|w| {
        w.concurrency = concurrency;
        w.queue_length = capacity;
        w.time_limit = Duration::from_secs(30);
        w.daily_free = 0;
    });
    generation.rules.trial_daily_free = 0;
    RuntimeConfig {
        jobs: JobsConfig {
            render: Some(render),
        },
        generation: Arc::new(generation),
        ..RuntimeConfig::default()
    }
}

fn credits(r: &Reply) -> i64 {
    r.data["credits"]
        .as_i64()
        .unwrap_or_else(|| panic!("reply has no credits: {r:?}"))
}

/// Credits the player may spend: the balance less what queued jobs hold.
fn available(r: &Reply) -> i64 {
    r.data["credits_available"]
        .as_i64()
        .unwrap_or_else(|| panic!("reply has no available credits: {r:?}"))
}

fn generate(user: i64, prompt: &str) -> actors::Command {
    cmd(
        user,
        "generate",
        json!({"workflow": "image", "prompt": prompt}),
    )
}

/// The player's jobs, by id: (status, result-or-reason).
async fn jobs(rt: &Runtime, user: i64) -> Vec<Value> {
    let r = rt.dispatch(cmd(user, "jobs", json!({}))).await;
    assert!(r.ok, "{r:?}");
    r.data["jobs"].as_array().cloned().unwrap_or_default()
}

async fn status_of(rt: &Runtime, user: i64, job_id: &str) -> Option<Value> {
    jobs(rt, user)
        .await
        .into_iter()
        .find(|j| j["job_id"] == job_id)
}

/// Waits until `job_id` of `user` has `status`, or fails after 10 s.
async fn wait_for(rt: &Runtime, user: i64, job_id: &str, status: &str) -> Value {
    for _ in 0..1000 {
        if let Some(j) = status_of(rt, user, job_id).await {
            if j["status"] == status {
                return j;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "job {job_id} never became {status}: {:?}",
        status_of(rt, user, job_id).await
    )
}

async fn assert_books_balance(rt: &Runtime) {
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    assert!(audit.mismatched.is_empty() && audit.negative.is_empty());
}

both_backends!(
    a_job_holds_its_price_and_is_charged_once_rendered,
    |backend| {
        let db = TestDb::new(backend).await;
        let render = Arc::new(SimulatedRender::new(Duration::from_millis(5), 0));
        let rt = db.runtime(config(render, 2, 100)).await;
        let r = rt.dispatch(generate(1, "a red fox")).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            (r.data["held"].as_i64(), credits(&r), available(&r)),
            (Some(10), 50, 40),
            "held, not yet charged"
        );
        let id = r.data["job_id"].as_str().unwrap().to_owned();
        let done = wait_for(&rt, 1, &id, "done").await;
        assert_eq!(done["result"], format!("sim://image/{id}"));
        assert_eq!(done["prompt"], "a red fox");
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(
            (credits(&after), after.data["credits_held"].as_i64()),
            (40, Some(0)),
            "charged once it succeeded"
        );
        let audit = rt.audit().await.unwrap();
        assert_eq!(audit.ledger(Currency::Credits, "generate"), -10);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(a_failed_render_releases_its_hold, |backend| {
    let db = TestDb::new(backend).await;
    // Every job fails.
    let render = Arc::new(SimulatedRender::new(Duration::from_millis(5), 1));
    let rt = db.runtime(config(render, 2, 100)).await;
    let r = rt.dispatch(generate(1, "a red fox")).await;
    let id = r.data["job_id"].as_str().unwrap().to_owned();
    let failed = wait_for(&rt, 1, &id, "failed").await;
    assert!(failed["reason"].as_str().unwrap().contains("failed"));
    let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
    assert_eq!(
        (credits(&after), available(&after)),
        (50, 50),
        "released in full"
    );
    let audit = rt.audit().await.unwrap();
    assert_eq!(
        audit.ledger(Currency::Credits, "generate"),
        0,
        "never charged"
    );
    assert_eq!(audit.credits_held, 0);
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(closing_a_job_twice_charges_it_once, |backend| {
    // The queue may report a job twice (a restart mid-report); storage
    // closes a job only while it is queued.
    let db = TestDb::new(backend).await;
    let rt = db.runtime(config(Arc::new(Gate::default()), 1, 100)).await;
    let r = rt.dispatch(generate(1, "a red fox")).await;
    let id = r.data["job_id"].as_str().unwrap().to_owned();
    let stored = rt
        .store()
        .job(&id)
        .await
        .unwrap()
        .expect("the job is stored");
    assert_eq!(stored.status, JobStatus::Queued);
    let loaded = rt.store().load_user(key(1)).await.unwrap();
    let rules = Rules::default();
    let ctx = rules.context(1);
    let close = actors::game::generation::close_job(
        &loaded.state,
        &stored.job,
        JobStatus::Done,
        None,
        &ctx,
    )
    .unwrap()
    .writes;
    let outcomes = rt
        .store()
        .commit(&[close.clone(), close.clone()])
        .await
        .unwrap();
    use actors::writeset::CommitOutcome::*;
    assert_eq!(outcomes, [Applied, AlreadyApplied]);
    assert_eq!(rt.store().commit(&[close]).await.unwrap(), [AlreadyApplied]);
    let audit = rt.audit().await.unwrap();
    assert_eq!(
        audit.ledger(Currency::Credits, "generate"),
        -10,
        "charged once"
    );
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    db.drop_db().await;
});

both_backends!(
    cancel_refunds_a_waiting_job_which_then_never_renders,
    |backend| {
        let db = TestDb::new(backend).await;
        let gate = Arc::new(Gate::default());
        let rt = db.runtime(config(gate.clone(), 1, 100)).await;
        let first = rt.dispatch(generate(1, "first")).await;
        let second = rt.dispatch(generate(1, "second")).await;
        let (a, b) = (
            first.data["job_id"].as_str().unwrap().to_owned(),
            second.data["job_id"].as_str().unwrap().to_owned(),
        );
        assert_eq!((credits(&second), available(&second)), (50, 30));
        let waiting = status_of(&rt, 1, &b).await.unwrap();
        assert_eq!(
            (waiting["status"].as_str(), waiting["ahead"].as_i64()),
            (Some("queued"), Some(0))
        );

        let stranger = rt.dispatch(cmd(2, "cancel", json!({"job_id": b}))).await;
        assert_eq!(stranger.code(), Some(ErrorCode::NotFound), "not your job");
        let cancelled = rt
            .dispatch(cmd_with_id(1, "cancel-b", "cancel", json!({"job_id": b})))
            .await;
        assert!(cancelled.ok, "{cancelled:?}");
        assert_eq!(
            (available(&cancelled), cancelled.data["refunded"].as_i64()),
            (40, Some(10)),
            "the cancelled job's hold is released"
        );
        let retry = rt
            .dispatch(cmd_with_id(1, "cancel-b", "cancel", json!({"job_id": b})))
            .await;
        assert_eq!(retry, cancelled, "a retry returns the first reply");
        let again = rt.dispatch(cmd(1, "cancel", json!({"job_id": b}))).await;
        assert_eq!(again.code(), Some(ErrorCode::AlreadyFinished));

        gate.open();
        wait_for(&rt, 1, &a, "done").await;
        // The queue is idle once the first job is done; the cancelled one never ran.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.rendered(), vec![a.clone()]);
        assert_eq!(status_of(&rt, 1, &b).await.unwrap()["status"], "cancelled");
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(credits(&after), 40);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    hammering_generate_never_overspends_or_overfills,
    |backend| {
        let db = TestDb::new(backend).await;
        let gate = Arc::new(Gate::default());
        let rt = db.runtime(config(gate.clone(), 1, 1000)).await;
        // 300 concurrent commands on one player: generates, lucky draws and
        // credit checks interleaved.
        let replies = join_all((0..300).map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let c = match i % 3 {
                    0 => generate(1, &format!("prompt {i}")),
                    1 => cmd(1, "lucky", json!({})),
                    _ => cmd(1, "credits", json!({})),
                };
                (i % 3, dispatch_retrying(&rt, c).await)
            })
        }))
        .await;
        let replies: Vec<_> = replies.into_iter().map(|r| r.unwrap()).collect();
        let paid: Vec<&Reply> = replies
            .iter()
            .filter(|(k, r)| *k == 0 && r.ok)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(paid.len(), 3, "three jobs open at most");
        assert!(replies
            .iter()
            .filter(|(k, r)| *k == 0 && !r.ok)
            .all(|(_, r)| r.code() == Some(ErrorCode::LimitReached)));
        let lucky: Vec<_> = replies.iter().filter(|(k, r)| *k == 1 && r.ok).collect();
        assert_eq!(lucky.len(), 1, "one lucky draw a day");
        let held: i64 = paid.iter().map(|r| r.data["held"].as_i64().unwrap()).sum();
        let now = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!((credits(&now), available(&now)), (50, 50 - held));

        gate.open();
        for r in &paid {
            wait_for(&rt, 1, r.data["job_id"].as_str().unwrap(), "done").await;
        }
        assert_eq!(gate.rendered().len(), 3);
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!((credits(&after), available(&after)), (50 - held, 50 - held));
        let next = rt.dispatch(generate(1, "one more")).await;
        assert!(next.ok, "a finished job frees its place: {next:?}");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(a_full_queue_answers_busy_and_charges_nothing, |backend| {
    let db = TestDb::new(backend).await;
    let gate = Arc::new(Gate::default());
    let rt = db.runtime(config(gate.clone(), 1, 2)).await;
    assert!(rt.dispatch(generate(1, "one")).await.ok);
    assert!(rt.dispatch(generate(2, "two")).await.ok);
    let full = rt.dispatch(generate(3, "three")).await;
    assert_eq!(full.code(), Some(ErrorCode::Busy), "{full:?}");
    let three = rt.dispatch(cmd(3, "credits", json!({}))).await;
    assert_eq!(credits(&three), 50, "nothing charged");
    assert!(jobs(&rt, 3).await.is_empty());
    gate.open();
    db.drop_db().await;
});

both_backends!(
    a_job_whose_workflow_is_gone_after_a_restart_is_refunded,
    |backend| {
        let db = TestDb::new(backend).await;
        let gate = Arc::new(Gate::default());
        let rt = db.runtime(config(gate.clone(), 1, 100)).await;
        let unknown = rt
            .dispatch(cmd(
                1,
                "generate",
                json!({"workflow": "audio", "prompt": "a fox"}),
            ))
            .await;
        assert_eq!(unknown.code(), Some(ErrorCode::NotFound), "{unknown:?}");
        let r = rt.dispatch(generate(1, "a fox")).await;
        let id = r.data["job_id"].as_str().unwrap().to_owned();
        Arc::try_unwrap(rt)
            .ok()
            .expect("sole owner")
            .shutdown()
            .await;

        // The operator removed the image workflow's file before restarting.
        let mut cfg = config(gate.clone(), 1, 100);
        let mut generation = (*cfg.generation).clone();
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/workflows");
        for f in ["upscale.toml", "upscale.json"] {
            std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
        }
        generation.workflows =
            actors::game::generation::workflow::Workflows::load_dir(dir.path()).unwrap();
        cfg.generation = Arc::new(generation);
        let rt = db.runtime(cfg).await;
        let failed = wait_for(&rt, 1, &id, "failed").await;
        assert!(
            failed["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("no longer offered"),
            "{failed}"
        );
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(credits(&after), 50, "refunded");
        assert!(gate.rendered().is_empty(), "never rendered");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    queued_jobs_survive_a_restart_and_are_charged_once,
    |backend| {
        let db = TestDb::new(backend).await;
        let gate = Arc::new(Gate::default());
        let rt = db.runtime(config(gate.clone(), 1, 100)).await;
        let mut ids = Vec::new();
        for p in ["one", "two"] {
            let r = rt.dispatch(generate(1, p)).await;
            ids.push(r.data["job_id"].as_str().unwrap().to_owned());
        }
        // Stop with both jobs charged and unrendered.
        Arc::try_unwrap(rt)
            .ok()
            .expect("sole owner")
            .shutdown()
            .await;

        let render = Arc::new(SimulatedRender::new(Duration::from_millis(5), 0));
        let rt = db.runtime(config(render, 1, 100)).await;
        for id in &ids {
            wait_for(&rt, 1, id, "done").await;
        }
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(credits(&after), 30, "charged once each, across the restart");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    a_queue_that_panics_is_restarted_and_renders_every_job_once,
    |backend| {
        let db = TestDb::new(backend).await;
        let gate = Arc::new(Gate::default());
        let rt = db.runtime(config(gate.clone(), 1, 100)).await;
        let mut ids = Vec::new();
        for p in ["one", "two", "three"] {
            let r = rt.dispatch(generate(1, p)).await;
            assert!(r.ok, "{r:?}");
            ids.push(r.data["job_id"].as_str().unwrap().to_owned());
        }
        // One job rendering (held by the gate), two waiting; then a handler
        // panics. The supervisor restarts the queue, which reads the line
        // back from storage.
        wait_for(&rt, 1, &ids[0], "running").await;
        assert!(rt.panic_system_actor_once("image").await);
        let listed = jobs(&rt, 1).await;
        let place = |id: &str| listed.iter().find(|j| j["job_id"] == id).cloned().unwrap();
        assert_eq!(place(&ids[0])["status"], "running", "{listed:?}");
        assert_eq!(place(&ids[1])["ahead"], 0, "{listed:?}");
        assert_eq!(place(&ids[2])["ahead"], 1, "{listed:?}");
        // And it goes on serving: a job submitted after the restart joins the line.
        let four = rt.dispatch(generate(2, "four")).await;
        assert!(four.ok, "{four:?}");
        let four = four.data["job_id"].as_str().unwrap().to_owned();
        gate.open();
        for id in &ids {
            wait_for(&rt, 1, id, "done").await;
        }
        wait_for(&rt, 2, &four, "done").await;
        ids.push(four);
        let mut rendered = gate.rendered();
        rendered.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(rendered, want, "every job rendered once");
        let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(credits(&after), 20, "charged once each");
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(
    without_a_renderer_generate_is_refused_and_charges_nothing,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(RuntimeConfig::default()).await;
        let r = rt.dispatch(generate(1, "a fox")).await;
        assert_eq!(r.code(), Some(ErrorCode::Disabled), "{r:?}");
        let c = rt.dispatch(cmd(1, "credits", json!({}))).await;
        assert_eq!(credits(&c), 50);
        assert_eq!(
            c.data["prices"],
            json!({"image": 10, "upscale": 5, "video_loop": 40, "video_pan": 40, "video_zoom": 40}),
            "every shipped workflow, at its file's price"
        );
        db.drop_db().await;
    }
);

/// A render service on loopback: answers a result URL, or 500 for prompts
/// that ask for it, or nonsense for prompts that say so.
async fn fake_render_service() -> String {
    use axum::{routing::post, Json};
    let app = axum::Router::new().route(
        "/render",
        post(|Json(body): Json<Value>| async move {
            let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
            let id = body["job_id"].as_str().unwrap_or_default().to_owned();
            if prompt.contains("explode") {
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({})),
                )
                    .into_response();
            }
            if prompt.contains("nonsense") {
                return (axum::http::StatusCode::OK, Json(json!({"nope": 1}))).into_response();
            }
            Json(json!({ "url": format!("https://cdn.example/{id}.png") })).into_response()
        }),
    );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/render")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_render_service_is_called_and_its_failures_refunded() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = fake_render_service().await;
    let render = Arc::new(kokoro::render::HttpRender::new(&url, Duration::from_secs(5)).unwrap());
    let rt = db.runtime(config(render, 2, 100)).await;
    let ok = rt.dispatch(generate(1, "a red fox")).await;
    let boom = rt.dispatch(generate(1, "please explode")).await;
    let junk = rt.dispatch(generate(1, "nonsense answer")).await;
    let id = |r: &Reply| r.data["job_id"].as_str().unwrap().to_owned();
    let done = wait_for(&rt, 1, &id(&ok), "done").await;
    assert_eq!(
        done["result"],
        format!("https://cdn.example/{}.png", id(&ok))
    );
    let failed = wait_for(&rt, 1, &id(&boom), "failed").await;
    assert!(
        failed["reason"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    let failed = wait_for(&rt, 1, &id(&junk), "failed").await;
    assert!(
        failed["reason"].as_str().unwrap().contains("no result url"),
        "{failed}"
    );
    let after = rt.dispatch(cmd(1, "credits", json!({}))).await;
    assert_eq!(credits(&after), 40, "two of three refunded");

    // An unreachable service fails the job and refunds it.
    let gone = Arc::new(
        kokoro::render::HttpRender::new("http://127.0.0.1:9/render", Duration::from_secs(5))
            .unwrap(),
    );
    let db2 = TestDb::new(Backend::Sqlite).await;
    let rt2 = db2.runtime(config(gone, 1, 100)).await;
    let r = rt2.dispatch(generate(1, "a fox")).await;
    let failed = wait_for(&rt2, 1, &id(&r), "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{failed}"
    );
    assert_eq!(
        credits(&rt2.dispatch(cmd(1, "credits", json!({}))).await),
        50
    );
}

#[test]
fn the_render_url_must_be_plain_http() {
    assert!(kokoro::render::HttpRender::new("ftp://x/render", Duration::from_secs(1)).is_err());
    assert!(kokoro::render::HttpRender::new("https://x/render", Duration::from_secs(1)).is_err());
}
