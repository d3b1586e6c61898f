//! A fake Telegram Bot API on loopback, answering as api.telegram.org (or
//! a self-hosted telegram-bot-api) does: `POST /bot{token}/{method}` with
//! the method name matched case-insensitively (teloxide sends
//! `SendMessage`), JSON or multipart bodies (files as `attach://` parts),
//! `{"ok": true, "result"}` or `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}` (never a 5xx: teloxide waits 10 s on
//! those), `getMe` with its full field set, messages dated (never 0), long
//! polls answered within their timeout (under 17 s), and files served at
//! `/file/bot{token}/{path}`. As harsh as the real one: an update is sent
//! again until a later `getUpdates` offset confirms it, and never after;
//! a payment is in `getStarTransactions` whether or not its update was
//! ever delivered (`paid_silently`); a `getUpdates` arriving while another
//! waits ends the waiting one with 409 Conflict ("terminated by other
//! getUpdates request"), as when two bot instances poll. `break_get_me(n)` answers the next n
//! `getMe` with a body teloxide cannot parse, and `kill_on_confirm` kills a
//! process the instant a poll confirms an update (before it is answered).

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub const TOKEN: &str = "123456789:AAFakeTokenForKokoroTests_0123456789";
pub const BOT_ID: i64 = 123456789;

/// A call the bot made: the method (lowercase), its fields, and the files
/// it uploaded by field name.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub files: HashMap<String, Vec<u8>>,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    next_update: i64,
    calls: Vec<Call>,
    /// Files players sent: file id -> (path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Answer the next N calls of a method with 429, retry_after seconds.
    limited: HashMap<String, (u32, u32)>,
    next_message: i64,
    /// Stars charges refunded.
    refunded: Vec<String>,
    /// The bot's Star transactions, oldest first (`getStarTransactions`).
    transactions: Vec<Value>,
    /// Every getUpdates body, in order.
    polls: Vec<Value>,
    /// The newest poll's number: an older one still waiting is ended 409.
    poll_generation: u64,
    /// Polls ended with 409 because a newer one came.
    conflicts: u32,
    /// getMe answers still to be broken.
    broken_get_me: u32,
    /// Kill this pid the instant a poll's offset passes this update id.
    kill_on_confirm: Option<(u32, i64)>,
    /// Kill this pid the instant the bot sends a message to this chat:
    /// the command is durable, its update not yet confirmed.
    kill_on_answer: Option<(u32, i64)>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::Notify>,
    pub url: String,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as i64)
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"ok": false, "error_code": code, "description": description})),
    )
        .into_response()
}

pub fn user(id: i64) -> Value {
    json!({"id": id, "is_bot": false, "first_name": format!("Player{id}"), "language_code": "en"})
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "kokoro", "username": "kokoro_test_bot"})
}

fn private_chat(id: i64) -> Value {
    json!({"id": id, "type": "private", "first_name": format!("Player{id}")})
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self {
            inner: Arc::new(Mutex::new(Inner {
                next_update: 1000,
                next_message: 5000,
                ..Inner::default()
            })),
            wake: Arc::default(),
            url: format!("http://{addr}/"),
        };
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// Queues an update (its `update_id` assigned) for the next poll.
    pub fn push(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.inner.lock().unwrap();
            inner.next_update += 1;
            let id = inner.next_update;
            update["update_id"] = json!(id);
            inner.updates.push_back(update);
            id
        };
        self.wake.notify_waiters();
        id
    }

    /// Queues the same update twice, in one batch (a redelivery).
    pub fn push_twice(&self, mut update: Value) {
        {
            let mut inner = self.inner.lock().unwrap();
            inner.next_update += 1;
            update["update_id"] = json!(inner.next_update);
            inner.updates.push_back(update.clone());
            inner.updates.push_back(update);
        }
        self.wake.notify_waiters();
    }

    fn message_id(&self) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_message += 1;
        inner.next_message
    }

    /// A player's text message (a `/command` carries its entity).
    pub fn text(&self, from: i64, text: &str) -> i64 {
        let mut message = json!({
            "message_id": self.message_id(), "date": now(), "chat": private_chat(from),
            "from": user(from), "text": text,
        });
        if text.starts_with('/') {
            let len = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .encode_utf16()
                .count();
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        self.push(json!({ "message": message }))
    }

    /// A player's photo: kept for `getFile` and the download.
    pub fn photo(&self, from: i64, bytes: &[u8], caption: Option<&str>) -> i64 {
        let n = self.message_id();
        let file_id = format!("photo-{n}");
        self.inner.lock().unwrap().files.insert(
            file_id.clone(),
            (format!("photos/file_{n}.jpg"), bytes.to_vec()),
        );
        let mut message = json!({
            "message_id": n, "date": now(), "chat": private_chat(from), "from": user(from),
            "photo": [
                {"file_id": format!("{file_id}-small"), "file_unique_id": format!("u{n}s"), "width": 90, "height": 67, "file_size": 1000},
                {"file_id": file_id, "file_unique_id": format!("u{n}"), "width": 640, "height": 480, "file_size": bytes.len()},
            ],
        });
        if let Some(c) = caption {
            message["caption"] = json!(c);
        }
        self.push(json!({ "message": message }))
    }

    /// A press of an inline button the bot sent in its message `message_id`.
    pub fn press(&self, from: i64, data: &str) -> i64 {
        let n = self.message_id();
        self.push(json!({"callback_query": {
            "id": format!("cb-{n}"), "from": user(from), "chat_instance": "ci-1", "data": data,
            "message": {"message_id": n, "date": now(), "chat": private_chat(from), "from": bot_user(), "text": "…"},
        }}))
    }

    pub fn pre_checkout(&self, from: i64, payload: &str, stars: u32) -> String {
        let id = format!("pcq-{}", self.message_id());
        self.push(json!({"pre_checkout_query": {
            "id": id, "from": user(from), "currency": "XTR", "total_amount": stars, "invoice_payload": payload,
        }}));
        id
    }

    /// Telegram's service message for a completed Stars payment.
    pub fn paid(&self, from: i64, payload: &str, stars: u32, charge: &str) -> i64 {
        if !self
            .inner
            .lock()
            .unwrap()
            .transactions
            .iter()
            .any(|t| t["id"] == charge)
        {
            self.transaction(from, payload, stars, charge);
        }
        let message = json!({
            "message_id": self.message_id(), "date": now(), "chat": private_chat(from), "from": user(from),
            "successful_payment": {
                "currency": "XTR", "total_amount": stars, "invoice_payload": payload,
                "telegram_payment_charge_id": charge, "provider_payment_charge_id": "",
            },
        });
        self.push(json!({ "message": message }))
    }

    /// A payment Telegram took but whose update never reaches the bot: it
    /// is only in the bot's Star transactions.
    pub fn paid_silently(&self, from: i64, payload: &str, stars: u32, charge: &str) {
        self.transaction(from, payload, stars, charge);
    }

    fn transaction(&self, from: i64, payload: &str, stars: u32, charge: &str) {
        self.inner.lock().unwrap().transactions.push(json!({
            "id": charge, "amount": stars, "date": now(),
            "source": {"type": "user", "transaction_type": "invoice_payment", "user": user(from), "invoice_payload": payload},
        }));
    }

    /// Polls ended 409 because another began while they waited.
    pub fn conflicts(&self) -> u32 {
        self.inner.lock().unwrap().conflicts
    }

    /// Every getUpdates call's body, in order.
    pub fn polls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().polls.clone()
    }

    /// The next `n` getMe calls get a 200 whose body is not a user.
    pub fn break_get_me(&self, n: u32) {
        self.inner.lock().unwrap().broken_get_me = n;
    }

    /// Kills `pid` (SIGKILL) the instant a poll confirms `update`, before
    /// the poll is answered.
    /// Kills `pid` (SIGKILL) the instant the bot sends its first message to
    /// `chat` (the message is taken, as Telegram would have it): the worst
    /// instant for a poller, its command committed and its update not yet
    /// confirmed, so the update is sent again to whoever polls next.
    pub fn kill_on_answer(&self, pid: u32, chat: i64) {
        self.inner.lock().unwrap().kill_on_answer = Some((pid, chat));
    }

    pub fn kill_on_confirm(&self, pid: u32, update: i64) {
        self.inner.lock().unwrap().kill_on_confirm = Some((pid, update));
    }

    /// Whether a poll has confirmed `update` (its offset passed it).
    pub fn confirmed(&self, update: i64) -> bool {
        self.inner
            .lock()
            .unwrap()
            .polls
            .iter()
            .any(|p| p["offset"].as_i64().unwrap_or(0) > update)
    }

    /// Answers the next `times` calls of `method` with 429 and `retry_after`.
    pub fn limit(&self, method: &str, times: u32, retry_after: u32) {
        self.inner
            .lock()
            .unwrap()
            .limited
            .insert(method.to_ascii_lowercase(), (times, retry_after));
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        let method = method.to_ascii_lowercase();
        let inner = self.inner.lock().unwrap();
        inner
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub fn refunded(&self) -> Vec<String> {
        self.inner.lock().unwrap().refunded.clone()
    }

    /// Waits until `count(calls)` holds, or fails after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&FakeTelegram) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The texts the bot sent to `chat` with sendMessage, in order.
    pub fn said(&self, chat: i64) -> Vec<String> {
        self.calls("sendMessage")
            .iter()
            .filter(|c| c.body["chat_id"] == json!(chat))
            .filter_map(|c| c.body["text"].as_str().map(str::to_owned))
            .collect()
    }

    fn sent_message(&self, chat: &Value, extra: Value) -> Value {
        let chat_id = chat
            .as_i64()
            .or_else(|| chat.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let mut m = json!({
            "message_id": self.message_id(), "date": now(), "chat": private_chat(chat_id), "from": bot_user(),
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }
}

/// Reads a request's fields, JSON or multipart; files by part name.
async fn fields(request: Request) -> Result<(Value, HashMap<String, Vec<u8>>), Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        let mut form = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|_| fail(400, "Bad Request: can't parse multipart body"))?;
        let (mut body, mut parts) = (serde_json::Map::new(), HashMap::new());
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some();
            let bytes = field
                .bytes()
                .await
                .map_err(|_| fail(400, "Bad Request: can't read multipart part"))?;
            if is_file {
                parts.insert(name, bytes.to_vec());
            } else {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                // Numbers and nested objects arrive as JSON text, as the
                // Bot API reads them.
                let value = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| !v.is_string())
                    .unwrap_or(Value::String(text));
                body.insert(name, value);
            }
        }
        // `attach://name` fields point at file parts.
        let mut files = HashMap::new();
        for (k, v) in &body {
            if let Some(part) = v.as_str().and_then(|s| s.strip_prefix("attach://")) {
                match parts.get(part) {
                    Some(bytes) => {
                        files.insert(k.clone(), bytes.clone());
                    }
                    None => {
                        return Err(fail(
                            400,
                            "Bad Request: wrong file identifier/HTTP URL specified",
                        ))
                    }
                }
            }
        }
        return Ok((Value::Object(body), files));
    }
    let bytes = axum::body::to_bytes(request.into_body(), 50 << 20)
        .await
        .map_err(|_| fail(400, "Bad Request: can't read body"))?;
    if bytes.is_empty() {
        return Ok((json!({}), HashMap::new()));
    }
    let body =
        serde_json::from_slice(&bytes).map_err(|_| fail(400, "Bad Request: can't parse JSON"))?;
    Ok((body, HashMap::new()))
}

async fn method(
    State(f): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return fail(401, "Unauthorized");
    }
    let method = method.to_ascii_lowercase();
    let (body, files) = match fields(request).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    {
        let mut inner = f.inner.lock().unwrap();
        if let Some((times, wait)) = inner.limited.get_mut(&method) {
            if *times > 0 {
                *times -= 1;
                let wait = *wait;
                inner.calls.push(Call {
                    method: format!("{method}:429"),
                    body,
                    files,
                    at: Instant::now(),
                });
                let e = json!({"ok": false, "error_code": 429,
                    "description": format!("Too Many Requests: retry after {wait}"),
                    "parameters": {"retry_after": wait}});
                return (StatusCode::TOO_MANY_REQUESTS, Json(e)).into_response();
            }
        }
        if method != "getupdates" {
            inner.calls.push(Call {
                method: method.clone(),
                body: body.clone(),
                files: files.clone(),
                at: Instant::now(),
            });
        }
    }
    if method == "getme" {
        let mut inner = f.inner.lock().unwrap();
        if inner.broken_get_me > 0 {
            inner.broken_get_me -= 1;
            return ok(json!("not a user"));
        }
    }
    match method.as_str() {
        "getstartransactions" => {
            let inner = f.inner.lock().unwrap();
            let offset = body["offset"].as_u64().unwrap_or(0) as usize;
            let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
            let page: Vec<Value> = inner.transactions.iter().skip(offset).take(limit).cloned().collect();
            ok(json!({ "transactions": page }))
        }
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "kokoro", "username": "kokoro_test_bot",
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getupdates" => get_updates(&f, &body).await,
        "setmycommands" | "deletewebhook" | "setwebhook" | "answercallbackquery"
        | "answerprecheckoutquery" => ok(json!(true)),
        "sendmessage" => {
            if body["text"].as_str().is_none_or(str::is_empty) {
                return fail(400, "Bad Request: message text is empty");
            }
            let mut inner = f.inner.lock().unwrap();
            if let Some((pid, chat)) = inner.kill_on_answer {
                if body["chat_id"] == json!(chat) {
                    inner.kill_on_answer = None;
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            }
            drop(inner);
            ok(f.sent_message(&body["chat_id"], json!({"text": body["text"]})))
        }
        "editmessagetext" => ok(f.sent_message(&body["chat_id"], json!({"text": body["text"], "edit_date": now()}))),
        "sendphoto" => match files.get("photo") {
            None => fail(400, "Bad Request: there is no photo in the request"),
            Some(b) => ok(f.sent_message(&body["chat_id"], json!({"photo": [
                {"file_id": "sent-photo", "file_unique_id": "sp", "width": 64, "height": 64, "file_size": b.len()}
            ], "caption": body["caption"]}))),
        },
        "sendvideo" => match files.get("video") {
            None => fail(400, "Bad Request: there is no video in the request"),
            Some(b) => ok(f.sent_message(&body["chat_id"], json!({"video": {
                "file_id": "sent-video", "file_unique_id": "sv", "width": 64, "height": 64, "duration": 2, "file_size": b.len()
            }, "caption": body["caption"]}))),
        },
        "sendinvoice" => {
            if body["currency"] != "XTR" || body["prices"].as_array().is_none_or(|p| p.len() != 1) {
                return fail(400, "Bad Request: STARS_INVOICE_INVALID");
            }
            ok(f.sent_message(&body["chat_id"], json!({"invoice": {
                "title": body["title"], "description": body["description"], "start_parameter": "",
                "currency": "XTR", "total_amount": body["prices"][0]["amount"],
            }})))
        }
        "getfile" => {
            let id = body["file_id"].as_str().unwrap_or_default();
            match f.inner.lock().unwrap().files.get(id) {
                Some((path, bytes)) => ok(json!({"file_id": id, "file_unique_id": format!("u-{id}"), "file_size": bytes.len(), "file_path": path})),
                None => fail(400, "Bad Request: invalid file_id"),
            }
        }
        "refundstarpayment" => {
            let charge = body["telegram_payment_charge_id"].as_str().unwrap_or_default().to_owned();
            let mut inner = f.inner.lock().unwrap();
            if inner.refunded.contains(&charge) {
                return fail(400, "Bad Request: CHARGE_ALREADY_REFUNDED");
            }
            // The refund is a transaction of its own, to the user, with
            // the original's id.
            let to = inner
                .transactions
                .iter()
                .find(|t| t["id"] == charge.as_str())
                .map(|t| (t["source"]["user"].clone(), t["amount"].clone()));
            if let Some((who, amount)) = to {
                inner.transactions.push(json!({
                    "id": charge, "amount": amount, "date": now(),
                    "receiver": {"type": "user", "transaction_type": "invoice_payment", "user": who},
                }));
            }
            inner.refunded.push(charge);
            ok(json!(true))
        }
        _ => fail(404, "Not Found: method not found"),
    }
}

/// Long polling: the updates from `offset` on, as soon as there are any,
/// or an empty list when `timeout` (at most 10 s here) runs out.
async fn get_updates(f: &FakeTelegram, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let me = {
        let mut inner = f.inner.lock().unwrap();
        inner.polls.push(body.clone());
        inner.poll_generation += 1;
        inner.poll_generation
    };
    // A waiting poll wakes to see it was overtaken.
    f.wake.notify_waiters();
    {
        let mut inner = f.inner.lock().unwrap();
        if let Some((pid, update)) = inner.kill_on_confirm {
            if offset > update {
                inner.kill_on_confirm = None;
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(10));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let wake = f.wake.notified();
        {
            let mut inner = f.inner.lock().unwrap();
            if inner.poll_generation != me {
                inner.conflicts += 1;
                return fail(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            // Updates before the offset are confirmed: Telegram forgets them.
            while inner
                .updates
                .front()
                .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
            {
                inner.updates.pop_front();
            }
            if !inner.updates.is_empty() {
                let batch: Vec<Value> = inner.updates.iter().cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, wake).await.is_err() {
            return ok(json!([]));
        }
    }
}

async fn file(
    State(f): State<FakeTelegram>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let inner = f.inner.lock().unwrap();
    match inner.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
