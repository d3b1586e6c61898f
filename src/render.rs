//! `HttpRender`: hands generation jobs to a render service over HTTP (a
//! ComfyUI-style worker behind a small adapter). The contract is one call:
//!
//!     POST <url>  {"job_id": "j…", "workflow": "image", "prompt": "…"}
//!     200         {"url": "https://…/result.png"}
//!
//! Anything else (another status, a body without `url`, a timeout, a
//! refused connection) fails the job, and the player is refunded. The
//! service may be called twice for one job (a restart mid-render re-runs
//! it), so it should treat `job_id` as an idempotency key.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actors::job::{Job, Rendered};
use actors::job_queue::Render;

/// Longest result location accepted from a render service.
const MAX_URL_LEN: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum RenderUrlError {
    #[error("the render URL must start with http://")]
    Scheme,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The `--renderer` setting for the start-up report: a URL is cut to its
/// scheme and host, so credentials or tokens in it are never logged.
pub fn describe(setting: &str) -> String {
    match setting.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => setting.to_owned(),
    }
}

pub struct HttpRender {
    url: String,
    client: reqwest::Client,
    /// Sent as a bearer token, from KOKORO_RENDER_TOKEN; never logged.
    token: Option<String>,
}

impl HttpRender {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RenderUrlError> {
        if !url.starts_with("http://") {
            return Err(RenderUrlError::Scheme);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            url: url.to_owned(),
            client,
            token: std::env::var("KOKORO_RENDER_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    async fn call(&self, job: &Job) -> Result<String, String> {
        let mut request = self.client.post(&self.url).json(&serde_json::json!({
            "job_id": job.id,
            "workflow": job.workflow.as_str(),
            "prompt": job.prompt,
        }));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                "the render service timed out".to_owned()
            } else {
                "the render service could not be reached".to_owned()
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the render service answered {status}"));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| "the render service answered something that is not JSON".to_owned())?;
        match body.get("url").and_then(|u| u.as_str()) {
            Some(u) if !u.is_empty() && u.len() <= MAX_URL_LEN => Ok(u.to_owned()),
            _ => Err("the render service gave no result url".to_owned()),
        }
    }
}

impl Render for HttpRender {
    fn render<'a>(
        &'a self,
        job: &'a Job,
        _: &'a actors::game::generation::workflow::WorkflowDef,
    ) -> Pin<Box<dyn Future<Output = Rendered> + Send + 'a>> {
        Box::pin(async move {
            match self.call(job).await {
                Ok(url) => Rendered::Done(url),
                Err(why) => {
                    tracing::warn!(job = %job.id, reason = %why, "render failed");
                    Rendered::Failed(why)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_never_shows_credentials_or_paths() {
        assert_eq!(
            super::describe("http://bot:s3cret@render.lan:8188/run?key=abc"),
            "http://render.lan:8188/…"
        );
        assert_eq!(super::describe("simulated"), "simulated");
    }
}
