//! The arena, as players would check it, against real SQLite and real
//! PostgreSQL: two entrants of a guild are matched and the battle is paid
//! exactly once, leaving before a match refunds the fee, a leave that races
//! a match never pays twice, and waiting players survive a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actors::arena::EntryStatus;
use actors::domain::Currency;
use actors::game::arena::battle as arena;
use actors::{ErrorCode, Reply, Runtime, RuntimeConfig};
use futures::future::join_all;
use serde_json::{json, Value};
use support::*;

async fn start(db: &TestDb) -> Arc<Runtime> {
    Arc::new(
        Runtime::start(db.store().await, RuntimeConfig::default())
            .await
            .expect("runtime starts"),
    )
}

async fn status(rt: &Runtime, user: i64) -> Value {
    let r = rt.dispatch(cmd(user, "arena_status", json!({}))).await;
    assert!(r.ok, "{r:?}");
    r.data
}

/// Waits until `user` is out of the arena with `battles` battles behind them.
async fn wait_paid(rt: &Runtime, user: i64, battles: usize) -> Value {
    for _ in 0..1000 {
        let s = status(rt, user).await;
        if s["status"] == "out" && s["recent_battles"].as_array().map_or(0, Vec::len) == battles {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("player {user} was never paid: {:?}", status(rt, user).await)
}

fn join(user: i64) -> actors::Command {
    cmd(user, "arena_join", json!({}))
}

async fn books_balance(rt: &Runtime) -> actors::store::AuditReport {
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    audit
}

both_backends!(two_entrants_are_matched_and_paid_once, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db).await;
    let a = rt.dispatch(join(1)).await;
    assert!(a.ok, "{a:?}");
    assert_eq!(gold(&a), 100 - arena::ENTRY_FEE);
    assert_eq!(status(&rt, 1).await["status"], "waiting");
    assert!(rt.dispatch(join(2)).await.ok);
    let (one, two) = (wait_paid(&rt, 1, 1).await, wait_paid(&rt, 2, 1).await);
    let (b1, b2) = (&one["recent_battles"][0], &two["recent_battles"][0]);
    assert_eq!(b1["battle_id"], b2["battle_id"], "the same battle");
    assert_ne!(b1["won"], b2["won"], "one winner");
    assert_eq!(
        (b1["opponent"].as_str(), b2["opponent"].as_str()),
        (Some("2"), Some("1"))
    );
    let winner = if b1["won"] == true { 1 } else { 2 };
    let loser = 3 - winner;
    let balance = |u| {
        let rt = rt.clone();
        async move { rt.dispatch(cmd(u, "profile", json!({}))).await }
    };
    let (w, l): (Reply, Reply) = (balance(winner).await, balance(loser).await);
    assert_eq!(gold(&w), 80 + arena::prize());
    assert_eq!(gold(&l), 80);
    assert_eq!(
        (w.data["xp"].as_i64(), l.data["xp"].as_i64()),
        (Some(arena::WIN_XP), Some(arena::LOSS_XP))
    );
    let audit = books_balance(&rt).await;
    assert_eq!(
        audit.ledger(Currency::Gold, "arena_fee"),
        -2 * arena::ENTRY_FEE
    );
    assert_eq!(audit.ledger(Currency::Gold, "arena_prize"), arena::prize());
    // Both are out: either may join again.
    assert!(rt.dispatch(join(1)).await.ok);
    db.drop_db().await;
});

both_backends!(leaving_before_a_match_refunds_the_fee, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db).await;
    assert!(rt.dispatch(join(1)).await.ok);
    let left = rt
        .dispatch(cmd_with_id(1, "leave-1", "arena_leave", json!({})))
        .await;
    assert!(left.ok, "{left:?}");
    assert_eq!(
        (gold(&left), left.data["refunded"].as_i64()),
        (100, Some(arena::ENTRY_FEE))
    );
    let retry = rt
        .dispatch(cmd_with_id(1, "leave-1", "arena_leave", json!({})))
        .await;
    assert_eq!(retry, left, "a retry returns the first reply");
    let again = rt.dispatch(cmd(1, "arena_leave", json!({}))).await;
    assert_eq!(again.code(), Some(ErrorCode::NotFound));
    // The one who left is not fought: the next two entrants meet each other.
    assert!(rt.dispatch(join(2)).await.ok);
    assert!(rt.dispatch(join(3)).await.ok);
    wait_paid(&rt, 2, 1).await;
    let three = wait_paid(&rt, 3, 1).await;
    assert_eq!(three["recent_battles"][0]["opponent"], "2");
    assert_eq!(status(&rt, 1).await["recent_battles"], json!([]));
    books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(joining_hammered_on_one_player_enters_once, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db).await;
    let replies = join_all((0..200).map(|_| {
        let rt = rt.clone();
        tokio::spawn(async move { dispatch_retrying(&rt, join(1)).await })
    }))
    .await;
    let replies: Vec<Reply> = replies.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(replies.iter().filter(|r| r.ok).count(), 1, "one entry");
    assert!(replies
        .iter()
        .filter(|r| !r.ok)
        .all(|r| r.code() == Some(ErrorCode::LimitReached)));
    let p = rt.dispatch(cmd(1, "balance", json!({}))).await;
    assert_eq!(gold(&p), 100 - arena::ENTRY_FEE, "charged once");
    books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(leaves_racing_matches_never_pay_twice, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db).await;
    // 120 players join at once, and every one of them also tries to leave
    // at once: some leaves beat their match, some lose to it.
    let players: Vec<i64> = (1..=120).collect();
    let joins = join_all(players.iter().map(|&u| {
        let rt = rt.clone();
        tokio::spawn(async move { dispatch_retrying(&rt, join(u)).await })
    }))
    .await;
    assert!(joins.into_iter().all(|r| r.unwrap().ok));
    let leaves = join_all(players.iter().map(|&u| {
        let rt = rt.clone();
        tokio::spawn(async move { dispatch_retrying(&rt, cmd(u, "arena_leave", json!({}))).await })
    }))
    .await;
    let leaves: Vec<Reply> = leaves.into_iter().map(|r| r.unwrap()).collect();
    assert!(
        leaves.iter().all(|r| r.ok
            || matches!(
                r.code(),
                Some(ErrorCode::AlreadyFinished | ErrorCode::NotFound)
            )),
        "{leaves:?}"
    );
    let left = leaves.iter().filter(|r| r.ok).count() as i64;

    // Wait until nobody is fighting; at most one player may still wait.
    let mut fought = 0i64;
    let mut waiting = 0;
    for &u in &players {
        let mut s = status(&rt, u).await;
        for _ in 0..1000 {
            if s["status"] != "fighting" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            s = status(&rt, u).await;
        }
        match s["status"].as_str() {
            Some("waiting") => waiting += 1,
            Some("out") => fought += s["recent_battles"].as_array().unwrap().len() as i64,
            other => panic!("player {u} is {other:?}"),
        }
    }
    assert!(waiting <= 1, "{waiting} players still waiting");
    assert_eq!(
        left + fought + waiting,
        120,
        "every entry left, fought or waits"
    );
    assert_eq!(fought % 2, 0, "battles have two sides");
    let audit = books_balance(&rt).await;
    assert_eq!(
        audit.ledger(Currency::Gold, "arena_refund"),
        left * arena::ENTRY_FEE
    );
    assert_eq!(
        audit.ledger(Currency::Gold, "arena_prize"),
        fought / 2 * arena::prize()
    );
    assert_eq!(
        audit.ledger(Currency::Gold, "arena_fee"),
        -120 * arena::ENTRY_FEE
    );
    // Storage agrees, entry by entry.
    for &u in &players {
        for e in rt.store().arena_of(key(u), 10).await.unwrap() {
            assert!(
                matches!(
                    e.status,
                    EntryStatus::Left | EntryStatus::Rewarded | EntryStatus::Waiting
                ),
                "{e:?}"
            );
            assert_eq!(e.fought.is_some(), e.status == EntryStatus::Rewarded);
        }
    }
    db.drop_db().await;
});

both_backends!(a_waiting_player_waits_again_after_a_restart, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db).await;
    assert!(rt.dispatch(join(1)).await.ok);
    Arc::try_unwrap(rt)
        .ok()
        .expect("sole owner")
        .shutdown()
        .await;
    let rt = start(&db).await;
    assert_eq!(status(&rt, 1).await["status"], "waiting");
    assert_eq!(status(&rt, 1).await["waiting_in_guild"], 1);
    assert!(rt.dispatch(join(2)).await.ok);
    wait_paid(&rt, 1, 1).await;
    wait_paid(&rt, 2, 1).await;
    books_balance(&rt).await;
    db.drop_db().await;
});

both_backends!(
    an_arena_that_panics_is_restarted_and_matches_on,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(&db).await;
        assert!(rt.dispatch(join(1)).await.ok);
        assert!(rt.panic_system_actor_once("arena").await);
        // The restarted arena read its line back from storage.
        assert_eq!(status(&rt, 1).await["waiting_in_guild"], 1);
        assert!(rt.dispatch(join(2)).await.ok);
        wait_paid(&rt, 1, 1).await;
        wait_paid(&rt, 2, 1).await;
        let audit = books_balance(&rt).await;
        assert_eq!(
            audit.ledger(Currency::Gold, "arena_prize"),
            arena::prize(),
            "one battle, paid once"
        );
        db.drop_db().await;
    }
);

both_backends!(
    a_battle_fought_but_not_paid_is_paid_after_a_restart,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(&db).await;
        // Two players in different guilds, so the arena does not match them...
        let (g1, g2) = (
            actors::GuildId::new(11).unwrap(),
            actors::GuildId::new(12).unwrap(),
        );
        let in_guild = |g, u: i64| actors::Command {
            id: None,
            key: actors::UserKey::new(g, u.to_string().parse().unwrap()),
            kind: actors::CommandKind::Arena(actors::game::arena::ArenaCommand::Join {
                notify: None,
            }),
        };
        assert!(rt.dispatch(in_guild(g1, 1)).await.ok);
        assert!(rt.dispatch(in_guild(g2, 2)).await.ok);
        Arc::try_unwrap(rt)
            .ok()
            .expect("sole owner")
            .shutdown()
            .await;
        // ...and the process stops right after a match committed, before either
        // side was paid: the state a crash between the two steps leaves.
        let store = db.store().await;
        let a = store
            .arena_of(actors::UserKey::new(g1, "1".parse().unwrap()), 1)
            .await
            .unwrap();
        let b = store
            .arena_of(actors::UserKey::new(g2, "2".parse().unwrap()), 1)
            .await
            .unwrap();
        assert!(store
            .arena_match(
                &a[0].entry,
                &b[0].entry,
                "b-crash",
                true,
                arena::prize(),
                1,
                None
            )
            .await
            .unwrap());
        store.close().await;

        let rt = start(&db).await;
        for _ in 0..1000 {
            let paid = rt.store().arena_open().await.unwrap().is_empty();
            if paid {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            rt.store().arena_open().await.unwrap().is_empty(),
            "both sides paid"
        );
        let winner = rt
            .dispatch(actors::Command {
                kind: actors::CommandKind::Economy(actors::game::economy::EconomyCommand::Balance),
                ..in_guild(g1, 1)
            })
            .await;
        assert_eq!(gold(&winner), 80 + arena::prize());
        let audit = books_balance(&rt).await;
        assert_eq!(
            audit.ledger(Currency::Gold, "arena_prize"),
            arena::prize(),
            "paid once"
        );
        db.drop_db().await;
    }
);
