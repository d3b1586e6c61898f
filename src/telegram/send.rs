//! Talking back on Telegram: Telegram's 429 honoured (`retry_after`), and
//! a `Reply` as a chat message: the reply's sentence and its list, an
//! error as one short line that says what to do.

use std::future::Future;

use actors::Reply;
use serde_json::Value;
use teloxide::RequestError;

/// Telegram's limit on a message's text.
const TEXT_LIMIT: usize = 4096;
/// 429s waited out before a call gives up.
const RETRIES: usize = 5;

/// Makes a Bot API call, waiting as long as Telegram's 429 asks
/// (`parameters.retry_after`) and trying again, a few times.
pub async fn patiently<T, F, Fut>(mut call: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    for _ in 0..RETRIES {
        match call().await {
            Err(RequestError::RetryAfter(wait)) => {
                metrics::counter!(actors::telemetry::TELEGRAM_RETRY_AFTER_TOTAL).increment(1);
                tracing::info!(wait = ?wait.duration(), "Telegram asked to slow down; waiting");
                tokio::time::sleep(wait.duration()).await;
            }
            other => return other,
        }
    }
    call().await
}

/// A reply as the text of a chat message.
pub fn text(r: &Reply) -> String {
    if !r.ok {
        let line = match &r.error {
            Some(e) if e.code.is_retryable() => format!("⏳ {} Try again in a moment.", e.message),
            Some(e) => format!("⚠️ {}", e.message),
            None => r.message.clone(),
        };
        return cut(line);
    }
    let mut out = r.message.clone();
    for line in list(r) {
        out.push('\n');
        out.push_str(&line);
    }
    cut(out)
}

fn list(r: &Reply) -> Vec<String> {
    let rows = |key: &str| r.data[key].as_array().cloned().unwrap_or_default();
    match r.command.as_str() {
        "jobs" => rows("jobs").iter().map(job_line).collect(),
        "topup" => rows("packs")
            .iter()
            .map(|p| {
                format!(
                    "• {} — {} ⭐",
                    p["title"].as_str().unwrap_or("?"),
                    p["stars"]
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One job as a line: its id, workflow, state and where it stands.
pub fn job_line(j: &Value) -> String {
    let extra = match (j["progress_pct"].as_u64(), j["ahead"].as_u64()) {
        (Some(p), _) => format!(" — {p}%"),
        (None, Some(0)) => " — next in line".to_owned(),
        (None, Some(a)) => format!(" — {a} ahead"),
        _ => j["reason"]
            .as_str()
            .map(|s| format!(" — {s}"))
            .unwrap_or_default(),
    };
    format!(
        "• {} {} {}{extra}",
        j["job_id"].as_str().unwrap_or("?"),
        j["workflow"].as_str().unwrap_or("?"),
        j["status"].as_str().unwrap_or("?"),
    )
}

fn cut(text: String) -> String {
    if text.chars().count() <= TEXT_LIMIT {
        return text;
    }
    text.chars().take(TEXT_LIMIT - 1).collect::<String>() + "…"
}
