//! What a job's end looks like on Telegram: the picture (`sendPhoto`) or
//! the video (`sendVideo`) with what it cost as the caption, or the reason
//! it failed and the credits given back. The delivery loop is
//! `crate::notices`.

use std::sync::Arc;

use actors::job::{JobStatus, StoredJob};
use actors::Runtime;
use teloxide::prelude::*;
use teloxide::types::{ChatId, InputFile};
use teloxide::{ApiError, RequestError};

use super::send::patiently;
use super::TelegramDoor;
use crate::notices::{attachment, Told};

/// What a bot may upload: 10 MB as a photo, 50 MB as a video.
const PHOTO_LIMIT: u64 = 10 * 1024 * 1024;
const VIDEO_LIMIT: u64 = 50 * 1024 * 1024;

pub struct TelegramNotices {
    pub door: Arc<TelegramDoor>,
}

impl crate::notices::Door for TelegramNotices {
    const NAME: &'static str = "telegram";

    fn runtime(&self) -> &Runtime {
        &self.door.runtime
    }

    fn tell<'a>(
        &'a self,
        job: &'a StoredJob,
        to: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Told>> + Send + 'a>> {
        Box::pin(self.tell(job, to))
    }
}

impl TelegramNotices {
    async fn tell(&self, stored: &StoredJob, to: &str) -> Result<(), Told> {
        let chat = to
            .parse::<i64>()
            .map(ChatId)
            .map_err(|_| Told::Never(format!("{to:?} is not a chat id")))?;
        if stored.status == JobStatus::Cancelled {
            // The player cancelled it and was answered then.
            return Ok(());
        }
        let door = &self.door;
        let job = &stored.job;
        let workflow = door
            .runtime
            .config()
            .generation
            .workflows
            .get(job.workflow.as_str());
        let name = workflow.map_or(job.workflow.as_str(), |w| w.name.as_str());
        let result = stored.result.as_deref().unwrap_or_default();
        let bot = &door.bot;
        let sent = if stored.status == JobStatus::Done {
            let charged = if job.held { job.cost } else { 0 };
            let mut caption = match charged {
                0 => format!("Your {name} is ready."),
                c => format!("Your {name} is ready; {c} credits charged."),
            };
            let video = crate::notices::is_video(workflow.map(|w| w.kind), result);
            let limit = if video { VIDEO_LIMIT } else { PHOTO_LIMIT };
            match attachment(&door.links, result, limit).await {
                Some((bytes, file)) => {
                    let input = || InputFile::memory(bytes.clone()).file_name(file.clone());
                    if video {
                        patiently(|| {
                            bot.send_video(chat, input())
                                .caption(caption.clone())
                                .send()
                        })
                        .await
                    } else {
                        patiently(|| {
                            bot.send_photo(chat, input())
                                .caption(caption.clone())
                                .send()
                        })
                        .await
                    }
                }
                None => {
                    match door.links.public_link(result) {
                        Some(link) => {
                            caption.push_str(&format!("\n{link}\n(the link works for a week)"))
                        }
                        None => caption.push_str("\nSend /jobs to see it."),
                    }
                    patiently(|| bot.send_message(chat, caption.clone()).send()).await
                }
            }
        } else {
            let mut line = format!("Your {name} failed: {result}");
            if job.cost > 0 {
                line.push_str(&format!("\n{} credits given back.", job.cost));
            }
            patiently(|| bot.send_message(chat, line.clone()).send()).await
        };
        match sent {
            Ok(_) => Ok(()),
            Err(RequestError::Api(
                e @ (ApiError::BotBlocked
                | ApiError::ChatNotFound
                | ApiError::UserDeactivated
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup),
            )) => Err(Told::Never(e.to_string())),
            Err(e @ (RequestError::Network(_) | RequestError::Io(_))) => Err(Told::Down(e.into())),
            Err(e) => Err(Told::Later(e.into())),
        }
    }
}
