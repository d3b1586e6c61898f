//! Member verification: a member's own `verify` (their account old enough,
//! their answer right), an integration's `verify {user}` with the admin
//! token over HTTP, each once, audited, kept across a restart, and the
//! verified role handed to the front door.

mod support;

use actors::{Command, CommandKind, GuildId, Reply, Runtime, UserId, UserKey};
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "verify-api-token-0123456789";
const ADMIN_TOKEN: &str = "verify-admin-token-0123456789";
const ROLE: &str = "720000000000000001";
/// An account made in 2016 (Discord's documented example id).
const OLD: &str = "175928847299117063";
const ADMIN: i64 = 9;

/// A Discord id made `days_ago` days before now.
fn account_made(days_ago: i64) -> String {
    let now = actors::domain::day::unix_ms();
    let ms = now - days_ago * 86_400_000 - actors::game::guild::verify::DISCORD_EPOCH_MS;
    ((ms as u64) << 22).to_string()
}

async fn admin(rt: &Runtime, name: &str, args: Value) -> Reply {
    rt.dispatch_admin(Command {
        id: None,
        key: UserKey::new(GuildId::new(GUILD).unwrap(), UserId::new(ADMIN).unwrap()),
        kind: CommandKind::parse(name, &args).expect("a valid admin command"),
    })
    .await
}

async fn configure(rt: &Runtime) {
    for (k, v) in [
        ("verify_channel", "730000000000000002"),
        ("verified_role", ROLE),
        ("verify_min_account_age", "30"),
        ("verify_question", "Which planet do we live on?"),
        ("verify_answer", "Earth"),
    ] {
        let r = admin(rt, "config_set", json!({"key": k, "value": v})).await;
        assert!(r.ok, "{k}: {r:?}");
    }
}

fn body(id: &str, user: &str, args: Value) -> Value {
    json!({"id": id, "guild_id": GUILD.to_string(), "user_id": user, "command": "verify", "args": args})
}

fn audit_rows(r: &Reply, action: &str) -> usize {
    r.data["recent_changes"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["action"] == action).count())
}

both_backends!(
    a_member_verifies_once_when_old_enough_and_right,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(actors::RuntimeConfig::default()).await;
        rt.role_desk().attach();
        configure(&rt).await;
        let base = http_api(rt.clone(), TOKEN, ADMIN_TOKEN).await;

        // No answer, then a wrong one: 409 wrong_answer, nothing written.
        for (id, args) in [("v1", json!({})), ("v2", json!({"answer": "Mars"}))] {
            let (status, r) = post_with(&base, TOKEN, &body(id, OLD, args)).await;
            assert_eq!(
                (status, r["error"]["code"].as_str()),
                (409, Some("wrong_answer")),
                "{r}"
            );
        }
        // A ten-day-old account is told why, and how long.
        let young = account_made(10);
        let (status, r) = post_with(
            &base,
            TOKEN,
            &body("v3", &young, json!({"answer": "earth"})),
        )
        .await;
        assert_eq!(status, 409, "{r}");
        assert_eq!(r["error"]["code"], "account_too_new");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at least 30 days old"),
            "{r}"
        );
        // Right, ignoring case and spaces: verified, and the role handed on.
        let (status, r) = post_with(
            &base,
            TOKEN,
            &body("v4", OLD, json!({"answer": "  EARTH "})),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(
            (r["data"]["verified"].clone(), r["data"]["already"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(r["data"]["role_id"], ROLE);
        // The same press again (a redelivery) replays; a new press says "already".
        let (_, again) =
            post_with(&base, TOKEN, &body("v4", OLD, json!({"answer": "earth"}))).await;
        assert_eq!(
            again["data"]["already"],
            json!(false),
            "the first reply, replayed: {again}"
        );
        let (_, later) =
            post_with(&base, TOKEN, &body("v5", OLD, json!({"answer": "earth"}))).await;
        assert_eq!(later["data"]["already"], json!(true), "{later}");

        // An integration vouches for the young member: admin token only.
        let (status, r) = post_with(&base, TOKEN, &body("v6", "5", json!({"user": young}))).await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{r}"
        );
        let (status, r) =
            post_with(&base, ADMIN_TOKEN, &body("v7", "5", json!({"user": young}))).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["data"]["user"], young.as_str());
        // A bad argument is a 400 naming it.
        let (status, r) = post_with(
            &base,
            TOKEN,
            &body("v8", OLD, json!({"answer": "x".repeat(101)})),
        )
        .await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{r}"
        );

        // Two verifications, two audit rows (the vouch by the admin caller).
        let shown = admin(&rt, "config_show", json!({})).await;
        assert_eq!(audit_rows(&shown, "verify"), 2, "{shown:?}");
        let vouched = shown.data["recent_changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == "verify" && c["target"] == young.as_str())
            .cloned()
            .unwrap();
        assert_eq!(vouched["reason"], "vouched");
        assert_eq!(vouched["by"], "5", "the caller the integration named");
        // The role desk holds the verified role for both members.
        assert_eq!(rt.role_desk().waiting(), 2);

        // Kept across a restart.
        drop(rt);
        let rt = db.runtime(actors::RuntimeConfig::default()).await;
        let key = UserKey::new(GuildId::new(GUILD).unwrap(), OLD.parse().unwrap());
        let r = rt
            .dispatch(Command {
                id: None,
                key,
                kind: CommandKind::parse("verify", &json!({"answer": "earth"})).unwrap(),
            })
            .await;
        assert_eq!(r.data["already"], json!(true), "{r:?}");
        db.drop_db().await;
    }
);

both_backends!(a_guild_without_verification_says_so, |backend| {
    let db = TestDb::new(backend).await;
    let rt = db.runtime(actors::RuntimeConfig::default()).await;
    let r = rt.dispatch(cmd(1, "verify", json!({}))).await;
    assert_eq!(r.code(), Some(actors::ErrorCode::Disabled), "{r:?}");
    db.drop_db().await;
});

// ---- On Discord, against the fake Discord ----

use std::time::Duration;
use support::fake_discord::{
    content, ephemeral, fake_discord, interaction, press, submit, FakeDiscord,
};

const DISCORD_GUILD: &str = "700000000000000001";
const CHANNEL: &str = "730000000000000003";
const ADMIN_CHANNEL: &str = "730000000000000004";

async fn wait_until(done: impl FnMut() -> bool) -> bool {
    wait_for_secs(30, done).await
}

async fn wait_for_secs(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 50 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The ids of the bot's verification messages in `CHANNEL`, oldest first.
fn buttons(discord: &FakeDiscord) -> Vec<usize> {
    discord
        .fake
        .posted
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, (c, b))| {
            c == CHANNEL && b["components"][0]["components"][0]["custom_id"] == "kokoro:verify"
        })
        .map(|(i, _)| i + 1)
        .collect()
}

async fn discord_admin(rt: &Runtime, key: &str, value: &str) {
    let admin = UserKey::new(
        GuildId::new(DISCORD_GUILD.parse().unwrap()).unwrap(),
        UserId::new(ADMIN).unwrap(),
    );
    let set = CommandKind::parse("config_set", &json!({"key": key, "value": value})).unwrap();
    let r = rt
        .dispatch_admin(Command {
            id: None,
            key: admin,
            kind: set,
        })
        .await;
    assert!(r.ok, "{key}: {r:?}");
}

async fn bot(
    db: &TestDb,
    rt: &std::sync::Arc<Runtime>,
    discord: &FakeDiscord,
    verification: bool,
) -> kokoro::doors::Doors {
    let doors = kokoro::doors::Doors::default();
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        verification,
        // With the members intent the door hears of deletes at once: its
        // periodic look is put out of the way, so a test sees the event.
        verify_look_every: Some(if verification {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(100)
        }),
        doors: doors.clone(),
        ..Default::default()
    };
    let links = kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap();
    // The task runs the door until the test's runtime ends.
    std::mem::forget(
        kokoro::discord::start(rt.clone(), "fake-token", &options, links)
            .await
            .expect("the bot starts"),
    );
    doors
}

both_backends!(
    the_button_is_kept_in_its_channel_and_a_press_verifies_once,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(actors::RuntimeConfig::default()).await;
        discord_admin(&rt, "verified_role", ROLE).await;
        discord_admin(&rt, "verify_min_account_age", "30").await;
        let discord = fake_discord(usize::MAX).await;
        let _doors = bot(&db, &rt, &discord, false).await;

        // An admin sets the channel with the slash command: the button comes.
        discord.send(interaction(
        "5001",
        "600000000000000009",
        "config_set",
        json!([{"name": "key", "type": 3, "value": "verify_channel"}, {"name": "value", "type": 3, "value": CHANNEL}]),
        json!({}),
    ));
        discord.answer("5001", 1).await;
        assert!(
            wait_until(|| buttons(&discord).len() == 1).await,
            "the verification message is posted"
        );

        // An old account presses: verified, privately, and the role is given.
        discord.send(press(
            "5002",
            OLD,
            DISCORD_GUILD,
            "950000000000000001",
            "kokoro:verify",
        ));
        let a = discord.answer("5002", 1).await;
        assert!(
            ephemeral(&a) && content(&a).contains("You are verified"),
            "{a}"
        );
        let given = |d: &FakeDiscord| {
            d.fake
                .roles_added
                .lock()
                .unwrap()
                .iter()
                .filter(|(g, u, r)| g == DISCORD_GUILD && u == OLD && r == ROLE)
                .count()
        };
        assert!(
            wait_until(|| given(&discord) == 1).await,
            "the verified role is given"
        );
        // Discord redelivers the same press: answered the same, verified once.
        discord.send(press(
            "5002",
            OLD,
            DISCORD_GUILD,
            "950000000000000001",
            "kokoro:verify",
        ));
        let again = discord.answer("5002", 2).await;
        assert!(content(&again).contains("You are verified"), "{again}");
        assert_eq!(
            *discord.fake.refused_callbacks.lock().unwrap(),
            1,
            "Discord refuses the second answer to one interaction"
        );
        // A ten-day-old account is told why, privately.
        let young = account_made(10);
        discord.send(press(
            "5003",
            &young,
            DISCORD_GUILD,
            "950000000000000001",
            "kokoro:verify",
        ));
        let a = discord.answer("5003", 1).await;
        assert!(
            ephemeral(&a) && content(&a).contains("at least 30 days old"),
            "{a}"
        );

        // With a question, a press opens the form; the answer decides.
        discord_admin(&rt, "verify_question", "Which planet do we live on?").await;
        discord_admin(&rt, "verify_answer", "Earth").await;
        let asker = "175928847299117064";
        discord.send(press(
            "5004",
            asker,
            DISCORD_GUILD,
            "950000000000000001",
            "kokoro:verify",
        ));
        let form = discord.answer("5004", 1).await;
        assert_eq!(form["type"], 9, "a modal: {form}");
        assert_eq!(
            form["data"]["components"][0]["components"][0]["label"],
            "Which planet do we live on?"
        );
        discord.send(submit(
            "5005",
            asker,
            DISCORD_GUILD,
            "kokoro:verify_answer",
            "answer",
            "Mars",
        ));
        let a = discord.answer("5005", 1).await;
        assert!(
            ephemeral(&a) && content(&a).contains("not the answer"),
            "{a}"
        );
        discord.send(submit(
            "5006",
            asker,
            DISCORD_GUILD,
            "kokoro:verify_answer",
            "answer",
            " earth",
        ));
        let a = discord.answer("5006", 1).await;
        assert!(content(&a).contains("You are verified"), "{a}");

        // Someone deletes the message: it is posted again.
        let first = format!("{}", 950000000000000000u64 + buttons(&discord)[0] as u64);
        discord.delete_message(CHANNEL, &first, DISCORD_GUILD);
        assert!(
            wait_until(|| buttons(&discord).len() == 2).await,
            "the verification message is posted again"
        );

        // Two verifications, each audited once.
        let admin = UserKey::new(
            GuildId::new(DISCORD_GUILD.parse().unwrap()).unwrap(),
            UserId::new(ADMIN).unwrap(),
        );
        let shown = rt
            .dispatch_admin(Command {
                id: None,
                key: admin,
                kind: CommandKind::parse("config_show", &json!({})).unwrap(),
            })
            .await;
        assert_eq!(audit_rows(&shown, "verify"), 2, "{shown:?}");
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_members_intent_is_named_with_where_to_enable_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rt = db.runtime(actors::RuntimeConfig::default()).await;
    let discord = fake_discord(usize::MAX).await;
    *discord.fake.disallowed_intents.lock().unwrap() = 1 << 1;
    let doors = bot(&db, &rt, &discord, true).await;
    let named = || matches!(doors.state("discord"), Some(kokoro::doors::DoorState::Down(w)) if w.contains("Server Members Intent") && w.contains("developer portal"));
    assert!(wait_until(named).await, "{:?}", doors.state("discord"));
    db.drop_db().await;
}

both_backends!(
    a_raid_of_500_joins_and_presses_in_a_minute_is_answered,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(actors::RuntimeConfig::default()).await;
        discord_admin(&rt, "verified_role", ROLE).await;
        discord_admin(&rt, "verify_channel", CHANNEL).await;
        discord_admin(&rt, "admin_channel", ADMIN_CHANNEL).await;
        let discord = fake_discord(usize::MAX).await;
        // Discord's buckets: 429s will come, and be waited out.
        *discord.fake.role_bucket.lock().unwrap() = Some((10, Duration::from_millis(100)));
        *discord.fake.global_bucket.lock().unwrap() = Some((5, Duration::from_millis(100)));
        // Discord's own heartbeat: the bot reads 1,000 events in a burst
        // (slowly, in a debug build), which a 300 ms beat would take for a
        // dead connection.
        *discord.fake.heartbeat_ms.lock().unwrap() = 41_250;
        let _doors = bot(&db, &rt, &discord, true).await;
        let started = std::time::Instant::now();
        let members: Vec<String> = (0..500u64)
            .map(|k| (175_928_847_299_117_100 + k).to_string())
            .collect();
        for (k, m) in members.iter().enumerate() {
            discord.event(
                "GUILD_MEMBER_ADD",
                json!({
                    "guild_id": DISCORD_GUILD, "user": support::fake_discord::user(m), "roles": [],
                    "joined_at": "2026-12-07T12:00:00Z", "deaf": false, "mute": false, "flags": 0
                }),
            );
            discord.send(press(
                &format!("{}", 6000 + k),
                m,
                DISCORD_GUILD,
                "950000000000000001",
                "kokoro:verify",
            ));
        }
        // The bot reads the gateway's 1,000 events in order (a debug build
        // parses them slowly): every press is answered, in time or deferred.
        let missing = || {
            let got = discord.answers_of_prefix("6");
            (0..500)
                .filter(|k| !got.iter().any(|(i, _)| *i == format!("{}", 6000 + k)))
                .collect::<Vec<usize>>()
        };
        let mut waited = 0;
        while !missing().is_empty() && waited < 600 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            waited += 1;
        }
        assert!(
            missing().is_empty(),
            "presses never answered: {:?} (gateway: {} identifies, {} resumes)",
            missing(),
            discord.identifies_count(),
            *discord.fake.resumes.lock().unwrap()
        );
        for k in 0..500 {
            let a = discord.answer(&format!("{}", 6000 + k), 1).await;
            let text = content(&a).to_owned() + a["data"]["content"].as_str().unwrap_or_default();
            assert!(
                text.contains("You are verified") || a["type"] == 5,
                "press {k}: {a}"
            );
        }
        let given = || {
            discord
                .fake
                .member_roles
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, r)| r.contains(ROLE))
                .count()
        };
        assert!(
            wait_for_secs(120, || given() == 500).await,
            "every member got the role ({})",
            given()
        );
        let elapsed = started.elapsed();
        let notes: Vec<String> = discord
            .fake
            .posted
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == ADMIN_CHANNEL)
            .map(|(_, b)| b["content"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(notes.len(), 1, "one raid note: {notes:?}");
        assert!(
            notes[0].contains("joined in the last minute"),
            "{}",
            notes[0]
        );
        assert!(
            *discord.fake.rate_limited.lock().unwrap() > 0,
            "the raid met Discord's rate limits"
        );
        let resumes = *discord.fake.resumes.lock().unwrap();
        eprintln!("500 joins and presses answered, roles given in {elapsed:?} ({resumes} gateway resumes)");
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_members_intent_a_deleted_message_is_posted_again_at_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rt = db.runtime(actors::RuntimeConfig::default()).await;
    let discord = fake_discord(usize::MAX).await;
    let _doors = bot(&db, &rt, &discord, true).await;
    discord.send(interaction(
        "7001",
        "600000000000000009",
        "config_set",
        json!([{"name": "key", "type": 3, "value": "verify_channel"}, {"name": "value", "type": 3, "value": CHANNEL}]),
        json!({}),
    ));
    discord.answer("7001", 1).await;
    assert!(
        wait_until(|| buttons(&discord).len() == 1).await,
        "posted when set"
    );
    let first = format!("{}", 950000000000000000u64 + buttons(&discord)[0] as u64);
    discord.delete_message(CHANNEL, &first, DISCORD_GUILD);
    // The periodic look is an hour away: only MESSAGE_DELETE can bring it back.
    assert!(
        wait_for_secs(5, || buttons(&discord).len() == 2).await,
        "posted again on the delete event"
    );
    db.drop_db().await;
}
