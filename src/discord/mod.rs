//! The Discord front door: a serenity gateway client with poise slash
//! commands. Each interaction becomes a `Command` (its interaction id is the
//! command id, so Discord's redeliveries are answered once) and goes down
//! the same dispatch path as HTTP; the `Reply` is rendered as a message,
//! privately when it is an error.
//!
//! Reports shard health: gateway latency and connection per shard, and
//! reconnects, from the shard manager and stage-change events.

mod commands;
pub mod linked_roles;
mod notices;
mod posts;
mod render;
mod roles;
mod verification;

use std::sync::Arc;
use std::time::Duration;

use actors::{Command, CommandId, CommandKind, GuildId, Runtime, UserId, UserKey};
use poise::serenity_prelude as serenity;
use serde_json::Value;

use actors::telemetry as m;

pub struct Data {
    runtime: Arc<Runtime>,
    /// Links to results, for `jobs`.
    links: crate::results::ResultLinks,
    /// Fetches pictures players attach.
    client: reqwest::Client,
    /// The verification message and its button.
    verification: Arc<verification::Verification>,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;
type Ctx<'a> = poise::Context<'a, Data, Error>;

/// How often shard latencies are sampled into their gauge.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Discord waits 3 seconds for an interaction's first answer: a command
/// not answered by then is deferred (answered later, privately).
const DEFER_AFTER: Duration = Duration::from_secs(2);

/// How the Discord front door is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Send HTTP API calls to this proxy (twilight-http-proxy, or a fake
    /// Discord in tests) instead of discord.com; the gateway address then
    /// comes from the proxy too.
    pub proxy: Option<String>,
    /// Count members' posts for roleplay XP. Needs the privileged
    /// message-content intent, enabled for the bot in the developer portal
    /// (Discord refuses the connection otherwise).
    pub roleplay_posts: bool,
    /// Watch members join, for verification (raids told to the admins).
    /// Needs the privileged Server Members intent, enabled for the bot in
    /// the developer portal (Discord refuses the connection otherwise). The
    /// button works without it.
    pub verification: bool,
    /// How often each guild's verification message is looked for (and
    /// posted again if it was deleted). `None`: every 5 minutes.
    pub verify_look_every: Option<std::time::Duration>,
    /// Where the door says whether it is up.
    pub doors: crate::doors::Doors,
    /// The contiguous range of shards this process runs, of how many in
    /// all (`--discord-shards 0-3 --discord-shard-total 16`), as large bots
    /// run clusters of shards. `None`: all of them (Discord's recommended
    /// count).
    pub shards: Option<ShardRange>,
}

/// Shards `first..=last` of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    pub first: u32,
    pub last: u32,
    pub total: u32,
}

/// Discord's own ceiling is far lower; this bounds the flag.
pub const MAX_SHARDS: u32 = 65_536;

impl ShardRange {
    /// `A-B` (or one shard, `A`) of `total`.
    pub fn parse(range: &str, total: u32) -> Result<Self, String> {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("--discord-shards {range:?}: expected A-B, like 0-3"))
        };
        let (first, last) = (number(a)?, number(b)?);
        if total == 0 || total > MAX_SHARDS {
            return Err(format!(
                "--discord-shard-total must be 1 to {MAX_SHARDS}, got {total}"
            ));
        }
        if first > last || last >= total {
            return Err(format!(
                "--discord-shards {range}: must be A-B with A <= B < --discord-shard-total ({total})"
            ));
        }
        Ok(Self { first, last, total })
    }
}

/// The door's name in `Doors`, `/readyz` and metrics.
pub const DOOR: &str = "discord";

/// Connects to Discord and serves slash commands (and, with
/// `roleplay_posts`, counts members' posts) until the process stops. The
/// connection is made on the returned task and made again, with backoff,
/// whenever it fails or ends: a Discord that cannot be reached leaves the
/// rest of kokoro serving, and `Doors` says so. Job notices go over the
/// REST API and start at once.
pub async fn start(
    runtime: Arc<Runtime>,
    token: &str,
    options: &Options,
    links: crate::results::ResultLinks,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    options.doors.starting(DOOR);
    // Notices go over the REST API, so they need no gateway connection:
    // they start at once and catch up on jobs that ended while kokoro was
    // down. They stop with the front door (the guard aborts them).
    let notices = tokio::spawn(crate::notices::deliver(notices::DiscordNotices {
        runtime: runtime.clone(),
        http: Arc::new(http(token, options).build()),
        links: links.clone(),
    }));
    // Role changes go over the REST API too: the roles members' commits
    // earn or lose are applied whether or not the gateway is connected.
    let roles = tokio::spawn(roles::apply(
        runtime.clone(),
        roles::RoleApi::new(token, options.proxy.as_deref()),
    ));
    let (token, options) = (token.to_owned(), options.clone());
    Ok(tokio::spawn(async move {
        let _notices = crate::notices::AbortOnDrop(notices);
        let _roles = crate::notices::AbortOnDrop(roles);
        let mut backoff = crate::doors::Backoff::default();
        loop {
            let why = match connect(runtime.clone(), &token, &options, links.clone()).await {
                Ok(()) => "the gateway connection ended".to_owned(),
                Err(e) => explain(&e, &options),
            };
            options.doors.down(DOOR, "connect", why);
            backoff.wait().await;
        }
    }))
}

/// A connection's failure as the operator is to read it: a refused
/// privileged intent names the switch in the developer portal.
fn explain(e: &anyhow::Error, options: &Options) -> String {
    let disallowed = matches!(
        e.downcast_ref::<serenity::Error>(),
        Some(serenity::Error::Gateway(
            serenity::GatewayError::DisallowedGatewayIntents
        ))
    );
    if !disallowed {
        return e.to_string();
    }
    let mut wanted = Vec::new();
    if options.verification {
        wanted.push("Server Members Intent (for --discord-verification)");
    }
    if options.roleplay_posts {
        wanted.push("Message Content Intent (for --discord-roleplay-posts)");
    }
    format!(
        "Discord refused a privileged intent: enable {} for the bot in the developer portal \
         (Bot → Privileged Gateway Intents), or turn the option off",
        wanted.join(" and ")
    )
}

fn http(token: &str, options: &Options) -> serenity::HttpBuilder {
    let mut http = serenity::HttpBuilder::new(token);
    if let Some(p) = &options.proxy {
        // The proxy does the rate limiting (that is what such proxies are for).
        http = http.proxy(p).ratelimiter_disabled(true);
    }
    http
}

/// One connection: the framework, the client, and the shards until they
/// stop.
async fn connect(
    runtime: Arc<Runtime>,
    token: &str,
    options: &Options,
    links: crate::results::ResultLinks,
) -> anyhow::Result<()> {
    let doors = options.doors.clone();
    // The registration task lives no longer than this connection: the
    // guard is dropped (and the task aborted) when `connect` returns.
    let registering: Arc<std::sync::Mutex<Option<crate::notices::AbortOnDrop>>> = Arc::default();
    let verification = Arc::new(verification::Verification::new(runtime.clone()));
    // Likewise the periodic look at verification messages.
    let looking: Arc<std::sync::Mutex<Option<crate::notices::AbortOnDrop>>> = Arc::default();
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: commands::all(),
            on_error: |error| Box::pin(on_error(error)),
            ..Default::default()
        })
        .setup({
            let runtime = runtime.clone();
            let links = links.clone();
            let registering = registering.clone();
            let verification = verification.clone();
            let looking_slot = looking.clone();
            let verify_every = options.verify_look_every;
            move |ctx, ready, _framework| {
                Box::pin(async move {
                    tracing::info!(
                        bot = %ready.user.name,
                        guilds = ready.guilds.len(),
                        shard = ?ready.shard,
                        "Discord connected; registering slash commands"
                    );
                    // Registered until Discord takes them; interactions are
                    // served meanwhile (Data is ready either way).
                    let task = tokio::spawn(register(ctx.http.clone(), doors));
                    let looking =
                        tokio::spawn(verification.clone().look_every(ctx.clone(), verify_every));
                    if let Ok(mut slot) = registering.lock() {
                        *slot = Some(crate::notices::AbortOnDrop(task));
                    }
                    if let Ok(mut slot) = looking_slot.lock() {
                        *slot = Some(crate::notices::AbortOnDrop(looking));
                    }
                    Ok(Data {
                        runtime,
                        links,
                        client: reqwest::Client::new(),
                        verification,
                    })
                })
            }
        })
        .build();
    // Slash commands and the verification button need no privileged
    // intent; a post's length needs its text, which only the
    // message-content intent brings (posts.rs), and joins need the members
    // intent (verification.rs). A deleted verification message is seen at
    // once with guild messages, else by the door's periodic look.
    let mut intents = serenity::GatewayIntents::GUILDS;
    if options.verification {
        intents |=
            serenity::GatewayIntents::GUILD_MEMBERS | serenity::GatewayIntents::GUILD_MESSAGES;
    }
    if options.roleplay_posts {
        intents |=
            serenity::GatewayIntents::GUILD_MESSAGES | serenity::GatewayIntents::MESSAGE_CONTENT;
    }
    let mut builder = serenity::ClientBuilder::new_with_http(http(token, options).build(), intents)
        .framework(framework)
        .event_handler(ShardWatch::default())
        .event_handler(verification::VerificationEvents(verification));
    if options.roleplay_posts {
        builder = builder.event_handler(posts::RoleplayPosts {
            runtime: runtime.clone(),
        });
    }
    let mut client = builder.await?;
    let sampling =
        crate::notices::AbortOnDrop(tokio::spawn(sample_latency(client.shard_manager.clone())));
    let ended = match options.shards {
        // serenity reads the range's end as the last shard to run
        // (`end - start + 1` shards), whatever `Range` says.
        Some(r) => client.start_shard_range(r.first..r.last, r.total).await,
        None => client.start_autosharded().await,
    };
    drop(sampling);
    ended?;
    Ok(())
}

/// `PUT /applications/{id}/commands` until Discord takes it: a refused
/// registration leaves every interaction failing, so it is an error, counted,
/// retried with backoff, and the door is not ready until it is done.
async fn register(http: Arc<serenity::Http>, doors: crate::doors::Doors) {
    let commands = commands::all();
    let mut backoff = crate::doors::Backoff::default();
    loop {
        match poise::builtins::register_globally(&http, &commands).await {
            Ok(()) => {
                tracing::info!(
                    commands = commands.len(),
                    "Discord slash commands registered"
                );
                doors.up(DOOR);
                return;
            }
            Err(e) => doors.down(
                DOOR,
                "register",
                format!(
                    "Discord refused the slash commands (PUT /applications/{{id}}/commands): {e}"
                ),
            ),
        }
        backoff.wait().await;
    }
}

/// Answers one slash command through the runtime.
async fn run(ctx: Ctx<'_>, name: &str, args: Value) -> Result<(), Error> {
    let Some(key) = player(&ctx) else {
        ctx.say("Use this command in a server.").await?;
        return Ok(());
    };
    // The dispatch is raced against Discord's 3-second window: a command
    // still waiting (storage slow, a queue busy) is deferred, not lost.
    let reply = {
        let dispatch = dispatch(&ctx, key, name, &args);
        tokio::pin!(dispatch);
        match tokio::time::timeout(DEFER_AFTER, &mut dispatch).await {
            Ok(reply) => reply,
            Err(_) => {
                ctx.defer_ephemeral().await?;
                dispatch.await
            }
        }
    };
    ctx.send(render::reply(&reply)).await?;
    // A verification channel set (or changed) gets its message at once.
    if name == "config_set" && reply.ok && args["key"] == "verify_channel" {
        if let Some(guild) = ctx.guild_id() {
            ctx.data()
                .verification
                .ensure(ctx.serenity_context(), guild)
                .await;
        }
    }
    Ok(())
}

/// The `Reply` to one slash command: admin commands checked for Manage
/// Server, `generate` told where to announce its job's end, `jobs`' results
/// made links.
async fn dispatch(ctx: &Ctx<'_>, key: UserKey, name: &str, args: &Value) -> actors::Reply {
    let id = match ctx {
        poise::Context::Application(a) => {
            a.interaction.id.get().to_string().parse::<CommandId>().ok()
        }
        poise::Context::Prefix(_) => None,
    };
    let mut reply = match CommandKind::parse(name, args) {
        // Admin commands: kokoro checks Manage Guild itself, whatever the
        // server's command permissions say.
        Ok(kind) if kind.is_admin() => {
            if manages_guild(ctx) {
                let runtime = &ctx.data().runtime;
                runtime.dispatch_admin(Command { id, key, kind }).await
            } else {
                actors::Reply::error(
                    name,
                    actors::ErrorCode::Forbidden,
                    "You need the Manage Server permission for this command.",
                )
            }
        }
        Ok(mut kind) => {
            kind.reply_at("discord", ctx.channel_id());
            ctx.data().runtime.dispatch(Command { id, key, kind }).await
        }
        Err(e) => actors::Reply::error(name, actors::ErrorCode::InvalidArgument, e.to_string()),
    };
    if reply.ok && name == "jobs" {
        let links = &ctx.data().links;
        if links.public_link("results/x").is_some() {
            links.rewrite_jobs(&mut reply.data);
        }
    }
    reply
}

/// Fetches a picture a player attached and keeps it as their upload; its
/// id, or what to tell them.
async fn keep_picture(ctx: Ctx<'_>, picture: &serenity::Attachment) -> Result<String, String> {
    let (Some(key), Some(uploads)) = (player(&ctx), ctx.data().runtime.config().uploads.as_ref())
    else {
        return Err("This server does not take pictures.".into());
    };
    if picture.size as usize > actors::uploads::MAX_BYTES {
        return Err(crate::uploads::sentence(
            &crate::uploads::FetchError::TooBig.to_string(),
        ));
    }
    let bytes = crate::uploads::download(&ctx.data().client, &picture.url)
        .await
        .map_err(|e| crate::uploads::sentence(&e.to_string()))?;
    uploads
        .store(key, &bytes)
        .await
        .map(|u| u.id)
        .map_err(|e| crate::uploads::sentence(&e.to_string()))
}

/// Whether the member who sent the interaction may manage the server, as
/// Discord computed their permissions for it (administrators included).
fn manages_guild(ctx: &Ctx<'_>) -> bool {
    let poise::Context::Application(a) = ctx else {
        return false;
    };
    a.interaction
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild() || p.administrator())
}

/// The player a context speaks for: its guild and author.
fn player(ctx: &Ctx<'_>) -> Option<UserKey> {
    let guild = i64::try_from(ctx.guild_id()?.get()).ok()?;
    let user = i64::try_from(ctx.author().id.get()).ok()?;
    Some(UserKey::new(
        GuildId::new(guild).ok()?,
        UserId::new(user).ok()?,
    ))
}

/// Logged once here, where handled; the player gets a short apology.
async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::warn!(command = ctx.command().name, error = %error, "Discord command failed");
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %e, "could not report a Discord error");
            }
        }
    }
}

/// Shard connections, as metrics. A shard's first READY is its
/// connection; every later READY (a new session) or RESUMED (the old one
/// picked up) means it had lost the gateway and came back: a reconnect.
/// Stage changes alone miss reconnects, which serenity partly performs
/// outside its stage-change reporting.
#[derive(Default)]
struct ShardWatch {
    connected_before: std::sync::Mutex<std::collections::HashSet<u32>>,
}

impl ShardWatch {
    fn connected(&self, shard: u32, resumed: bool) {
        let first = self
            .connected_before
            .lock()
            .map(|mut seen| seen.insert(shard))
            .unwrap_or(false);
        let label = shard.to_string();
        metrics::gauge!(m::DISCORD_SHARD_CONNECTED, "shard" => label.clone()).set(1.0);
        let reconnects = metrics::counter!(m::DISCORD_RECONNECTS_TOTAL, "shard" => label);
        if first && !resumed {
            reconnects.increment(0);
            tracing::info!(shard, "Discord shard connected");
        } else {
            reconnects.increment(1);
            tracing::info!(shard, resumed, "Discord shard reconnected");
        }
    }
}

#[serenity::async_trait]
impl serenity::EventHandler for ShardWatch {
    async fn ready(&self, ctx: serenity::Context, _ready: serenity::Ready) {
        self.connected(ctx.shard_id.0, false);
    }

    async fn resume(&self, ctx: serenity::Context, _: serenity::ResumedEvent) {
        self.connected(ctx.shard_id.0, true);
    }

    async fn shard_stage_update(
        &self,
        _ctx: serenity::Context,
        event: serenity::ShardStageUpdateEvent,
    ) {
        if !matches!(event.new, serenity::ConnectionStage::Connected) {
            metrics::gauge!(m::DISCORD_SHARD_CONNECTED, "shard" => event.shard_id.0.to_string())
                .set(0.0);
        }
    }
}

async fn sample_latency(shards: Arc<serenity::ShardManager>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        for (id, runner) in shards.runners.lock().await.iter() {
            let shard = id.0.to_string();
            let connected = matches!(runner.stage, serenity::ConnectionStage::Connected);
            metrics::gauge!(m::DISCORD_SHARD_CONNECTED, "shard" => shard.clone())
                .set(if connected { 1.0 } else { 0.0 });
            if let Some(latency) = runner.latency {
                metrics::gauge!(m::DISCORD_SHARD_LATENCY_SECONDS, "shard" => shard)
                    .set(latency.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ShardRange;

    #[test]
    fn a_shard_range_is_within_its_total() {
        assert_eq!(
            ShardRange::parse("0-3", 16),
            Ok(ShardRange {
                first: 0,
                last: 3,
                total: 16
            })
        );
        assert_eq!(
            ShardRange::parse("5", 16),
            Ok(ShardRange {
                first: 5,
                last: 5,
                total: 16
            })
        );
        for (range, total) in [("3-1", 16), ("0-16", 16), ("a-b", 16), ("0-0", 0), ("-", 4)] {
            let refused = ShardRange::parse(range, total).unwrap_err();
            assert!(
                refused.contains("--discord-shard"),
                "{range} of {total}: {refused}"
            );
        }
    }
}
