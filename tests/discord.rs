//! The Discord front door against a fake Discord on loopback: the real
//! serenity gateway client and poise commands talk to an HTTP API and a
//! gateway websocket served by this test. Players' slash commands go down
//! the same dispatch path as HTTP; Discord's redelivery of an interaction
//! is answered once; bad input is answered privately and changes nothing;
//! shard latency and reconnects are reported.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::fake_discord::*;
use support::*;

/// GUILD_MESSAGES and MESSAGE_CONTENT.
const MESSAGE_INTENTS: u64 = (1 << 9) | (1 << 15);
const GUILD: &str = "700000000000000001";
const RP_CHANNEL: &str = "700000000000000010";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_go_down_the_one_dispatch_path() {
    kokoro::telemetry::prometheus();
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, actors::RuntimeConfig::default())
            .await
            .unwrap(),
    );
    // The gateway drops the bot after the third dispatch; it must reconnect.
    let discord = fake_discord(3).await;
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        roleplay_posts: false,
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("the bot starts");

    let alice = "600000000000000001";
    let bob = "600000000000000002";
    discord.send(interaction("1001", alice, "daily", json!([]), json!({})));
    let daily = discord.answer("1001", 1).await;
    assert!(shown(&daily).starts_with("+100 gold"), "{daily}");
    assert!(!ephemeral(&daily));
    // An embed: a title, and the balances after as fields.
    assert_eq!(embed(&daily)["title"], "Daily", "{daily}");
    let fields = embed(&daily)["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        fields
            .iter()
            .any(|f| f["name"] == "Gold" && f["value"] == "200"),
        "{daily}"
    );
    // Slash commands need no privileged intent.
    assert_eq!(*discord.fake.intents.lock().unwrap() & MESSAGE_INTENTS, 0);

    // Discord redelivers an interaction: the same id pays once.
    discord.send(interaction("1001", alice, "daily", json!([]), json!({})));
    let again = discord.answer("1001", 2).await;
    assert_eq!(shown(&again), shown(&daily), "the first reply again");
    // Discord takes one answer per interaction: the second is refused, and
    // the bot goes on (it is a log line, not a failure).
    assert_eq!(*discord.fake.refused_callbacks.lock().unwrap(), 1);

    let give = interaction(
        "1002",
        alice,
        "give",
        json!([{"name": "to", "type": 6, "value": bob}, {"name": "amount", "type": 4, "value": 30}]),
        json!({"users": {bob: user(bob)}}),
    );
    discord.send(give);
    let gave = discord.answer("1002", 1).await;
    assert!(shown(&gave).contains("Gave 30 gold"), "{gave}");

    let bad = interaction(
        "1003",
        alice,
        "give",
        json!([{"name": "to", "type": 6, "value": bob}, {"name": "amount", "type": 4, "value": -5}]),
        json!({"users": {bob: user(bob)}}),
    );
    discord.send(bad);
    let refused = discord.answer("1003", 1).await;
    assert!(ephemeral(&refused), "errors are private: {refused}");
    assert!(content(&refused).starts_with("⚠️"), "{refused}");

    let guild = actors::GuildId::new(700000000000000001).unwrap();
    let alice_key = actors::UserKey::new(guild, alice.parse().unwrap());
    let bob_key = actors::UserKey::new(guild, bob.parse().unwrap());
    runtime.settle(Duration::from_secs(5)).await.unwrap();
    let balance = |key| actors::Command {
        id: None,
        key,
        kind: actors::CommandKind::Economy(actors::game::economy::EconomyCommand::Balance),
    };
    assert_eq!(
        gold(&runtime.dispatch(balance(alice_key)).await),
        100 + 100 - 30
    );
    assert_eq!(gold(&runtime.dispatch(balance(bob_key)).await), 100 + 30);

    let registered = discord.fake.registered.lock().unwrap().clone();
    // Events (a post, a payment) are not slash commands.
    for name in actors::CommandKind::names().filter(|n| !actors::CommandKind::EVENTS.contains(n)) {
        assert!(
            registered.iter().any(|r| r == name),
            "/{name} registered: {registered:?}"
        );
    }

    // Shard health reaches the metrics: a latency, and the reconnect.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = kokoro::telemetry::render(&runtime).await;
        if metrics.contains("kokoro_discord_shard_latency_seconds{shard=\"0\"}")
            && metrics.contains("kokoro_discord_gateway_reconnects_total{shard=\"0\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("kokoro_discord_shard_latency_seconds{shard=\"0\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kokoro_discord_gateway_reconnects_total{shard=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kokoro_discord_shard_connected{shard=\"0\"} 1"),
        "{metrics}"
    );
    db.drop_db().await;
}

/// Result links signed with a key kept in the test's data dir.
fn links(db: &TestDb) -> kokoro::results::ResultLinks {
    kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap()
}

/// A member's post, as the gateway dispatches it.
fn post(id: &str, author: &serde_json::Value, chars: usize) -> serde_json::Value {
    message(id, RP_CHANNEL, Some(GUILD), author, &"a".repeat(chars))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roleplay_posts_earn_xp_and_level_roles_are_given() {
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, actors::RuntimeConfig::default())
            .await
            .unwrap(),
    );
    let guild = actors::GuildId::new(GUILD.parse().unwrap()).unwrap();
    let admin = actors::UserKey::new(guild, "600000000000000009".parse().unwrap());
    for (k, v) in [
        ("rp_channels", RP_CHANNEL),
        ("char_per_rp", "10"),
        ("xp_per_level", "10"),
        ("level_roles", "2:710000000000000002,3:710000000000000003"),
    ] {
        let set = actors::CommandKind::parse("config_set", &json!({"key": k, "value": v})).unwrap();
        let r = runtime
            .dispatch_admin(actors::Command {
                id: None,
                key: admin,
                kind: set,
            })
            .await;
        assert!(r.ok, "{r:?}");
    }
    let discord = fake_discord(usize::MAX).await;
    discord
        .fake
        .forbidden_roles
        .lock()
        .unwrap()
        .push("710000000000000003".into());
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        roleplay_posts: true,
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("the bot starts");

    let alice = "600000000000000001";
    let create = interaction(
        "2001",
        alice,
        "xp_create",
        json!([{"name": "name", "type": 3, "value": "Ayla"},
               {"name": "image_url", "type": 3, "value": "https://img.example/ayla.png"}]),
        json!({}),
    );
    discord.send(create);
    let created = discord.answer("2001", 1).await;
    assert_eq!(embed(&created)["title"], "Ayla", "{created}");
    assert_eq!(
        embed(&created)["thumbnail"]["url"],
        "https://img.example/ayla.png",
        "{created}"
    );
    assert_eq!(
        *discord.fake.intents.lock().unwrap() & MESSAGE_INTENTS,
        MESSAGE_INTENTS,
        "counting posts needs their length, so their text"
    );

    // Autocomplete offers the player's own characters.
    let mut complete = interaction(
        "2002",
        alice,
        "xp",
        json!([{"name": "name", "type": 3, "value": "ay", "focused": true}]),
        json!({}),
    );
    complete["type"] = json!(4);
    discord.send(complete);
    let offered = discord.answer("2002", 1).await;
    assert_eq!(offered["type"], 8, "{offered}");
    assert_eq!(offered["data"]["choices"][0]["value"], "Ayla", "{offered}");

    // Banners are offered by autocomplete too.
    let mut banners = interaction(
        "2003",
        alice,
        "summon",
        json!([{"name": "banner", "type": 3, "value": "star", "focused": true}]),
        json!({}),
    );
    banners["type"] = json!(4);
    discord.send(banners);
    let offered = discord.answer("2003", 1).await;
    assert_eq!(
        offered["data"]["choices"][0]["value"], "starfall",
        "{offered}"
    );

    // A member without Manage Server may not award an hf success, whatever
    // the server's command permissions say: a private refusal.
    let mut success = interaction(
        "2004",
        alice,
        "hf_success",
        json!([{"name": "user", "type": 6, "value": alice},
               {"name": "character", "type": 3, "value": "Ayla"}]),
        json!({"users": {alice: user(alice)}}),
    );
    success["member"]["permissions"] = json!("0");
    discord.send(success);
    let refused = discord.answer("2004", 1).await;
    assert!(ephemeral(&refused), "{refused}");
    assert!(content(&refused).contains("Manage Server"), "{refused}");

    // 100 characters at 10 a point: 10 XP, level 2, and its role.
    let author = user(alice);
    discord.event("MESSAGE_CREATE", post("3001", &author, 100));
    // The gateway delivers the same event again: counted once.
    discord.event("MESSAGE_CREATE", post("3001", &author, 100));
    // A bot's post, a webhook's post and a post elsewhere earn nothing.
    let mut bot = user("600000000000000005");
    bot["bot"] = json!(true);
    discord.event("MESSAGE_CREATE", post("3002", &bot, 500));
    let mut hook = post("3003", &user("600000000000000006"), 500);
    hook["webhook_id"] = json!("730000000000000001");
    discord.event("MESSAGE_CREATE", hook);
    discord.event(
        "MESSAGE_CREATE",
        message(
            "3004",
            "700000000000000099",
            Some(GUILD),
            &author,
            &"b".repeat(500),
        ),
    );
    let announced = wait_for(|| !discord.fake.posted.lock().unwrap().is_empty()).await;
    assert!(announced, "the level-up is announced");
    let roles = discord.fake.roles_added.lock().unwrap().clone();
    assert_eq!(
        roles,
        vec![(
            GUILD.to_owned(),
            alice.to_owned(),
            "710000000000000002".to_owned()
        )]
    );
    {
        let posted = discord.fake.posted.lock().unwrap();
        let text = posted[0].1["content"].as_str().unwrap_or_default();
        assert_eq!(posted[0].0, RP_CHANNEL);
        assert!(text.contains("reached level 2"), "{text}");
    }

    // Level 3 (30 XP on this curve): its role is above the bot's, so a
    // note to the admins, and no crash.
    discord.event("MESSAGE_CREATE", post("3005", &author, 200));
    assert!(wait_for(|| discord.fake.posted.lock().unwrap().len() >= 2).await);
    {
        let posted = discord.fake.posted.lock().unwrap();
        let text = posted[1].1["content"].as_str().unwrap_or_default();
        assert!(
            text.contains("reached level 3") && text.contains("Manage Roles"),
            "{text}"
        );
    }

    // Everything above, in XP: 10 + 20, nothing for the rest.
    let xp = actors::CommandKind::parse("xp", &json!({})).unwrap();
    let alice_key = actors::UserKey::new(guild, alice.parse().unwrap());
    let me = runtime
        .dispatch(actors::Command {
            id: None,
            key: alice_key,
            kind: xp,
        })
        .await;
    assert_eq!(me.data["xp"], 30, "{me:?}");
    for other in ["600000000000000005", "600000000000000006"] {
        let key = actors::UserKey::new(guild, other.parse().unwrap());
        let stored = runtime.store().load_user(key).await.unwrap();
        assert!(
            !stored.state.exists,
            "{other} earned nothing and has no row"
        );
    }
    assert_eq!(discord.fake.posted.lock().unwrap().len(), 2);
    db.drop_db().await;
}

async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn posts_in(discord: &FakeDiscord) -> Vec<serde_json::Value> {
    let posted = discord.fake.posted.lock().unwrap();
    posted.iter().map(|(_, body)| body.clone()).collect()
}

// `/generate` with an attached picture is deferred (fetching a picture may
// outlast Discord's 3 seconds), the picture becomes the player's upload
// and reaches ComfyUI, and when the job ends the player is told in the
// channel they asked from: the picture attached and shown, or the reason
// and the credits given back. A job that ends while the front door is down
// is told when it is back, Discord failing for a moment delays a notice
// but loses none, and each job is told once.
both_backends!(
    generated_pictures_are_posted_back_to_the_channel,
    |backend| {
        use support::fake_comfyui::{FakeComfy, PICTURE};
        let db = TestDb::new(backend).await;
        let comfy = FakeComfy::start().await;
        let config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
        let runtime = Arc::new(
            actors::Runtime::start(db.store().await, config)
                .await
                .unwrap(),
        );
        let discord = fake_discord(0).await;
        let options = kokoro::discord::Options {
            proxy: Some(discord.base.clone()),
            roleplay_posts: false,
            ..Default::default()
        };
        let bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
            .await
            .expect("the bot starts");
        let channel = "700000000000000002";
        let (alice, bob) = ("600000000000000001", "600000000000000002");

        let picture = png(640, 480);
        let attached = discord.attach("880000000000000001", "cat.png", &picture);
        discord.send(interaction(
            "2001",
            alice,
            "generate",
            json!([{"name": "workflow", "type": 3, "value": "upscale"},
               {"name": "picture", "type": 11, "value": "880000000000000001"}]),
            json!({"attachments": {"880000000000000001": attached}}),
        ));
        let deferred = discord.answer("2001", 1).await;
        assert_eq!(deferred["type"], 5, "deferred first: {deferred}");
        let queued = discord.answer("2001", 2).await;
        assert!(shown(&queued).contains("Queued"), "{queued}");
        assert!(shown(&queued).contains("held"), "{queued}");

        discord.send(interaction(
            "2002",
            bob,
            "generate",
            json!([{"name": "workflow", "type": 3, "value": "image"},
               {"name": "prompt", "type": 3, "value": "explode"}]),
            json!({}),
        ));
        let answered = discord.answer("2002", 1).await;
        assert_eq!(answered["type"], 4, "answered at once: {answered}");

        assert!(
            wait_for_long(|| posts_in(&discord).len() >= 2).await,
            "both players told: {:?}",
            posts_in(&discord)
        );
        let posts = posts_in(&discord);
        let to = |user: &str| {
            posts
                .iter()
                .find(|p| p["content"] == format!("<@{user}>"))
                .cloned()
                .unwrap_or_else(|| panic!("no post for {user}: {posts:?}"))
        };
        let done = to(alice);
        assert_eq!(done["allowed_mentions"]["users"], json!([alice]), "{done}");
        let embed = &done["embeds"][0];
        assert_eq!(embed["title"], "Your Upscale ×4 is ready", "{done}");
        assert!(embed["description"]
            .as_str()
            .unwrap()
            .contains("5 credits charged"));
        let files = discord.fake.files.lock().unwrap().clone();
        assert_eq!(files.len(), 1, "the picture attached once");
        let (posted_in, name, bytes) = &files[0];
        assert_eq!((posted_in.as_str(), bytes.as_slice()), (channel, PICTURE));
        assert_eq!(embed["image"]["url"], format!("attachment://{name}"));
        // What the player attached is what ComfyUI was given.
        assert_eq!(comfy.uploads()[0].1, picture);

        let failed = to(bob);
        let text = failed["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(
            failed["embeds"][0]["title"],
            "Your Text to image job failed"
        );
        assert!(text.contains("10 credits given back"), "{failed}");

        // Not a picture: a private, short refusal, and nothing charged.
        let text_file = discord.attach("880000000000000002", "notes.txt", b"just some notes");
        discord.send(interaction(
            "2003",
            bob,
            "generate",
            json!([{"name": "workflow", "type": 3, "value": "upscale"},
               {"name": "picture", "type": 11, "value": "880000000000000002"}]),
            json!({"attachments": {"880000000000000002": text_file}}),
        ));
        let refused = discord.answer("2003", 2).await;
        assert!(ephemeral(&refused), "{refused}");
        assert!(
            content(&refused).contains("not a PNG, JPEG or WebP"),
            "{refused}"
        );
        let bob_key = actors::UserKey::new(
            actors::GuildId::new(700000000000000001).unwrap(),
            bob.parse().unwrap(),
        );
        let credits = runtime
            .dispatch(actors::Command {
                id: None,
                key: bob_key,
                kind: actors::CommandKind::Generation(
                    actors::game::generation::GenerationCommand::Credits,
                ),
            })
            .await;
        assert_eq!(credits.data["credits"], 50, "{credits:?}");

        // The front door goes down; a job ends meanwhile; Discord then fails
        // once. The player is told after the restart, once.
        bot.abort();
        let _ = bot.await;
        let guild = actors::GuildId::new(700000000000000001).unwrap();
        let alice_key = actors::UserKey::new(guild, alice.parse().unwrap());
        let queued = runtime
            .dispatch(actors::Command {
                id: None,
                key: alice_key,
                kind: actors::CommandKind::Generation(
                    actors::game::generation::GenerationCommand::Generate {
                        workflow: Some("image".into()),
                        prompt: "a lighthouse".into(),
                        image: None,
                        notify: Some(format!("discord:{channel}")),
                    },
                ),
            })
            .await;
        assert!(queued.ok, "{queued:?}");
        let id = queued.data["job_id"].as_str().unwrap().to_owned();
        for _ in 0..1000 {
            let stored = runtime.store().job(&id).await.unwrap().unwrap();
            if stored.status == actors::job::JobStatus::Done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(posts_in(&discord).len(), 2, "nobody to tell while down");
        *discord.fake.failing_posts.lock().unwrap() = 1;
        let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
            .await
            .expect("the bot starts again");
        assert!(
            wait_for_long(|| posts_in(&discord).len() >= 3).await,
            "told after the restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let posts = posts_in(&discord);
        assert_eq!(posts.len(), 3, "each job told once: {posts:?}");
        assert_eq!(posts[2]["embeds"][0]["footer"]["text"], format!("job {id}"));
        assert_eq!(
            *discord.fake.failing_posts.lock().unwrap(),
            0,
            "the 503 was met"
        );
        db.drop_db().await;
    }
);

/// Like `wait_for`, for what takes a render and a retry: up to 20 s.
async fn wait_for_long(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..2000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

// Discord refuses the slash commands at first (as a server may): the door
// says so, is not up, tries again with backoff, and comes up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_registration_is_an_error_retried_until_taken() {
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, actors::RuntimeConfig::default())
            .await
            .unwrap(),
    );
    let discord = fake_discord(0).await;
    *discord.fake.refused_registrations.lock().unwrap() = 2;
    let doors = kokoro::doors::Doors::default();
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        doors: doors.clone(),
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("the bot starts");
    let down = wait_for_long(|| {
        matches!(doors.state("discord"), Some(kokoro::doors::DoorState::Down(w)) if w.starts_with("register"))
    })
    .await;
    assert!(
        down,
        "not ready while refused: {:?}",
        doors.state("discord")
    );
    assert!(
        wait_for_long(|| doors.state("discord") == Some(kokoro::doors::DoorState::Up)).await,
        "up once taken: {:?}",
        doors.state("discord")
    );
    assert!(discord
        .fake
        .registered
        .lock()
        .unwrap()
        .contains(&"daily".to_owned()));
    discord.send(interaction(
        "3001",
        "600000000000000001",
        "daily",
        json!([]),
        json!({}),
    ));
    let answer = discord.answer("3001", 1).await;
    assert!(shown(&answer).contains("gold"), "{answer}");
    db.drop_db().await;
}

// Discord takes a notice but answers with a body serenity cannot read:
// it is delivered, told once, and the notices behind it go out.
both_backends!(a_notice_answered_2xx_unreadably_is_told_once, |backend| {
    let db = TestDb::new(backend).await;
    let comfy = support::fake_comfyui::FakeComfy::start().await;
    let config = comfy.runtime_config(db.dir.path(), Duration::from_secs(20));
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, config)
            .await
            .unwrap(),
    );
    let discord = fake_discord(0).await;
    *discord.fake.unreadable_posts.lock().unwrap() = 1;
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("the bot starts");
    for (n, user) in [
        "600000000000000001",
        "600000000000000002",
        "600000000000000003",
    ]
    .iter()
    .enumerate()
    {
        discord.send(interaction(
            &format!("410{n}"),
            user,
            "generate",
            json!([{"name": "workflow", "type": 3, "value": "image"},
                   {"name": "prompt", "type": 3, "value": "a quiet pond"}]),
            json!({}),
        ));
    }
    assert!(
        wait_for_long(|| posts_in(&discord).len() >= 3).await,
        "all three told: {:?}",
        posts_in(&discord)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(posts_in(&discord).len(), 3, "and none twice");
    db.drop_db().await;
});

// Two players join the arena from a channel: both are answered at once,
// and when the battle is fought each is told in that channel, mentioned,
// who won and what was paid; told once.
both_backends!(both_sides_of_an_arena_battle_are_told_who_won, |backend| {
    let db = TestDb::new(backend).await;
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, actors::RuntimeConfig::default())
            .await
            .unwrap(),
    );
    let discord = fake_discord(0).await;
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("the bot starts");
    let (alice, bob) = ("600000000000000001", "600000000000000002");
    for (n, who) in [alice, bob].iter().enumerate() {
        // Gold for the fee first.
        discord.send(interaction(
            &format!("500{n}"),
            who,
            "daily",
            json!([]),
            json!({}),
        ));
        discord.answer(&format!("500{n}"), 1).await;
    }
    discord.send(interaction(
        "5101",
        alice,
        "arena_join",
        json!([]),
        json!({}),
    ));
    let joined = discord.answer("5101", 1).await;
    assert!(shown(&joined).contains("told here who won"), "{joined}");
    discord.send(interaction("5102", bob, "arena_join", json!([]), json!({})));
    discord.answer("5102", 1).await;
    assert!(
        wait_for_long(|| posts_in(&discord).len() >= 2).await,
        "both told: {:?}",
        posts_in(&discord)
    );
    let posts = posts_in(&discord);
    let of = |user: &str| {
        posts
            .iter()
            .find(|p| p["content"] == format!("<@{user}>"))
            .cloned()
            .unwrap_or_else(|| panic!("no notice for {user}: {posts:?}"))
    };
    let (a, b) = (of(alice), of(bob));
    let won = |p: &serde_json::Value| p["embeds"][0]["title"] == "You won your arena battle";
    assert!(won(&a) != won(&b), "one winner: {a} {b}");
    let winner = if won(&a) { &a } else { &b };
    assert!(
        winner["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .contains("won 50 gold"),
        "{winner}"
    );
    assert_eq!(a["allowed_mentions"]["users"], json!([alice]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(posts_in(&discord).len(), 2, "told once each");
    // Over HTTP (or here), arena_status says it too.
    discord.send(interaction(
        "5103",
        alice,
        "arena_status",
        json!([]),
        json!({}),
    ));
    let status = discord.answer("5103", 1).await;
    assert!(shown(&status).contains("Your last battle"), "{status}");
    db.drop_db().await;
});

// Discord cannot be reached at start: the door says so, the rest of kokoro
// serves, and the door connects by itself once Discord answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_that_cannot_be_reached_is_retried_while_the_rest_serves() {
    let db = TestDb::new(Backend::Sqlite).await;
    let runtime = Arc::new(
        actors::Runtime::start(db.store().await, actors::RuntimeConfig::default())
            .await
            .unwrap(),
    );
    let discord = fake_discord(0).await;
    *discord.fake.failing_gateway.lock().unwrap() = 2;
    let doors = kokoro::doors::Doors::default();
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        doors: doors.clone(),
        ..Default::default()
    };
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", &options, links(&db))
        .await
        .expect("start returns: connecting is the door's own task");
    assert!(
        wait_for_long(|| matches!(doors.state("discord"), Some(kokoro::doors::DoorState::Down(w)) if w.starts_with("connect"))).await,
        "{:?}",
        doors.state("discord")
    );
    let r = runtime.dispatch(cmd(1, "balance", json!({}))).await;
    assert!(r.ok, "the runtime serves meanwhile: {r:?}");
    assert!(
        wait_for_long(|| doors.state("discord") == Some(kokoro::doors::DoorState::Up)).await,
        "{:?}",
        doors.state("discord")
    );
    discord.send(interaction(
        "6001",
        "600000000000000001",
        "daily",
        json!([]),
        json!({}),
    ));
    assert!(shown(&discord.answer("6001", 1).await).contains("gold"));
    db.drop_db().await;
}
