//! `ComfyRender`: renders jobs on a ComfyUI server, speaking its own API.
//!
//! - **Submit**: `POST /prompt {prompt, client_id, prompt_id}`. The prompt id
//!   is the job id (as a UUID), chosen here, so a job is known to ComfyUI
//!   by one id whoever asks: before submitting, `/history/{id}` and `/queue`
//!   are asked whether ComfyUI already has it (a restart mid-render, a
//!   retried submit), and a job it has is followed, never rendered twice. A
//!   400 (`error`, `node_errors`) fails the job with ComfyUI's reason.
//! - **Follow**: the websocket `/ws?clientId=…`, with a client id unique to
//!   each connection (ComfyUI keeps one socket per client id; a shared id
//!   mixes players' results). Text frames are JSON events; binary frames are
//!   previews and are skipped. Whenever the socket is quiet, or closed,
//!   `/history/{id}` says whether the job finished: it stays `{}` until then.
//! - **Result**: the first output file in the history (`images`, also for
//!   videos and animations) is fetched with `/view` and kept under the data
//!   dir's `results/`.
//! - **Cancel**: `POST /queue {"delete": [id]}` for a job waiting there and
//!   `POST /interrupt {prompt_id}` for one running.
//! - **Health**: `/system_stats` every few seconds. While ComfyUI does not
//!   answer, the breaker is open: queues start no job (they wait, none
//!   fails for it) and `kokoro_renderer_up` is 0; it closes by itself.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actors::game::generation::workflow::{Param, WorkflowDef};
use actors::job::{Job, Rendered};
use actors::job_queue::Render;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
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
    /// Numbers each websocket connection's client id.
    connections: AtomicU64,
    /// Percent done of each job rendering, by prompt id, from ComfyUI's
    /// `progress` events.
    progress: dashmap::DashMap<String, u8>,
}

/// What ComfyUI knows of a prompt id.
enum Known {
    /// Finished: its history entry.
    Finished(Value),
    /// In its queue, running or pending.
    Queued,
    Unknown,
}

/// Why following a job stopped.
enum Ended {
    Finished(Value),
    Failed(String),
}

impl ComfyRender {
    /// A renderer for the ComfyUI at `base` (`http://host:8188`), keeping
    /// results under `data_dir/results` and reading players' pictures from
    /// `data_dir/uploads`. Starts its health check on the current runtime.
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
            connections: AtomicU64::new(0),
            progress: dashmap::DashMap::new(),
        });
        metrics::gauge!(actors::telemetry::RENDERER_UP).set(1.0);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch(Arc::downgrade(&me)));
        }
        Ok(me)
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

    async fn render_job(&self, job: &Job, def: &WorkflowDef) -> Result<String, String> {
        let id = prompt_id(&job.id);
        let history = match self.known(&id).await? {
            Known::Finished(h) => h,
            Known::Queued => self.follow(&id, None).await?,
            Known::Unknown => {
                let picture = match &job.image {
                    Some(upload) => Some(self.upload(job, upload).await?),
                    None => None,
                };
                let graph = fill(def, job, picture.as_deref());
                self.follow(&id, Some(graph)).await?
            }
        };
        self.keep_result(job, &history).await
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

    /// Whether ComfyUI already has this prompt id, finished or queued.
    async fn known(&self, id: &str) -> Result<Known, String> {
        if let Some(h) = self.history(id).await? {
            return Ok(Known::Finished(h));
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
        Ok(if listed("queue_running") || listed("queue_pending") {
            Known::Queued
        } else {
            Known::Unknown
        })
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

    /// Submits `graph` (if given) from a fresh websocket connection, then
    /// follows the prompt until its history says it finished. Connection
    /// trouble is retried until the queue's time limit ends the job.
    async fn follow(&self, id: &str, mut graph: Option<Value>) -> Result<Value, String> {
        loop {
            let n = self.connections.fetch_add(1, Ordering::Relaxed);
            let client_id = format!("kokoro-{}-{n}", &id[..8]);
            let ws_url = format!(
                "ws{}/ws?clientId={client_id}",
                self.base.trim_start_matches("http")
            );
            let socket = tokio_tungstenite::connect_async(&ws_url).await.ok();
            if let Some(g) = graph.take() {
                match self.submit(id, &client_id, &g).await {
                    Ok(()) => {}
                    Err(Submit::Refused(why)) => return Err(why),
                    Err(Submit::Unreachable) => {
                        graph = Some(g);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            match socket {
                Some((ws, _)) => match self.listen(id, ws).await {
                    Some(Ended::Finished(h)) => return Ok(h),
                    Some(Ended::Failed(why)) => return Err(why),
                    None => {} // the socket closed: look, then connect again
                },
                None => tokio::time::sleep(QUIET).await,
            }
            if let Ok(Some(h)) = self.history(id).await {
                return finished(h);
            }
        }
    }

    async fn submit(&self, id: &str, client_id: &str, graph: &Value) -> Result<(), Submit> {
        let body = json!({ "prompt": graph, "client_id": client_id, "prompt_id": id });
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
        Err(Submit::Refused(refusal(&answer)))
    }

    /// Reads events for `id` until it ends; `None` if the socket closed
    /// first. Every quiet spell, `/history` is asked.
    async fn listen(
        &self,
        id: &str,
        mut ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Option<Ended> {
        loop {
            let next = tokio::time::timeout(QUIET, ws.next()).await;
            let text = match next {
                Err(_) => {
                    if let Ok(Some(h)) = self.history(id).await {
                        return Some(ended(h));
                    }
                    continue;
                }
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Text(t)))) => t,
                // Previews (binary) and pings: nothing to read.
                Ok(Some(Ok(_))) => continue,
            };
            let Ok(event) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let data = &event["data"];
            if data["prompt_id"] != id {
                continue;
            }
            match event["type"].as_str() {
                Some("progress") => {
                    let (value, max) = (data["value"].as_u64(), data["max"].as_u64());
                    if let (Some(v), Some(m)) = (value, max.filter(|m| *m > 0)) {
                        self.progress
                            .insert(id.to_owned(), (v.min(m) * 100 / m) as u8);
                    }
                    continue;
                }
                Some("execution_error") => {
                    let why = data["exception_message"]
                        .as_str()
                        .unwrap_or("ComfyUI failed the job");
                    return Some(Ended::Failed(format!(
                        "ComfyUI: {} (node {})",
                        one_line(why),
                        data["node_id"].as_str().unwrap_or("?")
                    )));
                }
                Some("execution_interrupted") => {
                    return Some(Ended::Failed("ComfyUI interrupted the job".into()))
                }
                Some("execution_success") => {}
                Some("executing") if data["node"].is_null() => {}
                _ => continue,
            }
            // Finished: the history has its outputs (ComfyUI writes the
            // history before it says so, but a moment's grace costs little).
            for _ in 0..5 {
                if let Ok(Some(h)) = self.history(id).await {
                    return Some(ended(h));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
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

/// Removes a job's progress when dropped.
struct Forget<'a>(&'a dashmap::DashMap<String, u8>, String);

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
            // However the render ends (done, failed, timed out, cancelled:
            // the future dropped), its progress goes with it.
            let _forget = Forget(&self.progress, prompt_id(&job.id));
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
        self.progress.get(&prompt_id(job_id)).map(|p| *p)
    }

    fn cancel(&self, job: Job) -> BoxFuture<'static, ()> {
        let (http, base) = (self.http.clone(), self.base.clone());
        Box::pin(async move { cancel_job(&http, &base, job).await })
    }
}

/// The breaker: asks ComfyUI every few seconds while the renderer lives.
async fn watch(me: Weak<ComfyRender>) {
    loop {
        let Some(r) = me.upgrade() else { return };
        let up = r.healthy().await;
        r.set_up(up);
        drop(r);
        tokio::time::sleep(HEALTH_EVERY).await;
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

fn ended(history: Value) -> Ended {
    match finished(history) {
        Ok(h) => Ended::Finished(h),
        Err(why) => Ended::Failed(why),
    }
}

/// A finished history entry, or why it failed.
fn finished(history: Value) -> Result<Value, String> {
    if history["status"]["status_str"] == "error" {
        let why = history["status"]["messages"]
            .as_array()
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m[0] == "execution_error")
                    .and_then(|m| m[1]["exception_message"].as_str())
            })
            .unwrap_or("ComfyUI failed the job");
        return Err(format!("ComfyUI: {}", one_line(why)));
    }
    Ok(history)
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

/// ComfyUI's 400 answer in one sentence: its error, and the first node error.
fn refusal(answer: &Value) -> String {
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
            Some(format!(
                "node {id} ({}): {msg}{}{details}",
                n["class_type"].as_str().unwrap_or("?"),
                if details.is_empty() { "" } else { ": " }
            ))
        })
    });
    match node {
        Some(n) => format!(
            "ComfyUI refused the workflow: {} — {}",
            one_line(&error),
            one_line(&n)
        ),
        None => format!("ComfyUI refused the workflow: {}", one_line(&error)),
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
        assert_eq!(
            refusal(&answer),
            "ComfyUI refused the workflow: Prompt outputs failed validation — node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x.safetensors' not in []"
        );
        assert_eq!(
            refusal(&json!({"error": "no prompt", "node_errors": []})),
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
