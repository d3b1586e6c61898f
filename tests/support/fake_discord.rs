//! A fake Discord on loopback for tests: the HTTP API calls the bot makes
//! (gateway address, command registration, interaction callbacks) and a
//! gateway websocket that says hello, accepts identify and resume,
//! acknowledges heartbeats and dispatches the interactions a test queues.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Each member's roles, by (guild, user).
pub type MemberRoles =
    std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>;

/// A gateway event: (name, payload).
pub type Event = (String, Value);

/// Each shard's session, by shard id (sharded mode).
pub type ShardSessions = std::collections::HashMap<u64, mpsc::UnboundedSender<Event>>;

/// A file the bot attached: (channel id, file name, bytes).
pub type PostedFile = (String, String, Vec<u8>);

pub const APP_ID: &str = "900000000000000001";
pub const BOT_ID: &str = "900000000000000002";

#[derive(Clone)]
pub struct Fake {
    ws_url: String,
    /// Events for the gateway to dispatch: (event name, payload).
    to_send: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    /// Callback bodies the bot posted, by interaction id.
    answers: Arc<Mutex<Vec<(String, Value)>>>,
    pub registered: Arc<Mutex<Vec<String>>>,
    identifies: Arc<Mutex<u32>>,
    /// The intents of the last identify.
    pub intents: Arc<Mutex<u64>>,
    /// Messages the bot posted: (channel id, body).
    pub posted: Arc<Mutex<Vec<(String, Value)>>>,
    /// Files the bot attached to its posts: (channel id, file name, bytes).
    pub files: Arc<Mutex<Vec<PostedFile>>>,
    /// What members attached, served at `/attachments/{name}` as Discord's
    /// CDN serves them.
    pub attachments: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    /// Answer this many more posts with 503 (Discord is having trouble).
    pub failing_posts: Arc<Mutex<u32>>,
    /// Take this many more posts but answer 200 with a body serenity cannot
    /// read (as Spacebar did): they were delivered.
    pub unreadable_posts: Arc<Mutex<u32>>,
    /// Refuse this many more command registrations with 400.
    pub refused_registrations: Arc<Mutex<u32>>,
    /// Answer this many more `GET /gateway/bot` with 502 (Discord down).
    pub failing_gateway: Arc<Mutex<u32>>,
    /// Roles the bot added: (guild, user, role).
    pub roles_added: Arc<Mutex<Vec<(String, String, String)>>>,
    /// Roles the bot may not give (Discord answers 403, code 50013).
    pub forbidden_roles: Arc<Mutex<Vec<String>>>,
    /// Roles the bot removed: (guild, user, role).
    pub roles_removed: Arc<Mutex<Vec<(String, String, String)>>>,
    /// Each member's roles as Discord holds them after every add and remove.
    pub member_roles: Arc<Mutex<MemberRoles>>,
    /// The member-role routes' bucket per guild, as Discord keeps one: at
    /// most `limit` calls per `window`; a call beyond it is answered 429
    /// with the time left (and changes nothing). `None`: no limit.
    pub role_bucket: Arc<Mutex<Option<(u32, Duration)>>>,
    role_windows: Arc<Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>>,
    /// The bot's global bucket over every role call, which Discord does not
    /// show in headers: a call beyond it is answered 429 with `global`.
    pub global_bucket: Arc<Mutex<Option<(u32, Duration)>>>,
    /// Role calls answered 429.
    pub rate_limited: Arc<Mutex<u32>>,
    /// Ids of the bot's messages someone deleted.
    pub deleted: Arc<Mutex<Vec<String>>>,
    /// Intents the bot may not ask for: an identify with any of them is
    /// closed with 4014, as Discord does when a privileged intent is not
    /// enabled in the developer portal.
    pub disallowed_intents: Arc<Mutex<u64>>,
    /// Every event dispatched, by sequence number, as Discord keeps them
    /// for a session: a resume gets those after the client's last one.
    dispatched_log: Arc<Mutex<Vec<(u64, Value)>>>,
    seq: Arc<Mutex<u64>>,
    /// Sessions resumed.
    pub resumes: Arc<Mutex<u32>>,
    /// Second answers to one interaction, refused (40060).
    pub refused_callbacks: Arc<Mutex<u32>>,
    /// The heartbeat interval the hello asks for: 300 ms by default, so
    /// tests see latency quickly; Discord's own is 41,250 ms.
    pub heartbeat_ms: Arc<Mutex<u64>>,
    /// Linked Roles: the metadata the application registered.
    pub role_metadata: Arc<Mutex<Value>>,
    /// OAuth2 codes a consent would hand out: code → user id. Each is
    /// taken once, as Discord's are.
    pub oauth_codes: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// The application's client secret the token endpoint accepts.
    pub client_secret: Arc<Mutex<String>>,
    /// Access and refresh tokens handed out: token → user id.
    pub oauth_tokens: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// Each user's role connection as the application last wrote it.
    pub connections: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    /// Close the gateway connection once, after this many dispatches.
    drop_after: usize,
    /// Sharded mode (`FakeDiscord::shard`): each session gets the events of
    /// the guilds of the shard it identified as, `(guild_id >> 22) % total`,
    /// as Discord routes them; an event for a shard no session runs is
    /// lost, as Discord's is (the member sees "did not respond").
    sharded: Arc<Mutex<Option<u64>>>,
    shard_sessions: Arc<Mutex<ShardSessions>>,
    /// Events lost for want of a session on their shard.
    pub undelivered: Arc<Mutex<u32>>,
    /// The shards sessions identified as: (shard, total).
    pub identified_shards: Arc<Mutex<Vec<(u64, u64)>>>,
}

/// The shard of the event's guild among `total` (0 without a guild).
fn shard_of(payload: &Value, total: u64) -> u64 {
    payload["guild_id"]
        .as_str()
        .and_then(|g| g.parse::<u64>().ok())
        .map_or(0, |g| (g >> 22) % total.max(1))
}

async fn gateway_info(State(f): State<Fake>) -> axum::response::Response {
    use axum::response::IntoResponse;
    {
        let mut failing = f.failing_gateway.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return (
                axum::http::StatusCode::BAD_GATEWAY,
                "upstream connect error",
            )
                .into_response();
        }
    }
    Json(json!({
        "url": f.ws_url, "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
    }))
    .into_response()
}

async fn register(State(f): State<Fake>, Json(body): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    {
        let mut refused = f.refused_registrations.lock().unwrap();
        if *refused > 0 {
            *refused -= 1;
            let e = json!({"message": "Invalid Form Body", "code": 50035,
                "errors": {"0": {"description": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]}}}});
            return (axum::http::StatusCode::BAD_REQUEST, Json(e)).into_response();
        }
    }
    let names = body
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    *f.registered.lock().unwrap() = names;
    Json(json!([])).into_response()
}

/// `POST /interactions/{id}/{token}/callback`: the first answer is taken;
/// a second one to the same interaction (a redelivered event answered
/// again) is refused as Discord refuses it, 400 with code 40060. Both are
/// kept in `answers`, so tests see what the bot said.
async fn callback(
    State(f): State<Fake>,
    Path((id, _token)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut answers = f.answers.lock().unwrap();
    let answered = answers
        .iter()
        .any(|(i, b)| *i == id && b["type"] != "followup");
    answers.push((id, body));
    if answered {
        *f.refused_callbacks.lock().unwrap() += 1;
        let body = json!({"message": "Interaction has already been acknowledged.", "code": 40060});
        return (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn gateway(State(f): State<Fake>, ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(move |socket| session(f, socket))
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

/// One gateway connection: hello, then identify or resume, heartbeats
/// acknowledged, and queued interactions dispatched.
async fn session(f: Fake, mut socket: WebSocket) {
    let interval = *f.heartbeat_ms.lock().unwrap();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}});
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    let next_seq = |f: &Fake| {
        let mut s = f.seq.lock().unwrap();
        *s += 1;
        *s
    };
    let mut dispatched = 0usize;
    let mut ready = false;
    let sharded = *f.sharded.lock().unwrap();
    // Unsharded: this session takes every event (one session at a time).
    // Sharded: its own shard's, once it has identified.
    let mut shared = match sharded {
        None => Some(f.to_send.lock().await),
        Some(_) => None,
    };
    let mut own: Option<mpsc::UnboundedReceiver<(String, Value)>> = None;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(Message::Text(t))) = msg else { return };
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["op"].as_u64() {
                    Some(1) => { let _ = socket.send(text(json!({"op": 11}))).await; }
                    Some(2) => {
                        *f.identifies.lock().unwrap() += 1;
                        let intents = v["d"]["intents"].as_u64().unwrap_or(0);
                        *f.intents.lock().unwrap() = intents;
                        if intents & *f.disallowed_intents.lock().unwrap() != 0 {
                            let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                                code: 4014, reason: "Disallowed intent(s).".into(),
                            }))).await;
                            return;
                        }
                        let shard = (
                            v["d"]["shard"][0].as_u64().unwrap_or(0),
                            v["d"]["shard"][1].as_u64().unwrap_or(1),
                        );
                        if sharded.is_some() {
                            let (tx, rx) = mpsc::unbounded_channel();
                            f.shard_sessions.lock().unwrap().insert(shard.0, tx);
                            own = Some(rx);
                        }
                        // Said once the shard takes events.
                        f.identified_shards.lock().unwrap().push(shard);
                        let ready_event = json!({"op": 0, "t": "READY", "s": next_seq(&f), "d": {
                            "v": 10,
                            "user": {"id": BOT_ID, "username": "kokoro", "discriminator": "0", "avatar": null, "bot": true, "global_name": null},
                            "guilds": [], "session_id": "session-1",
                            "resume_gateway_url": f.ws_url, "shard": [shard.0, shard.1],
                            "application": {"id": APP_ID, "flags": 0}
                        }});
                        let _ = socket.send(text(ready_event)).await;
                        ready = true;
                    }
                    Some(6) => {
                        // Discord replays what the client missed, then says RESUMED.
                        *f.resumes.lock().unwrap() += 1;
                        let last = v["d"]["seq"].as_u64().unwrap_or(0);
                        let missed: Vec<Value> = f.dispatched_log.lock().unwrap().iter()
                            .filter(|(s, _)| *s > last).map(|(_, e)| e.clone()).collect();
                        for event in missed {
                            if socket.send(text(event)).await.is_err() { return; }
                        }
                        let _ = socket.send(text(json!({"op": 0, "t": "RESUMED", "s": next_seq(&f), "d": {}}))).await;
                        ready = true;
                    }
                    _ => {}
                }
            }
            next = next_event(&mut shared, &mut own), if ready => {
                let Some((name, payload)) = next else { return };
                let s = next_seq(&f);
                let event = json!({"op": 0, "t": name, "s": s, "d": payload});
                f.dispatched_log.lock().unwrap().push((s, event.clone()));
                if socket.send(text(event)).await.is_err() { return; }
                dispatched += 1;
                if dispatched == f.drop_after {
                    // Discord drops connections now and then; the bot must come back.
                    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 4000, reason: "try again".into(),
                    }))).await;
                    return;
                }
            }
        }
    }
}

/// The next event for a session: from the one queue (unsharded) or its
/// shard's own.
async fn next_event(
    shared: &mut Option<tokio::sync::MutexGuard<'_, mpsc::UnboundedReceiver<(String, Value)>>>,
    own: &mut Option<mpsc::UnboundedReceiver<(String, Value)>>,
) -> Option<(String, Value)> {
    match (shared, own) {
        (Some(rx), _) => rx.recv().await,
        (None, Some(rx)) => rx.recv().await,
        (None, None) => std::future::pending().await,
    }
}

/// `PUT /guilds/{g}/members/{u}/roles/{r}`: 204, or Discord's 403 when the
/// bot lacks Manage Roles or the role is above its own.
/// Takes a call from `guild`'s bucket: `Err(seconds to wait)` when it is
/// empty; `Ok(remaining, reset_after)` otherwise.
fn take_from_bucket(f: &Fake, guild: &str) -> Result<Option<(u32, f64)>, f64> {
    if let Some(global) = *f.global_bucket.lock().unwrap() {
        take_from(f, "*global*", global)?;
    }
    let Some(bucket) = *f.role_bucket.lock().unwrap() else {
        return Ok(None);
    };
    take_from(f, guild, bucket).map(Some)
}

fn take_from(f: &Fake, name: &str, (limit, window): (u32, Duration)) -> Result<(u32, f64), f64> {
    let mut windows = f.role_windows.lock().unwrap();
    let now = std::time::Instant::now();
    let (start, used) = windows.entry(name.to_owned()).or_insert((now, 0));
    if now.duration_since(*start) >= window {
        (*start, *used) = (now, 0);
    }
    let left = (window.saturating_sub(now.duration_since(*start))).as_secs_f64();
    if *used >= limit {
        return Err(left);
    }
    *used += 1;
    Ok((limit - *used, left))
}

/// `PUT` (add) and `DELETE` (remove) of a member's role, kept to the
/// guild's bucket as Discord keeps it.
async fn member_role(
    f: Fake,
    add: bool,
    (guild, user, role): (String, String, String),
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bucket = match take_from_bucket(&f, &guild) {
        Ok(b) => b,
        Err(wait) => {
            *f.rate_limited.lock().unwrap() += 1;
            let body = json!({"message": "You are being rate limited.", "retry_after": wait, "global": false});
            let mut resp = (axum::http::StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            // Discord's header is whole seconds, rounded up.
            let header = (wait.ceil() as u64).max(1).to_string();
            resp.headers_mut()
                .insert("retry-after", header.parse().unwrap());
            return resp;
        }
    };
    if f.forbidden_roles.lock().unwrap().contains(&role) {
        let body = json!({"message": "Missing Permissions", "code": 50013});
        return (axum::http::StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    {
        let mut members = f.member_roles.lock().unwrap();
        let held = members.entry((guild.clone(), user.clone())).or_default();
        if add {
            held.insert(role.clone());
        } else {
            held.remove(&role);
        }
    }
    let log = if add {
        &f.roles_added
    } else {
        &f.roles_removed
    };
    log.lock().unwrap().push((guild, user, role));
    let mut resp = axum::http::StatusCode::NO_CONTENT.into_response();
    if let Some((remaining, reset_after)) = bucket {
        let h = resp.headers_mut();
        h.insert(
            "x-ratelimit-remaining",
            remaining.to_string().parse().unwrap(),
        );
        h.insert(
            "x-ratelimit-reset-after",
            format!("{reset_after:.3}").parse().unwrap(),
        );
    }
    resp
}

async fn add_role(
    State(f): State<Fake>,
    Path(path): Path<(String, String, String)>,
) -> axum::response::Response {
    member_role(f, true, path).await
}

async fn remove_role(
    State(f): State<Fake>,
    Path(path): Path<(String, String, String)>,
) -> axum::response::Response {
    member_role(f, false, path).await
}

/// `POST /channels/{c}/messages`: answers with the message created. The
/// body is JSON, or multipart when files come with it: the message as
/// `payload_json` and each file as `files[n]`, as Discord takes them.
async fn create_message(
    State(f): State<Fake>,
    Path(channel): Path<String>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    {
        let mut failing = f.failing_posts.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error",
            )
                .into_response();
        }
    }
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let body: Value = if multipart {
        let Ok(mut form) = axum::extract::Multipart::from_request(request, &()).await else {
            return bad_request("unreadable multipart body");
        };
        let mut payload = Value::Null;
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_owned();
            let file = field.file_name().map(str::to_owned);
            let Ok(bytes) = field.bytes().await else {
                return bad_request("unreadable part");
            };
            if name == "payload_json" {
                payload = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            } else if name.starts_with("files[") {
                let Some(file) = file else {
                    return bad_request("a file part needs a file name");
                };
                f.files
                    .lock()
                    .unwrap()
                    .push((channel.clone(), file, bytes.to_vec()));
            }
        }
        payload
    } else {
        let Ok(Json(body)) = Json::<Value>::from_request(request, &()).await else {
            return bad_request("unreadable JSON body");
        };
        body
    };
    if body.is_null() {
        return bad_request("no message");
    }
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let n = {
        let mut posted = f.posted.lock().unwrap();
        posted.push((channel.clone(), body));
        posted.len()
    };
    {
        let mut unreadable = f.unreadable_posts.lock().unwrap();
        if *unreadable > 0 {
            *unreadable -= 1;
            return Json(json!({"id": n, "channel": channel})).into_response();
        }
    }
    let mut m = message(
        &format!("{}", 950000000000000000u64 + n as u64),
        &channel,
        None,
        &user(BOT_ID),
        &content,
    );
    m["author"]["bot"] = json!(true);
    Json(m).into_response()
}

/// A message the bot posted, as `GET` returns it: its content, embeds and
/// components as posted.
fn posted_message(n: usize, channel: &str, body: &Value) -> Value {
    let id = format!("{}", 950000000000000000u64 + n as u64);
    let mut m = message(
        &id,
        channel,
        None,
        &user(BOT_ID),
        body["content"].as_str().unwrap_or_default(),
    );
    m["author"]["bot"] = json!(true);
    for field in ["embeds", "components"] {
        if let Some(v) = body.get(field) {
            m[field] = v.clone();
        }
    }
    // Discord fills in a button's defaults; serenity needs them to read it.
    if let Some(rows) = m["components"].as_array_mut() {
        for row in rows {
            for c in row["components"].as_array_mut().into_iter().flatten() {
                if c.get("disabled").is_none() {
                    c["disabled"] = json!(false);
                }
            }
        }
    }
    m
}

/// `GET /channels/{c}/messages`: the bot's messages there, newest first,
/// without those deleted.
/// The bot's messages in `channel`, newest first, without those deleted.
fn channel_messages(f: &Fake, channel: &str) -> Vec<Value> {
    let deleted = f.deleted.lock().unwrap().clone();
    let posted = f.posted.lock().unwrap();
    let mut out: Vec<Value> = posted
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| c == channel)
        .map(|(i, (c, b))| posted_message(i + 1, c, b))
        .filter(|m| !deleted.iter().any(|d| m["id"] == json!(d)))
        .collect();
    out.reverse();
    out
}

/// `GET /channels/{c}/messages?limit=N`: the newest N (1 to 100, default
/// 50), as Discord pages history; older ones are not in the answer.
async fn list_messages(
    State(f): State<Fake>,
    Path(channel): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 100);
    let mut all = channel_messages(&f, &channel);
    all.truncate(limit);
    Json(Value::Array(all))
}

/// `GET /channels/{c}/messages/{id}`: the message, or Discord's 404.
async fn get_message(
    State(f): State<Fake>,
    Path((channel, id)): Path<(String, String)>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match channel_messages(&f, &channel)
        .into_iter()
        .find(|m| m["id"] == json!(id))
    {
        Some(m) => Json(m).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown Message", "code": 10008})),
        )
            .into_response(),
    }
}

/// `PUT /applications/{app}/role-connections/metadata` (bot token).
async fn put_metadata(State(f): State<Fake>, Json(body): Json<Value>) -> Json<Value> {
    *f.role_metadata.lock().unwrap() = body.clone();
    Json(body)
}

/// `POST /oauth2/token`: a code (once) or a refresh token for new tokens,
/// with the right client secret; Discord's `invalid_grant` otherwise.
async fn oauth_token(
    State(f): State<Fake>,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if form.get("client_secret") != Some(&*f.client_secret.lock().unwrap()) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let user = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => form
            .get("code")
            .and_then(|c| f.oauth_codes.lock().unwrap().remove(c)),
        Some("refresh_token") => form
            .get("refresh_token")
            .and_then(|t| f.oauth_tokens.lock().unwrap().get(t).cloned()),
        _ => None,
    };
    let Some(user) = user else {
        let body =
            json!({"error": "invalid_grant", "error_description": "Invalid \"code\" in request."});
        return (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let n = f.oauth_tokens.lock().unwrap().len();
    let (access, refresh) = (format!("at-{user}-{n}"), format!("rt-{user}-{n}"));
    {
        let mut tokens = f.oauth_tokens.lock().unwrap();
        tokens.insert(access.clone(), user.clone());
        tokens.insert(refresh.clone(), user);
    }
    Json(
        json!({"access_token": access, "refresh_token": refresh, "expires_in": 604800,
                "token_type": "Bearer", "scope": "identify role_connections.write"}),
    )
    .into_response()
}

fn bearer_user(f: &Fake, headers: &axum::http::HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    f.oauth_tokens.lock().unwrap().get(token).cloned()
}

fn unauthorized() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::UNAUTHORIZED,
        Json(json!({"message": "401: Unauthorized", "code": 0})),
    )
        .into_response()
}

/// `GET /users/@me` with a member's access token.
async fn users_me(
    State(f): State<Fake>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match bearer_user(&f, &headers) {
        Some(id) => Json(user(&id)).into_response(),
        None => unauthorized(),
    }
}

/// `PUT /users/@me/applications/{app}/role-connection` with a member's token.
async fn put_connection(
    State(f): State<Fake>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match bearer_user(&f, &headers) {
        Some(id) => {
            f.connections.lock().unwrap().insert(id, body.clone());
            Json(body).into_response()
        }
        None => unauthorized(),
    }
}

/// Discord's 400 for a malformed request: `{"message", "code": 50035}`.
fn bad_request(why: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = json!({"message": format!("Invalid Form Body: {why}"), "code": 50035});
    (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `POST /webhooks/{app}/{token}`: a follow-up to an interaction (after a
/// deferral), kept with the interaction's answers; answers with the message.
async fn followup(
    State(f): State<Fake>,
    Path((_app, token)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let id = token.trim_start_matches("token-").to_owned();
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    f.answers
        .lock()
        .unwrap()
        .push((id, json!({"type": "followup", "data": body})));
    let mut m = message(
        "960000000000000001",
        "700000000000000002",
        None,
        &user(BOT_ID),
        &content,
    );
    m["author"]["bot"] = json!(true);
    m["webhook_id"] = json!(APP_ID);
    Json(m)
}

/// `GET /attachments/{name}`: a member's attachment, as the CDN serves it.
async fn attachment(State(f): State<Fake>, Path(name): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match f.attachments.lock().unwrap().get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// A message object as Discord sends it in MESSAGE_CREATE and answers to
/// a post; `guild` is set for guild messages.
pub fn message(
    id: &str,
    channel: &str,
    guild: Option<&str>,
    author: &Value,
    content: &str,
) -> Value {
    let mut m = json!({
        "id": id, "channel_id": channel, "author": author, "content": content,
        "timestamp": "2026-12-01T12:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []
    });
    if let Some(g) = guild {
        m["guild_id"] = json!(g);
        m["member"] = json!({"roles": [], "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0});
    }
    m
}

pub struct FakeDiscord {
    pub base: String,
    tx: mpsc::UnboundedSender<(String, Value)>,
    pub fake: Fake,
}

pub async fn fake_discord(drop_after: usize) -> FakeDiscord {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let fake = Fake {
        ws_url: format!("ws://{addr}/gateway"),
        to_send: Arc::new(tokio::sync::Mutex::new(rx)),
        answers: Arc::default(),
        registered: Arc::default(),
        identifies: Arc::default(),
        intents: Arc::default(),
        posted: Arc::default(),
        files: Arc::default(),
        attachments: Arc::default(),
        failing_posts: Arc::default(),
        unreadable_posts: Arc::default(),
        refused_registrations: Arc::default(),
        failing_gateway: Arc::default(),
        roles_added: Arc::default(),
        forbidden_roles: Arc::default(),
        roles_removed: Arc::default(),
        member_roles: Arc::default(),
        role_bucket: Arc::default(),
        role_windows: Arc::default(),
        global_bucket: Arc::default(),
        rate_limited: Arc::default(),
        deleted: Arc::default(),
        disallowed_intents: Arc::default(),
        dispatched_log: Arc::default(),
        seq: Arc::default(),
        resumes: Arc::default(),
        refused_callbacks: Arc::default(),
        heartbeat_ms: Arc::new(Mutex::new(300)),
        role_metadata: Arc::default(),
        oauth_codes: Arc::default(),
        client_secret: Arc::default(),
        oauth_tokens: Arc::default(),
        connections: Arc::default(),
        drop_after,
        sharded: Arc::default(),
        shard_sessions: Arc::default(),
        undelivered: Arc::default(),
        identified_shards: Arc::default(),
    };
    let app = Router::new()
        .route("/api/v10/gateway", get(gateway_info))
        .route("/api/v10/gateway/bot", get(gateway_info))
        .route("/api/v10/applications/{app}/commands", put(register))
        .route(
            "/api/v10/interactions/{id}/{token}/callback",
            post(callback),
        )
        .route(
            "/api/v10/guilds/{guild}/members/{user}/roles/{role}",
            put(add_role).delete(remove_role),
        )
        .route(
            "/api/v10/channels/{channel}/messages",
            post(create_message).get(list_messages),
        )
        .route(
            "/api/v10/channels/{channel}/messages/{id}",
            get(get_message),
        )
        .route(
            "/api/v10/applications/{app}/role-connections/metadata",
            put(put_metadata),
        )
        .route("/api/v10/oauth2/token", post(oauth_token))
        .route("/api/v10/users/@me", get(users_me))
        .route(
            "/api/v10/users/@me/applications/{app}/role-connection",
            put(put_connection),
        )
        .route("/api/v10/webhooks/{app}/{token}", post(followup))
        .route("/attachments/{name}", get(attachment))
        .route("/gateway", get(gateway))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeDiscord {
        base: format!("http://{addr}"),
        tx,
        fake,
    }
}

pub fn user(id: &str) -> Value {
    json!({"id": id, "username": format!("player{id}"), "discriminator": "0", "avatar": null, "global_name": null})
}

/// A slash-command interaction as Discord sends it.
pub fn interaction(id: &str, user_id: &str, name: &str, options: Value, resolved: Value) -> Value {
    json!({
        "id": id, "application_id": APP_ID, "type": 2, "token": format!("token-{id}"), "version": 1,
        "guild_id": "700000000000000001", "channel_id": "700000000000000002",
        "member": {"user": user(user_id), "roles": [], "joined_at": "2026-01-01T00:00:00Z",
                   "deaf": false, "mute": false, "flags": 0, "permissions": "2147483647"},
        "app_permissions": "2147483647", "locale": "en-US", "guild_locale": "en-US",
        "entitlements": [], "authorizing_integration_owners": {}, "context": 0,
        "attachment_size_limit": 8388608,
        "data": {"id": "800000000000000001", "name": name, "type": 1, "options": options, "resolved": resolved}
    })
}

/// A press of a message's button, as Discord sends it (type 3).
pub fn press(id: &str, user_id: &str, guild: &str, message_id: &str, custom_id: &str) -> Value {
    let mut i = interaction(id, user_id, "", json!([]), json!({}));
    i["type"] = json!(3);
    i["guild_id"] = json!(guild);
    i["message"] = message(message_id, "700000000000000002", None, &user(BOT_ID), "");
    i["data"] = json!({"custom_id": custom_id, "component_type": 2});
    i
}

/// A form submitted, with one text input's value (type 5).
pub fn submit(
    id: &str,
    user_id: &str,
    guild: &str,
    custom_id: &str,
    input: &str,
    value: &str,
) -> Value {
    let mut i = interaction(id, user_id, "", json!([]), json!({}));
    i["type"] = json!(5);
    i["guild_id"] = json!(guild);
    i["data"] = json!({"custom_id": custom_id, "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": input, "value": value}]}
    ]});
    i
}

impl FakeDiscord {
    /// Routes events by shard from now on, as Discord does for a bot with
    /// `total` shards: a session gets only its shard's guilds' events.
    /// Call before the bot connects.
    pub fn shard(&self, total: u64) {
        *self.fake.sharded.lock().unwrap() = Some(total);
        let f = self.fake.clone();
        tokio::spawn(async move {
            let mut rx = f.to_send.lock().await;
            while let Some((name, payload)) = rx.recv().await {
                let shard = shard_of(&payload, total);
                let sent = f
                    .shard_sessions
                    .lock()
                    .unwrap()
                    .get(&shard)
                    .is_some_and(|tx| tx.send((name, payload)).is_ok());
                if !sent {
                    *f.undelivered.lock().unwrap() += 1;
                }
            }
        });
    }

    /// Deletes a message the bot posted, as a member with Manage Messages
    /// would; the gateway tells the bot.
    pub fn delete_message(&self, channel: &str, id: &str, guild: &str) {
        self.fake.deleted.lock().unwrap().push(id.to_owned());
        self.event(
            "MESSAGE_DELETE",
            json!({"id": id, "channel_id": channel, "guild_id": guild}),
        );
    }

    /// Keeps `bytes` as a member's attachment; its `resolved.attachments`
    /// entry, as an interaction carries it.
    pub fn attach(&self, id: &str, name: &str, bytes: &[u8]) -> Value {
        self.fake
            .attachments
            .lock()
            .unwrap()
            .insert(name.to_owned(), bytes.to_vec());
        let url = format!("{}/attachments/{name}", self.base);
        json!({"id": id, "filename": name, "size": bytes.len(), "url": url, "proxy_url": url,
               "content_type": "image/png", "width": 512, "height": 512, "ephemeral": true})
    }

    /// Dispatches an interaction on the gateway.
    pub fn send(&self, v: Value) {
        self.event("INTERACTION_CREATE", v);
    }

    /// Dispatches any gateway event.
    pub fn event(&self, name: &str, v: Value) {
        self.tx.send((name.to_owned(), v)).unwrap();
    }

    pub fn identifies_count(&self) -> u32 {
        *self.fake.identifies.lock().unwrap()
    }

    /// Every answer so far whose interaction id starts with `prefix`.
    pub fn answers_of_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        self.fake
            .answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| i.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits for the answer to interaction `id` (the `n`th answer to it, from 1).
    pub async fn answer(&self, id: &str, n: usize) -> Value {
        for _ in 0..1500 {
            let found: Vec<Value> = self
                .fake
                .answers
                .lock()
                .unwrap()
                .iter()
                .filter(|(i, _)| i == id)
                .map(|(_, b)| b.clone())
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no answer {n} to interaction {id}")
    }
}

pub fn content(answer: &Value) -> &str {
    answer["data"]["content"].as_str().unwrap_or_default()
}

/// The first embed of an answer.
pub fn embed(answer: &Value) -> &Value {
    &answer["data"]["embeds"][0]
}

/// The text an answer shows: its embed's description, or its content.
pub fn shown(answer: &Value) -> &str {
    embed(answer)["description"]
        .as_str()
        .unwrap_or_else(|| content(answer))
}

pub fn ephemeral(answer: &Value) -> bool {
    answer["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0
}
