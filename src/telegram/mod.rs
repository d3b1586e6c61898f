//! The Telegram front door: the paid generation bot's players, on the same
//! dispatch path as Discord and HTTP. teloxide receives updates (long
//! polling, or a webhook mounted in kokoro's own HTTP server) and sends
//! messages; every update becomes `Command`s through the one runtime.
//!
//! Who is who: the bot stands for a guild whose id is the bot's own
//! Telegram user id, and each Telegram user is a player in it, so balances,
//! the ledger, idempotency and the queues are the same code as everywhere.
//! An update's id is its command id (`tg:{bot}:{update}`).
//!
//! teloxide moves its polling offset past an update before its handler
//! finishes, so a crash can drop an update Telegram will not send again.
//! Every handler is therefore idempotent on its business key (the update
//! id; a payment's charge id), and nothing that matters lives only in
//! memory: a chosen workflow is the player's (`generate_choose`), a job's
//! notice is due in storage until told. Only the place-in-line status
//! message is edited from memory, and a restart merely stops its updates.

mod chat;
mod notices;
mod send;
mod stars;

use std::sync::Arc;
use std::time::Duration;

use actors::{GuildId, Runtime};
use anyhow::Context as _;
use teloxide::dispatching::{Dispatcher, UpdateHandler};
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, BotCommand};
use teloxide::update_listeners::Polling;

use crate::results::ResultLinks;
use send::patiently;

/// How the Telegram front door is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A self-hosted Bot API server (telegram-bot-api) to talk to instead of
    /// api.telegram.org (also a fake one, in tests).
    pub api_url: Option<String>,
    /// Receive updates by webhook at this public https URL (its path is
    /// served by kokoro's HTTP server), instead of long polling.
    pub webhook: Option<String>,
    /// Telegram user ids allowed admin commands (`/refund`).
    pub admins: Vec<i64>,
    /// How often a queued job's status message is refreshed.
    pub status_every: Option<Duration>,
}

/// A running front door: its task, and for webhooks the route to mount.
pub struct Telegram {
    pub task: tokio::task::JoinHandle<()>,
    pub router: Option<axum::Router>,
}

/// What every handler shares.
pub(crate) struct TelegramDoor {
    pub runtime: Arc<Runtime>,
    pub bot: Bot,
    /// The guild the bot stands for: its own user id.
    pub guild: GuildId,
    pub admins: Vec<i64>,
    pub links: ResultLinks,
    pub status_every: Duration,
}

/// The commands players see in Telegram's menu (`setMyCommands`).
fn menu() -> Vec<BotCommand> {
    [
        ("start", "Welcome, and your free trial"),
        ("generate", "Make a picture or a video"),
        ("credits", "Your credits, free jobs and prices"),
        ("balance", "Your balances"),
        ("daily", "Claim today's reward"),
        ("lucky", "Draw today's discount"),
        ("jobs", "Your latest jobs"),
        ("cancel", "Cancel a job that has not finished"),
        ("topup", "Buy credits with Stars"),
        ("help", "What this bot can do"),
    ]
    .into_iter()
    .map(|(c, d)| BotCommand::new(c, d))
    .collect()
}

/// The updates kokoro handles; Telegram sends only these.
fn wanted() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::CallbackQuery,
        AllowedUpdate::PreCheckoutQuery,
    ]
}

/// Connects to the Bot API, registers the menu and starts taking updates;
/// job notices start at once too.
pub async fn start(
    runtime: Arc<Runtime>,
    token: &str,
    options: &Options,
    links: ResultLinks,
) -> anyhow::Result<Telegram> {
    let mut bot = Bot::new(token);
    if let Some(url) = &options.api_url {
        let url = reqwest::Url::parse(url)
            .with_context(|| format!("--telegram-api-url {url:?} is not a URL"))?;
        bot = bot.set_api_url(url);
    }
    // Errors name the method, never the token (teloxide keeps it out).
    let me = patiently(|| bot.get_me().send())
        .await
        .context("asking Telegram who the bot is (getMe); is TELEGRAM_BOT_TOKEN right?")?;
    let guild = i64::try_from(me.id.0)
        .ok()
        .and_then(|id| GuildId::new(id).ok())
        .context("the bot's id does not fit a guild id")?;
    if let Err(e) = patiently(|| bot.set_my_commands(menu()).send()).await {
        tracing::warn!(error = %e, "could not register the Telegram command menu");
    }
    let door = Arc::new(TelegramDoor {
        runtime: runtime.clone(),
        bot: bot.clone(),
        guild,
        admins: options.admins.clone(),
        links: links.clone(),
        status_every: options.status_every.unwrap_or(Duration::from_secs(3)),
    });
    let notices = tokio::spawn(crate::notices::deliver(notices::TelegramNotices {
        door: door.clone(),
    }));
    let mut dispatcher = Dispatcher::builder(bot.clone(), handler())
        .dependencies(teloxide::dptree::deps![door.clone()])
        .default_handler(|_| async {})
        .build();
    let errors = LoggingErrorHandler::with_custom_text("a Telegram update could not be read");
    tracing::info!(
        bot = me.username(),
        guild = %guild,
        mode = if options.webhook.is_some() { "webhook" } else { "long polling" },
        "Telegram front door ready"
    );
    match &options.webhook {
        None => {
            let listener = Polling::builder(bot)
                .timeout(Duration::from_secs(10))
                .allowed_updates(wanted())
                .delete_webhook()
                .await
                .build();
            let task = tokio::spawn(async move {
                let _notices = crate::notices::AbortOnDrop(notices);
                dispatcher.dispatch_with_listener(listener, errors).await;
            });
            Ok(Telegram { task, router: None })
        }
        Some(url) => {
            let url = reqwest::Url::parse(url)
                .with_context(|| format!("--telegram-webhook {url:?} is not a URL"))?;
            // A fresh secret each start: Telegram is told it with the
            // webhook, and the router refuses requests without it.
            let secret = format!("{:032x}", rand::random::<u128>());
            let addr = ([127, 0, 0, 1], 0).into();
            let webhook = teloxide::update_listeners::webhooks::Options::new(addr, url.clone())
                .secret_token(secret.clone());
            let (listener, _stopped, router) =
                teloxide::update_listeners::webhooks::axum_no_setup(webhook);
            patiently(|| {
                bot.set_webhook(url.clone())
                    .secret_token(secret.clone())
                    .allowed_updates(wanted())
                    .send()
            })
            .await
            .context("registering the Telegram webhook (setWebhook)")?;
            let task = tokio::spawn(async move {
                let _notices = crate::notices::AbortOnDrop(notices);
                dispatcher.dispatch_with_listener(listener, errors).await;
            });
            Ok(Telegram {
                task,
                router: Some(router),
            })
        }
    }
}

fn handler() -> UpdateHandler<std::convert::Infallible> {
    teloxide::dptree::entry().endpoint(|update: Update, door: Arc<TelegramDoor>| async move {
        door.handle(update).await;
        Ok(())
    })
}

impl TelegramDoor {
    async fn handle(self: &Arc<Self>, update: Update) {
        let id = format!("tg:{}:{}", self.guild, update.id.0);
        match update.kind {
            teloxide::types::UpdateKind::Message(m) => self.on_message(&id, m).await,
            teloxide::types::UpdateKind::CallbackQuery(q) => self.on_button(&id, q).await,
            teloxide::types::UpdateKind::PreCheckoutQuery(q) => self.on_pre_checkout(q).await,
            _ => {}
        }
    }
}
