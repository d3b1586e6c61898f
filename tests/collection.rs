//! Character collection, as players would check it, against real SQLite and
//! real PostgreSQL: rates are published, a ten-pull is charged once and
//! everything it rolled is owned, hammering summon on one player charges
//! each pull exactly once, pity survives a restart, duplicates become
//! shards that raise levels, and a team's power is what the arena uses.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use actors::domain::Currency;
use actors::game::collection::roster::Roster;
use actors::{ErrorCode, Reply, Runtime, RuntimeConfig};
use futures::future::join_all;
use serde_json::{json, Value};
use support::*;

/// A roster small enough to reason about: a banner where every summon is a
/// C until pity gives the SSR at the fourth, and the shipped banners' shape.
const TINY: &str = r#"
[duplicates]
C = 3
R = 2
SR = 5
SSR = 10

[upgrade]
max_level = 3
shards = 2
gold = 50
power_percent = 10

[[banner]]
id = "only_pity"
name = "Only Pity"
cost = 5
ten_cost = 45
pity = 3
rates = { C = 100.0, SSR = 0.0 }
characters = ["Moss Fenwick", "Aster Vale"]

[[character]]
name = "Moss Fenwick"
rarity = "C"
power = 20

[[character]]
name = "Aster Vale"
rarity = "SSR"
power = 100
"#;

fn config(roster: Roster, gems: i64) -> RuntimeConfig {
    RuntimeConfig {
        roster: Arc::new(roster),
        starting_gems: gems,
        ..RuntimeConfig::default()
    }
}

fn gems(r: &Reply) -> i64 {
    r.data["gems"]
        .as_i64()
        .unwrap_or_else(|| panic!("reply has no gems: {r:?}"))
}

fn summon(user: i64, banner: &str, count: u32) -> actors::Command {
    cmd(user, "summon", json!({"banner": banner, "count": count}))
}

/// Every character the player owns, across all `collection` pages.
async fn owned(rt: &Runtime, user: i64) -> HashMap<String, Value> {
    let mut all = HashMap::new();
    for page in 1.. {
        let r = rt
            .dispatch(cmd(user, "collection", json!({ "page": page })))
            .await;
        assert!(r.ok, "{r:?}");
        for c in r.data["characters"].as_array().unwrap() {
            all.insert(c["name"].as_str().unwrap().to_owned(), c.clone());
        }
        if page >= r.data["pages"].as_u64().unwrap() {
            return all;
        }
    }
    unreachable!()
}

both_backends!(
    summon_without_arguments_publishes_every_banners_rates,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(RuntimeConfig::default()).await;
        let r = rt.dispatch(cmd(1, "summon", json!({}))).await;
        assert!(r.ok, "{r:?}");
        let banners = r.data["banners"].as_array().unwrap();
        assert_eq!(banners.len(), 2);
        for b in banners {
            let base: f64 = ["C", "R", "SR", "SSR"]
                .iter()
                .map(|k| b["rates"][k].as_f64().unwrap())
                .sum();
            assert!((base - 100.0).abs() < 1e-9, "{b}");
            assert!(
                b["rates_with_pity"]["SSR"].as_f64() > b["rates"]["SSR"].as_f64(),
                "{b}"
            );
        }
        assert!(r.message.contains("Standard Summon"), "{}", r.message);
        assert_eq!(
            gems(&rt.dispatch(cmd(1, "balance", json!({}))).await),
            0,
            "publishing rates charges nothing"
        );
        db.drop_db().await;
    }
);

both_backends!(
    a_ten_pull_is_charged_once_and_everything_rolled_is_owned,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config(Roster::shipped().unwrap(), 1_000)).await;
        let r = rt.dispatch(summon(1, "standard", 10)).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            gems(&r),
            1_000 - 45,
            "ten for the price of `ten_cost`, charged once"
        );
        let pulls = r.data["pulls"].as_array().unwrap();
        assert_eq!(pulls.len(), 10);
        let mine = owned(&rt, 1).await;
        for p in pulls {
            assert!(
                mine.contains_key(p["name"].as_str().unwrap()),
                "{p} is owned"
            );
        }
        let copies: i64 = mine.values().map(|c| c["copies"].as_i64().unwrap()).sum();
        assert_eq!(copies, 10);
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(
            audit.ledger(Currency::Gems, "summon"),
            -45,
            "one ledger row's worth"
        );
        // Bad input is refused and changes nothing.
        let bad = actors::CommandKind::parse("summon", &json!({"banner": "standard", "count": 5}));
        assert!(bad.is_err(), "{bad:?}");
        let none = rt.dispatch(summon(1, "no_such_banner", 1)).await;
        assert_eq!(none.code(), Some(ErrorCode::NotFound), "{none:?}");
        assert_eq!(gems(&rt.dispatch(cmd(1, "balance", json!({}))).await), 955);
        db.drop_db().await;
    }
);

both_backends!(
    three_hundred_concurrent_ten_pulls_on_one_player_charge_each_once,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db
            .runtime(config(Roster::shipped().unwrap(), 300 * 45 + 20))
            .await;
        let replies: Vec<Reply> = join_all((0..300).map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move {
                // A full mailbox answers busy and takes nothing: retry it.
                dispatch_retrying(
                    &rt,
                    cmd_with_id(
                        1,
                        &format!("ten-{i}"),
                        "summon",
                        json!({"banner": "standard", "count": 10}),
                    ),
                )
                .await
            })
        }))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let mut rolled: HashMap<String, i64> = HashMap::new();
        for r in &replies {
            assert!(r.ok, "{r:?}");
            for p in r.data["pulls"].as_array().unwrap() {
                *rolled
                    .entry(p["name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        let after = rt.dispatch(cmd(1, "balance", json!({}))).await;
        assert_eq!(gems(&after), 20, "300 charges of 45, no more, no less");
        let mine = owned(&rt, 1).await;
        for (name, n) in &rolled {
            let c = mine
                .get(name)
                .unwrap_or_else(|| panic!("{name} was rolled but is not owned"));
            assert_eq!(c["copies"].as_i64(), Some(*n), "{name}");
        }
        assert_eq!(rolled.values().sum::<i64>(), 3_000);
        // A retry of an acknowledged pull returns its first reply and rolls nothing.
        let again = rt
            .dispatch(cmd_with_id(
                1,
                "ten-7",
                "summon",
                json!({"banner": "standard", "count": 10}),
            ))
            .await;
        assert_eq!(again, replies[7]);
        assert_eq!(gems(&rt.dispatch(cmd(1, "balance", json!({}))).await), 20);
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        db.drop_db().await;
    }
);

both_backends!(pity_survives_a_restart, |backend| {
    let db = TestDb::new(backend).await;
    let roster = || Roster::parse(TINY, "tiny.toml").unwrap();
    let rt = db.runtime(config(roster(), 100)).await;
    for since in 1..=2 {
        let r = rt.dispatch(summon(1, "only_pity", 1)).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data["pulls"][0]["rarity"], "C");
        assert_eq!(r.data["pity"]["since_ssr"], since);
    }
    Arc::try_unwrap(rt)
        .ok()
        .expect("sole owner")
        .shutdown()
        .await;

    let rt = db.runtime(config(roster(), 100)).await;
    let third = rt.dispatch(summon(1, "only_pity", 1)).await;
    assert_eq!(
        third.data["pity"]["since_ssr"], 3,
        "counted on from before the restart: {third:?}"
    );
    let fourth = rt.dispatch(summon(1, "only_pity", 1)).await;
    assert_eq!(fourth.data["pulls"][0]["rarity"], "SSR", "{fourth:?}");
    assert_eq!(fourth.data["pulls"][0]["by_pity"], true);
    assert_eq!(fourth.data["pity"]["since_ssr"], 0);
    db.drop_db().await;
});

both_backends!(
    duplicates_become_shards_that_raise_levels_and_a_team_fights,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db
            .runtime(config(Roster::parse(TINY, "tiny.toml").unwrap(), 100))
            .await;
        // Three Cs: one new Moss, two duplicates of 3 shards each.
        let ten = rt.dispatch(summon(1, "only_pity", 1)).await;
        assert!(ten.ok, "{ten:?}");
        rt.dispatch(summon(1, "only_pity", 1)).await;
        let third = rt.dispatch(summon(1, "only_pity", 1)).await;
        assert_eq!(third.data["pulls"][0]["shards"], 3);
        let moss = rt
            .dispatch(cmd(1, "character", json!({"name": "moss fenwick"})))
            .await;
        assert_eq!(
            (moss.data["level"].as_i64(), moss.data["shards"].as_i64()),
            (Some(1), Some(6)),
            "{moss:?}"
        );
        assert_eq!(moss.data["next_level"], json!({"shards": 2, "gold": 50}));

        let up = rt
            .dispatch(cmd(1, "upgrade", json!({"name": "Moss Fenwick"})))
            .await;
        assert!(up.ok, "{up:?}");
        assert_eq!(gold(&up), 100 - 50);
        assert_eq!(
            (
                up.data["character"]["level"].as_i64(),
                up.data["character"]["shards"].as_i64()
            ),
            (Some(2), Some(4))
        );
        assert_eq!(up.data["character"]["power"], 22, "20 base + 10% a level");
        let up = rt
            .dispatch(cmd(1, "upgrade", json!({"name": "Moss Fenwick"})))
            .await;
        assert_eq!(
            up.code(),
            Some(ErrorCode::InsufficientFunds),
            "4 shards, 4 needed, but only 50 gold for 100: {up:?}"
        );
        let not_mine = rt
            .dispatch(cmd(1, "upgrade", json!({"name": "Aster Vale"})))
            .await;
        assert_eq!(not_mine.code(), Some(ErrorCode::NotFound));

        let team = rt
            .dispatch(cmd(1, "team", json!({"names": ["Aster Vale"]})))
            .await;
        assert_eq!(
            team.code(),
            Some(ErrorCode::NotFound),
            "not owned yet: {team:?}"
        );
        let team = rt
            .dispatch(cmd(1, "team", json!({"names": "moss fenwick"})))
            .await;
        assert!(team.ok, "{team:?}");
        assert_eq!(team.data["team_power"], 22);
        let twice = rt
            .dispatch(cmd(
                1,
                "team",
                json!({"names": ["Moss Fenwick", "moss fenwick"]}),
            ))
            .await;
        assert_eq!(twice.code(), Some(ErrorCode::InvalidArgument));
        // The arena fights with the team's power (the gold is spent, so give some).
        rt.dispatch(cmd(2, "give", json!({"to": "1", "amount": 50})))
            .await;
        rt.settle(std::time::Duration::from_secs(5)).await.unwrap();
        let joined = rt.dispatch(cmd(1, "arena_join", json!({}))).await;
        assert!(joined.ok, "{joined:?}");
        assert_eq!(joined.data["power"], 22);
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(audit.ledger(Currency::Gold, "upgrade"), -50);
        db.drop_db().await;
    }
);

/// Runs one statement on the test's database, behind kokoro's back.
async fn tamper(db: &TestDb, sql: &str) {
    use sqlx::{Connection, Executor};
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            c.execute(sql).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            c.execute(sql).await.unwrap();
        }
    }
}

both_backends!(
    check_proves_pity_copies_and_shards_from_the_logs,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db
            .runtime(config(Roster::parse(TINY, "tiny.toml").unwrap(), 100))
            .await;
        for _ in 0..3 {
            assert!(rt.dispatch(summon(1, "only_pity", 1)).await.ok);
        }
        assert!(
            rt.dispatch(cmd(1, "upgrade", json!({"name": "Moss Fenwick"})))
                .await
                .ok
        );
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());

        // A pity counter and a character's shards that no log explains.
        tamper(&db, "UPDATE pity SET since_ssr = since_ssr + 1").await;
        tamper(&db, "UPDATE characters SET shards = shards + 5").await;
        let found = rt.audit().await.unwrap().violations();
        assert!(
            found
                .iter()
                .any(|v| v.contains("Moss Fenwick") && v.contains("shards")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|v| v.contains("only_pity") && v.contains("pity")),
            "{found:?}"
        );
        db.drop_db().await;
    }
);
