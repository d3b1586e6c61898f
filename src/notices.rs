//! Telling players that their job ended, through the front door they asked
//! from. Storage is the to-do list: a job records where its player asked
//! (`discord:<channel id>`, `telegram:<chat id>`) and when they were told.
//! Group commit wakes the loop whenever a job closes, and a sweep catches
//! what a wake-up missed, so a job that ended while kokoro (or the chat
//! service) was down is told once it is back. A notice is marked told only
//! after the service took it: a crash in between sends it twice, never zero
//! times.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use actors::job::StoredJob;
use actors::Runtime;

use crate::results::ResultLinks;

/// Notices read from storage at a time.
const BATCH: i64 = 50;
/// How often storage is swept for notices no wake-up announced.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Why a notice was not delivered.
pub enum Told {
    /// The service will never take this notice (the chat is gone, the bot
    /// blocked): it is dropped, with a warning.
    Never(String),
    /// Try again later.
    Later(anyhow::Error),
}

/// A front door players can be told through.
pub trait Door: Send + Sync {
    /// The prefix of the jobs' `notify` this door serves.
    const NAME: &'static str;

    fn runtime(&self) -> &Runtime;

    /// Tells the player of `job` at `to` (the address after the prefix).
    fn tell<'a>(
        &'a self,
        job: &'a StoredJob,
        to: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Told>> + Send + 'a>>;
}

/// Delivers a door's notices until the runtime stops.
pub async fn deliver<D: Door>(door: D) {
    let mut ended = door.runtime().commit_progress().jobs_ended.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        match deliver_some(&door).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    changed = ended.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
            Err(why) => {
                tracing::warn!(door = D::NAME, error = %why, retry_in = ?backoff, "could not deliver job notices");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Sends one batch; the number of notices dealt with.
async fn deliver_some<D: Door>(door: &D) -> anyhow::Result<usize> {
    let store = door.runtime().store();
    let due = store.jobs_to_notify(D::NAME, BATCH).await?;
    for (job, to) in &due {
        match door.tell(job, to).await {
            Ok(()) => {}
            Err(Told::Never(why)) => {
                tracing::warn!(door = D::NAME, job = %job.job.id, reason = %why, "a job notice cannot be delivered; dropped");
            }
            Err(Told::Later(e)) => return Err(e),
        }
        store
            .mark_notified(&job.job.id, actors::config::unix_ms())
            .await?;
    }
    Ok(due.len())
}

/// The result file's bytes and name, when it is one kokoro keeps and at
/// most `limit` bytes.
pub async fn attachment(
    links: &ResultLinks,
    result: &str,
    limit: u64,
) -> Option<(Vec<u8>, String)> {
    let path = links.file(result)?;
    let name = file_name(&path)?;
    let size = tokio::fs::metadata(&path).await.ok()?.len();
    if size > limit {
        return None;
    }
    Some((tokio::fs::read(&path).await.ok()?, name))
}

fn file_name(path: &Path) -> Option<String> {
    Some(path.file_name()?.to_str()?.to_owned())
}

/// Aborts a task when dropped: a front door's notices live no longer than
/// the front door.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
