//! `kokoro import`, as an operator runs it on the legacy bots' JSON, on
//! real SQLite and PostgreSQL: the shipped samples import once (a second
//! run imports nothing), a dry run changes nothing, every bad record is
//! named with its reason and skipped, and afterwards the books balance and
//! `kokoro verify` passes.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::json;
use support::*;

const TOKEN: &str = "import-token-0123456789abcdef";

async fn kokoro(db: &TestDb, args: &[&str]) -> (bool, String) {
    let mut c = kokoro_binary(db, TOKEN);
    c.args(args).stdin(std::process::Stdio::null());
    let out: Output = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("finished")
        .expect("ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn asset(name: &str) -> String {
    format!("{}/assets/legacy/{name}", env!("CARGO_MANIFEST_DIR"))
}

const GUILD_ID: i64 = 700000000000000001;

fn player(user: i64) -> actors::UserKey {
    actors::UserKey::new(
        actors::GuildId::new(GUILD_ID).unwrap(),
        actors::UserId::new(user).unwrap(),
    )
}

both_backends!(
    the_shipped_samples_import_once_and_the_books_balance,
    |backend| {
        let db = TestDb::new(backend).await;
        let collection = asset("collection.json");
        let roleplay = asset("roleplay.json");

        let (ok, out) = kokoro(&db, &["import", "collection", &collection, "--dry-run"]).await;
        assert!(ok, "{out}");
        assert!(out.contains("2 record(s) would be imported"), "{out}");
        assert!(out.contains("nothing was changed"));
        let store = db.store().await;
        assert_eq!(
            store.row_counts().await.unwrap()["users"],
            0,
            "a dry run writes nothing"
        );

        let (ok, out) = kokoro(&db, &["import", "collection", &collection]).await;
        assert!(ok, "{out}");
        assert!(out.contains("imported 2, skipped 0"), "{out}");
        let (ok, out) = kokoro(&db, &["import", "roleplay", &roleplay, "--admin", "9"]).await;
        assert!(ok, "{out}");
        // The guild's settings, the collection player's characters joined to
        // them, and a player only the roleplay bot knew.
        assert!(out.contains("imported 3, skipped 0"), "{out}");
        // Again: nothing twice.
        let (ok, out) = kokoro(&db, &["import", "collection", &collection]).await;
        assert!(ok && out.contains("imported 0, skipped 2"), "{out}");
        let (ok, out) = kokoro(&db, &["import", "roleplay", &roleplay, "--admin", "9"]).await;
        assert!(ok && out.contains("imported 0, skipped 3"), "{out}");

        let (ok, out) = kokoro(&db, &["verify"]).await;
        assert!(ok, "{out}");
        let (ok, out) = kokoro(&db, &["audit"]).await;
        assert!(ok, "{out}");
        assert!(out.contains("by operator: import collection"), "{out}");
        assert!(
            out.contains("by 9: config_set rp_channels"),
            "the imported settings, audited: {out}"
        );
        let audit = store.audit().await.unwrap();
        assert_eq!(
            audit.ledger(actors::domain::Currency::Gold, "imported"),
            1250 + 80
        );
        assert_eq!(
            audit.ledger(actors::domain::Currency::Gems, "imported"),
            340
        );

        // The players play on in kokoro with what they had.
        let rt = db.runtime(actors::RuntimeConfig::default()).await;
        let balance = rt
            .dispatch(actors::Command {
                id: None,
                key: player(600000000000000001),
                kind: actors::CommandKind::parse("balance", &json!({})).unwrap(),
            })
            .await;
        assert_eq!(balance.data["gold"], 1250, "{balance:?}");
        let mine = rt
            .dispatch(actors::Command {
                id: None,
                key: player(600000000000000001),
                kind: actors::CommandKind::parse("xp", &json!({"name": "Ayla"})).unwrap(),
            })
            .await;
        assert!(mine.ok, "{mine:?}");
        assert_eq!(mine.data["xp"], 1234, "{mine:?}");
        let settings = store
            .guild_settings(actors::GuildId::new(GUILD_ID).unwrap())
            .await
            .unwrap();
        assert_eq!(
            settings.get(actors::game::guild::settings::Key::CharPerRp),
            "120"
        );
        let collection = store
            .load_collection(player(600000000000000001))
            .await
            .unwrap();
        assert_eq!(collection.owned.len(), 2);
        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_named_with_their_reason_and_skipped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"guild_id": "1", "user_id": "1", "gold": 10, "gems": 1}"#,
        r#"{"guild_id": "1", "user_id": "2", "gold": -5}"#,
        r#"{"guild_id": "1", "user_id": "3", "characters": [{"name": "Tobin Mudlark", "rarity": "C"}, {"name": "tobin mudlark", "rarity": "C"}]}"#,
        r#"{"guild_id": "1", "user_id": "4", "characters": [{"name": "Tobin Mudlark", "rarity": "UR"}]}"#,
        r#"{"guild_id": "1", "user_id": "5", "daily": {"streak": 2, "last_claim": "yesterday"}}"#,
        r#"{"guild_id": "1", "user_id": "6", "gold": 1, "favourite_colour": "blue"}"#,
        r#"{"guild_id": "1", "user_id": "7", "characters": [{"name": "Nobody Atall", "rarity": "SR"}]}"#,
        r#"{"guild_id": "1", "user_id": "8", "gold": 1"#,
    ];
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let (ok, out) = kokoro(&db, &["import", "collection", path, "--dry-run"]).await;
    assert!(ok, "{out}");
    for (at, reason) in [
        ("line 2: ", "gold is -5"),
        ("line 3 character \"tobin mudlark\": ", "appears twice"),
        (
            "line 4 character \"Tobin Mudlark\": ",
            "unknown rarity \"UR\"",
        ),
        ("line 5: ", "broken timestamp"),
        ("line 7 character \"Nobody Atall\": ", "not in the roster"),
        ("line 8: ", "not JSON"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("REJECTED {at}")) && l.contains(reason)),
            "{at} rejected for {reason}: {out}"
        );
    }
    assert!(
        out.contains("WARNING line 6: unknown key \"favourite_colour\" ignored"),
        "{out}"
    );
    // A bad character is rejected alone: its player comes in without it.
    assert!(
        out.contains("5 record(s) would be imported, 3 rejected"),
        "{out}"
    );
    let (ok, strict) = kokoro(
        &db,
        &["import", "collection", path, "--dry-run", "--strict"],
    )
    .await;
    assert!(ok, "{strict}");
    assert!(
        strict.contains("REJECTED line 6: unknown key \"favourite_colour\""),
        "{strict}"
    );
    let (ok, real) = kokoro(&db, &["import", "collection", path]).await;
    assert!(
        ok && real.contains("imported 5, skipped 0, rejected 3"),
        "{real}"
    );
    assert_eq!(
        table(&out),
        table(&real),
        "the dry run predicted the real run"
    );

    let rp = json!({
        "config": {"1": {"char_per_rp": 0}},
        "users": {"1": {
            "20": {"timezone": "Mars/Olympus", "characters": {}},
            "21": {"last_xp_reset": "2025-02-30", "characters": {}},
            "22": {"last_xp_reset": "2025-02-03", "characters": {"Ayla": {"xp": 5, "daily_xp": 9}, "Brom": {"xp": 1}}},
            "24": {"active_character": "Zed", "characters": {"Ayla": {"xp": 5}}},
            "25": {"characters": {"Ayla": {"xp": 5}}}
        }}
    });
    let rp_file = dir.path().join("rp.json");
    std::fs::write(&rp_file, rp.to_string()).unwrap();
    let rp_path = rp_file.to_str().unwrap();
    let (ok, out) = kokoro(&db, &["import", "roleplay", rp_path, "--admin", "9"]).await;
    assert!(ok, "{out}");
    for (at, reason) in [
        ("config.1: ", "char_per_rp"),
        ("users.1.20: ", "unknown time zone"),
        ("users.1.21: ", "broken date"),
        (
            "users.1.22 character \"Ayla\": ",
            "less than today's counters",
        ),
        ("users.1.24: ", "none of their characters"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("REJECTED {at}")) && l.contains(reason)),
            "{at} rejected for {reason}: {out}"
        );
    }
    assert!(out.contains("imported 2, skipped 0, rejected 4"), "{out}");
    let (ok, out) = kokoro(&db, &["verify"]).await;
    assert!(ok, "{out}");
    db.drop_db().await;
}

/// The reconciliation table an import prints.
fn table(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("reconciled"))
        .take_while(|l| {
            !l.starts_with("dry run") && !l.starts_with("imported") && !l.starts_with("STOPPED")
        })
        .map(str::to_owned)
        .collect()
}

both_backends!(every_roleplay_character_of_a_player_arrives, |backend| {
    // The legacy bot's own shape: a player with four characters lost
    // every other one when their ids collided.
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rp.json");
    let doc = json!({"users": {GUILD_ID.to_string(): {"620000000000000001": {
        "timezone": "UTC",
        "characters": {"Ayla": {"xp": 100}, "Brom": {"xp": 200}, "Cato": {"xp": 300}, "Dara": {"xp": 400}}
    }}}});
    std::fs::write(&file, doc.to_string()).unwrap();
    let (ok, out) = kokoro(&db, &["import", "roleplay", file.to_str().unwrap()]).await;
    assert!(ok, "{out}");
    let store = db.store().await;
    let rp = store
        .load_roleplay(player(620000000000000001))
        .await
        .unwrap();
    let mut got: Vec<(String, i64)> = rp
        .characters
        .iter()
        .map(|c| (c.name.clone(), c.xp))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Ayla".to_owned(), 100),
            ("Brom".to_owned(), 200),
            ("Cato".to_owned(), 300),
            ("Dara".to_owned(), 400)
        ]
    );
    let (ok, out) = kokoro(&db, &["verify"]).await;
    assert!(ok, "{out}");
    db.drop_db().await;
});
