//! Applies the role changes players' commits decide (the runtime's
//! `RoleDesk`) on Discord: one task per guild with changes waiting, taking
//! its members one at a time in the order their changes came, so a member
//! whose roles flip back and forth ends with the roles their last state
//! implies.
//!
//! Discord's rate limits are kept per guild (the member-role routes' bucket
//! is the guild): a 429 is waited out for its `retry_after` and the same
//! change tried again; an exhausted bucket (`X-RateLimit-Remaining: 0`) is
//! waited out before the next call. Calls go straight to the REST API with
//! reqwest, so this holds behind a proxy too. A role kokoro may not give
//! (403: Manage Roles missing, or the role above the bot's) is a warning,
//! a metric and, at most once an hour per role, a note in the guild's
//! `admin_channel`; never a crash; the change is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::game::guild::role_rules::RoleChange;
use actors::telemetry as m;
use actors::{GuildId, Runtime, UserId};
use reqwest::StatusCode;

/// Longest wait a 429 may ask for before the change is dropped (Discord's
/// per-route waits are seconds; a minute means something else is wrong).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Tries of one call that fails for another reason (5xx, the network).
const TRIES: u32 = 5;
/// Tries of one call that is rate limited.
const RATE_LIMITED_TRIES: u32 = 20;
/// How often the admins hear of the same role kokoro may not give.
const NOTE_EVERY: Duration = Duration::from_secs(3600);

/// The member-role routes of Discord's REST API.
#[derive(Clone)]
pub struct RoleApi {
    client: reqwest::Client,
    /// `https://discord.com/api/v10`, or a proxy's.
    base: String,
    /// `Bot <token>`: sent, never logged.
    authorization: Arc<str>,
    /// When the admins were last told of a role, by (guild, role).
    noted: Arc<Mutex<HashMap<(GuildId, u64), Instant>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Remove,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Forbidden,
    /// The member left or the role was deleted: nothing to do.
    Gone,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Forbidden => "forbidden",
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

impl RoleApi {
    pub fn new(token: &str, proxy: Option<&str>) -> Self {
        let base = match proxy {
            Some(p) => format!("{}/api/v10", p.trim_end_matches('/')),
            None => "https://discord.com/api/v10".to_owned(),
        };
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            base,
            authorization: format!("Bot {token}").into(),
            noted: Arc::default(),
        }
    }

    /// Applies one member's change: removals first, then additions.
    async fn apply(&self, runtime: &Runtime, guild: GuildId, user: UserId, change: &RoleChange) {
        let calls = change
            .remove
            .iter()
            .map(|r| (Action::Remove, *r))
            .chain(change.add.iter().map(|r| (Action::Add, *r)));
        for (action, role) in calls {
            let outcome = self.call(action, guild, user, role).await;
            metrics::counter!(m::ROLE_CHANGES_TOTAL, "action" => action.as_str(), "outcome" => outcome.as_str())
                .increment(1);
            match outcome {
                Outcome::Forbidden => {
                    tracing::warn!(
                        %guild, role, action = action.as_str(),
                        "Discord refused a role change: the bot needs Manage Roles, and its own role must be above this one"
                    );
                    self.tell_admins(runtime, guild, role).await;
                }
                Outcome::Failed => tracing::warn!(
                    %guild, role, action = action.as_str(),
                    "a role change failed after retries; roles_sync applies it again"
                ),
                Outcome::Ok | Outcome::Gone => {}
            }
        }
    }

    /// A note in the guild's `admin_channel` (if it has one), at most once
    /// an hour per role.
    async fn tell_admins(&self, runtime: &Runtime, guild: GuildId, role: u64) {
        {
            let mut noted = self
                .noted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            match noted.get(&(guild, role)) {
                Some(at) if now.duration_since(*at) < NOTE_EVERY => return,
                _ => noted.insert((guild, role), now),
            };
        }
        let Some(channel) = runtime
            .guild_settings(guild)
            .await
            .and_then(|g| g.admin_channel)
        else {
            return;
        };
        let note = serde_json::json!({
            "content": format!(
                "⚠️ I could not change the <@&{role}> role that the role rules give. I need the \
                 **Manage Roles** permission, and my own role must be above <@&{role}>. \
                 Then `/roles_sync` a member to apply it again."
            ),
            "allowed_mentions": { "parse": [] },
        });
        let sent = self
            .client
            .post(format!("{}/channels/{channel}/messages", self.base))
            .header("Authorization", &*self.authorization)
            .json(&note)
            .send()
            .await;
        if !sent.is_ok_and(|r| r.status().is_success()) {
            tracing::warn!(%guild, channel, "could not post a note in the admin channel");
        }
    }

    async fn call(&self, action: Action, guild: GuildId, user: UserId, role: u64) -> Outcome {
        let url = format!("{}/guilds/{guild}/members/{user}/roles/{role}", self.base);
        let (mut failures, mut limited) = (0u32, 0u32);
        loop {
            let request = match action {
                Action::Add => self.client.put(&url),
                Action::Remove => self.client.delete(&url),
            };
            let sent = request
                .header("Authorization", &*self.authorization)
                .header("X-Audit-Log-Reason", "kokoro: role rules")
                .send()
                .await;
            let wait = match sent {
                Ok(resp) if resp.status().is_success() => {
                    // Keep to the bucket: an empty one is waited out now,
                    // before this guild's next call.
                    if let Some(reset) = bucket_empty_for(resp.headers()) {
                        tokio::time::sleep(reset).await;
                    }
                    return Outcome::Ok;
                }
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    limited += 1;
                    let wait = retry_after(resp).await;
                    if limited >= RATE_LIMITED_TRIES || wait > MAX_RETRY_AFTER {
                        return Outcome::Failed;
                    }
                    wait
                }
                Ok(resp) if resp.status() == StatusCode::FORBIDDEN => return Outcome::Forbidden,
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => return Outcome::Gone,
                Ok(resp) if resp.status().is_client_error() => {
                    tracing::warn!(status = %resp.status(), "Discord refused a role change");
                    return Outcome::Failed;
                }
                // 5xx or no answer: tried again with backoff.
                Ok(_) | Err(_) => {
                    failures += 1;
                    if failures >= TRIES {
                        return Outcome::Failed;
                    }
                    Duration::from_millis(250 << failures.min(6))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A 429's wait: the body's `retry_after` (seconds, fractional), else the
/// `Retry-After` header, else a second.
async fn retry_after(resp: reqwest::Response) -> Duration {
    let header = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    let body = resp
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|b| b["retry_after"].as_f64());
    let secs = body.or(header).unwrap_or(1.0);
    if secs.is_finite() && secs >= 0.0 {
        Duration::from_secs_f64(secs.min(3600.0))
    } else {
        Duration::from_secs(1)
    }
}

/// How long until an exhausted bucket refills, if the last call emptied it.
fn bucket_empty_for(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let reset = number("x-ratelimit-reset-after")?;
    (number("x-ratelimit-remaining")? <= 0.0 && reset.is_finite() && reset > 0.0)
        .then(|| Duration::from_secs_f64(reset.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// Takes the desk's changes until the process stops: one task per guild
/// with changes waiting.
pub async fn apply(runtime: Arc<Runtime>, api: RoleApi) {
    let desk = runtime.role_desk().clone();
    desk.attach();
    while let Some(guild) = desk.next_guild().await {
        let (desk, api, runtime) = (desk.clone(), api.clone(), runtime.clone());
        tokio::spawn(async move {
            while let Some((user, change)) = desk.take(guild) {
                api.apply(&runtime, guild, user, &change).await;
            }
        });
    }
}
