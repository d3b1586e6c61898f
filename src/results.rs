//! Results served to players by signed links: `GET /results/{file}?exp=&sig=`.
//!
//! A renderer keeps each finished job's file under the data dir's
//! `results/` and records `results/{file}` as the job's result. Front doors
//! show it as a link that works for a week without a token: `sig` is the
//! HMAC-SHA256 of `{file}:{exp}` under a key kokoro keeps
//! (`KOKORO_RESULT_SECRET`, or a random key it makes once and keeps in the
//! data dir, so links survive restarts). A wrong or expired link is 403,
//! and only files directly in `results/` are ever served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actors::ErrorCode;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How long a link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone)]
pub struct ResultLinks {
    key: Arc<[u8]>,
    dir: PathBuf,
    /// Where players reach kokoro's HTTP API (`--public-url`); empty: links
    /// are relative.
    base: Arc<str>,
}

impl ResultLinks {
    /// Links for results under `data_dir/results`. The key is `secret`, or
    /// the one kept in `data_dir/result-links.key` (made on first use).
    pub fn new(data_dir: &Path, secret: Option<&str>, base: &str) -> std::io::Result<Self> {
        let key: Vec<u8> = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => kept_key(&data_dir.join("result-links.key"))?,
        };
        Ok(Self {
            key: key.into(),
            dir: data_dir.join("results"),
            base: base.trim_end_matches('/').into(),
        })
    }

    fn sig(&self, file: &str, exp: u64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(format!("{file}:{exp}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The link to a job's result (`results/{file}`), valid from `now`.
    pub fn link(&self, result: &str, now_secs: u64) -> Option<String> {
        let file = result.strip_prefix("results/")?;
        let exp = now_secs + LINK_LIFETIME.as_secs();
        Some(format!(
            "{}/results/{file}?exp={exp}&sig={}",
            self.base,
            self.sig(file, exp)
        ))
    }

    /// The link to a job's result where players can open it: none while
    /// kokoro has no public address (`--public-url`), as a relative link
    /// means nothing in a chat.
    pub fn public_link(&self, result: &str) -> Option<String> {
        if self.base.is_empty() {
            return None;
        }
        self.link(result, now_secs())
    }

    /// The file a job's result (`results/{file}`) is kept in.
    pub fn file(&self, result: &str) -> Option<PathBuf> {
        let file = result.strip_prefix("results/")?;
        plain(file).then(|| self.dir.join(file))
    }

    /// Rewrites the results in a `jobs` reply's data as links.
    pub fn rewrite_jobs(&self, data: &mut Value) {
        let now = now_secs();
        for job in data["jobs"].as_array_mut().into_iter().flatten() {
            if let Some(link) = job["result"].as_str().and_then(|r| self.link(r, now)) {
                job["result"] = Value::String(link);
            }
        }
    }

    fn verify(&self, file: &str, exp: u64, sig: &str) -> bool {
        let Ok(given) = hex::decode(sig) else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return false;
        };
        mac.update(format!("{file}:{exp}").as_bytes());
        exp >= now_secs() && mac.verify_slice(&given).is_ok()
    }
}

/// A file name directly in `results/`: no path, no hidden file.
fn plain(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key kept at `path`, made (32 random bytes, owner-only) if absent.
fn kept_key(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Ok(k) = std::fs::read(path) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key: [u8; 32] = rand::random();
    std::fs::write(path, key)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(key.to_vec())
}

#[derive(serde::Deserialize)]
pub struct Signed {
    exp: u64,
    sig: String,
}

/// `GET /results/{file}?exp=&sig=`. Its errors are the JSON error body of
/// every route.
pub async fn serve(
    State(state): State<crate::http::AppState>,
    UrlPath(file): UrlPath<String>,
    query: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let refuse = |status, code, message: &str| crate::http::refuse(status, "result", code, message);
    let Some(links) = state.results else {
        return refuse(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "results are not served here",
        );
    };
    let Ok(Query(q)) = query else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "a result link needs its exp and sig",
        );
    };
    if !plain(&file) || !links.verify(&file, q.exp, &q.sig) {
        return refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this link is wrong or has expired",
        );
    }
    match tokio::fs::read(links.dir.join(&file)).await {
        Ok(bytes) => {
            let kind = actors::uploads::Format::sniff(&bytes)
                .map_or("application/octet-stream", |f| f.mime());
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        Err(_) => refuse(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this result is no longer kept",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_until_it_expires_and_not_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let links = ResultLinks::new(dir.path(), None, "https://bot.example/").unwrap();
        let now = now_secs();
        let link = links.link("results/j1-a.png", now).unwrap();
        assert!(
            link.starts_with("https://bot.example/results/j1-a.png?exp="),
            "{link}"
        );
        let exp = now + LINK_LIFETIME.as_secs();
        let sig = link.rsplit("sig=").next().unwrap();
        assert!(links.verify("j1-a.png", exp, sig));
        assert!(!links.verify("j2-a.png", exp, sig), "another file");
        assert!(!links.verify("j1-a.png", exp + 1, sig), "another expiry");
        let old = links.link("results/j1-a.png", 1).unwrap();
        let old_sig = old.rsplit("sig=").next().unwrap();
        assert!(
            !links.verify("j1-a.png", 1 + LINK_LIFETIME.as_secs(), old_sig),
            "expired"
        );
        // The key is kept: links made before a restart still work.
        let again = ResultLinks::new(dir.path(), None, "").unwrap();
        assert!(again.verify("j1-a.png", exp, sig));
        assert_eq!(links.link("elsewhere/x.png", now), None);
    }
}
