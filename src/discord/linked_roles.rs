//! Discord's own Linked Roles, for guilds that prefer them to role rules:
//! a guild's admin makes a role that needs, say, "Level at least 10" in
//! kokoro's connection, and Discord gives it to members who linked.
//!
//! kokoro registers its metadata (level, roleplay level, SSR characters,
//! VIP) with the application at start. A member links from Discord's
//! "Linked Roles" menu, which opens kokoro's `GET /discord/linked-roles`:
//! kokoro sends them to Discord's OAuth2 consent (scopes `identify` and
//! `role_connections.write`) and back to `/discord/linked-roles/callback`,
//! where it trades the code for the member's tokens, keeps them, and
//! writes the member's connection from their player in the configured
//! guild. Every linked member's connection is written again every
//! `refresh` (their tokens refreshed when they expire), so it follows the
//! game.
//!
//! The client secret and the members' tokens are secrets: read from the
//! environment and kept in the database, never logged.

use std::sync::Arc;
use std::time::Duration;

use actors::store::RoleConnection;
use actors::{Command, CommandKind, GuildId, Runtime, UserId, UserKey};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

/// The state cookie that ties a callback to the browser that started it.
const STATE_COOKIE: &str = "kokoro_linked_roles_state";
/// Longest a member may take on Discord's consent page.
const STATE_MAX_AGE_SECS: u64 = 600;

/// How kokoro's Linked Roles are set up.
#[derive(Clone)]
pub struct LinkedRolesConfig {
    pub application_id: u64,
    /// `DISCORD_CLIENT_SECRET`.
    pub client_secret: String,
    /// The guild whose players' state the connection shows.
    pub guild: GuildId,
    /// Where members' browsers reach kokoro (`--public-url`).
    pub public_url: String,
    /// How often every linked member's connection is written again.
    pub refresh: Duration,
}

pub struct LinkedRoles {
    runtime: Arc<Runtime>,
    config: LinkedRolesConfig,
    client: reqwest::Client,
    /// `https://discord.com/api/v10`, or a proxy's.
    api: String,
    /// Where the consent page is (`https://discord.com/oauth2/authorize`).
    authorize: String,
    /// `Bot <token>`.
    bot: String,
}

/// Why a link failed; the member reads it as the JSON error body.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the link expired or came from another browser; start again from Discord")]
    BadState,
    #[error("Discord did not accept the code: {0}")]
    Exchange(String),
    #[error("Discord did not answer: {0}")]
    Unreachable(String),
    #[error("kokoro could not keep the link: {0}")]
    Storage(String),
}

/// The metadata kokoro registers: what a guild's linked role can require.
pub fn metadata() -> Value {
    json!([
        {"key": "level", "name": "Level", "description": "Player level at least", "type": 2},
        {"key": "rp_level", "name": "Roleplay level", "description": "Highest roleplay character's level at least", "type": 2},
        {"key": "ssr", "name": "SSR characters", "description": "SSR characters collected at least", "type": 2},
        {"key": "vip", "name": "VIP", "description": "Is a VIP", "type": 7},
    ])
}

impl LinkedRoles {
    pub fn new(
        runtime: Arc<Runtime>,
        config: LinkedRolesConfig,
        token: &str,
        proxy: Option<&str>,
    ) -> Self {
        let (api, authorize) = match proxy {
            Some(p) => {
                let p = p.trim_end_matches('/');
                (format!("{p}/api/v10"), format!("{p}/oauth2/authorize"))
            }
            None => (
                "https://discord.com/api/v10".to_owned(),
                "https://discord.com/oauth2/authorize".to_owned(),
            ),
        };
        Self {
            runtime,
            config,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            api,
            authorize,
            bot: format!("Bot {token}"),
        }
    }

    fn redirect_uri(&self) -> String {
        format!(
            "{}/discord/linked-roles/callback",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// Registers the metadata with the application, with backoff until
    /// Discord takes it.
    pub async fn register(self: Arc<Self>) {
        let url = format!(
            "{}/applications/{}/role-connections/metadata",
            self.api, self.config.application_id
        );
        let mut backoff = crate::doors::Backoff::default();
        loop {
            let sent = self
                .client
                .put(&url)
                .header("Authorization", &self.bot)
                .json(&metadata())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!("Linked Roles metadata registered");
                    return;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "Discord refused the Linked Roles metadata; retrying")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not reach Discord to register the Linked Roles metadata; retrying")
                }
            }
            backoff.wait().await;
        }
    }

    /// Discord's consent page for `state`.
    /// `None` if the consent page's address (from `--discord-proxy`) is
    /// not a URL.
    pub fn authorize_url(&self, state: &str) -> Option<String> {
        let params = [
            ("client_id", self.config.application_id.to_string()),
            ("redirect_uri", self.redirect_uri()),
            ("response_type", "code".to_owned()),
            ("scope", "role_connections.write identify".to_owned()),
            ("state", state.to_owned()),
            ("prompt", "consent".to_owned()),
        ];
        reqwest::Url::parse_with_params(&self.authorize, &params)
            .ok()
            .map(String::from)
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Value, LinkError> {
        let resp = self
            .client
            .post(format!("{}/oauth2/token", self.api))
            .form(form)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("refused");
            return Err(LinkError::Exchange(format!("{status}: {why}")));
        }
        Ok(body)
    }

    fn connection(
        &self,
        user: i64,
        tokens: &Value,
        now_ms: i64,
    ) -> Result<RoleConnection, LinkError> {
        let access = tokens["access_token"]
            .as_str()
            .ok_or_else(|| LinkError::Exchange("no access token".into()))?;
        let refresh = tokens["refresh_token"].as_str().unwrap_or_default();
        let expires_in = tokens["expires_in"]
            .as_i64()
            .unwrap_or(0)
            .clamp(0, 365 * 86_400);
        Ok(RoleConnection {
            user_id: user,
            access_token: access.to_owned(),
            refresh_token: refresh.to_owned(),
            expires_ms: now_ms.saturating_add(expires_in.saturating_mul(1000)),
            linked_ms: now_ms,
        })
    }

    /// Trades a consent's code for the member's tokens, keeps them, and
    /// writes their connection. The member's id.
    pub async fn link(&self, code: &str) -> Result<UserId, LinkError> {
        let secret = self.config.client_secret.as_str();
        let id = self.config.application_id.to_string();
        let redirect = self.redirect_uri();
        let tokens = self
            .token(&[
                ("client_id", &id),
                ("client_secret", secret),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect),
            ])
            .await?;
        let access = tokens["access_token"].as_str().unwrap_or_default();
        let me: Value = self
            .client
            .get(format!("{}/users/@me", self.api))
            .bearer_auth(access)
            .send()
            .await
            .map_err(|e| LinkError::Unreachable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|e| LinkError::Exchange(e.without_url().to_string()))?;
        let user = me["id"]
            .as_str()
            .and_then(|s| s.parse::<UserId>().ok())
            .ok_or_else(|| LinkError::Exchange("Discord named no user".into()))?;
        let now = actors::domain::day::unix_ms();
        let connection = self.connection(user.get(), &tokens, now)?;
        self.runtime
            .store()
            .save_role_connection(&connection)
            .await
            .map_err(|e| LinkError::Storage(e.to_string()))?;
        self.push(&connection).await;
        Ok(user)
    }

    /// What the connection says of a member: their player's facts.
    async fn facts(&self, user: UserId) -> Option<Value> {
        let kind = CommandKind::parse("roles", &json!({})).ok()?;
        let key = UserKey::new(self.config.guild, user);
        let reply = self
            .runtime
            .dispatch(Command {
                id: None,
                key,
                kind,
            })
            .await;
        if !reply.ok {
            return None;
        }
        let f = &reply.data["facts"];
        let n = |v: &Value| v.as_i64().unwrap_or(0).to_string();
        Some(json!({
            "level": n(&f["level"]),
            "rp_level": n(&f["rp_level"]),
            "ssr": n(&f["ssr"]),
            "vip": if f["vip"] == json!(true) { "1" } else { "0" },
        }))
    }

    /// Writes one member's connection; `false` if it was not written.
    async fn push(&self, c: &RoleConnection) -> bool {
        let Ok(user) = UserId::new(c.user_id) else {
            return false;
        };
        let Some(metadata) = self.facts(user).await else {
            return false;
        };
        let body = json!({ "platform_name": "kokoro", "metadata": metadata });
        let url = format!(
            "{}/users/@me/applications/{}/role-connection",
            self.api, self.config.application_id
        );
        let sent = self
            .client
            .put(url)
            .bearer_auth(&c.access_token)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(status = %r.status(), "Discord refused a member's role connection");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "could not reach Discord to write a role connection");
                false
            }
        }
    }

    /// Writes every linked member's connection again, refreshing tokens
    /// that expired, every `refresh`, until the process stops.
    pub async fn refresh_every(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.refresh).await;
            let linked = match self.runtime.store().role_connections().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the linked members");
                    continue;
                }
            };
            for mut c in linked {
                let now = actors::domain::day::unix_ms();
                if c.expires_ms <= now.saturating_add(60_000) && !c.refresh_token.is_empty() {
                    let id = self.config.application_id.to_string();
                    let refreshed = self
                        .token(&[
                            ("client_id", &id),
                            ("client_secret", &self.config.client_secret),
                            ("grant_type", "refresh_token"),
                            ("refresh_token", &c.refresh_token),
                        ])
                        .await
                        .and_then(|t| self.connection(c.user_id, &t, now));
                    match refreshed {
                        Ok(mut fresh) => {
                            fresh.linked_ms = c.linked_ms;
                            if let Err(e) = self.runtime.store().save_role_connection(&fresh).await
                            {
                                tracing::warn!(error = %e, "could not keep a refreshed role connection");
                            }
                            c = fresh;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not refresh a member's Discord tokens; they must link again");
                            continue;
                        }
                    }
                }
                self.push(&c).await;
            }
        }
    }
}

fn error(status: StatusCode, code: actors::ErrorCode, message: impl Into<String>) -> Response {
    crate::http::refuse(status, "", code, message)
}

/// `GET /discord/linked-roles`: to Discord's consent, with a fresh state
/// kept in a cookie.
async fn start(State(lr): State<Arc<LinkedRoles>>) -> Response {
    let state = format!("{:032x}", rand::random::<u128>());
    let secure = if lr.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{STATE_COOKIE}={state}; Path=/discord/linked-roles; Max-Age={STATE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}"
    );
    let Some(consent) = lr.authorize_url(&state) else {
        tracing::error!("Discord's consent page address is not a URL (check --discord-proxy)");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            actors::ErrorCode::Internal,
            "kokoro cannot reach Discord's consent page; the operator is told",
        );
    };
    (
        StatusCode::FOUND,
        [(header::LOCATION, consent), (header::SET_COOKIE, cookie)],
    )
        .into_response()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{STATE_COOKIE}="))
                .map(str::to_owned)
        })
}

/// `GET /discord/linked-roles/callback`: the member back from Discord.
async fn callback(
    State(lr): State<Arc<LinkedRoles>>,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use actors::ErrorCode as E;
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            E::InvalidArgument,
            "the callback needs code and state",
        );
    };
    if let Some(e) = q.error {
        let shown: String = e.chars().take(60).collect();
        return error(
            StatusCode::BAD_REQUEST,
            E::InvalidArgument,
            format!("Discord did not link: {shown}"),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return error(
            StatusCode::BAD_REQUEST,
            E::InvalidArgument,
            "the callback needs code and state",
        );
    };
    if code.len() > 200 || cookie_state(&headers).is_none_or(|c| c != state) {
        return error(
            StatusCode::BAD_REQUEST,
            E::InvalidArgument,
            LinkError::BadState.to_string(),
        );
    }
    match lr.link(&code).await {
        Ok(user) => {
            tracing::info!(%user, "a member linked their role connection");
            let page = "<!doctype html><title>kokoro</title><p>Linked. You can close this page and go back to Discord.</p>";
            let clear = format!("{STATE_COOKIE}=; Path=/discord/linked-roles; Max-Age=0");
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                    (header::SET_COOKIE, clear),
                ],
                page,
            )
                .into_response()
        }
        Err(e @ LinkError::Exchange(_)) => {
            error(StatusCode::BAD_REQUEST, E::InvalidArgument, e.to_string())
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            E::StorageUnavailable,
            e.to_string(),
        ),
    }
}

/// The two routes, merged into kokoro's HTTP API.
pub fn routes(lr: Arc<LinkedRoles>) -> Router {
    Router::new()
        .route("/discord/linked-roles", get(start))
        .route("/discord/linked-roles/callback", get(callback))
        .with_state(lr)
}
