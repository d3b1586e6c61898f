//! Role connections end to end: a guild's `role_rules` (validated, kept
//! across restarts), decided in each player's actor after its commits, and
//! applied on (fake) Discord in commit order under rate limits.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actors::{Command, CommandKind, GuildId, Reply, Runtime, RuntimeConfig, UserId, UserKey};
use serde_json::{json, Value};
use support::fake_discord::fake_discord;
use support::*;

const ADMIN: i64 = 9;
const RICH: u64 = 710_000_000_000_000_001;
const RICHER: u64 = 710_000_000_000_000_002;
const STREAK: u64 = 710_000_000_000_000_003;
const SSR: u64 = 710_000_000_000_000_004;

fn config(starting_gold: i64) -> RuntimeConfig {
    RuntimeConfig {
        starting_gold,
        ..RuntimeConfig::default()
    }
}

async fn admin(rt: &Runtime, guild: i64, name: &str, args: Value) -> Reply {
    let key = UserKey::new(GuildId::new(guild).unwrap(), UserId::new(ADMIN).unwrap());
    rt.dispatch_admin(Command {
        id: None,
        key,
        kind: CommandKind::parse(name, &args).expect("a valid admin command"),
    })
    .await
}

fn rules() -> String {
    format!("gold >= 300 => {RICH}; gold >= 1000 => {RICHER}; streak >= 1 => {STREAK}; owns SSR => {SSR}")
}

fn roles_of(r: &Reply) -> (Vec<String>, Vec<String>) {
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    (
        ids(&r.data["roles"]["add"]),
        ids(&r.data["roles"]["remove"]),
    )
}

both_backends!(
    bad_rules_are_refused_by_name_and_good_ones_survive_a_restart,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config(100)).await;
        // Refused where every command is parsed, before any actor: the HTTP
        // API answers it 400 invalid_argument with this message.
        let bad = CommandKind::parse(
            "config_set",
            &json!({"key": "role_rules", "value": "vip => 5; levl >= 3 => 6"}),
        )
        .expect_err("refused");
        assert!(
            bad.to_string()
                .contains("role_rules: rule 2 (`levl >= 3 => 6`): unknown condition `levl`"),
            "{bad}"
        );
        let set = admin(
            &rt,
            GUILD,
            "config_set",
            json!({"key": "role_rules", "value": rules()}),
        )
        .await;
        assert!(set.ok, "{set:?}");
        drop(rt);
        let rt = db.runtime(config(100)).await;
        let shown = admin(&rt, GUILD, "config_show", json!({})).await;
        assert_eq!(
            shown.data["settings"]["role_rules"].as_str(),
            Some(rules().as_str()),
            "{shown:?}"
        );
        // The change is in the audit log, by the admin.
        let changes = shown.data["recent_changes"]
            .as_array()
            .expect("changes listed");
        assert!(changes
            .iter()
            .any(|c| c["key"] == "role_rules" && c["by"] == json!(ADMIN.to_string())));
        db.drop_db().await;
    }
);

both_backends!(
    a_commit_that_crosses_a_rule_carries_the_roles_it_changes,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config(250)).await;
        assert!(
            admin(
                &rt,
                GUILD,
                "config_set",
                json!({"key": "role_rules", "value": rules()})
            )
            .await
            .ok
        );
        // 250 welcome gold + the daily's 100 (and streak 1): two rules start holding.
        let daily = rt.dispatch(cmd(1, "daily", json!({}))).await;
        assert!(daily.ok, "{daily:?}");
        assert_eq!(
            roles_of(&daily),
            (vec![RICH.to_string(), STREAK.to_string()], vec![])
        );
        // Giving 100 away drops below 300: the role goes, the streak's stays.
        let give = rt
            .dispatch(cmd(1, "give", json!({"to": "2", "amount": 100})))
            .await;
        assert!(give.ok, "{give:?}");
        assert_eq!(roles_of(&give), (vec![], vec![RICH.to_string()]));
        // A commit that crosses nothing says nothing of roles.
        let small = rt
            .dispatch(cmd(1, "give", json!({"to": "2", "amount": 1})))
            .await;
        assert!(small.ok && small.data.get("roles").is_none(), "{small:?}");

        // `roles` explains, changes nothing, and can look at another member.
        let shown = rt.dispatch(cmd(2, "roles", json!({"user": "1"}))).await;
        assert!(shown.ok, "{shown:?}");
        assert_eq!(shown.data["user"], "1");
        assert_eq!(shown.data["wanted"], json!([STREAK.to_string()]));
        assert_eq!(shown.data["rules"][0]["holds"], json!(false));
        // The collection is read for the SSR rule: known, and not held.
        assert_eq!(shown.data["rules"][3]["holds"], json!(false));
        let nobody = rt.dispatch(cmd(77, "roles", json!({}))).await;
        assert!(nobody.ok);
        let exists = rt.dispatch(cmd(77, "balance", json!({}))).await;
        assert_eq!(gold(&exists), 250, "looking created no welcome twice");

        // `roles_sync` is for admins, says every role, and is audited.
        // Over HTTP, as an integration calls them: the API token may look,
        // only the admin token may sync.
        let (token, admin_token) = ("roles-api-token-0123456789", "roles-admin-token-0123456789");
        let base = http_api(rt.clone(), token, admin_token).await;
        let body = |command: &str| json!({"guild_id": GUILD.to_string(), "user_id": "2", "command": command, "args": {"user": "1"}});
        let (status, looked) = post_with(&base, token, &body("roles")).await;
        assert_eq!(
            (status, looked["data"]["wanted"].clone()),
            (200, json!([STREAK.to_string()])),
            "{looked}"
        );
        let (status, refused) = post_with(&base, token, &body("roles_sync")).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{refused}"
        );
        let (status, synced) = post_with(&base, admin_token, &body("roles_sync")).await;
        assert_eq!(status, 200, "{synced}");
        let sync = admin(&rt, GUILD, "roles_sync", json!({"user": "1"})).await;
        assert!(sync.ok, "{sync:?}");
        assert_eq!(
            roles_of(&sync),
            (
                vec![STREAK.to_string()],
                vec![RICH.to_string(), RICHER.to_string(), SSR.to_string()]
            )
        );
        let shown = admin(&rt, GUILD, "config_show", json!({})).await;
        assert!(
            shown.data["recent_changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["action"] == "roles_sync" && c["target"] == "1"),
            "{shown:?}"
        );
        db.drop_db().await;
    }
);

/// What the rules want of a balance (the only rules this test sets).
fn wanted_for(gold: i64) -> BTreeSet<String> {
    let mut w = BTreeSet::new();
    if gold >= 150 {
        w.insert(RICH.to_string());
    }
    if gold >= 250 {
        w.insert(RICHER.to_string());
    }
    w
}

both_backends!(
    five_thousand_concurrent_gives_end_with_the_roles_the_final_balances_imply,
    |backend| {
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config(200)).await;
        let guilds = [2_000i64, 2_001, 2_002];
        for g in guilds {
            let value = format!("gold >= 150 => {RICH}; gold >= 250 => {RICHER}");
            assert!(
                admin(
                    &rt,
                    g,
                    "config_set",
                    json!({"key": "role_rules", "value": value})
                )
                .await
                .ok
            );
        }
        let discord = fake_discord(usize::MAX).await;
        // A bucket as tight as Discord's member-role routes: 429s will come.
        // Buckets as tight as Discord's: per guild (in the headers) and one for
        // the whole bot (not in them, as Discord's global limit): 429s come.
        *discord.fake.role_bucket.lock().unwrap() = Some((10, Duration::from_millis(100)));
        *discord.fake.global_bucket.lock().unwrap() = Some((3, Duration::from_millis(100)));
        let options = kokoro::discord::Options {
            proxy: Some(discord.base.clone()),
            ..Default::default()
        };
        let links = kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap();
        let _bot = kokoro::discord::start(rt.clone(), "fake-token", &options, links)
            .await
            .expect("the bot starts");

        let players = 12i64;
        let mut tasks = Vec::new();
        for n in 0..5_000u64 {
            let rt = rt.clone();
            let guild = guilds[(n % 3) as usize];
            // A fixed pseudo-random walk (splitmix64): amounts that cross
            // 150 and 250 often.
            let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            let from = 1 + (x % players as u64) as i64;
            let to = 1 + (from + (x >> 8) as i64 % (players - 1)) % players;
            let amount = 10 + ((x >> 20) % 70) as i64;
            tasks.push(tokio::spawn(async move {
                let key = UserKey::new(GuildId::new(guild).unwrap(), UserId::new(from).unwrap());
                let command = Command {
                    id: Some(format!("rolegive-{n}").parse().unwrap()),
                    key,
                    kind: CommandKind::parse(
                        "give",
                        &json!({"to": to.to_string(), "amount": amount}),
                    )
                    .unwrap(),
                };
                dispatch_retrying(&rt, command).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let r = t.await.unwrap();
            if r.ok {
                ok += 1;
            } else {
                assert_eq!(
                    r.code(),
                    Some(actors::ErrorCode::InsufficientFunds),
                    "{r:?}"
                );
            }
        }
        assert!(
            ok > 500,
            "gives land ({ok}; the others find too little gold)"
        );

        // Each player's final balance, and the roles Discord holds for them.
        let mut want: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        for g in guilds {
            for u in 1..=players {
                let key = UserKey::new(GuildId::new(g).unwrap(), UserId::new(u).unwrap());
                let r = rt
                    .dispatch(Command {
                        id: None,
                        key,
                        kind: CommandKind::parse("balance", &json!({})).unwrap(),
                    })
                    .await;
                want.insert((g.to_string(), u.to_string()), wanted_for(gold(&r)));
            }
        }
        let settled = |discord: &support::fake_discord::FakeDiscord| {
            let held = discord.fake.member_roles.lock().unwrap();
            want.iter()
                .all(|(member, roles)| held.get(member).cloned().unwrap_or_default() == *roles)
        };
        let mut waited = 0;
        while !(settled(&discord) && rt.role_desk().waiting() == 0) && waited < 600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        let held = discord.fake.member_roles.lock().unwrap().clone();
        for (member, roles) in &want {
            assert_eq!(
                held.get(member).cloned().unwrap_or_default(),
                *roles,
                "member {member:?}: Discord's roles are not what the final balance implies"
            );
        }
        let (added, removed) = (
            discord.fake.roles_added.lock().unwrap().len(),
            discord.fake.roles_removed.lock().unwrap().len(),
        );
        let limited = *discord.fake.rate_limited.lock().unwrap();
        eprintln!("{ok} gives; {added} adds, {removed} removes, {limited} answered 429");
        assert!(
            added > 0 && removed > 0,
            "roles were both added and removed ({added}, {removed})"
        );
        assert!(limited > 0, "the test reached Discord's rate limits");
        assert!(
            added + removed < 2 * 5_000,
            "changes waiting for a member fold into one: {added} adds and {removed} removes"
        );

        db.drop_db().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_kokoro_may_not_give_is_told_to_the_admins_once_and_nothing_stops() {
    // This test's process records metrics (nextest runs each test alone).
    let metrics = kokoro::telemetry::prometheus();
    let db = TestDb::new(Backend::Sqlite).await;
    let rt = db.runtime(config(100)).await;
    let admin_channel = "730000000000000001";
    for (k, v) in [
        (
            "role_rules",
            format!("gold >= 150 => {RICH}; gold >= 200 => {RICHER}"),
        ),
        ("admin_channel", admin_channel.to_owned()),
    ] {
        assert!(
            admin(&rt, GUILD, "config_set", json!({"key": k, "value": v}))
                .await
                .ok
        );
    }
    let discord = fake_discord(usize::MAX).await;
    discord
        .fake
        .forbidden_roles
        .lock()
        .unwrap()
        .push(RICH.to_string());
    let options = kokoro::discord::Options {
        proxy: Some(discord.base.clone()),
        ..Default::default()
    };
    let links = kokoro::results::ResultLinks::new(db.dir.path(), None, "").unwrap();
    let _bot = kokoro::discord::start(rt.clone(), "fake-token", &options, links)
        .await
        .expect("the bot starts");
    // Two players cross both rules: RICH is refused, RICHER is given.
    for user in ["1", "2"] {
        let grant = admin(
            &rt,
            GUILD,
            "grant",
            json!({"user": user, "currency": "gold", "amount": 150, "reason": "event"}),
        )
        .await;
        assert!(grant.ok, "{grant:?}");
        assert_eq!(
            roles_of(&grant).0,
            vec![RICH.to_string(), RICHER.to_string()]
        );
    }
    let notes = || {
        discord
            .fake
            .posted
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == admin_channel)
            .map(|(_, b)| b["content"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let mut waited = 0;
    while (notes().is_empty() || discord.fake.roles_added.lock().unwrap().len() < 2) && waited < 100
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    // Let any second note arrive, if one were to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes = notes();
    assert_eq!(
        notes.len(),
        1,
        "one note for the role, not one per member: {notes:?}"
    );
    assert!(
        notes[0].contains(&format!("<@&{RICH}>")) && notes[0].contains("Manage Roles"),
        "{}",
        notes[0]
    );
    let added: Vec<String> = discord
        .fake
        .roles_added
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, r)| r.clone())
        .collect();
    assert_eq!(
        added,
        vec![RICHER.to_string(), RICHER.to_string()],
        "the role it may give is given"
    );
    // The bot still answers, and the metrics say what happened.
    assert!(rt.dispatch(cmd(1, "balance", json!({}))).await.ok);
    let text = metrics.render();
    for series in [
        r#"kokoro_role_changes_total{action="add",outcome="forbidden"} 2"#,
        r#"kokoro_role_changes_total{action="add",outcome="ok"} 2"#,
        "kokoro_role_changes_waiting 0",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
    }
    db.drop_db().await;
}

// ---- Discord's Linked Roles ----

both_backends!(
    a_member_links_and_their_connection_follows_the_game,
    |backend| {
        use kokoro::discord::linked_roles::{LinkedRoles, LinkedRolesConfig};
        use support::fake_discord::APP_ID;
        let db = TestDb::new(backend).await;
        let rt = db.runtime(config(100)).await;
        let member = "175928847299117063";
        let vip = |days: i64| json!({"user": member, "days": days});
        assert!(admin(&rt, GUILD, "vip", vip(30)).await.ok);
        let discord = fake_discord(usize::MAX).await;
        *discord.fake.client_secret.lock().unwrap() = "client-secret-123".into();

        // kokoro's own HTTP server, where Discord sends members.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", listener.local_addr().unwrap());
        let linked = Arc::new(LinkedRoles::new(
            rt.clone(),
            LinkedRolesConfig {
                application_id: APP_ID.parse().unwrap(),
                client_secret: "client-secret-123".into(),
                guild: GuildId::new(GUILD).unwrap(),
                public_url: public.clone(),
                refresh: Duration::from_millis(200),
            },
            "fake-token",
            Some(&discord.base),
        ));
        tokio::spawn(linked.clone().register());
        tokio::spawn(linked.clone().refresh_every());
        tokio::spawn(kokoro::http::serve(
            listener,
            kokoro::discord::linked_roles::routes(linked.clone()),
            Duration::from_secs(5),
            std::future::pending(),
        ));
        let registered = || {
            discord
                .fake
                .role_metadata
                .lock()
                .unwrap()
                .as_array()
                .map_or(0, Vec::len)
        };
        let mut waited = 0;
        while registered() < 4 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(registered(), 4, "level, rp_level, ssr and vip registered");

        // The member starts from Discord: sent to the consent page with a state.
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let start = browser
            .get(format!("{public}/discord/linked-roles"))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 302);
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let cookie = start.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let consent = reqwest::Url::parse(&location).unwrap();
        assert_eq!(
            consent.as_str().split('?').next(),
            Some(format!("{}/oauth2/authorize", discord.base).as_str())
        );
        let query: HashMap<String, String> = consent.query_pairs().into_owned().collect();
        assert_eq!(query["client_id"], APP_ID, "{location}");
        assert_eq!(
            query["redirect_uri"],
            format!("{public}/discord/linked-roles/callback")
        );
        assert_eq!(query["scope"], "role_connections.write identify");
        assert_eq!(query["response_type"], "code");
        let state = query["state"].clone();
        assert_eq!(state.len(), 32, "a fresh random state: {state}");

        // Back with a state that is not theirs: refused, as the JSON error.
        discord
            .fake
            .oauth_codes
            .lock()
            .unwrap()
            .insert("code-1".into(), member.into());
        let callback = |code: &str, state: &str, cookie: &str| {
            browser
                .get(format!(
                    "{public}/discord/linked-roles/callback?code={code}&state={state}"
                ))
                .header("cookie", cookie.to_owned())
                .send()
        };
        let forged = callback("code-1", "0123", &cookie).await.unwrap();
        assert_eq!(forged.status(), 400);
        let body: Value = forged.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
        // Back with the consent's code: linked, and the connection written.
        let linked_ok = callback("code-1", &state, &cookie).await.unwrap();
        assert_eq!(linked_ok.status(), 200);
        let written = || {
            discord
                .fake
                .connections
                .lock()
                .unwrap()
                .get(member)
                .cloned()
        };
        let first = written().expect("the connection is written on linking");
        assert_eq!(first["platform_name"], "kokoro");
        assert_eq!(
            first["metadata"],
            json!({"level": "0", "rp_level": "0", "ssr": "0", "vip": "1"})
        );
        // A code is good once: Discord refuses it again, and so does kokoro.
        let again = callback("code-1", &state, &cookie).await.unwrap();
        assert_eq!(again.status(), 400);
        let body: Value = again.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Discord did not accept the code"),
            "{body}"
        );

        // The game moves on: the connection follows at the next refresh.
        assert!(admin(&rt, GUILD, "vip", vip(0)).await.ok);
        let mut waited = 0;
        while written().is_some_and(|c| c["metadata"]["vip"] == "1") && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(written().unwrap()["metadata"]["vip"], "0");
        // The link is kept (a restart refreshes from it), its tokens hidden in logs.
        let kept = rt.store().role_connections().await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].user_id.to_string(), member);
        assert!(!format!("{:?}", kept[0]).contains(&kept[0].access_token));
        db.drop_db().await;
    }
);
