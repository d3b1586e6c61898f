//! Roleplay XP, as players and admins would check it, against real SQLite
//! and real PostgreSQL: 5,000 concurrent posts by one player add exactly the
//! XP the rules give and never pass the cap; the cap resets at local
//! midnight in three time zones, across a DST change; names stay unique
//! under concurrent create, rename and delete; posts in unconfigured
//! channels earn nothing and write nothing; an admin's hf success is
//! audited; `kokoro check` proves every character's XP from its tallies.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actors::{Command, ErrorCode, Reply, Runtime, RuntimeConfig};
use futures::future::join_all;
use serde_json::json;
use support::*;

const RP: &str = "10";
const HF: &str = "20";
const ELSEWHERE: &str = "30";
const ADMIN: i64 = 900;

/// Sets the guild's settings as an admin would.
async fn configure(rt: &Runtime, settings: &[(&str, &str)]) {
    for (k, v) in settings {
        let r = rt
            .dispatch_admin(cmd(ADMIN, "config_set", json!({ "key": k, "value": v })))
            .await;
        assert!(r.ok, "{k}={v}: {r:?}");
    }
}

fn post(user: i64, id: u64, channel: &str, chars: i64) -> Command {
    cmd_with_id(
        user,
        &format!("m{id}"),
        "message",
        json!({ "channel_id": channel, "chars": chars }),
    )
}

async fn ok(rt: &Runtime, c: Command) -> Reply {
    let r = dispatch_retrying(rt, c).await;
    assert!(r.ok, "{r:?}");
    r
}

fn xp(r: &Reply) -> i64 {
    r.data["xp"]
        .as_i64()
        .unwrap_or_else(|| panic!("no xp: {r:?}"))
}

async fn assert_books_balance(rt: &Runtime) {
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
}

both_backends!(
    five_thousand_posts_add_exactly_what_the_rules_give,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(RuntimeConfig::default()).await;
        configure(
            &rt,
            &[
                ("rp_channels", RP),
                ("hf_channels", HF),
                ("char_per_rp", "100"),
                ("daily_rp_cap", "100000"),
                ("hf_attempt_xp", "5"),
                ("daily_hf_cap", "50"),
            ],
        )
        .await;
        ok(&rt, cmd(1, "xp_create", json!({"name": "Ayla"}))).await;

        // 4,000 roleplay posts of assorted lengths, 500 hf posts (100 times the
        // cap's worth) and 500 posts elsewhere, all at once.
        let posts: Vec<(u64, &str, i64)> = (0..5_000u64)
            .map(|i| match i % 10 {
                0 => (i, HF, 40),
                1 => (i, ELSEWHERE, 900),
                _ => (i, RP, ((i * 37) % 300) as i64),
            })
            .collect();
        let rp_chars: i64 = posts.iter().filter(|p| p.1 == RP).map(|p| p.2).sum();
        let replies = join_all(posts.iter().map(|(i, ch, n)| {
            let rt = rt.clone();
            let c = post(1, *i, ch, *n);
            async move { dispatch_retrying(&rt, c).await }
        }))
        .await;
        assert!(replies.iter().all(|r| r.ok), "every post is answered ok");
        let earned: i64 = replies
            .iter()
            .map(|r| r.data["earned"].as_i64().unwrap_or(0))
            .sum();
        let want = rp_chars / 100 + 50;
        assert_eq!(earned, want, "the replies add up to the rules' XP");

        let me = ok(&rt, cmd(1, "xp", json!({}))).await;
        assert_eq!(xp(&me), want);
        assert_eq!(me.data["daily_xp"], rp_chars / 100);
        assert_eq!(me.data["daily_hf"], 50, "hf never passes its cap");
        assert_eq!(me.data["char_buffer"], rp_chars % 100);

        // Discord redelivers: the same message ids count once.
        for (i, ch, n) in posts.iter().take(300) {
            ok(&rt, post(1, *i, ch, *n)).await;
        }
        assert_eq!(xp(&ok(&rt, cmd(1, "xp", json!({}))).await), want);

        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

both_backends!(the_cap_resets_at_local_midnight_across_dst, |backend| {
    let db = TestDb::new(backend).await;
    let now = Arc::new(AtomicI64::new(utc(2026, 3, 8, 3, 30)));
    let clock = now.clone();
    let rt = db
        .runtime(RuntimeConfig {
            clock: Arc::new(move || clock.load(Ordering::SeqCst)),
            ..RuntimeConfig::default()
        })
        .await;
    configure(
        &rt,
        &[
            ("rp_channels", RP),
            ("char_per_rp", "10"),
            ("daily_rp_cap", "3"),
        ],
    )
    .await;
    // Three players, three time zones; New York changes to DST on 8 March.
    let players = [(1, "Asia/Tokyo"), (2, "America/New_York"), (3, "UTC")];
    for (user, tz) in players {
        ok(&rt, cmd(user, "xp_create", json!({"name": "Ayla"}))).await;
        ok(&rt, cmd(user, "xp_timezone", json!({ "tz": tz }))).await;
    }
    let mut seq = 0u64;
    let mut post_all = |chars: i64| {
        seq += 1;
        let base = seq * 10;
        let rt = rt.clone();
        async move {
            let mut earned = Vec::new();
            for (user, _) in players {
                let r = ok(&rt, post(user, base + user as u64, RP, chars)).await;
                earned.push(r.data["earned"].as_i64().unwrap());
            }
            earned
        }
    };
    // 03:30 UTC: Tokyo 12:30 on the 8th, New York 22:30 on the 7th, UTC 03:30.
    assert_eq!(post_all(100).await, [3, 3, 3], "capped at 3 a day");
    assert_eq!(post_all(100).await, [0, 0, 0], "the cap holds");
    // 04:59 UTC: 23:59 on the 7th in New York (EST, UTC−5): still capped.
    now.store(utc(2026, 3, 8, 4, 59), Ordering::SeqCst);
    assert_eq!(post_all(100).await, [0, 0, 0]);
    // 05:00 UTC: midnight in New York.
    now.store(utc(2026, 3, 8, 5, 0), Ordering::SeqCst);
    assert_eq!(post_all(100).await, [0, 3, 0], "only New York's day began");
    // 15:00 UTC: midnight of the 9th in Tokyo.
    now.store(utc(2026, 3, 8, 15, 0), Ordering::SeqCst);
    assert_eq!(post_all(100).await, [3, 0, 0]);
    // 9 March 00:00 UTC: the UTC player's new day.
    now.store(utc(2026, 3, 9, 0, 0), Ordering::SeqCst);
    assert_eq!(post_all(100).await, [0, 0, 3]);
    // New York is on EDT (UTC−4) now: midnight of the 9th is 04:00 UTC, not 05:00.
    now.store(utc(2026, 3, 9, 3, 59), Ordering::SeqCst);
    assert_eq!(post_all(100).await, [0, 0, 0]);
    now.store(utc(2026, 3, 9, 4, 0), Ordering::SeqCst);
    assert_eq!(
        post_all(100).await,
        [0, 3, 0],
        "midnight moved with the clocks"
    );

    // Tokyo and UTC saw two local days in this span, New York three.
    for ((user, _), days) in players.iter().zip([2, 3, 2]) {
        assert_eq!(
            xp(&ok(&rt, cmd(*user, "xp", json!({}))).await),
            3 * days,
            "{user}"
        );
    }
    // The day never goes back: moving New York's player to Pacific time,
    // where it is still the 8th, gives no second day.
    ok(
        &rt,
        cmd(2, "xp_timezone", json!({"tz": "America/Los_Angeles"})),
    )
    .await;
    let r = ok(&rt, post(2, 999, RP, 100)).await;
    assert_eq!(r.data["earned"], 0, "{r:?}");
    assert_books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    names_stay_unique_under_concurrent_create_rename_delete,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(RuntimeConfig::default()).await;
        let pool = [
            "Ayla", "ayla", "AYLA", "Bren", "bren", "Cato", "Dusk", "dusk",
        ];
        let commands: Vec<Command> = (0..300usize)
            .map(|i| {
                let a = pool[i % pool.len()];
                let b = pool[(i * 7 + 3) % pool.len()];
                match i % 3 {
                    0 => cmd(1, "xp_create", json!({ "name": a })),
                    1 => cmd(1, "xp_rename", json!({ "name": a, "new_name": b })),
                    _ => cmd(1, "xp_delete", json!({ "name": a, "confirm": a })),
                }
            })
            .collect();
        let replies = join_all(commands.into_iter().map(|c| {
            let rt = rt.clone();
            async move { dispatch_retrying(&rt, c).await }
        }))
        .await;
        for r in &replies {
            // Refusals (a taken name, a missing one, a delete confirmed in
            // another case) are fine; a storage error (the unique index)
            // would mean two commands raced.
            let refused = matches!(r.code(), Some(ErrorCode::NameTaken | ErrorCode::NotFound))
                || (r.command == "xp_delete" && r.code() == Some(ErrorCode::InvalidArgument));
            assert!(r.ok || refused, "{r:?}");
        }
        assert!(
            replies.iter().filter(|r| r.ok).count() > 30,
            "some of each succeeded"
        );
        let list = ok(&rt, cmd(1, "xp_list", json!({}))).await;
        let mut names: Vec<String> = list.data["characters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_lowercase())
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "names unique ignoring case: {names:?}");
        let stored = rt.store().load_roleplay(key(1)).await.unwrap();
        let mut stored_names: Vec<String> = stored
            .characters
            .iter()
            .map(|c| c.name.to_lowercase())
            .collect();
        stored_names.sort();
        assert_eq!(
            stored_names, names,
            "what the actor holds is what is stored"
        );
        db.drop_db().await;
    }
);

both_backends!(bad_input_and_idle_channels_change_nothing, |backend| {
    let db = TestDb::new(backend).await;
    let rt = db.runtime(RuntimeConfig::default()).await;
    configure(&rt, &[("rp_channels", RP), ("no_xp_channels", "11")]).await;
    // A member who never played posts in an unconfigured channel: no row.
    let r = ok(&rt, post(5, 1, ELSEWHERE, 500)).await;
    assert_eq!(r.data["earned"], 0);
    assert!(
        !rt.store().load_user(key(5)).await.unwrap().state.exists,
        "no player created"
    );
    // A player without a character earns nothing either.
    assert_eq!(ok(&rt, post(5, 2, RP, 500)).await.data["earned"], 0);

    ok(
        &rt,
        cmd(
            1,
            "xp_create",
            json!({"name": "Ayla", "image_url": "https://img.example/ayla.png"}),
        ),
    )
    .await;
    for (name, args) in [
        (
            "xp_create",
            json!({"name": "Bren", "image_url": "http://img.example/b.png"}),
        ),
        ("xp_create", json!({"name": ""})),
        ("xp_create", json!({"name": "x".repeat(33)})),
        ("xp_timezone", json!({"tz": "Mars/Olympus"})),
        ("message", json!({"channel_id": RP, "chars": -1})),
    ] {
        let e = actors::CommandKind::parse(name, &args).unwrap_err();
        assert!(
            matches!(e, actors::command::ParseError::InvalidArgument(_)),
            "{name} {args}"
        );
    }
    let refused = rt
        .dispatch(cmd(1, "xp_create", json!({"name": "AYLA"})))
        .await;
    assert_eq!(refused.code(), Some(ErrorCode::NameTaken), "{refused:?}");
    let refused = rt
        .dispatch(cmd(
            1,
            "xp_delete",
            json!({"name": "Ayla", "confirm": "ayla"}),
        ))
        .await;
    assert_eq!(
        refused.code(),
        Some(ErrorCode::InvalidArgument),
        "the exact name: {refused:?}"
    );
    // The muted channel earns nothing, though the player has a character.
    assert_eq!(ok(&rt, post(1, 3, "11", 500)).await.data["earned"], 0);
    let me = ok(&rt, cmd(1, "xp", json!({"name": "ayla"}))).await;
    assert_eq!(
        (xp(&me), me.data["image_url"].as_str()),
        (0, Some("https://img.example/ayla.png"))
    );
    db.drop_db().await;
});

both_backends!(
    level_ups_name_the_role_and_hf_success_is_audited,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(RuntimeConfig::default()).await;
        configure(
            &rt,
            &[
                ("rp_channels", RP),
                ("char_per_rp", "10"),
                ("xp_per_level", "10"),
                ("level_roles", "2:555,4:777"),
                ("hf_success_xp", "25"),
                ("daily_hf_cap", "30"),
            ],
        )
        .await;
        ok(&rt, cmd(1, "xp_create", json!({"name": "Ayla"}))).await;
        ok(&rt, cmd(1, "xp_create", json!({"name": "Bren"}))).await;
        let r = ok(&rt, post(1, 1, RP, 95)).await;
        assert!(
            r.data.get("level_up").is_none(),
            "9 XP is still level 1: {r:?}"
        );
        let r = ok(&rt, post(1, 2, RP, 10)).await;
        assert_eq!(
            r.data["level_up"],
            json!({"level": 2, "role_id": "555"}),
            "{r:?}"
        );

        // hf_success: admins only, on the named character, within the hf cap.
        let success = cmd_with_id(
            ADMIN,
            "s1",
            "hf_success",
            json!({"user": "1", "character": "bren"}),
        );
        let refused = rt.dispatch(success.clone()).await;
        assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
        let r = rt.dispatch_admin(success.clone()).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            (r.data["name"].as_str(), r.data["earned"].as_i64()),
            (Some("Bren"), Some(25))
        );
        assert_eq!(
            r.data["level_up"]["level"], 2,
            "25 XP is level 2 on this curve"
        );
        assert_eq!(
            rt.dispatch_admin(success).await,
            r,
            "a retry is answered once"
        );
        let r = rt
            .dispatch_admin(cmd(
                ADMIN,
                "hf_success",
                json!({"user": "1", "character": "Bren"}),
            ))
            .await;
        assert_eq!(r.data["earned"], 5, "cut to the 30 XP hf cap");
        let shown = rt
            .dispatch_admin(cmd(ADMIN, "config_show", json!({})))
            .await;
        let last = &shown.data["recent_changes"][0];
        assert_eq!(
            (
                last["action"].as_str(),
                last["target"].as_str(),
                last["key"].as_str()
            ),
            (Some("hf_success"), Some("1"), Some("Bren"))
        );
        assert_eq!(
            (last["old"].as_str(), last["new"].as_str()),
            (Some("25"), Some("30"))
        );

        // Deleting keeps the others; check still proves every XP.
        ok(
            &rt,
            cmd(1, "xp_delete", json!({"name": "Ayla", "confirm": "Ayla"})),
        )
        .await;
        let list = ok(&rt, cmd(1, "xp_list", json!({}))).await;
        assert_eq!(list.data["characters"][0]["name"], "Bren");
        assert_eq!(
            list.data["characters"][0]["active"], true,
            "the next one becomes active"
        );
        assert_books_balance(&rt).await;
        db.drop_db().await;
    }
);

/// Unix ms of a UTC date and time.
fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(h, min, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap()
}
