//! `kokoro serve`: open storage, start the runtime, serve the HTTP API until
//! SIGINT/SIGTERM. Everything acknowledged is already durable, so shutdown
//! only has to stop taking new work.

use std::sync::Arc;

use actors::store::Store;
use actors::Runtime;
use anyhow::Context;

use crate::http::{router, AppState};
use crate::settings::{admin_token, api_token, check_exposure, discord_token, ServeArgs};

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let files = args.log_dir.clone().map(|dir| crate::telemetry::LogFiles {
        dir,
        keep_days: args.log_retention_days as usize,
    });
    let _log_guard = crate::telemetry::init_logging(
        args.log_format,
        files.as_ref(),
        args.otlp_endpoint.as_deref(),
    )?;
    let token = api_token();
    check_exposure(args.http, token.as_deref())?;
    let admin = admin_token();
    if admin.as_deref().is_some_and(|a| a.len() < 16) {
        anyhow::bail!("KOKORO_ADMIN_TOKEN must be at least 16 characters");
    }
    if admin.is_some() && admin == token {
        anyhow::bail!("KOKORO_ADMIN_TOKEN must differ from KOKORO_API_TOKEN");
    }
    let mut config = args.runtime.runtime_config(&args.storage.data_dir)?;
    config.cluster = args.cluster.cluster_config();
    let shards = match (&args.discord_shards, args.discord_shard_total) {
        (Some(range), Some(total)) => {
            Some(crate::discord::ShardRange::parse(range, total).map_err(|e| anyhow::anyhow!(e))?)
        }
        _ => None,
    };
    let webhook_secret = crate::settings::telegram_webhook_secret()
        .map(crate::telegram::WebhookSecret::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(cluster) = &config.cluster {
        // Not yet cluster-wide: each would run once per node.
        let alone = [("--linked-roles-guild", args.linked_roles_guild.is_some())];
        if let Some((what, _)) = alone.iter().find(|(_, set)| *set) {
            anyhow::bail!(
                "{what} is not served in cluster mode yet (--nats-url): run it on a single-node kokoro"
            );
        }
        // Telegram may send an update to any node, with the one secret the
        // last setWebhook named.
        if args.telegram_webhook.is_some() && webhook_secret.is_none() {
            anyhow::bail!(
                "--telegram-webhook in cluster mode needs KOKORO_TELEGRAM_WEBHOOK_SECRET, the same on every node (any node may be sent an update)"
            );
        }
        // A job rendered on one node is shown by another (its player's),
        // and a link one node signs is opened on any.
        if args.runtime.renderer.starts_with("comfyui:")
            && crate::settings::result_secret().is_none()
        {
            anyhow::bail!(
                "a ComfyUI renderer in cluster mode needs KOKORO_RESULT_SECRET, the same on every node (so every node opens the result links any node signs), and every node's data dir results/ on one shared volume"
            );
        }
        // Every node running every shard would answer each event once per node.
        if discord_token().is_some() {
            match shards {
                None => anyhow::bail!(
                    "in cluster mode each node runs its own Discord shards: give --discord-shards A-B and --discord-shard-total N"
                ),
                Some(r) if cluster.slots % r.total != 0 => anyhow::bail!(
                    "--discord-shard-total {} must divide --slots {}, so that a shard's guilds are whole slots",
                    r.total,
                    cluster.slots
                ),
                Some(_) => {}
            }
        }
    }
    crate::telemetry::prometheus();
    crate::telemetry::spawn_upkeep();

    let store = Store::open(
        args.storage.database_url.as_deref(),
        &args.storage.data_dir,
        &args.storage.store_options(),
    )
    .await
    .context("opening storage")?;
    let backend = store.backend();
    let backup_dir = args
        .backup_dir
        .clone()
        .unwrap_or_else(|| crate::ops::default_dir(&args.storage.data_dir));
    crate::ops::refuse_if_damaged(&store, &backup_dir).await?;
    if let Some(kept) = crate::ops::backup_before_migrating(&store, &backup_dir).await? {
        tracing::info!(backup = %kept.display(), "the store was backed up before migrating");
    }
    let backups = store.clone();
    let runtime = Arc::new(
        Runtime::start(store, config.clone())
            .await
            .context("starting the runtime")?,
    );
    let migration = runtime.store().migration_version().await.ok().flatten();
    if let (Some(url), Some(cluster)) = (&args.cluster.nats_url, runtime.cluster()) {
        let c = cluster.config();
        let route = crate::cluster::NatsRoute::connect(url, &c.name, &c.node_id).await?;
        runtime.set_forward(route.clone());
        runtime.set_queue_link(route.clone());
        tokio::spawn(route.clone().serve_slots(Arc::downgrade(&runtime)));
        if !runtime.queues().is_empty() {
            tokio::spawn(route.clone().tell_depths(Arc::downgrade(&runtime)));
            tokio::spawn(route.hear_depths(Arc::downgrade(&runtime)));
        }
        tracing::info!(
            cluster = %c.name,
            node = %c.node_id,
            slots = c.slots,
            lease_ttl = ?c.lease_ttl,
            serving = cluster.served().len(),
            nats = %crate::render::describe(url),
            "cluster mode"
        );
    }
    let links = crate::results::ResultLinks::new(
        &args.storage.data_dir,
        crate::settings::result_secret().as_deref(),
        args.public_url.as_deref().unwrap_or(""),
    )
    .context("keeping the key that signs result links")?;
    let doors = crate::doors::Doors::default();
    let discord = discord_token();
    let _discord = match &discord {
        Some(t) => Some(
            crate::discord::start(
                runtime.clone(),
                t,
                &crate::discord::Options {
                    proxy: args.discord_proxy.clone(),
                    roleplay_posts: args.discord_roleplay_posts,
                    verification: args.discord_verification,
                    verify_look_every: None,
                    doors: doors.clone(),
                    shards,
                },
                links.clone(),
            )
            .await
            .context("starting the Discord front door")?,
        ),
        None => None,
    };

    if !args.backup_every.is_zero() {
        tokio::spawn(crate::ops::scheduled(
            backups,
            backup_dir,
            args.backup_every,
            args.backup_keep as usize,
        ));
    }
    tokio::spawn(crate::ops::housekeeping(
        runtime.store().clone(),
        runtime.config().uploads.clone(),
        args.storage.data_dir.join("results"),
        crate::ops::Retention {
            results: days(args.results_retention_days),
            commands: days(args.commands_retention_days),
            jobs: days(args.jobs_retention_days),
        },
    ));

    let linked_roles = linked_roles(&args, &runtime, discord.as_deref())?;

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        storage = ?backend,
        data_dir = %args.storage.data_dir.display(),
        migration,
        http = %addr,
        api_token = if token.is_some() { "set" } else { "unset (/v1 answers 401)" },
        admin_token = if admin.is_some() { "set" } else { "unset (admin commands answer 403)" },
        log_dir = args.log_dir.as_ref().map(|d| d.display().to_string()),
        traces = args.otlp_endpoint.as_deref().map(crate::render::describe),
        discord = match (&discord, &args.discord_proxy) {
            (None, _) => "off (DISCORD_TOKEN unset)".to_owned(),
            (Some(_), None) => "on".to_owned(),
            (Some(_), Some(p)) => format!("on, via proxy {}", crate::render::describe(p)),
        },
        renderer = %crate::render::describe(&args.runtime.renderer),
        limits = ?config,
        "kokoro started"
    );
    // A line on stdout that scripts and tests wait for (the port may be 0 → chosen).
    println!("kokoro listening on http://{addr}");

    let telegram = match crate::settings::telegram_token() {
        Some(t) => Some(
            crate::telegram::start(
                runtime.clone(),
                &t,
                &crate::telegram::Options {
                    api_url: args.telegram_api_url.clone(),
                    webhook: args.telegram_webhook.clone(),
                    webhook_secret: webhook_secret.clone(),
                    admins: args.telegram_admins.clone(),
                    status_every: None,
                    reconcile_every: None,
                    doors: doors.clone(),
                },
                links.clone(),
            )
            .await
            .context("starting the Telegram front door")?,
        ),
        None => None,
    };
    let mut app = router(AppState {
        runtime: runtime.clone(),
        token: token.map(Arc::from),
        admin_token: admin.map(Arc::from),
        payment_secret: crate::settings::payment_secret().map(Arc::from),
        results: Some(links),
        doors,
    });
    if let Some(webhook) = telegram.as_ref().and_then(|t| t.router.clone()) {
        app = app.merge(webhook);
    }
    if let Some(linked) = linked_roles {
        app = app.merge(crate::discord::linked_roles::routes(linked));
    }
    crate::http::serve(
        listener,
        app,
        std::time::Duration::from_secs(args.http_header_timeout_secs),
        handover_then(shutdown_signal(), runtime.clone()),
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("shutting down");
    if let Some(t) = telegram {
        t.task.abort();
        let _ = t.task.await;
    }
    if let Some(bot) = _discord {
        bot.abort();
        // The bot's task holds a handle to the runtime; let the abort land.
        let _ = bot.await;
    }
    if let Some(rt) = Arc::into_inner(runtime) {
        rt.shutdown().await;
    }
    Ok(())
}

/// Cluster mode: once `signal` comes, hands this node's slots over (the
/// HTTP API still serving meanwhile, forwarding to their new owners), and
/// only then lets the HTTP server stop.
async fn handover_then(signal: impl std::future::Future<Output = ()>, runtime: Arc<Runtime>) {
    signal.await;
    if let Some(c) = runtime.cluster() {
        tracing::info!("handing this node's slots over before stopping");
        c.leave().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn days(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 86_400)
}

/// Discord's Linked Roles, when every setting they need is there: its
/// metadata registered and linked members kept current, both in the
/// background. Some set and some not is refused, naming what is missing.
fn linked_roles(
    args: &ServeArgs,
    runtime: &Arc<actors::Runtime>,
    token: Option<&str>,
) -> Result<Option<Arc<crate::discord::linked_roles::LinkedRoles>>, crate::settings::SettingsError>
{
    let secret = crate::settings::discord_client_secret();
    let given = [
        ("DISCORD_TOKEN", token.is_some()),
        ("DISCORD_CLIENT_SECRET", secret.is_some()),
        (
            "--discord-application-id",
            args.discord_application_id.is_some(),
        ),
        ("--linked-roles-guild", args.linked_roles_guild.is_some()),
        ("--public-url", args.public_url.is_some()),
    ];
    // Only the last three ask for Linked Roles; a bot token alone does not.
    if !given[1..4].iter().any(|(_, set)| *set) {
        return Ok(None);
    }
    let missing: Vec<&str> = given
        .iter()
        .filter(|(_, set)| !set)
        .map(|(n, _)| *n)
        .collect();
    let guild = args
        .linked_roles_guild
        .and_then(|g| actors::GuildId::new(g).ok());
    let (Some(token), Some(secret), Some(application_id), Some(guild), Some(public_url)) = (
        token,
        secret,
        args.discord_application_id,
        guild,
        args.public_url.clone(),
    ) else {
        let missing = if missing.is_empty() {
            "a valid --linked-roles-guild".to_owned()
        } else {
            missing.join(", ")
        };
        return Err(crate::settings::SettingsError::LinkedRoles(missing));
    };
    let config = crate::discord::linked_roles::LinkedRolesConfig {
        application_id,
        client_secret: secret,
        guild,
        public_url,
        refresh: std::time::Duration::from_secs(args.linked_roles_refresh_secs),
    };
    let linked = Arc::new(crate::discord::linked_roles::LinkedRoles::new(
        runtime.clone(),
        config,
        token,
        args.discord_proxy.as_deref(),
    ));
    tokio::spawn(linked.clone().register());
    tokio::spawn(linked.clone().refresh_every());
    Ok(Some(linked))
}
