//! Free jobs and VIP, as a player of the paid generation bot would check
//! them, on real SQLite and real PostgreSQL: a new player's trial gives a
//! few free jobs a day, then each workflow's own allowance applies; an
//! admin's `vip` (audited, refused to others) raises it; what was used
//! survives a restart; a free job costs nothing and the books balance.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::config::JobsConfig;
use actors::job_queue::SimulatedRender;
use actors::{ErrorCode, Runtime, RuntimeConfig};
use serde_json::{json, Value};
use support::*;

const DAY: i64 = 86_400_000;
/// 2026-03-02 09:00 UTC.
const T0: i64 = 1_772_442_000_000;
const ADMIN: i64 = 900;

/// The shipped rules (a 2-day trial with 3 free jobs a day, VIP 20 a day);
/// the image workflow gives `image_free` a day after the trial.
fn config(now: &Arc<AtomicI64>, image_free: u32) -> RuntimeConfig {
    let mut generation = actors::game::generation::GenerationData::default();
    generation.workflows = generation.workflows.each(|w| {
        if w.id.as_str() == "image" {
            w.daily_free = image_free;
        }
    });
    let clock = now.clone();
    RuntimeConfig {
        jobs: JobsConfig {
            render: Some(Arc::new(SimulatedRender::new(Duration::from_millis(1), 0))),
        },
        generation: Arc::new(generation),
        clock: Arc::new(move || clock.load(Ordering::SeqCst)),
        ..RuntimeConfig::default()
    }
}

/// Generates an image and waits for it to be done; its reply.
async fn image(rt: &Runtime, user: i64) -> Value {
    let r = rt
        .dispatch(cmd(
            user,
            "generate",
            json!({"workflow": "image", "prompt": "a kite"}),
        ))
        .await;
    assert!(r.ok, "{r:?}");
    let id = r.data["job_id"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        let jobs = rt.dispatch(cmd(user, "jobs", json!({}))).await;
        let done = jobs.data["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|j| j["job_id"] == id.as_str() && j["status"] == "done");
        if done {
            return r.data;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never finished")
}

async fn credits(rt: &Runtime, user: i64) -> Value {
    let r = rt.dispatch(cmd(user, "credits", json!({}))).await;
    assert!(r.ok, "{r:?}");
    r.data
}

async fn assert_books_balance(rt: &Runtime) {
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
}

both_backends!(a_trial_then_the_workflows_own_allowance, |backend| {
    let db = TestDb::new(backend).await;
    let now = Arc::new(AtomicI64::new(T0));
    let rt = db.runtime(config(&now, 1)).await;

    // Day 1 of the trial: 3 free, then the price.
    for left in [2, 1, 0] {
        let r = image(&rt, 1).await;
        assert_eq!(
            (r["held"].as_i64(), r["free"].as_str()),
            (Some(0), Some("trial")),
            "{r}"
        );
        assert_eq!(credits(&rt, 1).await["free_today"]["image"], left);
    }
    let paid = image(&rt, 1).await;
    assert_eq!(
        (paid["held"].as_i64(), paid["free"].clone()),
        (Some(10), Value::Null)
    );
    assert_eq!(credits(&rt, 1).await["credits"], 40);

    // Day 2 (UTC midnight passed): 3 free again.
    now.store(T0 + DAY, Ordering::SeqCst);
    let c = credits(&rt, 1).await;
    assert_eq!(
        (
            c["free_today"]["image"].as_i64(),
            c["trial_until_ms"].as_i64()
        ),
        (Some(3), Some(T0 + 2 * DAY))
    );
    // Day 3: the trial is over; the image workflow's own 1 a day.
    now.store(T0 + 2 * DAY, Ordering::SeqCst);
    let c = credits(&rt, 1).await;
    assert_eq!(
        (
            c["free_today"]["image"].as_i64(),
            c["trial_until_ms"].clone()
        ),
        (Some(1), Value::Null)
    );
    assert_eq!(image(&rt, 1).await["free"], "daily allowance");
    assert_eq!(image(&rt, 1).await["held"], 10);
    assert_eq!(credits(&rt, 1).await["credits"], 30, "two jobs paid in all");
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    vip_is_an_audited_admin_grant_that_raises_the_allowance,
    |backend| {
        let db = TestDb::new(backend).await;
        let now = Arc::new(AtomicI64::new(T0));
        let rt = db.runtime(config(&now, 0)).await;
        // Past the trial, nothing is free.
        image(&rt, 1).await;
        now.store(T0 + 3 * DAY, Ordering::SeqCst);
        assert_eq!(credits(&rt, 1).await["free_today"]["image"], 0);

        let vip = cmd(ADMIN, "vip", json!({"user": "1", "days": 7}));
        let refused = rt.dispatch(vip.clone()).await;
        assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "admins only");
        assert_eq!(
            credits(&rt, 1).await["vip_until_ms"],
            Value::Null,
            "changed nothing"
        );
        let r = rt.dispatch_admin(vip).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data["vip_until_ms"], T0 + 10 * DAY);

        let c = credits(&rt, 1).await;
        assert_eq!(
            c["free_today"]["image"], "unlimited",
            "VIP: no daily limit, as the bot kokoro replaces has it"
        );
        assert_eq!(image(&rt, 1).await["free"], "vip");

        // The audit log names the admin, the player and the change.
        let shown = rt
            .dispatch_admin(cmd(ADMIN, "config_show", json!({})))
            .await;
        let last = &shown.data["recent_changes"][0];
        assert_eq!(
            (
                last["action"].as_str(),
                last["by"].as_str(),
                last["target"].as_str(),
                last["key"].as_str()
            ),
            (Some("vip"), Some("900"), Some("1"), Some("vip_until")),
            "{last}"
        );
        assert_eq!(
            (last["old"].as_str(), last["new"].as_str()),
            (Some("none"), Some("2026-03-12 09:00 UTC"))
        );

        // It expires by itself.
        now.store(T0 + 10 * DAY, Ordering::SeqCst);
        assert_eq!(credits(&rt, 1).await["free_today"]["image"], 0);
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(free_jobs_used_survive_a_restart, |backend| {
    let db = TestDb::new(backend).await;
    let now = Arc::new(AtomicI64::new(T0));
    let rt = db.runtime(config(&now, 0)).await;
    image(&rt, 1).await;
    image(&rt, 1).await;
    Arc::try_unwrap(rt)
        .ok()
        .expect("sole owner")
        .shutdown()
        .await;

    let rt = db.runtime(config(&now, 0)).await;
    let c = credits(&rt, 1).await;
    assert_eq!(c["free_today"]["image"], 1, "{c}");
    assert_eq!(c["credits"], 50, "nothing charged for free jobs");
    assert_books_balance(&rt).await;
    db.drop_db().await;
});
