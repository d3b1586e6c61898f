//! Where the load goes: the runtime in this process (no network; the same
//! dispatch path the HTTP handler calls), or a running `kokoro serve` over
//! HTTP. Both answer with the same `Reply`.

use std::sync::Arc;
use std::time::Duration;

use actors::{Command, CommandKind, ErrorCode, Reply, Runtime};

use super::scenario::Scenario;
use super::workload::Workload;
use serde_json::{json, Value};

pub enum Target {
    InProcess(Arc<Runtime>),
    Http {
        client: reqwest::Client,
        url: String,
        token: String,
        /// For setting the scenario's guild settings before the run.
        admin_token: Option<String>,
    },
    /// The baseline: one transaction per command.
    Conventional(Box<super::baseline::Conventional>),
}

impl Target {
    pub fn http(base: &str, token: String, admin_token: Option<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Self::Http {
            client,
            url: format!("{}/v1/commands", base.trim_end_matches('/')),
            token,
            admin_token,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Self::InProcess(rt) => format!("in-process ({:?})", rt.store().backend()),
            Self::Http { url, .. } => format!("HTTP {url}"),
            Self::Conventional(c) => format!(
                "baseline ({:?}, one transaction per command)",
                c.store.backend()
            ),
        }
    }

    pub async fn send(&self, command: &Command) -> Reply {
        match self {
            Self::InProcess(rt) => rt.dispatch(command.clone()).await,
            Self::Conventional(c) => c.send(command).await,
            Self::Http {
                client, url, token, ..
            } => post(client, url, token, command).await,
        }
    }

    /// Sets the scenario's guild settings in every guild, as an admin
    /// would, before the load starts.
    pub async fn configure(&self, scenario: &Scenario) -> anyhow::Result<()> {
        if scenario.guild_settings.is_empty() {
            return Ok(());
        }
        for g in 0..scenario.guilds {
            // An admin who is not one of the simulated players.
            let admin = Workload::key(g, scenario.users);
            for (key, value) in &scenario.guild_settings {
                let kind =
                    CommandKind::parse("config_set", &json!({ "key": key, "value": value }))?;
                let command = Command {
                    id: None,
                    key: admin,
                    kind,
                };
                let reply = match self {
                    Self::InProcess(rt) => rt.dispatch_admin(command).await,
                    // Built with the settings already.
                    Self::Conventional(_) => return Ok(()),
                    Self::Http {
                        client,
                        url,
                        admin_token,
                        ..
                    } => {
                        let token = admin_token.as_deref().ok_or_else(|| {
                            anyhow::anyhow!(
                                "this scenario sets guild settings: set KOKORO_ADMIN_TOKEN to the server's admin token"
                            )
                        })?;
                        post(client, url, token, &command).await
                    }
                };
                anyhow::ensure!(reply.ok, "setting {key} in guild {}: {reply:?}", g + 1);
            }
        }
        Ok(())
    }
}

async fn post(client: &reqwest::Client, url: &str, token: &str, command: &Command) -> Reply {
    let body = request_body(command);
    let name = command.kind.name();
    match client.post(url).bearer_auth(token).json(&body).send().await {
        Ok(resp) => resp.json::<Reply>().await.unwrap_or_else(|e| {
            Reply::error(name, ErrorCode::Internal, format!("unreadable reply: {e}"))
        }),
        Err(e) => Reply::error(
            name,
            ErrorCode::StorageUnavailable,
            format!("transport: {e}"),
        ),
    }
}

/// The JSON body of `POST /v1/commands` for a command.
pub fn request_body(c: &Command) -> Value {
    json!({
        "id": c.id.as_ref().map(|i| i.as_str()),
        "guild_id": c.key.guild.to_string(),
        "user_id": c.key.user.to_string(),
        "command": c.kind.name(),
        "args": c.kind.args(),
    })
}

/// Only loopback unless the operator says otherwise: a load test aimed at
/// someone else's server by a typo is an attack.
pub fn check_loopback(base: &str, allow_remote: bool) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(base)?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback || allow_remote,
        "{host} is not a loopback address; pass --allow-remote to load-test another machine"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_the_flag() {
        assert!(check_loopback("http://127.0.0.1:8080", false).is_ok());
        assert!(check_loopback("http://localhost:8080", false).is_ok());
        assert!(check_loopback("http://[::1]:8080", false).is_ok());
        assert!(check_loopback("http://10.0.0.5:8080", false).is_err());
        assert!(check_loopback("http://example.com", false).is_err());
        assert!(check_loopback("http://10.0.0.5:8080", true).is_ok());
    }
}
