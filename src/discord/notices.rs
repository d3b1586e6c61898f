//! Telling Discord players that their job ended: a message in the channel
//! they asked from, mentioning them, with the picture or video attached
//! (or a signed link when it is too big to attach), or the reason it failed
//! and the credits given back.
//!
//! Storage is the to-do list: a job records where its player asked
//! (`discord:<channel id>`) and when they were told. Group commit wakes this
//! loop whenever a job closes, and a sweep catches what a wake-up missed, so
//! a job that ended while kokoro was down (or Discord unreachable) is told
//! once it is back. A notice is marked sent only after Discord took it: a
//! crash in between sends it twice, never zero times.

use std::sync::Arc;
use std::time::Duration;

use actors::game::generation::workflow::Kind;
use actors::job::{JobStatus, StoredJob};
use actors::Runtime;
use poise::serenity_prelude as serenity;

use crate::results::ResultLinks;

/// Notices read from storage at a time.
const BATCH: i64 = 50;
/// How often storage is swept for notices no wake-up announced.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// The largest file a bot may attach in any server (Discord's default
/// upload limit); a bigger result is sent as a link.
const ATTACH_LIMIT: u64 = 10 * 1024 * 1024;
const DONE: serenity::Colour = serenity::Colour::new(0x57_F2_87);
const FAILED: serenity::Colour = serenity::Colour::new(0xED_42_45);

/// Delivers notices until the runtime stops.
pub async fn deliver(runtime: Arc<Runtime>, http: Arc<serenity::Http>, links: ResultLinks) {
    let mut ended = runtime.commit_progress().jobs_ended.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        match deliver_some(&runtime, &http, &links).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    changed = ended.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
            Err(why) => {
                tracing::warn!(error = %why, retry_in = ?backoff, "could not deliver job notices on Discord");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Sends one batch; the number of notices dealt with.
async fn deliver_some(
    runtime: &Runtime,
    http: &serenity::Http,
    links: &ResultLinks,
) -> anyhow::Result<usize> {
    let store = runtime.store();
    let due = store.jobs_to_notify("discord", BATCH).await?;
    for (job, channel) in &due {
        match tell(runtime, http, links, job, channel).await {
            Ok(()) => {}
            // The channel is gone or closed to the bot: nobody can be told.
            Err(Told::Never(why)) => {
                tracing::warn!(job = %job.job.id, %channel, reason = %why, "a job notice cannot be delivered; dropped");
            }
            Err(Told::Later(e)) => return Err(e),
        }
        store
            .mark_notified(&job.job.id, actors::config::unix_ms())
            .await?;
    }
    Ok(due.len())
}

enum Told {
    /// Discord will never take this notice.
    Never(String),
    /// Try again later.
    Later(anyhow::Error),
}

async fn tell(
    runtime: &Runtime,
    http: &serenity::Http,
    links: &ResultLinks,
    stored: &StoredJob,
    channel: &str,
) -> Result<(), Told> {
    let job = &stored.job;
    let channel = channel
        .parse::<u64>()
        .ok()
        .filter(|c| *c != 0)
        .map(serenity::ChannelId::new)
        .ok_or_else(|| Told::Never(format!("{channel:?} is not a channel id")))?;
    if stored.status == JobStatus::Cancelled {
        // The player cancelled it and was answered then.
        return Ok(());
    }
    let workflow = runtime
        .config()
        .generation
        .workflows
        .get(job.workflow.as_str());
    let name = workflow.map_or(job.workflow.as_str(), |w| w.name.as_str());
    let mut embed = serenity::CreateEmbed::new()
        .footer(serenity::CreateEmbedFooter::new(format!("job {}", job.id)));
    let mut message = serenity::CreateMessage::new()
        .content(format!("<@{}>", job.key.user))
        .allowed_mentions(
            serenity::CreateAllowedMentions::new()
                .users([serenity::UserId::new(job.key.user.get().unsigned_abs())]),
        );
    let result = stored.result.as_deref().unwrap_or_default();
    if stored.status == JobStatus::Done {
        let charged = if job.held { job.cost } else { 0 };
        let mut text = match charged {
            0 => "Here it is.".to_owned(),
            c => format!("Here it is; {c} credits charged."),
        };
        match attachment(links, result).await {
            Some((bytes, file)) => {
                if workflow.map(|w| w.kind) != Some(Kind::Video) {
                    embed = embed.image(format!("attachment://{file}"));
                }
                message = message.add_file(serenity::CreateAttachment::bytes(bytes, file));
            }
            _ => match links.public_link(result) {
                Some(link) => {
                    text.push_str(&format!("\n[Open it]({link}) (the link works for a week)"))
                }
                None => text.push_str("\nAsk for it with /jobs."),
            },
        }
        embed = embed
            .title(format!("Your {name} is ready"))
            .description(text)
            .colour(DONE);
    } else {
        let given_back = job.cost;
        let mut text = format!("It failed: {}", cut(result, 300));
        if given_back > 0 {
            text.push_str(&format!("\n{given_back} credits given back."));
        }
        embed = embed
            .title(format!("Your {name} job failed"))
            .description(text)
            .colour(FAILED);
    }
    match channel.send_message(http, message.embed(embed)).await {
        Ok(_) => Ok(()),
        Err(serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)))
            if matches!(r.status_code.as_u16(), 400 | 403 | 404) =>
        {
            Err(Told::Never(format!(
                "{} {}",
                r.status_code, r.error.message
            )))
        }
        Err(e) => Err(Told::Later(e.into())),
    }
}

/// The result file's bytes and name, when it is one kokoro keeps and
/// small enough to attach.
async fn attachment(links: &ResultLinks, result: &str) -> Option<(Vec<u8>, String)> {
    let path = links.file(result)?;
    let name = path.file_name()?.to_str()?.to_owned();
    let size = tokio::fs::metadata(&path).await.ok()?.len();
    if size > ATTACH_LIMIT {
        return None;
    }
    Some((tokio::fs::read(&path).await.ok()?, name))
}

fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    text.chars().take(limit - 1).collect::<String>() + "…"
}
