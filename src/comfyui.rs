//! `ComfyRender`: renders jobs on a ComfyUI server, speaking its own API,
//! and as harsh as ComfyUI is: it does not refuse a prompt id it already
//! has, and it forgets its queue and history when it restarts.
//!
//! - **Submit**: `POST /prompt {prompt, client_id, prompt_id}`. The prompt id
//!   is the job id (as a UUID), chosen here. Every submit, the first or a
//!   retry after a lost answer, comes only after `/queue` and then
//!   `/history/{id}` say ComfyUI does not have the id (looked at twice, a
//!   moment apart); a job it has is followed, never rendered twice. A
//!   prompt that vanishes from both after ComfyUI took it (a restart) is
//!   submitted again, once; a second loss fails the job. A 400 (`error`,
//!   `node_errors`) fails the job with ComfyUI's reason (its details, which
//!   may name server paths, only in the log).
//! - **Follow**: one websocket `/ws?clientId=…` per process, under one
//!   client id for every prompt (ComfyUI sends a prompt's events only to
//!   the socket of the id that submitted it; a reconnect with the same id
//!   takes that socket over), connected again whenever it drops. Events
//!   (`execution_start`, `progress`, `progress_state`, `execution_success`,
//!   `execution_error`, `execution_interrupted`) go to the prompt's
//!   follower; whenever they are quiet, ComfyUI is asked. A job's time
//!   limit starts when it starts executing (`Render::waiting`), not while
//!   it waits in ComfyUI's own queue.
//! - **Result**: the first output file in the history (`images`, also for
//!   videos and animations) is fetched with `/view` and kept under the data
//!   dir's `results/`.
//! - **Cancel** (a player's, or the time limit's): `POST /queue {"delete":
//!   [id]}` for a job waiting there and `POST /interrupt {prompt_id}` for
//!   one running; its render has ended, so a result that still comes is
//!   never fetched, delivered or charged.
//! - **Health**: `/system_stats` every few seconds. While ComfyUI does not
//!   answer, the breaker is open: queues start no job (they wait, none
//!   fails for it) and `kokoro_renderer_up` is 0; it closes by itself.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actors::game::generation::workflow::{Param, WorkflowDef};
use actors::job::{Job, Rendered};
use actors::job_queue::Render;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// How often the breaker asks ComfyUI whether it is up.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// A websocket this quiet sends us to `/history` to look.
const QUIET: Duration = Duration::from_secs(2);
/// Largest result file kept.
const MAX_RESULT_BYTES: usize = 200 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ComfyUrlError {
    #[error("a ComfyUI address must be http://host:port")]
    Scheme,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct ComfyRender {
    /// `http://host:port`, no trailing slash.
    base: String,
    http: reqwest::Client,
    results: PathBuf,
    uploads: actors::uploads::Uploads,
    up: AtomicBool,
    /// This process's one client id: ComfyUI sends a prompt's events only
    /// to the socket of the client id that submitted it, and a reconnect
    /// with the same id takes that socket over, so every prompt is
    /// submitted under it and one socket hears them all.
    client_id: String,
    /// What the socket has told of each prompt being rendered, by id.
    heard: dashmap::DashMap<String, watch::Sender<Heard>>,
}

/// What ComfyUI's events said of one prompt.
#[derive(Debug, Clone, Default)]
struct Heard {
    /// It began executing (its time limit runs from here).
    started: bool,
    /// Percent done, from `progress` or `progress_state`.
    pct: Option<u8>,
    end: Option<EventEnd>,
}

#[derive(Debug, Clone)]
enum EventEnd {
    Success,
    Failed(String),
}

/// What ComfyUI knows of a prompt id.
enum Known {
    /// Finished: its history entry.
    Finished(Value),
    /// In its queue: running, or pending behind others.
    Queued { running: bool },
    /// In neither its queue nor its history (looked twice).
    Unknown,
}

/// How following a submitted prompt ended.
enum Followed {
    Finished(Value),
    Failed(String),
    /// It left ComfyUI's sight: look again before anything else.
    Look,
}

impl ComfyRender {
    /// A renderer for the ComfyUI at `base` (`http://host:8188`), keeping
    /// results under `data_dir/results` and reading players' pictures from
    /// `data_dir/uploads`. Starts its health check and its event socket on
    /// the current runtime.
    pub fn new(base: &str, data_dir: &std::path::Path) -> Result<Arc<Self>, ComfyUrlError> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ComfyUrlError::Scheme);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        let me = Arc::new(Self {
            base: base.to_owned(),
            http,
            results: data_dir.join("results"),
            uploads: actors::uploads::Uploads::new(data_dir.join("uploads")),
            // Until the first check says otherwise: a job submitted to a
            // ComfyUI that is down waits in the submit retry loop anyway.
            up: AtomicBool::new(true),
            client_id: format!(
                "kokoro-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            heard: dashmap::DashMap::new(),
        });
        metrics::gauge!(actors::telemetry::RENDERER_UP).set(1.0);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch_health(Arc::downgrade(&me)));
            rt.spawn(listen(Arc::downgrade(&me)));
        }
        Ok(me)
    }

    /// The client id every prompt of this process is submitted under.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("ComfyUI answers again; starting jobs");
            } else {
                tracing::warn!("ComfyUI does not answer; jobs wait until it does");
            }
        }
        metrics::gauge!(actors::telemetry::RENDERER_UP).set(if up { 1.0 } else { 0.0 });
    }

    async fn healthy(&self) -> bool {
        let asked = self
            .http
            .get(self.url("/system_stats"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        matches!(asked, Ok(r) if r.status().is_success())
    }

    /// Renders a job: every submit, the first or a later one, comes only
    /// after ComfyUI was asked and does not have the prompt id (it does
    /// not refuse an id it has: a blind retry renders twice). A prompt
    /// that vanishes from ComfyUI after it took it (a restart: ComfyUI
    /// keeps its queue and history in memory) is submitted again, once.
    async fn render_job(&self, job: &Job, def: &WorkflowDef) -> Result<String, String> {
        let id = prompt_id(&job.id);
        let (tx, mut heard) = watch::channel(Heard::default());
        self.heard.insert(id.clone(), tx);
        let _forget = Forget(&self.heard, id.clone());
        let mut graph: Option<Value> = None;
        let mut taken = false;
        let mut lost = 0u32;
        loop {
            match self.known(&id).await {
                // Cannot tell: never submit blind; ask again.
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(Known::Finished(h)) => {
                    let h = finished(h)?;
                    return self.keep_result(job, &h).await;
                }
                Ok(Known::Queued { running }) => {
                    if running {
                        self.mark_started(&id);
                    }
                }
                Ok(Known::Unknown) => {
                    if taken {
                        lost += 1;
                        if lost > 1 {
                            return Err(
                                "ComfyUI lost the job twice (restarted while rendering it?)".into(),
                            );
                        }
                        tracing::warn!(job = %job.id, "ComfyUI no longer has this job (restarted?); submitting it again, once");
                        if let Some(tx) = self.heard.get(&id) {
                            tx.send_replace(Heard::default());
                        }
                    }
                    if graph.is_none() {
                        let picture = match &job.image {
                            Some(upload) => Some(self.upload(job, upload).await?),
                            None => None,
                        };
                        graph = Some(fill(def, job, picture.as_deref()));
                    }
                    let Some(g) = &graph else { continue };
                    match self.submit(&id, g).await {
                        Ok(()) => taken = true,
                        Err(Submit::Refused(why)) => return Err(why),
                        // The answer may have been lost after ComfyUI took
                        // it: the next look says.
                        Err(Submit::Unreachable) => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                }
            }
            match self.follow(&id, &mut heard).await {
                Followed::Finished(h) => return self.keep_result(job, &h).await,
                Followed::Failed(why) => return Err(why),
                Followed::Look => {}
            }
        }
    }

    fn mark_started(&self, id: &str) {
        if let Some(tx) = self.heard.get(id) {
            tx.send_if_modified(|h| !std::mem::replace(&mut h.started, true));
        }
    }

    /// Hands the job's input picture to ComfyUI (`POST /upload/image`);
    /// returns the name ComfyUI kept it under, which may differ from the
    /// one sent (it renames rather than overwrite another's file).
    async fn upload(&self, job: &Job, upload: &str) -> Result<String, String> {
        let path = self
            .uploads
            .path(job.key, upload)
            .ok_or("the input picture is no longer kept; upload it again")?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|_| "the input picture could not be read".to_owned())?;
        let format =
            actors::uploads::Format::sniff(&bytes).ok_or("the input picture is not a picture")?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(format!("{upload}.{}", format.extension()))
            .mime_str(format.mime())
            .map_err(|_| "the input picture could not be sent".to_owned())?;
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("overwrite", "false")
            .text("type", "input");
        let answer: Value = self
            .http
            .post(self.url("/upload/image"))
            .multipart(form)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| "ComfyUI did not take the input picture".to_owned())?
            .json()
            .await
            .map_err(|_| {
                "ComfyUI answered the upload with something that is not JSON".to_owned()
            })?;
        let name = answer["name"]
            .as_str()
            .ok_or("ComfyUI's upload answer has no name")?;
        Ok(match answer["subfolder"].as_str() {
            Some(sub) if !sub.is_empty() => format!("{sub}/{name}"),
            _ => name.to_owned(),
        })
    }

    /// Whether ComfyUI has this prompt id, queued or finished. The queue
    /// is read before the history (a prompt leaves the queue only as its
    /// history is written), and a prompt in neither is looked for once
    /// more a moment later before it is called unknown.
    async fn known(&self, id: &str) -> Result<Known, String> {
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let queue: Value = self
                .get_json("/queue")
                .await
                .map_err(|_| "ComfyUI's queue could not be read".to_owned())?;
            let listed = |key: &str| {
                queue[key]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i[1] == id))
            };
            if listed("queue_running") {
                return Ok(Known::Queued { running: true });
            }
            if listed("queue_pending") {
                return Ok(Known::Queued { running: false });
            }
            if let Some(h) = self.history(id).await? {
                return Ok(Known::Finished(h));
            }
        }
        Ok(Known::Unknown)
    }

    /// The history entry of a finished prompt; `None` while it is not.
    async fn history(&self, id: &str) -> Result<Option<Value>, String> {
        let h: Value = self
            .get_json(&format!("/history/{id}"))
            .await
            .map_err(|_| "ComfyUI's history could not be read".to_owned())?;
        Ok(h.get(id).filter(|e| is_finished(e)).cloned())
    }

    async fn get_json(&self, path: &str) -> Result<Value, reqwest::Error> {
        self.http
            .get(self.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// Follows a prompt ComfyUI has: by its events, and whenever they are
    /// quiet by asking ComfyUI, until it ends or leaves ComfyUI's sight.
    async fn follow(&self, id: &str, heard: &mut watch::Receiver<Heard>) -> Followed {
        loop {
            let end = heard.borrow_and_update().end.clone();
            match end {
                Some(EventEnd::Failed(why)) => return Followed::Failed(why),
                Some(EventEnd::Success) => {
                    // The history is written as the prompt leaves the
                    // queue; a moment's grace, then the top looks again.
                    for _ in 0..10 {
                        if let Ok(Some(h)) = self.history(id).await {
                            return ended(h);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    return Followed::Look;
                }
                None => {}
            }
            if let Ok(changed) = tokio::time::timeout(QUIET, heard.changed()).await {
                if changed.is_err() {
                    return Followed::Look;
                }
                continue;
            }
            match self.known(id).await {
                Ok(Known::Finished(h)) => return ended(h),
                Ok(Known::Queued { running }) => {
                    if running {
                        self.mark_started(id);
                    }
                }
                Ok(Known::Unknown) => return Followed::Look,
                // ComfyUI does not answer: keep waiting, the limit decides.
                Err(_) => {}
            }
        }
    }

    async fn submit(&self, id: &str, graph: &Value) -> Result<(), Submit> {
        let body = json!({ "prompt": graph, "client_id": self.client_id, "prompt_id": id });
        let response = self
            .http
            .post(self.url("/prompt"))
            .json(&body)
            .send()
            .await
            .map_err(|_| Submit::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_server_error() {
            return Err(Submit::Unreachable);
        }
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let (player, whole) = refusal(&answer);
        tracing::warn!(prompt = id, reason = %whole, "ComfyUI refused a job's workflow");
        Err(Submit::Refused(player))
    }

    /// One event from the socket, for a prompt being followed.
    fn hear(&self, event: &Value) {
        let data = &event["data"];
        let Some(id) = data["prompt_id"].as_str() else {
            return;
        };
        let Some(tx) = self.heard.get(id) else { return };
        let kind = event["type"].as_str().unwrap_or_default();
        tx.send_if_modified(|h| {
            let before = (h.started, h.pct, h.end.is_some());
            match kind {
                "execution_start" | "execution_cached" => h.started = true,
                "executing" if !data["node"].is_null() => h.started = true,
                // The old end marker, for a ComfyUI without execution_success.
                "executing" if h.end.is_none() => h.end = Some(EventEnd::Success),
                "progress" => {
                    h.started = true;
                    let (v, m) = (data["value"].as_u64(), data["max"].as_u64());
                    if let (Some(v), Some(m)) = (v, m.filter(|m| *m > 0)) {
                        h.pct = Some((v.min(m) * 100 / m) as u8);
                    }
                }
                "progress_state" => {
                    h.started = true;
                    if let Some(p) = progress_state(&data["nodes"]) {
                        h.pct = Some(p);
                    }
                }
                "execution_success" => h.end = Some(EventEnd::Success),
                "execution_error" => h.end = Some(EventEnd::Failed(execution_error(id, data))),
                "execution_interrupted" => {
                    h.end = Some(EventEnd::Failed("ComfyUI interrupted the job".into()))
                }
                _ => {}
            }
            before != (h.started, h.pct, h.end.is_some())
        });
    }

    /// Fetches the job's first output file and keeps it; returns where.
    async fn keep_result(&self, job: &Job, history: &Value) -> Result<String, String> {
        let file = first_output(history).ok_or("ComfyUI finished the job with no output file")?;
        let name = file["filename"].as_str().unwrap_or_default();
        let response = self
            .http
            .get(self.url("/view"))
            .query(&[
                ("filename", name),
                ("subfolder", file["subfolder"].as_str().unwrap_or("")),
                ("type", file["type"].as_str().unwrap_or("output")),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| "the result could not be fetched from ComfyUI".to_owned())?;
        let bytes = response
            .bytes()
            .await
            .map_err(|_| "the result could not be fetched from ComfyUI".to_owned())?;
        if bytes.len() > MAX_RESULT_BYTES {
            return Err("the result is too large to keep".into());
        }
        let kept = format!("{}-{}", job.id, safe_name(name));
        tokio::fs::create_dir_all(&self.results)
            .await
            .map_err(|e| format!("cannot keep the result: {e}"))?;
        tokio::fs::write(self.results.join(&kept), &bytes)
            .await
            .map_err(|e| format!("cannot keep the result: {e}"))?;
        Ok(format!("results/{kept}"))
    }
}

/// Drops a cancelled job at ComfyUI: from its queue if it waits there,
/// interrupted if it runs (a targeted interrupt stops only that prompt).
async fn cancel_job(http: &reqwest::Client, base: &str, job: Job) {
    let id = prompt_id(&job.id);
    let delete = http
        .post(format!("{base}/queue"))
        .json(&json!({ "delete": [id] }))
        .send();
    let interrupt = http
        .post(format!("{base}/interrupt"))
        .json(&json!({ "prompt_id": id }))
        .send();
    let (d, i) = tokio::join!(delete, interrupt);
    if d.is_err() || i.is_err() {
        tracing::warn!(job = %job.id, "could not tell ComfyUI to drop a cancelled job");
    }
}

/// Stops hearing a prompt's events when its render ends, however it ends
/// (done, failed, timed out, cancelled: the future dropped).
struct Forget<'a>(&'a dashmap::DashMap<String, watch::Sender<Heard>>, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

enum Submit {
    /// ComfyUI refused the graph: the job fails with this reason.
    Refused(String),
    /// No answer, or a server error: try again.
    Unreachable,
}

impl Render for ComfyRender {
    fn render<'a>(
        &'a self,
        job: &'a Job,
        workflow: &'a WorkflowDef,
    ) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>> {
        Box::pin(async move {
            match self.render_job(job, workflow).await {
                Ok(at) => Rendered::Done(at),
                Err(why) => {
                    tracing::warn!(job = %job.id, reason = %why, "ComfyUI render failed");
                    Rendered::Failed(why)
                }
            }
        })
    }

    fn available(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn progress(&self, job_id: &str) -> Option<u8> {
        self.heard.get(&prompt_id(job_id))?.borrow().pct
    }

    fn waiting(&self, job_id: &str) -> bool {
        self.heard
            .get(&prompt_id(job_id))
            .is_some_and(|h| !h.borrow().started)
    }

    fn cancel(&self, job: Job) -> BoxFuture<'static, ()> {
        let (http, base) = (self.http.clone(), self.base.clone());
        Box::pin(async move { cancel_job(&http, &base, job).await })
    }
}

/// The breaker: asks ComfyUI every few seconds while the renderer lives.
async fn watch_health(me: Weak<ComfyRender>) {
    loop {
        let Some(r) = me.upgrade() else { return };
        let up = r.healthy().await;
        r.set_up(up);
        drop(r);
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

/// The event socket: one per process, under its one client id, connected
/// again (with backoff) whenever it drops, while the renderer lives.
/// Text frames are JSON events; binary frames are previews, skipped.
async fn listen(me: Weak<ComfyRender>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let url = {
            let Some(r) = me.upgrade() else { return };
            format!(
                "ws{}/ws?clientId={}",
                r.base.trim_start_matches("http"),
                r.client_id
            )
        };
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        backoff = Duration::from_millis(200);
        loop {
            let next = tokio::time::timeout(QUIET, ws.next()).await;
            let Some(r) = me.upgrade() else { return };
            match next {
                Err(_) => continue,
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Ok(event) = serde_json::from_str::<Value>(&t) {
                        r.hear(&event);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// The prompt id of a job: its id (`j` and 32 hex digits) as a UUID.
pub fn prompt_id(job_id: &str) -> String {
    let hex: String = job_id
        .trim_start_matches('j')
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The workflow's graph with the job's parameters filled in: its prompt,
/// its input picture as ComfyUI named it, and a seed from the job id, so a
/// job rendered again renders the same picture.
pub fn fill(def: &WorkflowDef, job: &Job, picture: Option<&str>) -> Value {
    let mut graph = (*def.graph).clone();
    let hex: String = job
        .id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    let seed = u64::from_str_radix(&hex, 16).unwrap_or(0);
    for (param, slot) in &def.params {
        let value = match param {
            Param::Prompt => json!(job.prompt),
            Param::Seed => json!(seed),
            Param::Image => match picture {
                Some(p) => json!(p),
                None => continue,
            },
            // Not chosen by players yet: the graph's own values stand.
            Param::NegativePrompt | Param::Width | Param::Height => continue,
        };
        if let Some(inputs) = graph
            .get_mut(&slot.node)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            inputs.insert(slot.input.clone(), value);
        }
    }
    graph
}

fn is_finished(entry: &Value) -> bool {
    entry["status"]["completed"] == true
        || matches!(
            entry["status"]["status_str"].as_str(),
            Some("success" | "error")
        )
        || entry["outputs"].as_object().is_some_and(|o| !o.is_empty())
}

fn ended(history: Value) -> Followed {
    match finished(history) {
        Ok(h) => Followed::Finished(h),
        Err(why) => Followed::Failed(why),
    }
}

/// A finished history entry, or why it failed (for the player).
fn finished(history: Value) -> Result<Value, String> {
    if history["status"]["status_str"] == "error" {
        let messages = history["status"]["messages"].as_array();
        let find =
            |kind: &str| messages.and_then(|ms| ms.iter().find(|m| m[0] == kind).map(|m| &m[1]));
        if let Some(data) = find("execution_error") {
            let id = data["prompt_id"].as_str().unwrap_or("?");
            return Err(execution_error(id, data));
        }
        if find("execution_interrupted").is_some() {
            return Err("ComfyUI interrupted the job".into());
        }
        return Err("ComfyUI failed the job".into());
    }
    Ok(history)
}

/// An `execution_error`: logged whole (its message may name files and
/// folders on the ComfyUI server); the player is told the node and the
/// kind of error only.
fn execution_error(prompt: &str, data: &Value) -> String {
    let node = data["node_id"].as_str().unwrap_or("?");
    let class = data["node_type"].as_str().unwrap_or("?");
    tracing::warn!(
        prompt,
        node,
        class,
        message = %one_line(data["exception_message"].as_str().unwrap_or("")),
        kind = data["exception_type"].as_str().unwrap_or(""),
        "ComfyUI failed a job"
    );
    let kind = data["exception_type"]
        .as_str()
        .and_then(|t| t.rsplit('.').next())
        .filter(|t| !t.is_empty() && t.len() <= 60)
        .unwrap_or("an error");
    format!("ComfyUI could not render it: {kind} at node {node} ({class})")
}

/// Percent done from a `progress_state` event: each node's share, a
/// finished node counting whole.
fn progress_state(nodes: &Value) -> Option<u8> {
    let nodes = nodes.as_object().filter(|n| !n.is_empty())?;
    let done: f64 = nodes
        .values()
        .map(|n| {
            if n["state"] == "finished" {
                return 1.0;
            }
            match (n["value"].as_f64(), n["max"].as_f64()) {
                (Some(v), Some(m)) if m > 0.0 => (v / m).clamp(0.0, 1.0),
                _ => 0.0,
            }
        })
        .sum();
    Some(
        (done * 100.0 / nodes.len() as f64)
            .round()
            .clamp(0.0, 100.0) as u8,
    )
}

/// The first file a node output, in node order.
fn first_output(history: &Value) -> Option<&Value> {
    let outputs = history["outputs"].as_object()?;
    outputs.values().find_map(|out| {
        ["images", "gifs", "videos"].iter().find_map(|k| {
            out[*k]
                .as_array()?
                .iter()
                .find(|f| f["filename"].as_str().is_some_and(|n| !n.is_empty()))
        })
    })
}

/// ComfyUI's 400 answer: what the player is told (its error and the first
/// node's, without the details, which may name server paths), and the
/// whole of it, for the log.
fn refusal(answer: &Value) -> (String, String) {
    let error = match &answer["error"] {
        Value::String(s) => s.clone(),
        e => e["message"]
            .as_str()
            .or(e["type"].as_str())
            .unwrap_or("the workflow was refused")
            .to_owned(),
    };
    let node = answer["node_errors"].as_object().and_then(|nodes| {
        nodes.iter().find_map(|(id, n)| {
            let first = &n["errors"][0];
            let msg = first["message"].as_str()?;
            let details = first["details"].as_str().unwrap_or("");
            Some((
                format!(
                    "node {id} ({}): {msg}",
                    n["class_type"].as_str().unwrap_or("?")
                ),
                details.to_owned(),
            ))
        })
    });
    match node {
        Some((n, details)) => (
            format!(
                "ComfyUI refused the workflow: {} — {}",
                one_line(&error),
                one_line(&n)
            ),
            format!(
                "ComfyUI refused the workflow: {} — {}: {}",
                one_line(&error),
                one_line(&n),
                one_line(&details)
            ),
        ),
        None => {
            let said = format!("ComfyUI refused the workflow: {}", one_line(&error));
            (said.clone(), said)
        }
    }
}

/// Text from ComfyUI made fit for a reply: one line, not too long.
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        flat.chars().take(299).collect::<String>() + "…"
    } else {
        flat
    }
}

/// A file name safe to keep: letters, digits, `.`, `-`, `_` only.
fn safe_name(name: &str) -> String {
    let kept: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if kept.trim_matches('.').is_empty() {
        "result".into()
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_is_a_uuid_prompt_id() {
        assert_eq!(
            prompt_id("j0123456789abcdef0123456789abcdef"),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }

    #[test]
    fn a_400_is_said_in_one_sentence() {
        let answer = json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'x.safetensors' not in []", "extra_info": {}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}
        });
        let (player, whole) = refusal(&answer);
        assert_eq!(
            player,
            "ComfyUI refused the workflow: Prompt outputs failed validation — node 4 (CheckpointLoaderSimple): Value not in list"
        );
        assert!(
            whole.ends_with("ckpt_name: 'x.safetensors' not in []"),
            "{whole}"
        );
        assert_eq!(
            refusal(&json!({"error": "no prompt", "node_errors": []})).0,
            "ComfyUI refused the workflow: no prompt"
        );
    }

    #[test]
    fn result_names_cannot_escape_the_results_dir() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a b?.png"), "a_b_.png");
        assert_eq!(safe_name(".."), "result");
    }
}
