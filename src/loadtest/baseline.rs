//! The baseline a run is compared with: the same scenario, on a fresh store
//! of the same kind, answered the conventional way (one database transaction
//! per command, rows locked throughout). Same rules, same SQL, same load.

use std::sync::Arc;

use actors::game::generation::GenerationCommand;
use actors::game::guild::settings::{GuildSettings, Key};
use actors::{Command, CommandKind, Reply, RuntimeConfig, Store};

use super::driver;
use super::report::{Latency, Report};
use super::scenario::Scenario;
use super::target::Target;
use crate::scratch::Scratch;

/// A store answering each command in its own transaction.
pub struct Conventional {
    pub store: Store,
    pub config: RuntimeConfig,
    /// Every guild's settings: the scenario's, set before the run.
    pub guild: GuildSettings,
}

impl Conventional {
    pub async fn send(&self, command: &Command) -> Reply {
        if let Some(reply) =
            actors::runtime::answer_without_actor(&self.store, &self.config, command).await
        {
            return reply;
        }
        if let CommandKind::Generation(
            GenerationCommand::Generate { .. }
            | GenerationCommand::Jobs
            | GenerationCommand::Cancel { .. },
        ) = command.kind
        {
            // The baseline models a bot without queue actors: it has nothing
            // to run jobs with, so it must not charge for them.
            return Reply::error(
                command.kind.name(),
                actors::ErrorCode::Disabled,
                "the conventional baseline has no generation queues",
            );
        }
        let ctx = actors::game::Context {
            now_ms: (self.config.clock)(),
            catalogue: &self.config.catalogue,
            roster: &self.config.roster,
            generation: &self.config.generation,
            guild: &self.guild,
            starting_gold: self.config.starting_gold,
            starting_credits: self.config.starting_credits,
            starting_gems: self.config.starting_gems,
            fresh_id: rand::random(),
            draw: rand::random(),
        };
        let name = command.kind.name();
        match self.store.conventional(command, &ctx).await {
            Ok(reply) => reply,
            Err(e) => Reply::error(name, actors::ErrorCode::StorageUnavailable, e.to_string()),
        }
    }
}

pub struct Summary {
    pub rate: f64,
    pub latency: Latency,
}

pub async fn run(scenario: &Scenario, database_url: Option<&str>) -> anyhow::Result<Summary> {
    let scratch = Scratch::new(database_url).await?;
    let store = scratch.store(&Default::default()).await?;
    store.migrate().await?;
    let config = RuntimeConfig {
        starting_gold: scenario.starting_gold,
        starting_gems: scenario.starting_gems,
        ..Default::default()
    };
    let mut guild = GuildSettings::default();
    for (k, v) in &scenario.guild_settings {
        let key = Key::parse(k).ok_or_else(|| anyhow::anyhow!("unknown setting {k:?}"))?;
        guild.set(key, v).map_err(anyhow::Error::msg)?;
    }
    let target = Arc::new(Target::Conventional(Box::new(Conventional {
        store: store.clone(),
        config,
        guild,
    })));
    let driven = driver::drive(target.clone(), scenario, false).await;
    let report = Report::build(&scenario.name, target.describe(), &driven);
    drop(target);
    store.close().await;
    scratch.cleanup().await;
    Ok(Summary {
        rate: report.rate,
        latency: report.latency,
    })
}
