//! The runtime's guarantees, as a player would check them, against real
//! SQLite and real PostgreSQL: one payout per day however hard `/daily` is
//! hammered, transfers that neither create nor destroy gold, no change lost to
//! activation races, and one effect per command id.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actors::{ErrorCode, Runtime, RuntimeConfig};
use futures::future::join_all;
use serde_json::json;
use support::*;

async fn start(db: &TestDb, config: RuntimeConfig) -> Arc<Runtime> {
    Arc::new(
        Runtime::start(db.store().await, config)
            .await
            .expect("runtime starts"),
    )
}

both_backends!(daily_hammered_500_times_pays_once, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db, RuntimeConfig::default()).await;
    let replies = join_all((0..500).map(|_| {
        let rt = rt.clone();
        tokio::spawn(async move { dispatch_retrying(&rt, cmd(7, "daily", json!({}))).await })
    }))
    .await;
    let replies: Vec<_> = replies.into_iter().map(|r| r.unwrap()).collect();
    let paid: Vec<_> = replies.iter().filter(|r| r.ok).collect();
    assert_eq!(paid.len(), 1, "exactly one daily pays");
    assert!(replies
        .iter()
        .filter(|r| !r.ok)
        .all(|r| r.code() == Some(ErrorCode::AlreadyClaimed)));
    let balance = rt.dispatch(cmd(7, "balance", json!({}))).await;
    assert_eq!(gold(&balance), gold(paid[0]));
    assert_eq!(gold(&balance), 100 + 100, "welcome + first daily");
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    assert_eq!(audit.ledger(actors::domain::Currency::Gold, "daily"), 100);
    db.drop_db().await;
});

both_backends!(two_thousand_concurrent_gives_conserve_gold, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(
        &db,
        RuntimeConfig {
            starting_gold: 1_000,
            ..Default::default()
        },
    )
    .await;
    let users: Vec<i64> = (1..=50).collect();
    // Create every player first so the total is known.
    for &u in &users {
        rt.dispatch(cmd(u, "balance", json!({}))).await;
    }
    let total_before: i64 = 50 * 1_000;
    let tasks = (0..2000).map(|i: u64| {
        let rt = rt.clone();
        let users = users.clone();
        tokio::spawn(async move {
            let from = users[(i * 7919 % 50) as usize];
            let mut to = users[(i * 104_729 % 50) as usize];
            if to == from {
                to = users[((i + 1) % 50) as usize];
            }
            // Amounts up to 150 against 1,000 each: some senders run dry and overdraw.
            let amount = 1 + (i * 31 % 150);
            dispatch_retrying(
                &rt,
                cmd(
                    from,
                    "give",
                    json!({"to": to.to_string(), "amount": amount}),
                ),
            )
            .await
        })
    });
    let replies: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ok = replies.iter().filter(|r| r.ok).count();
    let refused = replies
        .iter()
        .filter(|r| r.code() == Some(ErrorCode::InsufficientFunds))
        .count();
    assert_eq!(
        ok + refused,
        2000,
        "every give either moved gold or was refused for funds: {:?}",
        replies
            .iter()
            .find(|r| !r.ok && r.code() != Some(ErrorCode::InsufficientFunds))
    );
    assert!(
        ok > 500 && refused > 0,
        "the test exercises both paths (ok {ok}, refused {refused})"
    );
    rt.settle(Duration::from_secs(20)).await.unwrap();
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    assert_eq!(audit.pending_transfers, 0);
    assert_eq!(
        audit.gold_total, total_before,
        "gives neither create nor destroy gold"
    );
    let mut seen = 0;
    for &u in &users {
        let b = gold(&rt.dispatch(cmd(u, "balance", json!({}))).await);
        assert!(b >= 0);
        seen += b;
    }
    assert_eq!(
        seen, total_before,
        "balances players see add up to the same total"
    );
    db.drop_db().await;
});

both_backends!(
    a_give_is_visible_to_its_recipient_when_acknowledged,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(
            &db,
            RuntimeConfig {
                starting_gold: 10_000,
                ..Default::default()
            },
        )
        .await;
        // Eight senders give 1,000 times in all to eight recipients whose
        // mailboxes are kept busy by readers; right after each "sent", the
        // recipient's balance is read. Every give acknowledged before that read
        // (counted only once acknowledged) must show in it.
        let senders: Vec<i64> = (1..=8).collect();
        let recipients: Vec<i64> = (101..=108).collect();
        for &u in senders.iter().chain(&recipients) {
            rt.dispatch(cmd(u, "balance", json!({}))).await;
        }
        let acked: Arc<HashMap<i64, std::sync::atomic::AtomicI64>> = Arc::new(
            recipients
                .iter()
                .map(|&r| (r, std::sync::atomic::AtomicI64::new(0)))
                .collect(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let (rt, stop, recipients) = (rt.clone(), stop.clone(), recipients.clone());
                tokio::spawn(async move {
                    let mut n = i;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let to = recipients[n % recipients.len()];
                        dispatch_retrying(&rt, cmd(to, "profile", json!({}))).await;
                        n += 1;
                    }
                })
            })
            .collect();
        let givers = senders.iter().map(|&from| {
            let (rt, acked, recipients) = (rt.clone(), acked.clone(), recipients.clone());
            tokio::spawn(async move {
                let mut stale = Vec::new();
                for i in 0..125usize {
                    let to = recipients[(i + from as usize) % recipients.len()];
                    let amount = 1 + (i as i64 % 3);
                    let give = cmd(
                        from,
                        "give",
                        json!({"to": to.to_string(), "amount": amount}),
                    );
                    let sent = dispatch_retrying(&rt, give).await;
                    assert!(sent.ok, "{sent:?}");
                    let owed =
                        acked[&to].fetch_add(amount, std::sync::atomic::Ordering::SeqCst) + amount;
                    let seen = gold(&dispatch_retrying(&rt, cmd(to, "balance", json!({}))).await);
                    if seen < 10_000 + owed {
                        stale.push((to, seen, 10_000 + owed));
                    }
                }
                stale
            })
        });
        let stale: Vec<_> = join_all(givers)
            .await
            .into_iter()
            .flat_map(|r| r.unwrap())
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        assert!(
        stale.is_empty(),
        "{} of 1,000 reads after \"sent\" missed an acknowledged give (recipient, seen, at least): {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
        // And the books: each recipient has exactly what was sent to them.
        let mut total = 0;
        for &u in senders.iter().chain(&recipients) {
            total += gold(&rt.dispatch(cmd(u, "balance", json!({}))).await);
        }
        for &r in &recipients {
            let owed = acked[&r].load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                gold(&rt.dispatch(cmd(r, "balance", json!({}))).await),
                10_000 + owed
            );
        }
        assert_eq!(total, 16 * 10_000, "gives neither create nor destroy gold");
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(
            audit.pending_transfers, 0,
            "every acknowledged give is credited"
        );
        db.drop_db().await;
    }
);

both_backends!(
    players_giving_to_each_other_at_once_never_wait_for_each_other,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(
            &db,
            RuntimeConfig {
                starting_gold: 10_000,
                ..Default::default()
            },
        )
        .await;
        // Two players give to each other 200 times at once, in both directions
        // from many tasks: a give waits for its credit, and neither actor may
        // wait for the other.
        let gives = (0..400).map(|i: i64| {
            let rt = rt.clone();
            let (from, to) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
            tokio::spawn(async move {
                dispatch_retrying(
                    &rt,
                    cmd(from, "give", json!({"to": to.to_string(), "amount": 1})),
                )
                .await
            })
        });
        let replies = tokio::time::timeout(Duration::from_secs(60), join_all(gives))
            .await
            .expect("crossing gives finish: no actor waits for another");
        assert!(replies.into_iter().all(|r| r.unwrap().ok));
        let a = gold(&rt.dispatch(cmd(1, "balance", json!({}))).await);
        let b = gold(&rt.dispatch(cmd(2, "balance", json!({}))).await);
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(
            audit.pending_transfers, 0,
            "no give was answered before its credit"
        );
        assert_eq!(
            (a, b),
            (10_000, 10_000),
            "200 each way: both end where they began"
        );
        db.drop_db().await;
    }
);

both_backends!(
    a_paired_credit_lands_with_its_debit_and_never_without_it,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(
            &db,
            RuntimeConfig {
                starting_gold: 1_000,
                ..Default::default()
            },
        )
        .await;
        for u in [1, 2] {
            rt.dispatch(cmd(u, "balance", json!({}))).await;
        }
        let store = rt.store();
        let rules = Rules::default();
        let ctx = rules.context(7);
        let give = cmd_with_id(1, "pair-1", "give", json!({"to": "2", "amount": 5}));
        let sender = store.load_user(key(1)).await.unwrap().state;
        let mut debit = actors::game::decide(&sender, key(1), &give.kind, give.id.clone(), &ctx)
            .unwrap()
            .writes;
        // As the actor records it: the command id with its reply.
        debit.reply_json = Some("{}".into());
        let transfer = debit
            .transfer_out()
            .expect("a give writes its transfer")
            .clone();
        let recipient = store.load_user(key(2)).await.unwrap().state;
        let mut credit =
            actors::game::economy::receive_with_debit(&recipient, key(2), &transfer, &ctx)
                .unwrap()
                .writes;
        credit.paired = true;
        use actors::writeset::CommitOutcome::*;
        let pair = [debit, credit];
        assert_eq!(store.commit(&pair).await.unwrap(), [Applied, Applied]);
        // The same debit again (its command id is taken): its credit is not
        // applied either, though it has no guard of its own.
        assert_eq!(
            store.commit(&pair).await.unwrap(),
            [AlreadyApplied, AlreadyApplied]
        );
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(
            audit.pending_transfers, 0,
            "a paired transfer is written credited"
        );
        assert_eq!(audit.gold_total, 2_000, "gold is conserved");
        assert_eq!(store.load_user(key(1)).await.unwrap().state.gold, 995);
        assert_eq!(store.load_user(key(2)).await.unwrap().state.gold, 1_005);
        db.drop_db().await;
    }
);

both_backends!(activation_races_lose_no_acknowledged_change, |backend| {
    let db = TestDb::new(backend).await;
    let config = RuntimeConfig {
        idle_timeout: Duration::from_millis(3),
        max_resident: 10,
        starting_gold: 1_000_000,
        ..Default::default()
    };
    let rt = start(&db, config).await;
    // 200 players, 10 resident at most, actors passivating after 3 ms idle:
    // every acknowledged purchase must be in the final state.
    let tasks = (0..200i64).map(|u| {
        let rt = rt.clone();
        tokio::spawn(async move {
            let mut acked = 0i64;
            for round in 0..10 {
                let r = dispatch_retrying(
                    &rt,
                    cmd(u + 1, "buy", json!({"item": "bait", "quantity": 1})),
                )
                .await;
                assert!(r.ok, "{r:?}");
                acked += 1;
                assert_eq!(
                    r.data["quantity"],
                    acked,
                    "player {} round {round}: a stale reload lost a purchase",
                    u + 1
                );
                if round % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            }
            acked
        })
    });
    let acked: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        rt.activations() > 400,
        "players were passivated and reactivated mid-run ({} activations for 200 players)",
        rt.activations()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rt.resident(), 0, "idle actors passivate");
    for (u, n) in acked.iter().enumerate() {
        let inv = rt.dispatch(cmd(u as i64 + 1, "inventory", json!({}))).await;
        assert_eq!(inv.data["items"][0]["quantity"], *n);
        let b = gold(&rt.dispatch(cmd(u as i64 + 1, "balance", json!({}))).await);
        assert_eq!(b, 1_000_000 - 5 * n);
    }
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    db.drop_db().await;
});

both_backends!(a_command_id_pays_once_even_across_a_restart, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(&db, RuntimeConfig::default()).await;
    rt.dispatch(cmd(2, "balance", json!({}))).await;
    let give = || {
        cmd_with_id(
            1,
            "interaction-42",
            "give",
            json!({"to": "2", "amount": 30}),
        )
    };
    let replies: Vec<_> = join_all((0..50).map(|_| {
        let rt = rt.clone();
        let c = give();
        tokio::spawn(async move { dispatch_retrying(&rt, c).await })
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "every retry gets the first reply"
    );
    assert!(replies[0].ok);
    assert_eq!(gold(&replies[0]), 70);
    rt.settle(Duration::from_secs(5)).await.unwrap();
    let rt = Arc::into_inner(rt).expect("sole owner");
    rt.shutdown().await;

    let rt = start(&db, RuntimeConfig::default()).await;
    let again = rt.dispatch(give()).await;
    assert_eq!(
        again, replies[0],
        "after a restart the first reply comes back"
    );
    assert_eq!(gold(&rt.dispatch(cmd(1, "balance", json!({}))).await), 70);
    assert_eq!(gold(&rt.dispatch(cmd(2, "balance", json!({}))).await), 130);
    // A different id is a different command.
    let other = rt
        .dispatch(cmd_with_id(
            1,
            "interaction-43",
            "give",
            json!({"to": "2", "amount": 30}),
        ))
        .await;
    assert_eq!(gold(&other), 40);
    db.drop_db().await;
});

both_backends!(idempotency_holds_past_the_in_memory_window, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(
        &db,
        RuntimeConfig {
            starting_gold: 10_000,
            ..Default::default()
        },
    )
    .await;
    let first = rt
        .dispatch(cmd_with_id(1, "old-0", "buy", json!({"item": "bait"})))
        .await;
    assert!(first.ok);
    // Push the first id out of the actor's memory of recent ids.
    for i in 1..=40 {
        assert!(
            rt.dispatch(cmd_with_id(
                1,
                &format!("old-{i}"),
                "buy",
                json!({"item": "bait"})
            ))
            .await
            .ok
        );
    }
    let retry = rt
        .dispatch(cmd_with_id(1, "old-0", "buy", json!({"item": "bait"})))
        .await;
    assert_eq!(retry, first);
    let daily = rt.dispatch(cmd_with_id(1, "d-1", "daily", json!({}))).await;
    for i in 41..=80 {
        rt.dispatch(cmd_with_id(
            1,
            &format!("old-{i}"),
            "buy",
            json!({"item": "bait"}),
        ))
        .await;
    }
    assert_eq!(
        rt.dispatch(cmd_with_id(1, "d-1", "daily", json!({}))).await,
        daily,
        "not already_claimed: the first reply"
    );
    let inv = rt.dispatch(cmd(1, "inventory", json!({}))).await;
    assert_eq!(inv.data["items"][0]["quantity"], 81);
    db.drop_db().await;
});

both_backends!(daily_streak_follows_the_utc_calendar, |backend| {
    use std::sync::atomic::{AtomicI64, Ordering};
    let db = TestDb::new(backend).await;
    let now = Arc::new(AtomicI64::new(20_000 * 86_400_000 + 3_600_000));
    let clock_now = now.clone();
    let config = RuntimeConfig {
        clock: Arc::new(move || clock_now.load(Ordering::Relaxed)),
        ..Default::default()
    };
    let rt = start(&db, config).await;
    let day = 86_400_000;
    let claim = || async { rt.dispatch(cmd(5, "daily", json!({}))).await };
    assert_eq!(claim().await.data["streak"], 1);
    assert_eq!(claim().await.code(), Some(ErrorCode::AlreadyClaimed));
    now.fetch_add(day - 3_600_001, Ordering::Relaxed); // 23:59:59.999 the same day
    assert_eq!(claim().await.code(), Some(ErrorCode::AlreadyClaimed));
    now.fetch_add(1, Ordering::Relaxed); // midnight
    assert_eq!(claim().await.data["streak"], 2);
    now.fetch_add(2 * day, Ordering::Relaxed); // a day missed
    let r = claim().await;
    assert_eq!(r.data["streak"], 1);
    let audit = rt.audit().await.unwrap();
    assert_eq!(
        audit.ledger(actors::domain::Currency::Gold, "daily"),
        100 + 120 + 100
    );
    db.drop_db().await;
});

both_backends!(shop_buy_and_leaderboard, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(
        &db,
        RuntimeConfig {
            starting_gold: 200,
            ..Default::default()
        },
    )
    .await;
    let shop = rt.dispatch(cmd(1, "shop", json!({}))).await;
    assert!(shop.data["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["item"] == "fishing_rod"));
    let bought = rt
        .dispatch(cmd(1, "buy", json!({"item": "fishing_rod"})))
        .await;
    assert!(bought.ok && gold(&bought) == 50);
    let again = rt
        .dispatch(cmd(1, "buy", json!({"item": "fishing_rod"})))
        .await;
    assert_eq!(again.code(), Some(ErrorCode::LimitReached));
    let poor = rt
        .dispatch(cmd(
            1,
            "buy",
            json!({"item": "health_potion", "quantity": 2}),
        ))
        .await;
    assert_eq!(poor.code(), Some(ErrorCode::InsufficientFunds));
    assert_eq!(
        rt.dispatch(cmd(1, "buy", json!({"item": "unicorn"})))
            .await
            .code(),
        Some(ErrorCode::NotFound)
    );
    for u in 2..=4 {
        rt.dispatch(cmd(u, "daily", json!({}))).await;
    }
    let board = rt
        .dispatch(cmd(1, "leaderboard", json!({"by": "gold"})))
        .await;
    let entries = board.data["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["gold"], 300);
    assert_eq!(entries.last().unwrap()["user_id"], "1");
    let mut counts = HashMap::new();
    for e in entries {
        *counts.entry(e["gold"].as_i64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts[&300], 3);
    db.drop_db().await;
});

both_backends!(full_mailbox_answers_busy_and_changes_nothing, |backend| {
    let db = TestDb::new(backend).await;
    let rt = start(
        &db,
        RuntimeConfig {
            mailbox_capacity: 2,
            starting_gold: 10_000,
            ..Default::default()
        },
    )
    .await;
    rt.dispatch(cmd(9, "balance", json!({}))).await;
    let replies: Vec<_> = join_all((0..300).map(|_| {
        let rt = rt.clone();
        tokio::spawn(async move { rt.dispatch(cmd(9, "buy", json!({"item": "bait"}))).await })
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let ok = replies.iter().filter(|r| r.ok).count() as i64;
    let busy = replies
        .iter()
        .filter(|r| r.code() == Some(ErrorCode::Busy))
        .count() as i64;
    assert!(
        busy > 0,
        "a two-slot mailbox under 300 concurrent commands must push back"
    );
    assert_eq!(ok + busy, 300);
    let inv = rt.dispatch(cmd(9, "inventory", json!({}))).await;
    assert_eq!(
        inv.data["items"][0]["quantity"], ok,
        "busy commands bought nothing"
    );
    assert_eq!(
        gold(&rt.dispatch(cmd(9, "balance", json!({}))).await),
        10_000 - 5 * ok
    );
    db.drop_db().await;
});

both_backends!(
    full_commit_backlog_answers_busy_and_changes_nothing,
    |backend| {
        let db = TestDb::new(backend).await;
        let config = RuntimeConfig {
            // One WriteSet per transaction, one transaction at a time: far slower
            // than 300 simultaneous arrivals, so the 4-slot backlog must fill.
            commit: actors::group_commit::GroupCommitConfig {
                backlog: 4,
                max_batch: 1,
                parallel: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let rt = start(&db, config).await;
        for u in 1..=300 {
            dispatch_retrying(&rt, cmd(u, "balance", json!({}))).await;
        }
        // 300 different players at once against a backlog of 4 WriteSets.
        let replies: Vec<_> = join_all((1..=300).map(|u| {
            let rt = rt.clone();
            tokio::spawn(
                async move { (u, rt.dispatch(cmd(u, "buy", json!({"item": "bait"}))).await) },
            )
        }))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let busy: Vec<i64> = replies
            .iter()
            .filter(|(_, r)| r.code() == Some(ErrorCode::Busy))
            .map(|(u, _)| *u)
            .collect();
        assert!(
            !busy.is_empty(),
            "a backlog of 4 under 300 concurrent writers must push back"
        );
        assert!(replies
            .iter()
            .all(|(_, r)| r.ok || r.code() == Some(ErrorCode::Busy)));
        for (u, r) in &replies {
            let b = gold(&rt.dispatch(cmd(*u, "balance", json!({}))).await);
            assert_eq!(
                b,
                if r.ok { 95 } else { 100 },
                "player {u}: a busy purchase changed nothing"
            );
        }
        db.drop_db().await;
    }
);

/// Sustained writes must not grow SQLite's WAL without bound: checkpoints
/// have to complete even though group commit never stops writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_sustained_writes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rt = start(
        &db,
        RuntimeConfig {
            starting_gold: 1_000_000_000,
            ..Default::default()
        },
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let writers: Vec<_> = (1..=64i64)
        .map(|u| {
            let rt = rt.clone();
            tokio::spawn(async move {
                while std::time::Instant::now() < deadline {
                    let r = dispatch_retrying(&rt, cmd(u, "buy", json!({"item": "bait"}))).await;
                    assert!(r.ok, "{r:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let wal = std::fs::metadata(format!("{}-wal", db.sqlite_path().display()))
        .map(|m| m.len())
        .unwrap_or(0);
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty());
    assert!(
        wal < 32 * 1024 * 1024,
        "WAL grew to {} MiB in 4 s of writes: checkpoints are not completing",
        wal / 1024 / 1024
    );
}

both_backends!(
    the_resident_cap_passivates_the_least_recently_used_idle_player,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(
            &db,
            RuntimeConfig {
                max_resident: 10,
                ..Default::default()
            },
        )
        .await;
        let settle = || tokio::time::sleep(Duration::from_millis(30));
        for u in 1..=10 {
            rt.dispatch(cmd(u, "balance", json!({}))).await;
        }
        assert_eq!(rt.resident(), 10);
        // The 11th player takes the place of the one unused the longest.
        rt.dispatch(cmd(11, "balance", json!({}))).await;
        settle().await;
        assert_eq!(rt.resident(), 10, "the cap holds");
        // Player 2 plays again; the 12th player then displaces player 3, not 2.
        rt.dispatch(cmd(2, "balance", json!({}))).await;
        rt.dispatch(cmd(12, "balance", json!({}))).await;
        settle().await;
        assert_eq!(rt.resident(), 10);

        let activations = rt.activations();
        rt.dispatch(cmd(2, "balance", json!({}))).await;
        assert_eq!(
            rt.activations(),
            activations,
            "player 2 was used recently and stayed resident"
        );
        rt.dispatch(cmd(3, "balance", json!({}))).await;
        assert_eq!(
            rt.activations(),
            activations + 1,
            "player 3 was the least recently used and was passivated"
        );
        rt.dispatch(cmd(1, "balance", json!({}))).await;
        assert_eq!(
            rt.activations(),
            activations + 2,
            "player 1 was passivated first"
        );
        db.drop_db().await;
    }
);

/// A recipient whose actor cannot hand over its half of a give in time (its
/// state is still loading from a store that is held up) does not hold the
/// give for ever: after two seconds the debit commits alone, the credit is
/// delivered once the recipient can take it, and the give is answered only
/// then, still visible. PostgreSQL only: a table lock holds every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_whose_recipient_is_held_up_commits_alone_and_is_still_seen() {
    use sqlx::{Connection, Executor, Row};
    let db = TestDb::new(Backend::Postgres).await;
    let rt = start(
        &db,
        RuntimeConfig {
            starting_gold: 1_000,
            ..Default::default()
        },
    )
    .await;
    // The sender is resident; the recipient's actor is not yet.
    assert!(rt.dispatch(cmd(1, "daily", json!({}))).await.ok);
    let sender_before = gold(&rt.dispatch(cmd(1, "balance", json!({}))).await);

    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let give = {
        let rt = rt.clone();
        tokio::spawn(async move {
            rt.dispatch(cmd_with_id(
                1,
                "held-1",
                "give",
                json!({"to": "2", "amount": 40}),
            ))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert!(
        !give.is_finished(),
        "nothing can commit while the lock is held"
    );
    holder.execute("ROLLBACK").await.unwrap();

    let reply = tokio::time::timeout(Duration::from_secs(20), give)
        .await
        .expect("the give is answered once the store lets go")
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    assert_eq!(gold(&reply), sender_before - 40);
    // Seen at once by the recipient, and by storage.
    assert_eq!(
        gold(&rt.dispatch(cmd(2, "balance", json!({}))).await),
        1_040
    );
    let audit = rt.audit().await.unwrap();
    assert!(audit.violations().is_empty(), "{:?}", audit.violations());
    assert_eq!(audit.pending_transfers, 0);
    // Credited by delivery after the half's patience ran out, not paired:
    // a paired credit is written in the debit's own instant.
    let row = sqlx::query("SELECT created_ms, credited_ms FROM transfers")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let (created, credited): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        credited - created >= 2_000,
        "the credit came {} ms after the debit was decided",
        credited - created
    );
    drop(holder);
    db.drop_db().await;
}

both_backends!(
    a_give_storage_refuses_writes_neither_half_and_spoils_no_other,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = start(
            &db,
            RuntimeConfig {
                starting_gold: 1_000,
                ..Default::default()
            },
        )
        .await;
        // Storage refuses any ledger row of 13 gold, which the rules allow:
        // a batch holding such a give fails, and group commit splits it to
        // find the bad WriteSets. A give's debit and credit must stay
        // together through the split: refused together, or written together.
        let refuse = match backend {
            Backend::Postgres => {
                "ALTER TABLE ledger ADD CONSTRAINT no_thirteen CHECK (amount NOT IN (13, -13))"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER no_thirteen BEFORE INSERT ON ledger WHEN NEW.amount IN (13, -13) \
                 BEGIN SELECT RAISE(ABORT, 'no thirteen'); END"
            }
        };
        support::sql(rt.store(), refuse).await;
        // Both ways of pairing: upward (the sender asks for the credit)
        // and downward (the recipient asks for the debit), 13 every fifth.
        let gives: Vec<(i64, i64, i64)> = (1..=40)
            .flat_map(|i: i64| {
                let amount = if i % 5 == 0 { 13 } else { 7 };
                [(i, 100 + i, amount), (200 + i, i, amount)]
            })
            .collect();
        let replies = join_all(gives.iter().map(|&(from, to, amount)| {
            let rt = rt.clone();
            tokio::spawn(async move {
                dispatch_retrying(
                    &rt,
                    cmd(
                        from,
                        "give",
                        json!({"to": to.to_string(), "amount": amount}),
                    ),
                )
                .await
            })
        }))
        .await;
        let mut expected: HashMap<i64, i64> = HashMap::new();
        for (&(from, to, amount), reply) in gives.iter().zip(replies) {
            let reply = reply.unwrap();
            assert_eq!(
                reply.ok,
                amount != 13,
                "give {from} -> {to} of {amount}: {reply:?}"
            );
            for u in [from, to] {
                expected.entry(u).or_insert(1_000);
            }
            if reply.ok {
                *expected.get_mut(&from).unwrap() -= amount;
                *expected.get_mut(&to).unwrap() += amount;
            }
        }
        for (&u, &want) in &expected {
            assert_eq!(
                gold(&rt.dispatch(cmd(u, "balance", json!({}))).await),
                want,
                "player {u}"
            );
        }
        let store = rt.store();
        for (&u, &want) in &expected {
            let stored = store.load_user(key(u)).await.unwrap().state;
            // A player never written keeps no row: the starting gold.
            assert_eq!(
                if stored.exists { stored.gold } else { 1_000 },
                want,
                "stored player {u}"
            );
        }
        let audit = rt.audit().await.unwrap();
        assert!(audit.violations().is_empty(), "{:?}", audit.violations());
        assert_eq!(audit.pending_transfers, 0, "no half was left behind");
        db.drop_db().await;
    }
);
