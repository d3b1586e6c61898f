//! A player's messages and button presses, as commands: `/daily`,
//! `/credits` and the rest map one to one; `/generate` is a conversation
//! (a workflow chosen with a button, then the prompt or the photo as the
//! next message), its state kept by the player's actor
//! (`generate_choose`), so it survives a restart.

use std::sync::Arc;

use actors::{Command, CommandId, CommandKind, ErrorCode, Reply, UserId, UserKey};
use serde_json::{json, Value};
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ReplyMarkup,
};

use super::send::{job_line, patiently, text};
use super::{Handled, TelegramDoor};

const HELP: &str = "I make pictures and videos for credits.\n\
/generate — choose what to make, then send the prompt or the photo\n\
/credits — your credits, free jobs today and prices\n\
/lucky — draw today's discount\n\
/jobs — your latest jobs · /cancel — cancel one\n\
/daily — claim today's reward · /balance — your balances\n\
/topup — buy credits with Stars";

impl TelegramDoor {
    /// The player a Telegram user is.
    pub(crate) fn player(&self, user: &teloxide::types::User) -> Option<UserKey> {
        let id = i64::try_from(user.id.0).ok()?;
        Some(UserKey::new(self.guild, UserId::new(id).ok()?))
    }

    /// Sends one command down the dispatch path.
    pub(crate) async fn dispatch(
        &self,
        id: Option<&str>,
        key: UserKey,
        name: &str,
        args: Value,
    ) -> Reply {
        let kind = match CommandKind::parse(name, &args) {
            Ok(k) => k,
            Err(e) => return Reply::error(name, ErrorCode::InvalidArgument, e.to_string()),
        };
        self.dispatch_kind(id, key, kind).await
    }

    pub(crate) async fn dispatch_kind(
        &self,
        id: Option<&str>,
        key: UserKey,
        kind: CommandKind,
    ) -> Reply {
        let id = id.and_then(|i| i.parse::<CommandId>().ok());
        let command = Command { id, key, kind };
        if command.kind.is_admin() {
            self.runtime.dispatch_admin(command).await
        } else {
            self.runtime.dispatch(command).await
        }
    }

    /// Sends `text` to a chat, Telegram's 429 honoured; failures are logged.
    pub(crate) async fn say(
        &self,
        chat: ChatId,
        text: String,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Option<MessageId> {
        let sent = patiently(|| {
            let mut request = self.bot.send_message(chat, text.clone());
            if let Some(b) = &buttons {
                request = request.reply_markup(ReplyMarkup::InlineKeyboard(b.clone()));
            }
            request.send()
        })
        .await;
        match sent {
            Ok(m) => Some(m.id),
            Err(e) => {
                tracing::warn!(error = %e, "could not answer on Telegram");
                None
            }
        }
    }

    pub(crate) async fn on_message(self: &Arc<Self>, id: &str, m: Message) -> Handled {
        let Some(key) = m.from.as_ref().and_then(|u| self.player(u)) else {
            return Handled::Done;
        };
        let chat = m.chat.id;
        if let Some(paid) = m.successful_payment() {
            return self.on_paid(key, chat, paid).await;
        }
        self.on_words(id, key, chat, &m).await;
        Handled::Done
    }

    async fn on_words(self: &Arc<Self>, id: &str, key: UserKey, chat: ChatId, m: &Message) {
        if let Some(words) = m.text().filter(|t| t.starts_with('/')) {
            self.on_command(id, key, chat, words).await;
            return;
        }
        if m.photo().is_some() || m.document().is_some() {
            self.on_picture(id, key, chat, m).await;
            return;
        }
        if let Some(prompt) = m.text() {
            let args = json!({ "prompt": prompt });
            self.generate(id, key, chat, args).await;
            return;
        }
        self.say(chat, HELP.to_owned(), None).await;
    }

    async fn on_command(self: &Arc<Self>, id: &str, key: UserKey, chat: ChatId, words: &str) {
        let mut parts = words.split_whitespace();
        // "/daily@kokoro_bot" in groups.
        let command = parts
            .next()
            .unwrap_or_default()
            .trim_start_matches('/')
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let rest: Vec<&str> = parts.collect();
        match command.as_str() {
            "start" => {
                let r = self.dispatch(Some(id), key, "credits", json!({})).await;
                let welcome = if r.ok {
                    format!("Welcome! {}\n\n{HELP}", r.message)
                } else {
                    format!("Welcome!\n\n{HELP}")
                };
                self.say(chat, welcome, None).await;
            }
            "help" => {
                self.say(chat, HELP.to_owned(), None).await;
            }
            "balance" | "daily" | "credits" | "lucky" | "jobs" | "topup" => {
                let r = self.dispatch(Some(id), key, &command, json!({})).await;
                let buttons = (command == "topup" && r.ok).then(|| self.pack_buttons());
                self.say(chat, text(&r), buttons).await;
            }
            "generate" => {
                let buttons = self.workflow_buttons(key).await;
                self.say(
                    chat,
                    "What shall I make? Choose, then send the prompt or the photo.".to_owned(),
                    Some(buttons),
                )
                .await;
            }
            "cancel" => match rest.first() {
                Some(job) => {
                    let r = self
                        .dispatch(Some(id), key, "cancel", json!({ "job_id": job }))
                        .await;
                    self.say(chat, text(&r), None).await;
                }
                None => self.offer_cancel(key, chat).await,
            },
            "refund" => self.on_refund(key, chat, &rest).await,
            _ => {
                self.say(chat, format!("I do not know /{command}.\n\n{HELP}"), None)
                    .await;
            }
        }
    }

    /// One button per workflow: its name and what it costs this player
    /// today (the lucky discount taken off, or free), as `credits` says.
    async fn workflow_buttons(&self, key: UserKey) -> InlineKeyboardMarkup {
        let credits = self.dispatch(None, key, "credits", json!({})).await;
        let rows = self.runtime.config().generation.workflows.iter().map(|w| {
            let id = w.id.as_str();
            let free = &credits.data["free_today"][id];
            let cost = if free == "unlimited" || free.as_u64().is_some_and(|n| n > 0) {
                "free today".to_owned()
            } else {
                let price = credits.data["prices"][id].as_i64().unwrap_or(w.price);
                format!("{price} credits")
            };
            vec![InlineKeyboardButton::callback(
                format!("{} · {cost}", w.name),
                format!("wf:{id}"),
            )]
        });
        InlineKeyboardMarkup::new(rows)
    }

    fn pack_buttons(&self) -> InlineKeyboardMarkup {
        let rows = self.runtime.config().generation.packs.iter().map(|p| {
            vec![InlineKeyboardButton::callback(
                format!("{} — {} ⭐", p.title, p.stars),
                format!("pack:{}", p.id),
            )]
        });
        InlineKeyboardMarkup::new(rows)
    }

    /// The player's open jobs, each a cancel button.
    async fn offer_cancel(&self, key: UserKey, chat: ChatId) {
        let r = self.dispatch(None, key, "jobs", json!({})).await;
        let open: Vec<Value> = r.data["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| matches!(j["status"].as_str(), Some("queued" | "running")))
            .cloned()
            .collect();
        if open.is_empty() {
            self.say(chat, "You have no job to cancel.".to_owned(), None)
                .await;
            return;
        }
        let rows = open.iter().filter_map(|j| {
            let id = j["job_id"].as_str()?;
            Some(vec![InlineKeyboardButton::callback(
                format!("Cancel {}", job_line(j).trim_start_matches("• ")),
                format!("cancel:{id}"),
            )])
        });
        self.say(
            chat,
            "Which job shall I cancel? Its credits are given back.".to_owned(),
            Some(InlineKeyboardMarkup::new(rows)),
        )
        .await;
    }

    pub(crate) async fn on_button(self: &Arc<Self>, id: &str, q: CallbackQuery) {
        // Answered first: the button stops spinning whatever comes next.
        let _ = patiently(|| self.bot.answer_callback_query(q.id.clone()).send()).await;
        let Some(key) = self.player(&q.from) else {
            return;
        };
        let chat = q
            .message
            .as_ref()
            .map_or(ChatId(q.from.id.0 as i64), |m| m.chat().id);
        let data = q.data.as_deref().unwrap_or_default();
        if let Some(workflow) = data.strip_prefix("wf:") {
            let r = self
                .dispatch(
                    Some(id),
                    key,
                    "generate_choose",
                    json!({ "workflow": workflow }),
                )
                .await;
            self.say(chat, text(&r), None).await;
        } else if let Some(job) = data.strip_prefix("cancel:") {
            let r = self
                .dispatch(Some(id), key, "cancel", json!({ "job_id": job }))
                .await;
            self.say(chat, text(&r), None).await;
        } else if let Some(pack) = data.strip_prefix("pack:") {
            self.send_invoice(chat, pack).await;
        }
    }

    /// A photo (or a picture sent as a file): kept as the player's upload,
    /// then the input of the workflow they chose; its caption, the prompt.
    async fn on_picture(self: &Arc<Self>, id: &str, key: UserKey, chat: ChatId, m: &Message) {
        let file = match (m.photo(), m.document()) {
            // The largest size Telegram made of the photo.
            (Some(sizes), _) => sizes.last().map(|p| (p.file.id.clone(), p.file.size)),
            (None, Some(d)) => Some((d.file.id.clone(), d.file.size)),
            (None, None) => None,
        };
        let Some((file_id, size)) = file else { return };
        let upload = match self.keep_picture(key, file_id, size).await {
            Ok(upload) => upload,
            Err(why) => {
                self.say(chat, format!("⚠️ {why}"), None).await;
                return;
            }
        };
        let mut args = json!({ "image": upload });
        if let Some(caption) = m.caption() {
            args["prompt"] = json!(caption);
        }
        self.generate(id, key, chat, args).await;
    }

    async fn keep_picture(
        &self,
        key: UserKey,
        file_id: teloxide::types::FileId,
        size: u32,
    ) -> Result<String, String> {
        let Some(uploads) = self.runtime.config().uploads.as_ref() else {
            return Err("This bot does not take pictures.".into());
        };
        let too_big = crate::uploads::FetchError::TooBig;
        if size as usize > actors::uploads::MAX_BYTES {
            return Err(crate::uploads::sentence(&too_big.to_string()));
        }
        let file = patiently(|| self.bot.get_file(file_id.clone()).send())
            .await
            .map_err(|_| {
                crate::uploads::sentence(&crate::uploads::FetchError::Unreachable.to_string())
            })?;
        if file.size as usize > actors::uploads::MAX_BYTES {
            return Err(crate::uploads::sentence(&too_big.to_string()));
        }
        // Read in pieces, counted: the size Telegram announced is not trusted.
        let mut stream = self.bot.download_file_stream(&file.path);
        let mut bytes = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|_| {
                crate::uploads::sentence(&crate::uploads::FetchError::Unreachable.to_string())
            })?;
            if bytes.len() + chunk.len() > actors::uploads::MAX_BYTES {
                return Err(crate::uploads::sentence(&too_big.to_string()));
            }
            bytes.extend_from_slice(&chunk);
        }
        uploads
            .store(key, &bytes)
            .await
            .map(|u| u.id)
            .map_err(|e| crate::uploads::sentence(&e.to_string()))
    }

    /// Queues a job of the chosen workflow and keeps one status message
    /// up to date with its place in line until it ends.
    async fn generate(self: &Arc<Self>, id: &str, key: UserKey, chat: ChatId, args: Value) {
        let mut kind = match CommandKind::parse("generate", &args) {
            Ok(k) => k,
            Err(e) => {
                self.say(chat, format!("⚠️ {e}"), None).await;
                return;
            }
        };
        kind.reply_at("telegram", chat.0);
        let r = self.dispatch_kind(Some(id), key, kind).await;
        if !r.ok {
            let mut line = text(&r);
            let unchosen = r.error.as_ref().is_some_and(|e| {
                e.code == ErrorCode::NotFound && e.message.starts_with("Choose a workflow")
            });
            if unchosen {
                line = "First choose what to make: /generate".to_owned();
            }
            self.say(chat, line, None).await;
            return;
        }
        let Some(job) = r.data["job_id"].as_str().map(str::to_owned) else {
            return;
        };
        let status = self.say(chat, text(&r), None).await;
        // A replayed update was followed the first time round.
        if let (Some(message), false) = (status, r.replayed) {
            let door = self.clone();
            tokio::spawn(async move { door.follow(key, chat, message, job).await });
        }
    }

    /// Edits the status message as the job moves up the line, until it
    /// ends (its notice then comes as its own message) or an hour passes.
    async fn follow(&self, key: UserKey, chat: ChatId, message: MessageId, job: String) {
        let mut shown = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(self.status_every).await;
            let r = self.dispatch(None, key, "jobs", json!({})).await;
            let Some(j) = r.data["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|j| j["job_id"] == job.as_str())
                .cloned()
            else {
                continue;
            };
            let open = matches!(j["status"].as_str(), Some("queued" | "running"));
            let line = if open {
                format!("⏳ {}", job_line(&j).trim_start_matches("• "))
            } else {
                format!("✔️ {}", job_line(&j).trim_start_matches("• "))
            };
            if line != shown {
                let edited = patiently(|| {
                    self.bot
                        .edit_message_text(chat, message, line.clone())
                        .send()
                })
                .await;
                if let Err(e) = edited {
                    tracing::debug!(error = %e, "could not update a job's status message");
                }
                shown = line;
            }
            if !open {
                return;
            }
        }
    }
}
