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
    let _bot = kokoro::discord::start(runtime.clone(), "fake-token", Some(&discord.base))
        .await
        .expect("the bot starts");

    let alice = "600000000000000001";
    let bob = "600000000000000002";
    discord.send(interaction("1001", alice, "daily", json!([]), json!({})));
    let daily = discord.answer("1001", 1).await;
    assert!(content(&daily).starts_with("+100 gold"), "{daily}");
    assert!(!ephemeral(&daily));

    // Discord redelivers an interaction: the same id pays once.
    discord.send(interaction("1001", alice, "daily", json!([]), json!({})));
    let again = discord.answer("1001", 2).await;
    assert_eq!(content(&again), content(&daily), "the first reply again");

    let give = interaction(
        "1002",
        alice,
        "give",
        json!([{"name": "to", "type": 6, "value": bob}, {"name": "amount", "type": 4, "value": 30}]),
        json!({"users": {bob: user(bob)}}),
    );
    discord.send(give);
    let gave = discord.answer("1002", 1).await;
    assert!(content(&gave).contains("Gave 30 gold"), "{gave}");

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
    for name in actors::CommandKind::names() {
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
