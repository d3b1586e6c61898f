//! Operations, as an operator runs them, on real SQLite and PostgreSQL:
//! a backup taken while the game runs restores into an empty store of
//! either backend with every row, balance and invariant intact; a damaged
//! backup restores nothing; `restore` refuses a store with data unless
//! forced, and then keeps a backup of what it replaces; a corrupted SQLite
//! file is refused at start with the way back, which works; migrations back
//! up a store with data first; scheduled backups report their age; `audit`
//! lists admin actions.

mod support;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use actors::{Runtime, RuntimeConfig};
use serde_json::json;
use support::*;

const TOKEN: &str = "ops-token-0123456789abcdef";

/// A guild with some life in it: balances, a transfer, a purchase, a
/// rendered job, summons, a roleplay character and its XP, and an admin's
/// grant and setting (audited).
async fn play(rt: &Runtime) {
    for user in 1..=5 {
        assert!(rt.dispatch(cmd(user, "daily", json!({}))).await.ok);
    }
    assert!(
        rt.dispatch(cmd(1, "give", json!({"to": "2", "amount": 30})))
            .await
            .ok
    );
    assert!(
        rt.dispatch(cmd(2, "buy", json!({"item": "bait", "quantity": 2})))
            .await
            .ok
    );
    let job = rt
        .dispatch(cmd(
            3,
            "generate",
            json!({"workflow": "image", "prompt": "a fox"}),
        ))
        .await;
    assert!(job.ok, "{job:?}");
    assert!(
        rt.dispatch(cmd(4, "xp_create", json!({"name": "Ayla"})))
            .await
            .ok
    );
    let admin = |name: &str, args| actors::Command {
        id: None,
        key: key(9),
        kind: actors::CommandKind::parse(name, &args).unwrap(),
    };
    assert!(
        rt.dispatch_admin(admin(
            "config_set",
            json!({"key": "rp_channels", "value": "42"})
        ))
        .await
        .ok
    );
    assert!(
        rt.dispatch(cmd(4, "message", json!({"channel_id": "42", "chars": 450})))
            .await
            .ok
    );
    assert!(
        rt.dispatch_admin(admin(
            "grant",
            json!({"user": "5", "currency": "gems", "amount": 300, "reason": "event prize"})
        ))
        .await
        .ok
    );
    assert!(rt.dispatch(cmd(5, "summon", json!({}))).await.ok);
    // The job ends (done), so the backup holds a closed job too.
    for _ in 0..500 {
        let jobs = rt.dispatch(cmd(3, "jobs", json!({}))).await;
        if jobs.data["jobs"][0]["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rt.settle(Duration::from_secs(10)).await.unwrap();
}

/// `play`, on a runtime that is then shut down: a store with life in it
/// and no process holding it.
async fn played(db: &TestDb) {
    let rt = db.runtime(config()).await;
    play(&rt).await;
    Arc::into_inner(rt).unwrap().shutdown().await;
}

fn config() -> RuntimeConfig {
    // Paid jobs, so charges reach the ledger.
    let mut generation = actors::game::generation::GenerationData::default();
    generation.rules.trial_daily_free = 0;
    generation.workflows = generation.workflows.each(|w| w.daily_free = 0);
    RuntimeConfig {
        generation: Arc::new(generation),
        jobs: actors::config::JobsConfig {
            render: Some(Arc::new(actors::job_queue::SimulatedRender::new(
                Duration::from_millis(5),
                0,
            ))),
        },
        starting_gems: 100,
        ..RuntimeConfig::default()
    }
}

both_backends!(
    a_backup_taken_while_playing_restores_into_either_backend,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config()).await;
        play(&rt).await;
        let file = db.dir.path().join("backups").join("live.backup.gz");
        // Taken while the runtime is up, with more commands landing meanwhile.
        let audit_before = rt.audit().await.unwrap();
        let busy = {
            let rt = rt.clone();
            tokio::spawn(async move {
                for user in 100..150 {
                    rt.dispatch(cmd(user, "daily", json!({}))).await;
                }
            })
        };
        let manifest = rt.store().backup_to(&file).await.unwrap();
        busy.await.unwrap();
        assert!(
            manifest.rows["ledger"] > 0 && manifest.rows["jobs"] == 1,
            "{manifest:?}"
        );
        // Whatever landed during the backup, its snapshot is consistent: every
        // invariant holds on what it restores.
        assert!(kokoro::ops::verify_backup(&file).await.unwrap().is_empty());
        let before = rt.store().row_counts().await.unwrap();

        for target in [Backend::Sqlite, Backend::Postgres] {
            let fresh = TestDb::new(target).await;
            let store = fresh.store().await;
            let restored = store.restore_from(&file, false).await.unwrap();
            assert_eq!(restored, manifest.rows.values().sum::<u64>());
            let after = store.row_counts().await.unwrap();
            for (table, rows) in &manifest.rows {
                let extra = u64::from(table == "audit_log"); // the restore's own row
                assert_eq!(
                    after[table],
                    rows + extra,
                    "{table} restored into {target:?}"
                );
            }
            assert_eq!(
                before.keys().collect::<Vec<_>>(),
                after.keys().collect::<Vec<_>>()
            );
            assert!(
                store.verify(false).await.unwrap().is_empty(),
                "{:?}",
                store.verify(false).await
            );
            // The players of before the backup, as they were; those who joined
            // during it, whole or not at all.
            let audit = store.audit().await.unwrap();
            for ((currency, reason), sum) in &audit_before.by_reason {
                let now = audit.by_reason[&(currency.clone(), reason.clone())];
                if reason == "welcome" || reason == "daily" {
                    assert!(now >= *sum, "{currency} {reason}");
                } else {
                    assert_eq!(now, *sum, "{currency} {reason}");
                }
            }
            // The restored store plays on: new ledger and audit rows get ids
            // past the restored ones.
            let rt2 = Arc::new(Runtime::start(store, config()).await.unwrap());
            let r = rt2.dispatch(cmd(1, "balance", json!({}))).await;
            assert_eq!(r.data["gold"], audit_before_gold(&rt, 1).await);
            assert!(rt2.dispatch(cmd(7, "daily", json!({}))).await.ok);
            let admin = actors::Command {
                id: None,
                key: key(9),
                kind: actors::CommandKind::parse(
                    "grant",
                    &json!({"user": "7", "currency": "gold", "amount": 5, "reason": "after"}),
                )
                .unwrap(),
            };
            assert!(rt2.dispatch_admin(admin).await.ok);
            rt2.settle(Duration::from_secs(10)).await.unwrap();
            assert!(rt2.store().verify(false).await.unwrap().is_empty());
            fresh.drop_db().await;
        }
        db.drop_db().await;
    }
);

async fn audit_before_gold(rt: &Runtime, user: i64) -> serde_json::Value {
    rt.dispatch(cmd(user, "balance", json!({}))).await.data["gold"].clone()
}

/// Runs a `kokoro` command to its end.
async fn exec(mut c: tokio::process::Command) -> Output {
    c.stdin(std::process::Stdio::null());
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("the command finished")
        .expect("the command ran")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

both_backends!(
    restore_verifies_first_and_replaces_only_when_forced,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config()).await;
        play(&rt).await;
        let backup = |db: &TestDb, args: &[&str]| {
            let mut c = kokoro_binary(db, TOKEN);
            c.args(args);
            exec(c)
        };
        let file = db.dir.path().join("kept.backup.gz");
        let file_arg = file.to_str().unwrap().to_owned();
        let out = backup(&db, &["backup", "--out", &file_arg]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("backup written to"));
        let out = backup(&db, &["verify", "--backup", &file_arg]).await;
        assert!(out.status.success(), "{}", text(&out));
        let out = backup(&db, &["verify"]).await;
        assert!(out.status.success(), "{}", text(&out));

        // More play after the backup; a restore without --force is refused.
        assert!(rt.dispatch(cmd(8, "daily", json!({}))).await.ok);
        rt.settle(Duration::from_secs(10)).await.unwrap();
        let out = backup(&db, &["restore", &file_arg]).await;
        assert!(!out.status.success());
        assert!(text(&out).contains("pass --force"), "{}", text(&out));
        assert_eq!(
            rt.dispatch(cmd(8, "balance", json!({}))).await.data["gold"],
            200
        );

        // A damaged backup restores nothing, even forced.
        let damaged = db.dir.path().join("damaged.backup.gz");
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&damaged, &bytes).unwrap();
        let out = backup(&db, &["restore", damaged.to_str().unwrap(), "--force"]).await;
        assert!(!out.status.success());
        assert!(text(&out).contains("nothing restored"), "{}", text(&out));

        // Forced: what it replaces is backed up first, then the backup's state.
        Arc::into_inner(rt).unwrap().shutdown().await;
        let out = backup(&db, &["restore", &file_arg, "--force"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let kept = actors::store::backup::list(&db.dir.path().join("backups"));
        assert!(
            kept.iter()
                .any(|p| p.to_string_lossy().contains("before-restore")),
            "{kept:?}"
        );
        let rt = db.runtime(config()).await;
        let r = rt.dispatch(cmd(8, "balance", json!({}))).await;
        assert_eq!(
            r.data["gold"], 100,
            "player 8's daily came after the backup"
        );
        let out = backup(&db, &["audit", "--since", "1d"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let listed = text(&out);
        assert!(listed.contains("by operator: restore"), "{listed}");
        assert!(listed.contains("grant on 5"), "{listed}");
        assert!(listed.contains("config_set"), "{listed}");
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_database_is_refused_at_start_and_restore_brings_it_back() {
    let db = TestDb::new(Backend::Sqlite).await;
    played(&db).await;
    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["backup"]);
    let out = exec(c).await;
    assert!(out.status.success(), "{}", text(&out));
    let latest = actors::store::backup::list(&db.dir.path().join("backups")).remove(0);

    // Everything into the main file first (a WAL the last connection left
    // would still hold the rows), then pages in its middle overwritten: a
    // disk's bad sector.
    let store = db.store().await;
    sql(&store, "PRAGMA wal_checkpoint(TRUNCATE)").await;
    store.close().await;
    let path = db.sqlite_path();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[3 * 4096..6 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["serve", "--http", "127.0.0.1:0"]);
    let out = exec(c).await;
    assert!(!out.status.success(), "a damaged store is not served");
    let said = text(&out);
    assert!(said.contains("damaged"), "{said}");
    assert!(said.contains("kokoro restore"), "{said}");
    assert!(
        said.contains(latest.to_str().unwrap()),
        "names the last backup: {said}"
    );

    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["restore", latest.to_str().unwrap(), "--force"]);
    let out = exec(c).await;
    assert!(out.status.success(), "{}", text(&out));
    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["verify"]);
    let out = exec(c).await;
    assert!(out.status.success(), "{}", text(&out));
    let rt = db.runtime(config()).await;
    assert_eq!(
        rt.dispatch(cmd(2, "balance", json!({}))).await.data["gold"],
        json!(100 + 100 + 30 - 2 * 5),
        "player 2 as backed up"
    );
    db.drop_db().await;
}

both_backends!(migrating_a_store_with_data_backs_it_up_first, |backend| {
    let db = TestDb::new(backend).await;
    played(&db).await;
    // Undo the newest migration, as if this store were from the last release.
    let store = db.store().await;
    let newest = store.expected_migration_version().unwrap();
    // The newest: cluster mode's tables on PostgreSQL, nothing on SQLite.
    let undo: &[&str] = match backend {
        Backend::Postgres => &[
            "DROP TABLE cluster_members",
            "DROP TABLE cluster_leases",
            "DROP TABLE cluster_config",
        ],
        Backend::Sqlite => &[],
    };
    for statement in undo.iter().copied() {
        sql(&store, statement).await;
    }
    sql(
        &store,
        &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"),
    )
    .await;
    store.close().await;
    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["migrate"]);
    let out = exec(c).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("backed up to"), "{}", text(&out));
    let kept = actors::store::backup::list(&db.dir.path().join("backups"));
    assert_eq!(kept.len(), 1);
    assert!(kept[0]
        .to_string_lossy()
        .contains(&format!("before-migration-{newest}")));
    assert!(kokoro::ops::verify_backup(&kept[0])
        .await
        .unwrap()
        .is_empty());
    // Migrated now: nothing more to back up.
    let mut c = kokoro_binary(&db, TOKEN);
    c.args(["migrate"]);
    let out = exec(c).await;
    assert!(!text(&out).contains("backed up to"), "{}", text(&out));
    db.drop_db().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_scheduled_backups_and_reports_their_age() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (_server, base) = serve_binary(
        kokoro_binary(&db, TOKEN),
        &["--backup-every", "1h", "--backup-keep", "3"],
    )
    .await;
    let dir = db.dir.path().join("backups");
    let mut metrics = String::new();
    for _ in 0..300 {
        metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !actors::store::backup::list(&dir).is_empty()
            && metrics.contains("kokoro_backup_age_seconds")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = actors::store::backup::list(&dir);
    assert_eq!(taken.len(), 1, "one backup at start");
    assert!(kokoro::ops::verify_backup(&taken[0])
        .await
        .unwrap()
        .is_empty());
    assert!(
        metrics.contains("kokoro_backup_interval_seconds 3600"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kokoro_backup_last_success_timestamp_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("kokoro_backup_age_seconds"), "{metrics}");
    db.drop_db().await;
}

both_backends!(
    verify_names_orphan_rows_and_jobs_in_no_valid_state,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config()).await;
        play(&rt).await;
        assert!(rt.store().verify(false).await.unwrap().is_empty());
        let job = rt
            .store()
            .jobs_of(key(3), 1)
            .await
            .unwrap()
            .remove(0)
            .job
            .id;
        let breakage = [
        "INSERT INTO inventory (guild_id, user_id, item, quantity) VALUES (1000, 999, 'bait', 3)".to_owned(),
        format!("UPDATE jobs SET status = 'exploded' WHERE id = '{job}'"),
    ];
        for statement in &breakage {
            sql(rt.store(), statement).await;
        }
        let mut c = kokoro_binary(&db, TOKEN);
        c.args(["verify"]);
        let out = exec(c).await;
        assert!(!out.status.success());
        let said = text(&out);
        assert!(
            said.contains("1 row(s) of inventory belong to no player"),
            "{said}"
        );
        assert!(
            said.contains(&format!("jobs in no valid state: {job}")),
            "{said}"
        );
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sqlite_into_postgres_once_and_proves_it() {
    let from = TestDb::new(Backend::Sqlite).await;
    played(&from).await;
    let to = TestDb::new(Backend::Postgres).await;
    let copy = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_kokoro"));
        c.args([
            "migrate-store",
            "--from",
            &format!("sqlite:{}", from.sqlite_path().display()),
            "--to",
            &to.url,
        ]);
        exec(c)
    };
    let out = copy().await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the same rows per table and the same ledger sums"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(&to.url),
        "no password or full address printed"
    );
    let out = copy().await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("already holds this copy"),
        "{}",
        text(&out)
    );
    let rt = to.runtime(config()).await;
    assert_eq!(
        rt.dispatch(cmd(2, "balance", json!({}))).await.data["gold"],
        json!(100 + 100 + 30 - 2 * 5)
    );
    to.drop_db().await;
    from.drop_db().await;
}

both_backends!(
    retention_prunes_old_command_ids_and_jobs_and_the_books_still_balance,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config()).await;
        play(&rt).await;
        let first = rt
            .dispatch(cmd_with_id(10, "daily-10", "daily", json!({})))
            .await;
        assert!(first.ok);
        let again = rt
            .dispatch(cmd_with_id(10, "daily-10", "daily", json!({})))
            .await;
        assert!(
            again.replayed,
            "a retry within the window gets the first reply"
        );
        // A job still due a notice is kept until told.
        let waiting = rt
            .dispatch(actors::Command {
                id: None,
                key: key(11),
                kind: actors::CommandKind::Generation(
                    actors::game::generation::GenerationCommand::Generate {
                        workflow: Some("image".into()),
                        prompt: "a fox".into(),
                        image: None,
                        notify: Some("discord:1".into()),
                    },
                ),
            })
            .await;
        assert!(waiting.ok, "{waiting:?}");
        rt.settle(Duration::from_secs(10)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let later = actors::config::unix_ms() + 60_000;
        let store = rt.store();
        assert!(store.prune_commands(later).await.unwrap() > 0);
        assert_eq!(
            store.prune_jobs(later).await.unwrap(),
            1,
            "the told job only"
        );
        assert!(
            store.verify(false).await.unwrap().is_empty(),
            "{:?}",
            store.verify(false).await
        );
        let jobs = rt.dispatch(cmd(3, "jobs", json!({}))).await;
        assert_eq!(jobs.data["jobs"], json!([]));
        assert_eq!(store.jobs_of(key(11), 5).await.unwrap().len(), 1);
        let audit = rt.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Credits, "generate"),
            -20,
            "both jobs' charges: the ledger keeps the pruned one's"
        );
        // Past the window a retry is a new command: the rules answer it afresh.
        let late = rt
            .dispatch(cmd_with_id(10, "daily-10", "daily", json!({})))
            .await;
        assert!(!late.replayed);
        assert_eq!(late.code(), Some(actors::ErrorCode::AlreadyClaimed));
        db.drop_db().await;
    }
);
