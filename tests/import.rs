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

/// A player's id in generated files.
fn nth_user(i: u64) -> String {
    (620_000_000_000_000_000u64 + i).to_string()
}

both_backends!(
    thousands_of_generated_players_arrive_and_verify_compares_every_one,
    |backend| {
        use rand::{Rng, SeedableRng};
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(19);
        let players = 2_000u64;
        let mut users = serde_json::Map::new();
        let mut characters = 0u64;
        for i in 0..players {
            let n = rng.random_range(1..=25usize);
            characters += n as u64;
            let mut chars = serde_json::Map::new();
            for c in 0..n {
                let xp: i64 = rng.random_range(0..1_000_000);
                let daily = rng.random_range(0..=xp.min(100));
                chars.insert(
                    format!("Hero {c} of {i}"),
                    json!({"xp": xp, "daily_xp": daily, "char_buffer": rng.random_range(0..100),
                           "image_url": format!("https://img.example/{i}/{c}.png")}),
                );
            }
            users.insert(
                nth_user(i),
                json!({"timezone": "Europe/Paris", "last_xp_reset": "2026-01-02",
                       "active_character": format!("hero {} of {i}", n - 1), "characters": chars}),
            );
        }
        let file = dir.path().join("rp.json");
        let doc = json!({"version": 3, "users": {GUILD_ID.to_string(): users}});
        std::fs::write(&file, doc.to_string()).unwrap();
        let path = file.to_str().unwrap();

        let (ok, out) = kokoro(&db, &["import", "roleplay", path]).await;
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("imported {players}, skipped 0, rejected 0")),
            "{out}"
        );
        let row = table(&out)
            .into_iter()
            .find(|l| l.starts_with("characters"))
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            [
                "characters",
                &characters.to_string(),
                &characters.to_string(),
                "0",
                "0"
            ],
            "{out}"
        );
        let (ok, out) = kokoro(&db, &["import", "roleplay", path, "--verify"]).await;
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!(
                "compared {players} record(s) with the store: 0 differ"
            )),
            "{out}"
        );
        let audit = db.store().await.audit().await.unwrap();
        assert_eq!(audit.rp_characters as u64, characters);
        // Again: everything is present, nothing written twice.
        let (ok, out) = kokoro(&db, &["import", "roleplay", path]).await;
        assert!(
            ok && out.contains(&format!("imported 0, skipped {players}, rejected 0")),
            "{out}"
        );
        let (ok, out) = kokoro(&db, &["verify"]).await;
        assert!(ok, "{out}");

        // A change behind the import's back is named by --verify.
        let store = db.store().await;
        let victim = player(nth_user(7).parse().unwrap());
        let rp = store.load_roleplay(victim).await.unwrap();
        let mut ws = actors::writeset::WriteSet::new(victim, 0, None);
        let mut changed = rp.characters[0].clone();
        changed.xp += 1;
        ws.writes
            .push(actors::writeset::Write::RpCharacter(changed.clone()));
        store.commit(&[ws]).await.unwrap();
        let (ok, out) = kokoro(&db, &["import", "roleplay", path, "--verify"]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains(&format!(
                "DIFFERS users.{GUILD_ID}.{}: roleplay character {:?}: store xp {}",
                nth_user(7),
                changed.name,
                changed.xp
            )),
            "{out}"
        );
        assert!(out.contains("1 differ"), "{out}");
        db.drop_db().await;
    }
);

both_backends!(
    a_dirty_collection_file_imports_every_record_that_can_be_read,
    |backend| {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let g = GUILD_ID.to_string();
        let records: Vec<Vec<u8>> = vec![
            // 1: numbers as bots wrote them, null, a naive timestamp.
            json!({"guild_id": g, "user_id": "620000000000000901", "gold": "1250", "gems": 30.0,
                   "xp": 1e3, "level": null, "daily": {"streak": "-0", "last_claim": "2024-05-01T10:00:00"},
                   "inventory": {"bait": "3"}}).to_string().into_bytes(),
            // 2: the same player under other spellings of the id.
            json!({"guild_id": g, "user_id": "620000000000000902", "gold": 5}).to_string().into_bytes(),
            json!({"guild_id": g, "user_id": "+620000000000000902", "gold": 6}).to_string().into_bytes(),
            json!({"guild_id": g, "user_id": "0620000000000000902", "gold": 7}).to_string().into_bytes(),
            // 5: one invalid UTF-8 byte.
            b"{\"guild_id\": \"1\", \"user_id\": \"5\", \"gold\": 1, \"note\": \"\xff\"}".to_vec(),
            // 6: Python's NaN.
            b"{\"guild_id\": \"1\", \"user_id\": \"6\", \"gold\": NaN}".to_vec(),
            // 7: a key written twice.
            br#"{"guild_id": "1", "user_id": "7", "gold": 1, "gold": 1000000}"#.to_vec(),
            // 8: a positional array.
            b"[1, 2, 3]".to_vec(),
            // 9: beyond the game's bounds, each alone.
            json!({"guild_id": g, "user_id": "9", "gold": 1, "inventory": {"fishing_rod": 2, "bait": 1},
                   "characters": [{"name": "Tobin Mudlark", "rarity": "C", "level": 500},
                                  {"name": "Tamsin Quickbrook", "rarity": "SR", "level": 2}]}).to_string().into_bytes(),
            // 10: epoch seconds.
            json!({"guild_id": g, "user_id": "10", "daily": {"streak": 1, "last_claim": 1714557600}}).to_string().into_bytes(),
            // 11: XP past the most kokoro keeps.
            json!({"guild_id": g, "user_id": "11", "xp": i64::MAX}).to_string().into_bytes(),
            // 12: truncated.
            br#"{"guild_id": "1", "user_id": "12", "gold": "#.to_vec(),
        ];
        let mut text = b"\xEF\xBB\xBF[".to_vec();
        text.extend(records.join(&b",\n"[..]));
        let file = dir.path().join("players.json");
        std::fs::write(&file, &text).unwrap();
        let path = file.to_str().unwrap();

        let (ok, dry) = kokoro(&db, &["import", "collection", path, "--dry-run"]).await;
        assert!(!ok, "a damaged file fails the run: {dry}");
        assert_eq!(db.store().await.row_counts().await.unwrap()["users"], 0);
        let (ok, real) = kokoro(&db, &["import", "collection", path]).await;
        assert!(!ok, "{real}");
        assert_eq!(
            table(&dry),
            table(&real),
            "the dry run predicted the real run"
        );
        for (at, reason) in [
            ("record 3: ", "not an id"),
            ("record 4: ", "not an id"),
            ("record 5: ", "not valid UTF-8"),
            ("record 6: ", "NaN"),
            ("record 7: ", "appears twice"),
            ("record 8: ", "not an object"),
            ("record 9 character \"Tobin Mudlark\": ", "level 500"),
            ("record 9 inventory \"fishing_rod\": ", "above the most"),
            ("record 11: ", "xp is 9223372036854775807"),
        ] {
            assert!(
                real.lines()
                    .any(|l| l.starts_with(&format!("REJECTED {at}")) && l.contains(reason)),
                "{at} rejected for {reason}: {real}"
            );
        }
        let stop = real.lines().find(|l| l.starts_with("STOPPED")).unwrap();
        assert!(
            stop.contains(&format!("at byte {}", text.len()))
                && stop.contains("after record 11")
                && stop.contains("record 12"),
            "{stop}"
        );
        assert!(real.contains("imported 4, skipped 0, rejected 7"), "{real}");

        let store = db.store().await;
        let first = store
            .load_user(player(620000000000000901))
            .await
            .unwrap()
            .state;
        assert_eq!((first.gold, first.gems, first.xp), (1250, 30, 1000));
        assert_eq!(first.owned("bait"), 3);
        assert_eq!(first.daily_day, Some(19844)); // 2024-05-01, taken as UTC
        assert_eq!(
            store
                .load_user(player(620000000000000902))
                .await
                .unwrap()
                .state
                .gold,
            5,
            "the first spelling came in; the aliases were refused"
        );
        let nine = store.load_user(player(9)).await.unwrap().state;
        assert_eq!((nine.owned("bait"), nine.owned("fishing_rod")), (1, 0));
        let chars = store.load_collection(player(9)).await.unwrap();
        assert_eq!(chars.owned.len(), 1);
        assert_eq!(&*chars.owned[0].name, "Tamsin Quickbrook");
        assert_eq!(
            store.load_user(player(10)).await.unwrap().state.daily_day,
            Some(19844)
        );
        let (_, out) = kokoro(&db, &["import", "collection", path, "--verify"]).await;
        assert!(
            out.contains("compared 4 record(s) with the store: 0 differ"),
            "{out}"
        );
        let (ok, out) = kokoro(&db, &["verify"]).await;
        assert!(ok, "{out}");
        db.drop_db().await;
    }
);

both_backends!(a_dirty_roleplay_file_keeps_the_games_bounds, |backend| {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let forty: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|i| (format!("C{i}"), json!({"xp": i})))
        .collect();
    let users = json!({
        "620000000000000001": {"active_character": "  élodie ", "last_xp_reset": "2026-01-02T23:30:00",
            "characters": {"Élodie": {"xp": "150", "daily_xp": 20.0, "image_url": null},
                           "Nul": {"xp": 1, "image_url": "https://img.example/a\u{0}b.png"},
                           "Bare": {"xp": 1, "image_url": "https://"},
                           "Port": {"xp": 1, "image_url": "https://:443/x"},
                           "Huge": {"xp": i64::MAX}}},
        "+620000000000000002": {"characters": {}},
        "0620000000000000003": {"characters": {}},
        "620000000000000004": {"characters": forty},
        "620000000000000005": {"last_xp_reset": "2099-01-01", "characters": {}},
        "620000000000000006": {"timezone": "Asia/Tokyo", "characters": {"Max": {"xp": actors::game::roleplay::MAX_XP}}}
    });
    let doc = json!({"version": "2", "users": {GUILD_ID.to_string(): users}});
    let file = dir.path().join("rp.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let path = file.to_str().unwrap();
    let (ok, dry) = kokoro(&db, &["import", "roleplay", path, "--dry-run"]).await;
    assert!(ok, "{dry}");
    let (ok, out) = kokoro(&db, &["import", "roleplay", path]).await;
    assert!(ok, "{out}");
    assert_eq!(
        table(&dry),
        table(&out),
        "the dry run predicted the real run"
    );
    let at = |u: &str| format!("REJECTED users.{GUILD_ID}.{u}");
    for (start, reason) in [
        (
            format!("{} character \"Nul\": ", at("620000000000000001")),
            "control character",
        ),
        (
            format!("{} character \"Bare\": ", at("620000000000000001")),
            "https://",
        ),
        (
            format!("{} character \"Port\": ", at("620000000000000001")),
            "https://",
        ),
        (
            format!("{} character \"Huge\": ", at("620000000000000001")),
            "above the most",
        ),
        (format!("{}: ", at("+620000000000000002")), "not an id"),
        (format!("{}: ", at("0620000000000000003")), "not an id"),
        (format!("{}: ", at("620000000000000004")), "at most 25"),
        (format!("{}: ", at("620000000000000005")), "after today"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&start) && l.contains(reason)),
            "{start} rejected for {reason}: {out}"
        );
    }
    assert!(out.contains("imported 2, skipped 0, rejected 4"), "{out}");
    let store = db.store().await;
    let rp = store
        .load_roleplay(player(620000000000000001))
        .await
        .unwrap();
    assert_eq!(rp.characters.len(), 1);
    let active = rp.active().map(|i| rp.characters[i].name.as_str());
    assert_eq!(active, Some("Élodie"), "matched folding case and spaces");
    assert_eq!((rp.characters[0].xp, rp.characters[0].daily_xp), (150, 20));
    assert_eq!(rp.last_xp_reset.unwrap().to_string(), "2026-01-02");
    // The checks add XP up without overflowing, and a character at
    // the most XP earns nothing more (and says so).
    let (ok, out) = kokoro(&db, &["verify"]).await;
    assert!(ok, "{out}");
    let audit = store.audit().await.unwrap();
    assert_eq!(
        audit.rp_xp,
        150 + i128::from(actors::game::roleplay::MAX_XP)
    );
    db.drop_db().await;
});

both_backends!(a_record_the_store_refuses_is_rejected_alone, |backend| {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    // A rule the checks do not know, as a constraint the store keeps.
    match backend {
        Backend::Sqlite => sql(
            &store,
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON rp_characters WHEN NEW.name = 'Poison' \
                 BEGIN SELECT RAISE(ABORT, 'no poison here'); END",
        )
        .await,
        Backend::Postgres => {
            sql(
                &store,
                "ALTER TABLE rp_characters ADD CONSTRAINT no_poison CHECK (name <> 'Poison')",
            )
            .await
        }
    }
    let users: serde_json::Map<String, serde_json::Value> = (0..30u64)
        .map(|i| {
            let name = if i == 17 { "Poison" } else { "Ayla" };
            (nth_user(i), json!({"characters": {name: {"xp": i}}}))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rp.json");
    std::fs::write(
        &file,
        json!({"users": {GUILD_ID.to_string(): users}}).to_string(),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (ok, dry) = kokoro(
        &db,
        &["import", "roleplay", path, "--dry-run", "--batch", "8"],
    )
    .await;
    assert!(ok, "{dry}");
    let (ok, out) = kokoro(&db, &["import", "roleplay", path, "--batch", "8"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        table(&dry),
        table(&out),
        "the dry run predicted the store's refusal"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "REJECTED users.{GUILD_ID}.{}: the store refused it",
            nth_user(17)
        ))),
        "{out}"
    );
    assert!(out.contains("imported 29, skipped 0, rejected 1"), "{out}");
    let counts = store.row_counts().await.unwrap();
    assert_eq!(counts["rp_characters"], 29);
    db.drop_db().await;
});

/// The roleplay bot's own PostgreSQL schema, as that bot documents it.
const LEGACY_SCHEMA: &str = "
CREATE TABLE config (id SERIAL PRIMARY KEY, rp_channels BIGINT[], hf_channels BIGINT[], char_per_rp INT,
  daily_rp_cap INT, hf_attempt_xp INT, hf_success_xp INT, daily_hf_cap INT);
CREATE TABLE users (user_id BIGINT PRIMARY KEY, active_character_id INT, timezone TEXT, last_xp_reset DATE);
CREATE TABLE characters (id SERIAL PRIMARY KEY, user_id BIGINT REFERENCES users(user_id) DEFERRABLE INITIALLY DEFERRED, name TEXT NOT NULL,
  xp BIGINT NOT NULL DEFAULT 0, daily_xp BIGINT NOT NULL DEFAULT 0, daily_hf BIGINT NOT NULL DEFAULT 0,
  char_buffer BIGINT NOT NULL DEFAULT 0, image_url TEXT);
ALTER TABLE users ADD FOREIGN KEY (active_character_id) REFERENCES characters(id) DEFERRABLE INITIALLY DEFERRED;
INSERT INTO config (rp_channels, hf_channels, char_per_rp, daily_rp_cap, hf_attempt_xp, hf_success_xp, daily_hf_cap)
  VALUES ('{42,43}', '{44}', 120, 80, 5, 20, 50);
";

both_backends!(the_roleplay_bots_postgres_imports_directly, |backend| {
    use sqlx::{Connection, Executor};
    let db = TestDb::new(backend).await;
    // The legacy database, on the test's PostgreSQL.
    let legacy = TestDb::new(Backend::Postgres).await;
    let mut conn = sqlx::PgConnection::connect(&legacy.url).await.unwrap();
    conn.execute(LEGACY_SCHEMA).await.unwrap();
    let players = 300i64;
    let mut expected_chars = 0;
    for u in 1..=players {
        let user = 630_000_000_000_000_000 + u;
        let mut tx = conn.begin().await.unwrap();
        let mut active = None;
        for c in 0..(u % 7 + 1) {
            let id: i32 = sqlx::query_scalar(
                "INSERT INTO characters (user_id, name, xp, daily_xp, char_buffer, image_url) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(user)
            .bind(format!("Rp {c}"))
            .bind(u * 10 + c)
            .bind(c)
            .bind(c * 3)
            .bind((c % 2 == 0).then(|| format!("https://img.example/{u}/{c}.png")))
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("insert character: {e}"));
            expected_chars += 1;
            active = Some(id);
        }
        sqlx::query(
                "INSERT INTO users (user_id, active_character_id, timezone, last_xp_reset) VALUES ($1, $2, 'Europe/Berlin', '2026-01-02')",
            )
            .bind(user)
            .bind(active)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let guild = GUILD_ID.to_string();
    let args = [
        "import",
        "roleplay",
        "--from-postgres",
        &legacy.url,
        "--guild",
        &guild,
        "--admin",
        "9",
    ];
    let (ok, dry) = kokoro(&db, &[&args[..], &["--dry-run"]].concat()).await;
    assert!(ok, "{dry}");
    let (ok, out) = kokoro(&db, &args).await;
    assert!(ok, "{out}");
    assert_eq!(table(&dry), table(&out));
    assert!(
        out.contains(&format!("imported {}, skipped 0, rejected 0", players + 1)),
        "the players and the guild's configuration: {out}"
    );
    let row = table(&out)
        .into_iter()
        .find(|l| l.starts_with("characters"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().nth(2),
        Some(expected_chars.to_string().as_str()),
        "{out}"
    );
    let (ok, out) = kokoro(&db, &[&args[..], &["--verify"]].concat()).await;
    assert!(ok, "{out}");
    assert!(out.contains(": 0 differ"), "{out}");
    let store = db.store().await;
    let settings = store
        .guild_settings(actors::GuildId::new(GUILD_ID).unwrap())
        .await
        .unwrap();
    assert_eq!(
        settings.get(actors::game::guild::settings::Key::CharPerRp),
        "120"
    );
    let rp = store
        .load_roleplay(player(630_000_000_000_000_003))
        .await
        .unwrap();
    assert_eq!(rp.characters.len(), 4);
    assert_eq!(
        rp.active().map(|i| rp.characters[i].name.as_str()),
        Some("Rp 3")
    );
    let (ok, out) = kokoro(&db, &["verify"]).await;
    assert!(ok, "{out}");
    drop(conn);
    legacy.drop_db().await;
    db.drop_db().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_without_a_guild_and_legacy_names_map_in() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    // One document per user id, no guild: the collection bot's own shape.
    let file = dir.path().join("users.json");
    std::fs::write(
        &file,
        json!({
            "version": 1,
            "640000000000000001": {"gold": 10, "characters": [{"name": "Old Tobin", "rarity": "C"}]},
            "640000000000000002": {"user_id": "640000000000000002", "gems": 4}
        })
        .to_string(),
    )
    .unwrap();
    let map = dir.path().join("names.txt");
    std::fs::write(&map, "# legacy = roster\nOld Tobin = Tobin Mudlark\n").unwrap();
    let path = file.to_str().unwrap();
    let (ok, out) = kokoro(&db, &["import", "collection", path, "--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("no guild_id (the bot kept none: give --guild ID)"),
        "{out}"
    );
    let guild = GUILD_ID.to_string();
    let (ok, out) = kokoro(
        &db,
        &[
            "import",
            "collection",
            path,
            "--guild",
            &guild,
            "--characters-map",
            map.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        ok && out.contains("imported 2, skipped 0, rejected 0"),
        "{out}"
    );
    let chars = db
        .store()
        .await
        .load_collection(player(640000000000000001))
        .await
        .unwrap();
    assert_eq!(&*chars.owned[0].name, "Tobin Mudlark");
    // A map naming a character kokoro does not have is refused at start,
    // with its file and line.
    std::fs::write(&map, "\nOld Tobin = Nobody\n").unwrap();
    let (ok, out) = kokoro(
        &db,
        &[
            "import",
            "collection",
            path,
            "--guild",
            &guild,
            "--characters-map",
            map.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        !ok && out.contains("names.txt:2: \"Nobody\" is not a character of the roster"),
        "{out}"
    );
    db.drop_db().await;
}
