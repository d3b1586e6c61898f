//! Telling players that their job ended, through the front door they asked
//! from. Storage is the to-do list: a job records where its player asked
//! (`discord:<channel id>`, `telegram:<chat id>`) and when they were told.
//! Group commit wakes the loop whenever a job closes, and a sweep catches
//! what a wake-up missed, so a job that ended while kokoro (or the chat
//! service) was down is told once it is back. A notice is marked told only
//! after the service took it: a crash in between sends it twice, never zero
//! times. A 2xx is delivered, even one whose body cannot be read.
//!
//! One notice that fails is tried again on its own, with backoff, at most
//! `MAX_TRIES` times, and never holds up the others; a service that cannot
//! be reached at all (`Told::Down`) pauses the loop instead, and costs no
//! notice a try.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use actors::arena::StoredEntry;
use actors::job::StoredJob;
use actors::Runtime;

use crate::results::ResultLinks;

/// Notices read from storage at a time.
const BATCH: i64 = 50;
/// How often storage is swept for notices no wake-up announced.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Tries one notice gets before it is dropped.
pub const MAX_TRIES: u32 = 8;

/// Why a notice was not delivered.
pub enum Told {
    /// The service will never take this notice (the chat is gone, the bot
    /// blocked): it is dropped, with a warning.
    Never(String),
    /// The service refused this notice for now (a 5xx, a 429 after its
    /// wait): this notice is tried again later, the others go on.
    Later(anyhow::Error),
    /// The service cannot be reached: nothing can be told now.
    Down(anyhow::Error),
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

    /// Tells a player who won their arena battle, at `to`. Doors without
    /// an arena tell nothing.
    fn tell_battle<'a>(
        &'a self,
        _entry: &'a StoredEntry,
        _to: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Told>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}

/// Notices tried and not delivered yet: tries so far, and when the next
/// may be made.
type Deferred = std::collections::HashMap<String, (u32, tokio::time::Instant)>;

/// Delivers a door's notices until the runtime stops.
pub async fn deliver<D: Door>(door: D) {
    let mut ended = door.runtime().commit_progress().jobs_ended.subscribe();
    let mut backoff = Duration::from_secs(1);
    let mut deferred = Deferred::new();
    loop {
        match deliver_some(&door, &mut deferred).await {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => {
                backoff = Duration::from_secs(1);
                // A deferred notice's next try wakes the loop too.
                let next = deferred
                    .values()
                    .map(|(_, at)| *at)
                    .min()
                    .unwrap_or_else(|| tokio::time::Instant::now() + SWEEP_EVERY);
                tokio::select! {
                    changed = ended.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(next.min(tokio::time::Instant::now() + SWEEP_EVERY)) => {}
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

/// Sends one batch; the number of notices dealt with (sent, dropped, or
/// deferred). `Err`: storage, or the service, cannot be reached.
async fn deliver_some<D: Door>(door: &D, deferred: &mut Deferred) -> anyhow::Result<usize> {
    let store = door.runtime().store();
    // Deferred notices are among the oldest: read past them.
    let due = store
        .jobs_to_notify(D::NAME, BATCH + deferred.len() as i64)
        .await?;
    let now = tokio::time::Instant::now();
    let mut dealt = 0;
    for (job, to) in &due {
        let id = &job.job.id;
        // Cluster mode: the guild's owner tells its players, once.
        if !door.runtime().serves_guild(job.job.key.guild) {
            continue;
        }
        if deferred.get(id).is_some_and(|(_, at)| *at > now) {
            continue;
        }
        if dealt as i64 == BATCH {
            break;
        }
        dealt += 1;
        if settled(D::NAME, id, door.tell(job, to).await, deferred, now)? {
            store.mark_notified(id, actors::config::unix_ms()).await?;
        }
    }
    // Battles: few, and told as soon as they are fought.
    let battles = store
        .arena_to_notify(D::NAME, BATCH + deferred.len() as i64)
        .await?;
    for (entry, to) in &battles {
        let id = &entry.entry.id;
        if !door.runtime().serves_guild(entry.entry.key.guild) {
            continue;
        }
        if deferred.get(id).is_some_and(|(_, at)| *at > now) {
            continue;
        }
        dealt += 1;
        if settled(
            D::NAME,
            id,
            door.tell_battle(entry, to).await,
            deferred,
            now,
        )? {
            store
                .mark_arena_notified(id, actors::config::unix_ms())
                .await?;
        }
    }
    Ok(dealt)
}

/// What a try at one notice means: `Ok(true)`, it is done with (told, or
/// dropped) and is marked told; `Ok(false)`, deferred to a later try;
/// `Err`, the service cannot be reached and nothing can be told now.
fn settled(
    door: &'static str,
    id: &str,
    told: Result<(), Told>,
    deferred: &mut Deferred,
    now: tokio::time::Instant,
) -> anyhow::Result<bool> {
    match told {
        Ok(()) => {}
        Err(Told::Never(why)) => {
            tracing::warn!(door, notice = %id, reason = %why, "a notice cannot be delivered; dropped");
        }
        Err(Told::Down(e)) => return Err(e),
        Err(Told::Later(e)) => {
            let tries = deferred.get(id).map_or(1, |(n, _)| n + 1);
            if tries < MAX_TRIES {
                let wait = Duration::from_secs(1 << tries.min(8));
                tracing::warn!(door, notice = %id, tries, retry_in = ?wait, error = %e, "a notice was refused; trying it again later");
                deferred.insert(id.to_owned(), (tries, now + wait));
                return Ok(false);
            }
            tracing::error!(door, notice = %id, tries, error = %e, "a notice was refused every time; dropped");
        }
    }
    deferred.remove(id);
    Ok(true)
}

/// Whether a job's result is a video: its workflow makes videos, or the
/// file ComfyUI wrote is one by its extension (its `SaveVideo` lists an mp4
/// under `images`, and `/view` serves it as `application/octet-stream`, so
/// the content type says nothing).
pub fn is_video(kind: Option<actors::game::generation::workflow::Kind>, result: &str) -> bool {
    let ext = result
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    kind == Some(actors::game::generation::workflow::Kind::Video)
        || matches!(ext.as_str(), "mp4" | "webm" | "mov" | "mkv")
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

#[cfg(test)]
mod tests {
    use super::*;
    use actors::game::generation::workflow::Kind;

    #[test]
    fn a_video_is_known_by_its_workflow_or_its_extension() {
        assert!(is_video(Some(Kind::Video), "results/j1-a.png"));
        assert!(is_video(Some(Kind::Image), "results/j1-kokoro_00001_.mp4"));
        assert!(is_video(None, "results/j1-clip.WEBM"));
        assert!(!is_video(Some(Kind::Image), "results/j1-a.png"));
    }
}
