//! The Telegram front door: the paid generation bot's players, on the same
//! dispatch path as Discord and HTTP. Updates come by long polling (kokoro's
//! own `getUpdates` loop) or by a webhook mounted in kokoro's own HTTP
//! server; teloxide sends messages. Every update becomes `Command`s
//! through the one runtime.
//!
//! Who is who: the bot stands for a guild whose id is the bot's own
//! Telegram user id, and each Telegram user is a player in it, so balances,
//! the ledger, idempotency and the queues are the same code as everywhere.
//! An update's id is its command id (`tg:{bot}:{update}`).
//!
//! Nothing is confirmed before it is durable. Telegram sends an update
//! again until a later `getUpdates` offset confirms it, and never after:
//! the offset moves past an update only once the commands it became are
//! committed (a webhook is answered 200 only then), so a crash at any
//! instant loses nothing, and command ids make the redelivery harmless. A
//! payment that still cannot be granted (storage down) holds the offset
//! and is tried again. And at start and every `reconcile_every`, the bot's
//! Star transactions (`getStarTransactions`) are read and any successful
//! payment kokoro has not recorded is granted, by its charge id, so even an
//! update lost some other way is paid exactly once.
//!
//! A Bot API that cannot be reached (at start, or later) is retried with
//! backoff while the rest of kokoro serves; `Doors` says so.

mod chat;
mod notices;
mod poll;
mod send;
mod stars;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actors::{GuildId, Runtime};
use anyhow::Context as _;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, BotCommand};

use crate::doors::{Backoff, Doors};
use crate::results::ResultLinks;
use send::patiently;

/// The door's name in `Doors`, `/readyz` and metrics.
pub const DOOR: &str = "telegram";

/// A webhook's secret token, as Telegram takes it: 1 to 256 of `A-Z`,
/// `a-z`, `0-9`, `_` and `-`. Never printed.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// The secret, or why Telegram would refuse it (without saying it).
    pub fn new(secret: String) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if secret.is_empty() || secret.len() > 256 || !secret.chars().all(allowed) {
            return Err(format!(
                "KOKORO_TELEGRAM_WEBHOOK_SECRET must be 1 to 256 of A-Z, a-z, 0-9, _ and - (it has {} characters)",
                secret.chars().count()
            ));
        }
        Ok(Self(secret))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// How the Telegram front door is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A self-hosted Bot API server (telegram-bot-api) to talk to instead of
    /// api.telegram.org (also a fake one, in tests).
    pub api_url: Option<String>,
    /// Receive updates by webhook at this public https URL (its path is
    /// served by kokoro's HTTP server), instead of long polling.
    pub webhook: Option<String>,
    /// The secret Telegram sends with each webhook update
    /// (`KOKORO_TELEGRAM_WEBHOOK_SECRET`): the same on every node of a
    /// cluster, any of which may be sent an update. Without it, a fresh
    /// one each start.
    pub webhook_secret: Option<WebhookSecret>,
    /// Telegram user ids allowed admin commands (`/refund`).
    pub admins: Vec<i64>,
    /// How often a queued job's status message is refreshed.
    pub status_every: Option<Duration>,
    /// How often the bot's Star transactions are read for payments whose
    /// update never came (default ten minutes; also once at start).
    pub reconcile_every: Option<Duration>,
    /// Where the door says whether it is up.
    pub doors: Doors,
}

/// A running front door: its task (connecting, then taking updates, for
/// as long as it runs), and for webhooks the route to mount.
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
    /// Star transactions this process has reconciled (they come oldest
    /// first, and only grow).
    pub reconciled: std::sync::atomic::AtomicU32,
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

/// Starts the front door: it connects (`getMe`, the menu, the webhook or
/// the polling loop) on its own task, retrying with backoff while the Bot
/// API cannot be reached. Only a configuration error (a bad URL) fails here.
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
    let webhook = match &options.webhook {
        Some(url) => Some(
            reqwest::Url::parse(url)
                .with_context(|| format!("--telegram-webhook {url:?} is not a URL"))?,
        ),
        None => None,
    };
    // Telegram is told the secret with the webhook, and the route refuses
    // requests without it. Given (a cluster's nodes share it), or fresh.
    let secret = match &options.webhook_secret {
        Some(WebhookSecret(s)) => s.clone(),
        None => format!("{:032x}", rand::random::<u128>()),
    };
    let ready: Arc<OnceLock<Arc<TelegramDoor>>> = Arc::default();
    let router = webhook
        .as_ref()
        .map(|url| poll::webhook_route(url.path(), secret.clone(), ready.clone()));
    let options = options.clone();
    options.doors.starting(DOOR);
    let task = tokio::spawn(async move {
        let door = connect(runtime, bot, &options, links).await;
        let _ = ready.set(door.clone());
        let _notices = crate::notices::AbortOnDrop(tokio::spawn(crate::notices::deliver(
            notices::TelegramNotices { door: door.clone() },
        )));
        let _reconcile = crate::notices::AbortOnDrop(tokio::spawn(stars::reconcile_every(
            door.clone(),
            options.reconcile_every.unwrap_or(Duration::from_secs(600)),
        )));
        match webhook {
            None => poll::poll(&door, &options.doors).await,
            Some(url) => {
                register_webhook(&door, &options.doors, url, secret).await;
                std::future::pending::<()>().await;
            }
        }
    });
    Ok(Telegram { task, router })
}

/// Asks the Bot API who the bot is until it answers, registers the menu,
/// and builds the door.
async fn connect(
    runtime: Arc<Runtime>,
    bot: Bot,
    options: &Options,
    links: ResultLinks,
) -> Arc<TelegramDoor> {
    let mut backoff = Backoff::default();
    let (me, guild) = loop {
        // Errors name the method, never the token (teloxide keeps it out).
        match patiently(|| bot.get_me().send()).await {
            Ok(me) => match i64::try_from(me.id.0).ok().and_then(|id| GuildId::new(id).ok()) {
                Some(guild) => break (me, guild),
                None => options.doors.down(DOOR, "connect", "the bot's id does not fit a guild id"),
            },
            Err(e) => options.doors.down(
                DOOR,
                "connect",
                format!("asking Telegram who the bot is (getMe) failed: {e}; is TELEGRAM_BOT_TOKEN right?"),
            ),
        }
        backoff.wait().await;
    };
    if let Err(e) = patiently(|| bot.set_my_commands(menu()).send()).await {
        tracing::warn!(error = %e, "could not register the Telegram command menu");
    }
    tracing::info!(
        bot = me.username(),
        guild = %guild,
        mode = if options.webhook.is_some() { "webhook" } else { "long polling" },
        "Telegram front door ready"
    );
    Arc::new(TelegramDoor {
        runtime,
        bot,
        guild,
        admins: options.admins.clone(),
        links,
        status_every: options.status_every.unwrap_or(Duration::from_secs(3)),
        reconciled: Default::default(),
    })
}

/// `setWebhook` until Telegram takes it.
async fn register_webhook(door: &TelegramDoor, doors: &Doors, url: reqwest::Url, secret: String) {
    let mut backoff = Backoff::default();
    loop {
        let set = patiently(|| {
            door.bot
                .set_webhook(url.clone())
                .secret_token(secret.clone())
                .allowed_updates(wanted())
                .send()
        })
        .await;
        match set {
            Ok(_) => {
                doors.up(DOOR);
                return;
            }
            Err(e) => doors.down(
                DOOR,
                "register",
                format!("registering the webhook (setWebhook) failed: {e}"),
            ),
        }
        backoff.wait().await;
    }
}

/// Whether an update was handled, or must be delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    Done,
    /// Not durable yet (a payment storage could not take): do not
    /// confirm it.
    Again,
}

impl TelegramDoor {
    async fn handle(self: &Arc<Self>, update: Update) -> Handled {
        let id = format!("tg:{}:{}", self.guild, update.id.0);
        match update.kind {
            teloxide::types::UpdateKind::Message(m) => return self.on_message(&id, m).await,
            teloxide::types::UpdateKind::CallbackQuery(q) => self.on_button(&id, q).await,
            teloxide::types::UpdateKind::PreCheckoutQuery(q) => self.on_pre_checkout(q).await,
            _ => {}
        }
        Handled::Done
    }
}

#[cfg(test)]
mod tests {
    use super::WebhookSecret;

    #[test]
    fn a_webhook_secret_is_what_telegram_takes_and_is_never_printed() {
        assert!(WebhookSecret::new("abc_DEF-123".into()).is_ok());
        for bad in ["", "has space", "slash/", "ünïcode", &"x".repeat(257)] {
            let why = WebhookSecret::new(bad.to_owned()).unwrap_err();
            assert!(why.contains("KOKORO_TELEGRAM_WEBHOOK_SECRET"), "{why}");
            if !bad.is_empty() {
                assert!(!why.contains(bad), "the secret is not repeated: {why}");
            }
        }
        let secret = WebhookSecret::new("s3cr3t-value".into()).unwrap();
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}
