//! Telling Discord players that their job ended: a message in the channel
//! they asked from, mentioning them, with the picture or video attached
//! (or a signed link when it is too big to attach), or the reason it failed
//! and the credits given back.
//!
//! The delivery loop (storage as the to-do list, at least once) is
//! `crate::notices`; this is what a notice looks like on Discord.

use std::sync::Arc;

use actors::arena::StoredEntry;
use actors::job::{JobStatus, StoredJob};
use actors::Runtime;
use poise::serenity_prelude as serenity;

use crate::notices::{attachment, Door, Told};
use crate::results::ResultLinks;

/// The largest file a bot may attach in any server (Discord's default
/// upload limit); a bigger result is sent as a link.
const ATTACH_LIMIT: u64 = 10 * 1024 * 1024;
const DONE: serenity::Colour = serenity::Colour::new(0x57_F2_87);
const FAILED: serenity::Colour = serenity::Colour::new(0xED_42_45);

/// Discord as a door to tell players through.
pub struct DiscordNotices {
    pub runtime: Arc<Runtime>,
    pub http: Arc<serenity::Http>,
    pub links: ResultLinks,
}

impl Door for DiscordNotices {
    const NAME: &'static str = "discord";

    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn tell<'a>(
        &'a self,
        job: &'a StoredJob,
        to: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Told>> + Send + 'a>> {
        Box::pin(tell(&self.runtime, &self.http, &self.links, job, to))
    }

    fn tell_battle<'a>(
        &'a self,
        entry: &'a StoredEntry,
        to: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Told>> + Send + 'a>> {
        Box::pin(tell_battle(&self.http, entry, to))
    }
}

/// The outcome of a player's arena battle, in the channel they joined
/// from, mentioning them (their opponent is named, not pinged).
async fn tell_battle(
    http: &serenity::Http,
    stored: &StoredEntry,
    channel: &str,
) -> Result<(), Told> {
    let channel = channel_id(channel)?;
    let Some(fought) = &stored.fought else {
        return Ok(());
    };
    let player = stored.entry.key.user;
    let (title, text, colour) = if fought.won {
        (
            "You won your arena battle",
            format!(
                "You beat <@{}> and won {} gold.",
                fought.opponent, fought.prize
            ),
            DONE,
        )
    } else {
        (
            "You lost your arena battle",
            format!(
                "<@{}> beat you this time. /arena_join to try again.",
                fought.opponent
            ),
            FAILED,
        )
    };
    let embed = serenity::CreateEmbed::new()
        .title(title)
        .description(text)
        .colour(colour)
        .footer(serenity::CreateEmbedFooter::new(format!(
            "battle {}",
            fought.battle_id
        )));
    let message = serenity::CreateMessage::new()
        .content(format!("<@{player}>"))
        .allowed_mentions(
            serenity::CreateAllowedMentions::new()
                .users([serenity::UserId::new(player.get().unsigned_abs())]),
        )
        .embed(embed);
    sent(channel.send_message(http, message).await, &fought.battle_id)
}

fn channel_id(channel: &str) -> Result<serenity::ChannelId, Told> {
    channel
        .parse::<u64>()
        .ok()
        .filter(|c| *c != 0)
        .map(serenity::ChannelId::new)
        .ok_or_else(|| Told::Never(format!("{channel:?} is not a channel id")))
}

/// What Discord's answer to a notice means for it.
fn sent(answer: Result<serenity::Message, serenity::Error>, what: &str) -> Result<(), Told> {
    match answer {
        Ok(_) => Ok(()),
        // Serenity reads the body only of a 2xx: Discord took the message.
        // Sending it again would post it again.
        Err(serenity::Error::Json(e)) => {
            metrics::counter!(actors::telemetry::DISCORD_UNREADABLE_ANSWERS_TOTAL).increment(1);
            tracing::warn!(notice = %what, error = %e, "Discord took a notice but its answer could not be read; counted as told");
            Ok(())
        }
        Err(serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)))
            if matches!(r.status_code.as_u16(), 400 | 403 | 404) =>
        {
            Err(Told::Never(format!(
                "{} {}",
                r.status_code, r.error.message
            )))
        }
        Err(serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r))) => Err(
            Told::Later(anyhow::anyhow!("{} {}", r.status_code, r.error.message)),
        ),
        Err(e) => Err(Told::Down(e.into())),
    }
}

async fn tell(
    runtime: &Runtime,
    http: &serenity::Http,
    links: &ResultLinks,
    stored: &StoredJob,
    channel: &str,
) -> Result<(), Told> {
    let job = &stored.job;
    let channel = channel_id(channel)?;
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
        match attachment(links, result, ATTACH_LIMIT).await {
            Some((bytes, file)) => {
                if !crate::notices::is_video(workflow.map(|w| w.kind), result) {
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
    sent(
        channel.send_message(http, message.embed(embed)).await,
        &job.id,
    )
}

fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    text.chars().take(limit - 1).collect::<String>() + "…"
}
