//! The Telegram front door against a fake Bot API on loopback (see
//! `support/fake_telegram.rs`) and the fake ComfyUI, on real SQLite and
//! real PostgreSQL: a player starts, claims, chooses a workflow with a
//! button, sends a photo and gets the picture back; a duplicated update is
//! applied once; Stars buy credits once per charge and an admin's refund
//! takes them back once; a job that ends while the front door is down is
//! delivered after it is back; Telegram's 429 is waited out.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actors::{Command, CommandKind, GuildId, Runtime, UserId, UserKey};
use serde_json::json;
use support::fake_comfyui::{FakeComfy, PICTURE};
use support::fake_telegram::{FakeTelegram, BOT_ID, TOKEN};
use support::*;

const ALICE: i64 = 424242;
const BOB: i64 = 515151;
const ADMIN: i64 = 777;
const WAIT: Duration = Duration::from_secs(20);

fn options(fake: &FakeTelegram) -> kokoro::telegram::Options {
    kokoro::telegram::Options {
        api_url: Some(fake.url.clone()),
        webhook: None,
        admins: vec![ADMIN],
        status_every: Some(Duration::from_millis(100)),
        ..Default::default()
    }
}

fn links(db: &TestDb) -> kokoro::results::ResultLinks {
    kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap()
}

/// A Telegram player's key: the bot's guild.
fn player(user: i64) -> UserKey {
    UserKey::new(GuildId::new(BOT_ID).unwrap(), UserId::new(user).unwrap())
}

async fn credits(rt: &Runtime, user: i64) -> i64 {
    let r = rt
        .dispatch(Command {
            id: None,
            key: player(user),
            kind: CommandKind::parse("credits", &json!({})).unwrap(),
        })
        .await;
    r.data["credits"].as_i64().unwrap()
}

async fn start(
    db: &TestDb,
    comfy: &FakeComfy,
    fake: &FakeTelegram,
) -> (Arc<Runtime>, kokoro::telegram::Telegram) {
    let config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
    let rt = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
    let tg = kokoro::telegram::start(rt.clone(), TOKEN, &options(fake), links(db))
        .await
        .expect("the Telegram front door starts");
    (rt, tg)
}

both_backends!(a_player_starts_claims_and_gets_a_picture_back, |backend| {
    let db = TestDb::new(backend).await;
    let comfy = FakeComfy::start().await;
    let fake = FakeTelegram::start().await;
    let (rt, _tg) = start(&db, &comfy, &fake).await;
    fake.wait_for(WAIT, "the menu", |f| !f.calls("setMyCommands").is_empty())
        .await;
    let commands = fake.calls("setMyCommands");
    assert_eq!(commands.len(), 1, "the menu is registered");
    let menu = commands[0].body["commands"].to_string();
    for c in [
        "start", "generate", "credits", "jobs", "cancel", "topup", "help",
    ] {
        assert!(menu.contains(&format!("\"{c}\"")), "/{c} in {menu}");
    }

    fake.text(ALICE, "/start");
    fake.wait_for(WAIT, "the welcome", |f| !f.said(ALICE).is_empty())
        .await;
    assert_eq!(
        fake.polls()[0]["allowed_updates"],
        json!(["message", "callback_query", "pre_checkout_query"]),
        "exactly the kinds kokoro handles"
    );
    let welcome = &fake.said(ALICE)[0];
    assert!(welcome.starts_with("Welcome!"), "{welcome}");
    assert!(welcome.contains("trial"), "the trial is shown: {welcome}");

    // Telegram delivers an update twice: the reward is paid once, and the
    // player sees the same answer both times.
    fake.push_twice(json!({"message": {
        "message_id": 1, "date": 1_764_590_400, "chat": {"id": ALICE, "type": "private", "first_name": "A"},
        "from": support::fake_telegram::user(ALICE), "text": "/daily",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    }}));
    fake.wait_for(WAIT, "both daily answers", |f| f.said(ALICE).len() >= 3)
        .await;
    let said = fake.said(ALICE);
    assert!(said[1].starts_with("+100 gold"), "{said:?}");
    assert_eq!(said[1], said[2], "the first answer, again");
    let audit = rt.audit().await.unwrap();
    assert_eq!(
        audit.ledger(actors::domain::Currency::Gold, "daily"),
        100,
        "paid once"
    );

    // /generate offers the workflows as buttons; a press chooses one.
    fake.text(ALICE, "/generate");
    fake.wait_for(WAIT, "the workflow buttons", |f| f.said(ALICE).len() >= 4)
        .await;
    let offer = fake.calls("sendMessage").last().unwrap().body.clone();
    let buttons = offer["reply_markup"]["inline_keyboard"].to_string();
    assert!(
        buttons.contains("wf:upscale") && buttons.contains("wf:image"),
        "{offer}"
    );
    fake.press(ALICE, "wf:upscale");
    fake.wait_for(WAIT, "the next step", |f| f.said(ALICE).len() >= 5)
        .await;
    assert!(
        fake.said(ALICE)[4].contains("send the picture"),
        "{:?}",
        fake.said(ALICE)
    );
    assert_eq!(
        fake.calls("answerCallbackQuery").len(),
        1,
        "the button is answered"
    );

    // The photo is fetched, checked, rendered, and sent back.
    let picture = png(640, 480);
    fake.photo(ALICE, &picture, None);
    fake.wait_for(WAIT, "the picture back", |f| {
        !f.calls("sendPhoto").is_empty()
    })
    .await;
    let sent = &fake.calls("sendPhoto")[0];
    assert_eq!(sent.body["chat_id"], json!(ALICE));
    assert_eq!(sent.files["photo"], PICTURE);
    let caption = sent.body["caption"].as_str().unwrap();
    assert!(
        caption.contains("Upscale ×4 is ready; 5 credits charged"),
        "{caption}"
    );
    assert_eq!(
        comfy.uploads()[0].1,
        picture,
        "the player's photo reached ComfyUI"
    );
    let queued = fake
        .said(ALICE)
        .into_iter()
        .find(|t| t.starts_with("Queued"))
        .expect("the job's status message");
    assert!(queued.contains("held"), "{queued}");
    assert!(
        !fake.calls("editMessageText").is_empty(),
        "the status message follows the job"
    );
    assert_eq!(
        credits(&rt, ALICE).await,
        50 + 20 - 5,
        "welcome, daily, upscale"
    );

    // A prompt with nothing chosen says what to do.
    fake.text(BOB, "a lighthouse");
    fake.wait_for(WAIT, "the hint", |f| !f.said(BOB).is_empty())
        .await;
    assert_eq!(fake.said(BOB)[0], "First choose what to make: /generate");

    // A video comes back as a video.
    fake.press(BOB, "wf:video_zoom");
    fake.wait_for(WAIT, "the next step", |f| f.said(BOB).len() >= 2)
        .await;
    fake.photo(BOB, &png(320, 240), None);
    fake.wait_for(WAIT, "the video", |f| !f.calls("sendVideo").is_empty())
        .await;
    let video = &fake.calls("sendVideo")[0];
    assert_eq!(video.body["chat_id"], json!(BOB));
    assert_eq!(video.files["video"], PICTURE);
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    db.drop_db().await;
});

both_backends!(
    stars_buy_credits_once_and_an_admin_refund_takes_them_back,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let fake = FakeTelegram::start().await;
        let (rt, _tg) = start(&db, &comfy, &fake).await;

        fake.text(ALICE, "/topup");
        fake.wait_for(WAIT, "the packs", |f| !f.said(ALICE).is_empty())
            .await;
        let offer = fake.calls("sendMessage")[0].body.clone();
        assert!(
            offer["reply_markup"].to_string().contains("pack:starter"),
            "{offer}"
        );
        fake.press(ALICE, "pack:starter");
        fake.wait_for(WAIT, "the invoice", |f| !f.calls("sendInvoice").is_empty())
            .await;
        let invoice = fake.calls("sendInvoice")[0].body.clone();
        assert_eq!(invoice["currency"], "XTR");
        assert_eq!(invoice["prices"][0]["amount"], 50);
        assert!(invoice["provider_token"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        let payload = invoice["payload"].as_str().unwrap().to_owned();
        assert_eq!(payload, "pack:starter:100");

        // Checkout: on sale at that price is accepted; anything else refused.
        let queries = [
            fake.pre_checkout(ALICE, &payload, 50),
            fake.pre_checkout(ALICE, "pack:gone:999", 50),
            fake.pre_checkout(ALICE, &payload, 1),
        ];
        fake.wait_for(WAIT, "three checkouts", |f| {
            f.calls("answerPreCheckoutQuery").len() >= 3
        })
        .await;
        let answer = |id: &str| {
            fake.calls("answerPreCheckoutQuery")
                .into_iter()
                .find(|c| c.body["pre_checkout_query_id"] == id)
                .unwrap()
                .body
        };
        let answers: Vec<bool> = queries
            .iter()
            .map(|q| answer(q)["ok"].as_bool().unwrap())
            .collect();
        assert_eq!(answers, [true, false, false]);
        assert!(answer(&queries[1])["error_message"]
            .as_str()
            .unwrap()
            .contains("/topup"));

        // The same payment, delivered twice: granted once.
        fake.paid(ALICE, &payload, 50, "stxCHARGE1");
        fake.paid(ALICE, &payload, 50, "stxCHARGE1");
        fake.wait_for(WAIT, "two thanks", |f| f.said(ALICE).len() >= 3)
            .await;
        assert!(
            fake.said(ALICE)[1].starts_with("Thank you! +100 credits"),
            "{:?}",
            fake.said(ALICE)
        );
        assert_eq!(credits(&rt, ALICE).await, 150, "50 welcome + 100 once");
        let audit = rt.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "topup"),
            100
        );

        // Only admins refund; a refund gives the Stars back and takes the
        // credits, once.
        fake.text(BOB, &format!("/refund {ALICE} stxCHARGE1"));
        fake.wait_for(WAIT, "the refusal", |f| !f.said(BOB).is_empty())
            .await;
        assert!(fake.said(BOB)[0].contains("Only this bot's admins"));
        assert!(fake.refunded().is_empty());
        fake.text(ADMIN, &format!("/refund {ALICE} stxCHARGE1"));
        fake.wait_for(WAIT, "the refund", |f| !f.said(ADMIN).is_empty())
            .await;
        assert_eq!(fake.refunded(), ["stxCHARGE1"]);
        assert!(
            fake.said(ADMIN)[0].contains("100 credits taken back"),
            "{:?}",
            fake.said(ADMIN)
        );
        fake.text(ADMIN, &format!("/refund {ALICE} stxCHARGE1"));
        fake.wait_for(WAIT, "the second refund", |f| f.said(ADMIN).len() >= 2)
            .await;
        assert_eq!(credits(&rt, ALICE).await, 50, "taken back once");
        let audit = rt.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "chargeback"),
            -100
        );
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        let audited = rt
            .store()
            .recent_changes(GuildId::new(BOT_ID).unwrap(), 10)
            .await
            .unwrap();
        assert!(
            audited
                .iter()
                .any(|a| a.action == "refund" && a.by.get() == ADMIN),
            "the refund is audited: {audited:?}"
        );
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_while_the_bot_is_down_is_delivered_after_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let comfy = FakeComfy::start().await;
    let fake = FakeTelegram::start().await;
    let (rt, tg) = start(&db, &comfy, &fake).await;
    fake.press(ALICE, "wf:image");
    fake.wait_for(WAIT, "the choice", |f| !f.said(ALICE).is_empty())
        .await;
    fake.text(ALICE, "slow lighthouse at dusk");
    fake.wait_for(WAIT, "queued", |f| {
        f.said(ALICE).iter().any(|t| t.starts_with("Queued"))
    })
    .await;
    // The front door goes down while ComfyUI renders.
    tg.task.abort();
    let _ = tg.task.await;
    let job = rt
        .store()
        .jobs_of(player(ALICE), 1)
        .await
        .unwrap()
        .remove(0);
    for _ in 0..1000 {
        let j = rt.store().job(&job.job.id).await.unwrap().unwrap();
        if j.status == actors::job::JobStatus::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.calls("sendPhoto").is_empty(),
        "nobody to tell while down"
    );
    let _tg = kokoro::telegram::start(rt.clone(), TOKEN, &options(&fake), links(&db))
        .await
        .unwrap();
    fake.wait_for(WAIT, "the picture", |f| !f.calls("sendPhoto").is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls("sendPhoto").len(), 1, "told once");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegrams_429_is_waited_out() {
    let db = TestDb::new(Backend::Sqlite).await;
    let comfy = FakeComfy::start().await;
    let fake = FakeTelegram::start().await;
    let (_rt, _tg) = start(&db, &comfy, &fake).await;
    fake.limit("sendMessage", 1, 1);
    fake.text(ALICE, "/balance");
    fake.wait_for(WAIT, "the balance", |f| !f.said(ALICE).is_empty())
        .await;
    let refused = fake.calls("sendmessage:429");
    assert_eq!(refused.len(), 1);
    let sent = &fake.calls("sendMessage")[0];
    assert!(
        sent.at.duration_since(refused[0].at) >= Duration::from_secs(1),
        "waited the retry_after"
    );
    assert!(
        fake.said(ALICE)[0].contains("gold"),
        "{:?}",
        fake.said(ALICE)
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_takes_updates_bearing_the_secret_only() {
    let db = TestDb::new(Backend::Sqlite).await;
    let comfy = FakeComfy::start().await;
    let fake = FakeTelegram::start().await;
    let config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
    let rt = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
    let mut o = options(&fake);
    o.webhook = Some("https://bot.example/telegram/hook".into());
    let tg = kokoro::telegram::start(rt.clone(), TOKEN, &o, links(&db))
        .await
        .unwrap();
    let router = tg.router.clone().expect("a route to mount");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    fake.wait_for(WAIT, "the webhook", |f| !f.calls("setWebhook").is_empty())
        .await;
    let set = fake.calls("setWebhook");
    assert_eq!(set.len(), 1, "the webhook is registered");
    assert_eq!(set[0].body["url"], "https://bot.example/telegram/hook");
    let secret = set[0].body["secret_token"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    assert!(fake.calls("getUpdates").is_empty(), "no polling");

    let update = json!({"update_id": 9001, "message": {
        "message_id": 1, "date": 1_764_590_400, "chat": {"id": ALICE, "type": "private", "first_name": "A"},
        "from": support::fake_telegram::user(ALICE), "text": "/daily",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    }});
    let client = reqwest::Client::new();
    let post = |secret: &str| {
        client
            .post(format!("http://{addr}/telegram/hook"))
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
            .json(&update)
            .send()
    };
    assert_eq!(post("wrong").await.unwrap().status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.said(ALICE).is_empty(), "a forged update does nothing");
    assert_eq!(post(&secret).await.unwrap().status(), 200);
    fake.wait_for(WAIT, "the reward", |f| !f.said(ALICE).is_empty())
        .await;
    assert!(fake.said(ALICE)[0].starts_with("+100 gold"));
    db.drop_db().await;
}

/// `kokoro serve` with TELEGRAM_BOT_TOKEN set answers on Telegram, and the
/// token reaches no log line, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_bot_without_ever_logging_its_token() {
    let db = TestDb::new(Backend::Sqlite).await;
    let fake = FakeTelegram::start().await;
    let mut command = kokoro_binary(&db, "serve-token-0123456789abcdef");
    command
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped());
    let url = fake.url.clone();
    let (mut server, _base) = serve_binary(command, &["--telegram-api-url", &url]).await;
    // Read as it is written: a debug log fills a pipe's 64 KiB quickly, and
    // a full pipe would stop the server mid-write.
    let mut stderr = server.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log).await;
        log
    });
    fake.text(ALICE, "/daily");
    fake.wait_for(WAIT, "the reward", |f| !f.said(ALICE).is_empty())
        .await;
    assert!(
        fake.said(ALICE)[0].starts_with("+100 gold"),
        "{:?}",
        fake.said(ALICE)
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let log = log.await.unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("Telegram front door ready"), "{log}");
    let secret = TOKEN.split(':').nth(1).unwrap();
    assert!(!log.contains(secret), "the token leaked into the log");
    db.drop_db().await;
}

both_backends!(
    a_payment_whose_update_never_came_is_granted_once_by_reconciliation,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let fake = FakeTelegram::start().await;
        let config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
        let rt = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
        let mut o = options(&fake);
        o.reconcile_every = Some(Duration::from_millis(300));
        let _tg = kokoro::telegram::start(rt.clone(), TOKEN, &o, links(&db))
            .await
            .unwrap();
        // Telegram took the Stars; the update is lost.
        fake.paid_silently(ALICE, "pack:starter:100", 50, "stxLOST1");
        fake.wait_for(WAIT, "the late thanks", |f| !f.said(ALICE).is_empty())
            .await;
        assert!(
            fake.said(ALICE)[0].starts_with("Your payment arrived: +100 credits"),
            "{:?}",
            fake.said(ALICE)
        );
        assert_eq!(credits(&rt, ALICE).await, 150, "50 welcome + 100");
        // Its update turns up after all, and reconciliation runs again: once.
        fake.paid(ALICE, "pack:starter:100", 50, "stxLOST1");
        fake.wait_for(WAIT, "the update's answer", |f| f.said(ALICE).len() >= 2)
            .await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(credits(&rt, ALICE).await, 150, "granted once");
        let audit = rt.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "topup"),
            100
        );
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        db.drop_db().await;
    }
);

/// `kokoro serve` as the Telegram bot, on `db`, against `fake`.
async fn serve_bot(db: &TestDb, fake: &FakeTelegram) -> (tokio::process::Child, String) {
    let mut command = kokoro_binary(db, "serve-token-0123456789abcdef");
    command.env("TELEGRAM_BOT_TOKEN", TOKEN);
    serve_binary(command, &["--telegram-api-url", &fake.url]).await
}

both_backends!(
    a_kill_at_the_instant_the_offset_moves_loses_no_payment,
    |backend| {
        let db = TestDb::new(backend).await;
        let fake = FakeTelegram::start().await;
        let rounds = 6u32;
        let mut charges = 0u32;
        for round in 0..rounds {
            let (mut server, _) = serve_bot(&db, &fake).await;
            let pid = server.id().unwrap();
            let mut last = 0;
            for n in 0..3 {
                charges += 1;
                last = fake.paid(
                    ALICE,
                    "pack:starter:100",
                    50,
                    &format!("stxKILL{round}x{n}"),
                );
            }
            // A /daily by a player of the round's own: paid once each.
            let daily = fake.text(ALICE + 1 + i64::from(round), "/daily");
            last = last.max(daily);
            if round % 2 == 0 {
                // The worst instant: the poll that confirms them all.
                fake.kill_on_confirm(pid, last);
            } else {
                // Or while they are being handled.
                tokio::time::sleep(Duration::from_millis(u64::from(round) * 7)).await;
                server.start_kill().unwrap();
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
        }
        // Back up for good: everything paid, each once.
        let (_server, _) = serve_bot(&db, &fake).await;
        let store = db.store().await;
        let want = 100 * i64::from(charges);
        let mut topups = 0;
        for _ in 0..600 {
            topups = store
                .audit()
                .await
                .unwrap()
                .ledger(actors::domain::Currency::Credits, "topup");
            if topups >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(topups, want, "every payment granted, once");
        let audit = store.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Gold, "daily"),
            100 * i64::from(rounds),
            "every /daily paid, once"
        );
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_api_that_cannot_be_reached_leaves_the_rest_serving() {
    let db = TestDb::new(Backend::Sqlite).await;
    let fake = FakeTelegram::start().await;
    fake.break_get_me(3);
    let (_server, base) = serve_bot(&db, &fake).await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    let said = body["doors"]["telegram"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(said.starts_with("down") || said == "starting", "{body}");
    // The HTTP API serves meanwhile.
    let r = post_command(
        &http,
        &base,
        "serve-token-0123456789abcdef",
        &json!({"guild_id": "1", "user_id": "2", "command": "balance"}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kokoro_front_door_up{door=\"telegram\"} 0"),
        "{metrics}"
    );
    // The door retries by itself and comes up.
    let mut up = false;
    for _ in 0..300 {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the door came up by itself");
    fake.text(ALICE, "/daily");
    fake.wait_for(WAIT, "the reward", |f| !f.said(ALICE).is_empty())
        .await;
    assert!(fake.said(ALICE)[0].starts_with("+100 gold"));
    db.drop_db().await;
}

both_backends!(
    the_buttons_show_todays_price_and_a_savevideo_mp4_comes_as_a_video,
    |backend| {
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let fake = FakeTelegram::start().await;
        let mut config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
        // One lucky tier, half off: today's price differs from the list.
        let mut generation = (*config.generation).clone();
        generation.lucky = actors::game::generation::lucky::LuckyTiers::parse(
            "[[tier]]\nname = \"SSR\"\ndiscount_pct = 50\nodds = 100\n",
            "lucky.toml",
        )
        .unwrap();
        config.generation = Arc::new(generation);
        let rt = Arc::new(Runtime::start(db.store().await, config).await.unwrap());
        let _tg = kokoro::telegram::start(rt.clone(), TOKEN, &options(&fake), links(&db))
            .await
            .unwrap();
        fake.text(ALICE, "/lucky");
        fake.wait_for(WAIT, "the draw", |f| !f.said(ALICE).is_empty())
            .await;
        fake.text(ALICE, "/generate");
        fake.wait_for(WAIT, "the buttons", |f| f.said(ALICE).len() >= 2)
            .await;
        let offer = fake.calls("sendMessage").last().unwrap().body.clone();
        let prices = rt
            .dispatch(Command {
                id: None,
                key: player(ALICE),
                kind: CommandKind::parse("credits", &json!({})).unwrap(),
            })
            .await
            .data["prices"]
            .clone();
        let listed = rt.config().generation.workflows.get("image").unwrap().price;
        let today = prices["image"].as_i64().unwrap();
        assert!(today < listed, "a discount today: {today} < {listed}");
        let buttons = offer["reply_markup"]["inline_keyboard"].to_string();
        assert!(buttons.contains(&format!("· {today} credits")), "{buttons}");
        assert!(
            !buttons.contains(&format!("· {listed} credits")),
            "{buttons}"
        );

        // ComfyUI's SaveVideo: an mp4 under `images`, served as
        // application/octet-stream. It is a video by its extension.
        fake.press(ALICE, "wf:image");
        fake.wait_for(WAIT, "the choice", |f| f.said(ALICE).len() >= 3)
            .await;
        fake.text(ALICE, "mp4out a waterfall");
        let waited = tokio::time::timeout(WAIT, async {
            while fake.calls("sendVideo").is_empty() && fake.calls("sendPhoto").is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no result: {:?}, {} submitted",
            fake.said(ALICE),
            comfy.submitted().len()
        );
        assert!(
            fake.calls("sendPhoto").is_empty(),
            "sent as a photo: {:?} {:?}",
            fake.calls("sendPhoto")[0].body,
            rt.store().jobs_of(player(ALICE), 1).await.unwrap()
        );
        let video = &fake.calls("sendVideo")[0];
        assert_eq!(video.files["video"], support::fake_comfyui::VIDEO);
        assert!(fake.calls("sendPhoto").is_empty());
        db.drop_db().await;
    }
);
