//! A fake ComfyUI on loopback, following ComfyUI's server as it answers:
//! `POST /prompt` (200 `{prompt_id, number, node_errors}`, or 400 `{error,
//! node_errors}`), the `/ws?clientId=` websocket (JSON events by type, and
//! binary preview frames), `/history/{id}` (`{}` until finished), `/view`,
//! `GET`/`POST /queue`, `POST /interrupt`, `/system_stats`. It is as harsh
//! as ComfyUI: it renders one prompt at a time, queues a prompt id it
//! already has again (no dedupe), sends a prompt's events only to the
//! socket of the client id that submitted it (a second socket with that id
//! takes the first one's place), and forgets its queue and history when it
//! restarts (`restart`). `drop_answers(n)` queues the next n submits and
//! closes the connection before answering: a lost answer. What a prompt's
//! text says decides its fate: "bad checkpoint" is refused at submit,
//! "explode" fails mid-run (its message naming a server path), "slow"
//! takes seconds, "steady" most of one. Progress comes as `progress_state` (as newer ComfyUI
//! sends it) and, unless the prompt says "stateonly", `progress` too.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A PNG's signature and a little more: what `/view` serves.
pub const PICTURE: &[u8] = b"\x89PNG\r\n\x1a\nfake-comfyui-picture";
/// An mp4's opening box: what `/view` serves for a SaveVideo output.
pub const VIDEO: &[u8] = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2fake-comfyui-video";

#[derive(Default)]
struct Inner {
    /// Every accepted submission: (prompt id, client id, graph).
    submitted: Vec<(String, String, Value)>,
    pending: VecDeque<String>,
    running: Option<String>,
    graphs: HashMap<String, (String, Value)>,
    history: HashMap<String, Value>,
    /// Client ids with an open socket, and how to reach them.
    sockets: HashMap<String, mpsc::UnboundedSender<Message>>,
    /// Every client id that ever connected, in order.
    connected: Vec<String>,
    interrupted: Vec<String>,
    deleted: Vec<String>,
    /// Input pictures received: (name kept, bytes).
    uploads: Vec<(String, Vec<u8>)>,
    number: u64,
    /// Submits still to be taken without an answer.
    drop_answers: u32,
    /// Bumped by a restart: the worker drops what it was rendering.
    life: u64,
    /// The most prompts it held at once (waiting or running).
    most_lined: usize,
    /// A process to kill -9 at the next `/view` (a result fetched).
    kill_on_view: Option<u32>,
}

#[derive(Clone)]
pub struct FakeComfy {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::Notify>,
    pub addr: SocketAddr,
    server: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl FakeComfy {
    /// A runtime rendering on this ComfyUI, keeping results and uploads in
    /// `data_dir`, each workflow limited to `time_limit`, every job paid
    /// (no free jobs): the tests are about charges and refunds.
    pub fn runtime_config(
        &self,
        data_dir: &std::path::Path,
        time_limit: Duration,
    ) -> actors::RuntimeConfig {
        self.runtime_config_with(data_dir, time_limit, 1)
    }

    /// The same, with each workflow starting up to `concurrency` jobs at
    /// once (ComfyUI still runs one: the rest wait in its own queue).
    pub fn runtime_config_with(
        &self,
        data_dir: &std::path::Path,
        time_limit: Duration,
        concurrency: usize,
    ) -> actors::RuntimeConfig {
        let render = kokoro::comfyui::ComfyRender::new(&self.url(), data_dir).unwrap();
        let mut generation = actors::game::generation::GenerationData::default();
        generation.workflows = generation.workflows.each(|w| {
            w.time_limit = time_limit;
            w.concurrency = concurrency;
            w.daily_free = 0;
        });
        generation.rules.trial_daily_free = 0;
        actors::RuntimeConfig {
            jobs: actors::config::JobsConfig {
                render: Some(render),
            },
            generation: Arc::new(generation),
            uploads: Some(actors::uploads::Uploads::new(data_dir.join("uploads"))),
            ..actors::RuntimeConfig::default()
        }
    }

    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self {
            inner: Arc::default(),
            wake: Arc::default(),
            addr,
            server: Arc::default(),
        };
        fake.serve(listener);
        tokio::spawn(worker(fake.clone()));
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/prompt", post(submit))
            .route("/ws", get(ws))
            .route("/history/{id}", get(history))
            .route("/view", get(view))
            .route("/queue", get(queue).post(queue_delete))
            .route("/interrupt", post(interrupt))
            .route("/system_stats", get(system_stats))
            .route("/upload/image", post(upload_image))
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// ComfyUI goes away: connections are refused, sockets drop.
    pub fn down(&self) {
        if let Some(t) = self.server.lock().unwrap().take() {
            t.abort();
        }
        self.inner.lock().unwrap().sockets.clear();
    }

    /// ComfyUI restarts: everything it kept in memory (its queue, what it
    /// was rendering, its history, its sockets) is gone.
    pub async fn restart(&self) {
        self.down();
        {
            let mut i = self.inner.lock().unwrap();
            i.pending.clear();
            i.running = None;
            i.history.clear();
            i.life += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.up().await;
    }

    /// Kills process `pid` (`kill -9`) when the next result file is asked
    /// for, before answering: it dies with a job rendered, not yet closed.
    pub fn kill_on_view(&self, pid: u32) {
        self.inner.lock().unwrap().kill_on_view = Some(pid);
    }

    /// The next `n` submits are queued, and their connection closed
    /// before the answer.
    pub fn drop_answers(&self, n: u32) {
        self.inner.lock().unwrap().drop_answers = n;
    }

    /// Every socket is closed (clients connect again).
    pub fn drop_sockets(&self) {
        self.inner.lock().unwrap().sockets.clear();
    }

    /// ComfyUI comes back on the same address.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// The most prompts it held at once, waiting or running: what the
    /// clients together sent it ahead of its rendering.
    pub fn most_lined(&self) -> usize {
        self.inner.lock().unwrap().most_lined
    }

    pub fn submitted(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().submitted.clone()
    }

    pub fn connected(&self) -> Vec<String> {
        self.inner.lock().unwrap().connected.clone()
    }

    pub fn interrupted(&self) -> Vec<String> {
        self.inner.lock().unwrap().interrupted.clone()
    }

    pub fn deleted(&self) -> Vec<String> {
        self.inner.lock().unwrap().deleted.clone()
    }

    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.lock().unwrap().uploads.clone()
    }

    pub fn running(&self) -> Option<String> {
        self.inner.lock().unwrap().running.clone()
    }

    fn send(&self, client: &str, m: Message) {
        if let Some(tx) = self.inner.lock().unwrap().sockets.get(client) {
            let _ = tx.send(m);
        }
    }

    fn event(&self, client: &str, kind: &str, data: Value) {
        let text = json!({ "type": kind, "data": data }).to_string();
        self.send(client, Message::Text(text.into()));
    }
}

/// The text of a graph's prompt (its CLIPTextEncode with a text input).
fn prompt_text(graph: &Value) -> String {
    graph
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, n)| n["class_type"] == "CLIPTextEncode")
        .and_then(|(_, n)| n["inputs"]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn submit(State(f): State<FakeComfy>, Json(body): Json<Value>) -> Response {
    let graph = body["prompt"].clone();
    if !graph.is_object() {
        let e = json!({"error": {"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.", "details": "", "extra_info": {}}, "node_errors": []});
        return (StatusCode::BAD_REQUEST, Json(e)).into_response();
    }
    if prompt_text(&graph).contains("bad checkpoint") {
        let e = json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'sd_xl_base_1.0.safetensors' not in []", "extra_info": {}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}
        });
        return (StatusCode::BAD_REQUEST, Json(e)).into_response();
    }
    let id = body["prompt_id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:x}", rand_id()));
    let client = body["client_id"].as_str().unwrap_or_default().to_owned();
    let number = {
        let mut i = f.inner.lock().unwrap();
        i.number += 1;
        i.submitted
            .push((id.clone(), client.clone(), graph.clone()));
        i.graphs.insert(id.clone(), (client, graph));
        i.pending.push_back(id.clone());
        let lined = i.pending.len() + usize::from(i.running.is_some());
        i.most_lined = i.most_lined.max(lined);
        i.number
    };
    f.wake.notify_one();
    let drop_it = {
        let mut i = f.inner.lock().unwrap();
        let d = i.drop_answers > 0;
        i.drop_answers = i.drop_answers.saturating_sub(1);
        d
    };
    if drop_it {
        // The connection dies before the answer: the client cannot tell
        // whether the prompt was queued (it was).
        panic!("fake ComfyUI drops this answer on purpose");
    }
    Json(json!({"prompt_id": id, "number": number, "node_errors": {}})).into_response()
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[derive(serde::Deserialize)]
struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

async fn ws(
    State(f): State<FakeComfy>,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client = q.client_id.unwrap_or_else(|| format!("{:x}", rand_id()));
    upgrade.on_upgrade(move |socket| session(f, client, socket))
}

async fn session(f: FakeComfy, client: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut i = f.inner.lock().unwrap();
        // One socket per client id, as ComfyUI keeps it: a second
        // connection with the same id takes the first one's messages.
        i.sockets.insert(client.clone(), tx);
        i.connected.push(client.clone());
    }
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => if socket.send(m).await.is_err() { break },
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
}

/// Renders the pending prompts one at a time, telling the submitting
/// client as ComfyUI does.
async fn worker(f: FakeComfy) {
    loop {
        let next = {
            let mut i = f.inner.lock().unwrap();
            let id = i.pending.pop_front();
            i.running = id.clone();
            id.map(|id| (id, i.life))
        };
        let Some((id, life)) = next else {
            f.wake.notified().await;
            continue;
        };
        let alive = |f: &FakeComfy| f.inner.lock().unwrap().life == life;
        let (client, graph) = f.inner.lock().unwrap().graphs[&id].clone();
        let text = prompt_text(&graph);
        let step = if text.contains("slow") {
            Duration::from_millis(1500)
        } else if text.contains("steady") {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(30)
        };
        f.event(
            &client,
            "execution_start",
            json!({"prompt_id": id, "timestamp": 1}),
        );
        f.event(
            &client,
            "execution_cached",
            json!({"nodes": [], "prompt_id": id, "timestamp": 1}),
        );
        let mut outcome = "success";
        for value in 1..=3 {
            f.event(
                &client,
                "executing",
                json!({"node": "3", "display_node": "3", "prompt_id": id}),
            );
            tokio::time::sleep(step).await;
            if !alive(&f) {
                outcome = "forgotten";
                break;
            }
            if f.inner.lock().unwrap().interrupted.contains(&id) {
                outcome = "interrupted";
                break;
            }
            f.event(
                &client,
                "progress_state",
                json!({"prompt_id": id, "nodes": {"3": {"value": value, "max": 3, "state": "running", "node_id": "3", "prompt_id": id}}}),
            );
            if !text.contains("stateonly") {
                f.event(
                    &client,
                    "progress",
                    json!({"value": value, "max": 3, "prompt_id": id, "node": "3"}),
                );
            }
            // A preview: binary, not JSON.
            f.send(
                &client,
                Message::Binary(vec![0u8, 0, 0, 1, 0xff, 0xd8, 0xff].into()),
            );
            if value == 2 && text.contains("explode") {
                outcome = "error";
                break;
            }
        }
        if outcome == "forgotten" {
            continue; // restarted: it never finished, and nobody is told
        }
        // ComfyUI's SaveVideo: an mp4 listed under `images`, animated.
        let file = if text.contains("mp4out") {
            json!({"filename": format!("kokoro_{:05}_.mp4", f.inner.lock().unwrap().number), "subfolder": "video", "type": "output", "animated": [true]})
        } else {
            json!({"filename": format!("kokoro_image_{:05}_.png", f.inner.lock().unwrap().number), "subfolder": "", "type": "output"})
        };
        let entry = match outcome {
            "success" => {
                f.event(&client, "executed", json!({"node": "9", "display_node": "9", "output": {"images": [file.clone()]}, "prompt_id": id}));
                f.event(
                    &client,
                    "execution_success",
                    json!({"prompt_id": id, "timestamp": 2}),
                );
                json!({"prompt": [1, id, graph, {}, ["9"]], "outputs": {"9": {"images": [file]}},
                       "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": id}], ["execution_success", {"prompt_id": id}]]}, "meta": {}})
            }
            "error" => {
                let err = json!({"prompt_id": id, "node_id": "3", "node_type": "KSampler", "executed": [], "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB\n full_output_folder: /srv/comfyui/output/kokoro output_dir: /srv/comfyui/output\n", "exception_type": "torch.OutOfMemoryError", "traceback": [], "current_inputs": {}, "current_outputs": {}});
                f.event(&client, "execution_error", err.clone());
                json!({"prompt": [1, id, graph, {}, ["9"]], "outputs": {},
                       "status": {"status_str": "error", "completed": false, "messages": [["execution_start", {"prompt_id": id}], ["execution_error", err]]}, "meta": {}})
            }
            _ => {
                let data = json!({"prompt_id": id, "node_id": "3", "node_type": "KSampler", "executed": []});
                f.event(&client, "execution_interrupted", data.clone());
                json!({"prompt": [1, id, graph, {}, ["9"]], "outputs": {},
                       "status": {"status_str": "error", "completed": false, "messages": [["execution_interrupted", data]]}, "meta": {}})
            }
        };
        {
            let mut i = f.inner.lock().unwrap();
            if i.life != life {
                continue;
            }
            i.history.insert(id.clone(), entry);
            i.running = None;
        }
        f.event(&client, "executing", json!({"node": null, "prompt_id": id}));
    }
}

async fn history(State(f): State<FakeComfy>, Path(id): Path<String>) -> Json<Value> {
    let i = f.inner.lock().unwrap();
    Json(match i.history.get(&id) {
        Some(e) => json!({ id: e }),
        None => json!({}),
    })
}

#[derive(serde::Deserialize)]
struct ViewQuery {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default)]
    kind: String,
}

async fn view(State(f): State<FakeComfy>, Query(q): Query<ViewQuery>) -> Response {
    // The worst instant to die: the render is done and its file asked
    // for, its job not closed yet.
    if let Some(pid) = f.inner.lock().unwrap().kill_on_view.take() {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    if q.filename.is_empty()
        || q.filename.contains("..")
        || q.kind != "output"
        || !(q.subfolder.is_empty() || q.subfolder == "video")
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    if q.filename.ends_with(".mp4") {
        // As ComfyUI serves a video: no useful content type.
        return ([("content-type", "application/octet-stream")], VIDEO).into_response();
    }
    ([("content-type", "image/png")], PICTURE).into_response()
}

async fn queue(State(f): State<FakeComfy>) -> Json<Value> {
    let i = f.inner.lock().unwrap();
    let item = |n: u64, id: &String| json!([n, id, {}, {}, ["9"]]);
    Json(json!({
        "queue_running": i.running.iter().map(|id| item(0, id)).collect::<Vec<_>>(),
        "queue_pending": i.pending.iter().enumerate().map(|(n, id)| item(n as u64 + 1, id)).collect::<Vec<_>>(),
    }))
}

async fn queue_delete(State(f): State<FakeComfy>, Json(body): Json<Value>) -> StatusCode {
    let mut i = f.inner.lock().unwrap();
    for id in body["delete"].as_array().into_iter().flatten() {
        if let Some(id) = id.as_str() {
            i.pending.retain(|p| p != id);
            i.deleted.push(id.to_owned());
        }
    }
    StatusCode::OK
}

async fn interrupt(State(f): State<FakeComfy>, body: Option<Json<Value>>) -> StatusCode {
    let mut i = f.inner.lock().unwrap();
    let target = body.and_then(|Json(b)| b["prompt_id"].as_str().map(str::to_owned));
    // A targeted interrupt stops only that prompt, and only if it runs.
    if let Some(id) = target {
        if i.running.as_deref() == Some(&id) {
            i.interrupted.push(id);
        }
    }
    StatusCode::OK
}

/// `POST /upload/image` (multipart `image`, `overwrite`, `type`): keeps
/// the file and answers `{name, subfolder, type}`. Like ComfyUI, it never
/// overwrites unless asked: a name already taken becomes `name (1).ext`.
async fn upload_image(State(f): State<FakeComfy>, mut form: axum::extract::Multipart) -> Response {
    let (mut file, mut overwrite, mut kind) = (None, false, "input".to_owned());
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or_default() {
            "image" => {
                let name = field.file_name().unwrap_or("image.png").to_owned();
                let bytes = field.bytes().await.unwrap_or_default().to_vec();
                file = Some((name, bytes));
            }
            "overwrite" => overwrite = field.text().await.unwrap_or_default() == "true",
            "type" => kind = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    let Some((mut name, bytes)) = file else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut i = f.inner.lock().unwrap();
    // Every kokoro upload is unique, so rename some anyway, as a busy
    // ComfyUI shared with other tools would: kokoro must use the answer.
    let taken = |n: &str, i: &Inner| i.uploads.iter().any(|(k, _)| k == n);
    if !overwrite && (taken(&name, &i) || i.uploads.len() % 2 == 0) {
        let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, "png"));
        let mut n = 1;
        let mut candidate = format!("{stem} ({n}).{ext}");
        while taken(&candidate, &i) {
            n += 1;
            candidate = format!("{stem} ({n}).{ext}");
        }
        name = candidate;
    }
    i.uploads.push((name.clone(), bytes));
    Json(json!({"name": name, "subfolder": "", "type": kind})).into_response()
}

async fn system_stats() -> Json<Value> {
    Json(json!({
        "system": {"os": "posix", "ram_total": 1, "ram_free": 1, "comfyui_version": "0.3.40", "python_version": "3.12", "pytorch_version": "2.7", "embedded_python": false, "argv": ["main.py"]},
        "devices": [{"name": "cpu", "type": "cpu", "index": null, "vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]
    }))
}
