//! The HTTP front door (axum): `POST /v1/commands` with a bearer token, plus
//! `/healthz`, `/readyz` and `/metrics`. It parses and validates the request
//! into a `Command`, calls the one dispatch path, and maps the reply's error
//! code to an HTTP status. Bad input never reaches the runtime.

use std::sync::Arc;

use actors::command::ParseError;
use actors::{
    Command, CommandId, CommandKind, ErrorCode, GuildId, Reply, Runtime, UserId, UserKey,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    /// `None`: every `/v1` route answers 401 (unless the admin token is sent).
    pub token: Option<Arc<str>>,
    /// `KOKORO_ADMIN_TOKEN`: sent as the bearer token, it allows admin
    /// commands too. `None`: admin commands are refused with 403.
    pub admin_token: Option<Arc<str>>,
    /// `KOKORO_PAYMENT_SECRET`: signs the payment webhook. `None`: it answers 404.
    pub payment_secret: Option<Arc<str>>,
    /// Signs and serves links to jobs' results. `None`: results are shown
    /// as their paths under the data dir.
    pub results: Option<crate::results::ResultLinks>,
    /// The front doors this process runs, and whether each is up.
    pub doors: crate::doors::Doors,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/commands", post(command))
        .route("/v1/payments/webhook", post(crate::payments::webhook))
        .route(
            "/v1/uploads",
            post(crate::uploads::upload).layer(DefaultBodyLimit::max(crate::uploads::MAX_BODY)),
        )
        .route("/results/{file}", get(crate::results::serve))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            with_status(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such route; commands go to POST /v1/commands",
            )
        })
        .method_not_allowed_fallback(|| async {
            with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidArgument,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The fields of a `POST /v1/commands` body.
const FIELDS: &[&str] = &["id", "guild_id", "user_id", "command", "args"];

pub fn status_of(code: Option<ErrorCode>) -> StatusCode {
    match code {
        None => StatusCode::OK,
        Some(ErrorCode::InvalidArgument) => StatusCode::BAD_REQUEST,
        Some(ErrorCode::Unauthorized) => StatusCode::UNAUTHORIZED,
        Some(ErrorCode::Forbidden) => StatusCode::FORBIDDEN,
        Some(ErrorCode::UnknownCommand) => StatusCode::NOT_FOUND,
        Some(ErrorCode::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
        Some(ErrorCode::Busy | ErrorCode::StorageUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(ErrorCode::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
        Some(c) if c.is_refusal() => StatusCode::CONFLICT,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A `jobs` reply with its results as signed links.
fn linked(state: &AppState, mut reply: Reply) -> Reply {
    if let (Some(links), true) = (&state.results, reply.ok && reply.command == "jobs") {
        links.rewrite_jobs(&mut reply.data);
    }
    reply
}

fn respond(reply: Reply) -> Response {
    let status = status_of(reply.code());
    let retry = reply.code().is_some_and(ErrorCode::is_retryable);
    let mut response = (status, Json(reply)).into_response();
    if retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn reject(command: &str, code: ErrorCode, message: impl Into<String>) -> Response {
    respond(Reply::error(command, code, message))
}

/// A JSON error body under a status of the transport's own (413, 404, 405)
/// rather than the one its code maps to.
fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    refuse(status, "", code, message)
}

/// A JSON error body for `command`, under `status`: what the routes beside
/// `/v1/commands` (uploads, the payment webhook) answer when they refuse.
pub fn refuse(
    status: StatusCode,
    command: &str,
    code: ErrorCode,
    message: impl Into<String>,
) -> Response {
    (status, Json(Reply::error(command, code, message))).into_response()
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (up to 10 s). A connection that does not send
/// a request's headers within `header_timeout` (an idle one included) is
/// closed: a thousand silent connections cannot hold the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, say: wait a moment, keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        // No route of kokoro's upgrades a connection (no websockets).
        let connection = builder.serve_connection(TokioIo::new(socket), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not an error of ours.
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_token(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(want) = token else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same_token(given.as_bytes(), want.as_bytes()))
}

/// Who the bearer token says the caller is, if anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bearer {
    Player,
    Admin,
}

/// Whether the bearer token allows calling `/v1` at all (either token).
pub fn may_call(headers: &HeaderMap, state: &AppState) -> bool {
    bearer(headers, state).is_some()
}

fn bearer(headers: &HeaderMap, state: &AppState) -> Option<Bearer> {
    if authorized(headers, state.admin_token.as_deref()) {
        Some(Bearer::Admin)
    } else if authorized(headers, state.token.as_deref()) {
        Some(Bearer::Player)
    } else {
        None
    }
}

/// Parses a request body into a `Command`, or the reply that refuses it.
/// Every message names the field at fault.
pub fn parse_command(body: &[u8]) -> Result<Command, Reply> {
    let refuse = |name: &str, msg: String| Reply::error(name, ErrorCode::InvalidArgument, msg);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| refuse("", format!("malformed request body: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(refuse(
            "",
            "malformed request body: expected a JSON object".into(),
        ));
    };
    if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(refuse(
            "",
            format!("unknown field {extra:?}; expected {FIELDS:?}"),
        ));
    }
    let text = |field: &str| -> Result<Option<&str>, Reply> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(refuse(
                "",
                format!("{field} must be a string (ids are decimal strings)"),
            )),
        }
    };
    let required =
        |field: &str| text(field)?.ok_or_else(|| refuse("", format!("missing field {field:?}")));
    let name = required("command")?;
    let invalid = |msg: String| Reply::error(name, ErrorCode::InvalidArgument, msg);
    let guild: GuildId = required("guild_id")?
        .parse()
        .map_err(|e| invalid(format!("guild_id {e}")))?;
    let user: UserId = required("user_id")?
        .parse()
        .map_err(|e| invalid(format!("user_id {e}")))?;
    let id = text("id")?
        .map(str::parse::<CommandId>)
        .transpose()
        .map_err(|e| invalid(format!("id {e}")))?;
    let args = obj.get("args").unwrap_or(&Value::Null);
    let kind = CommandKind::parse(name, args).map_err(|e| match e {
        ParseError::UnknownCommand(_) => {
            Reply::error(name, ErrorCode::UnknownCommand, e.to_string())
        }
        ParseError::InvalidArgument(msg) => invalid(msg),
    })?;
    Ok(Command {
        id,
        key: UserKey::new(guild, user),
        kind,
    })
}

async fn command(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(caller) = bearer(&headers, &state) else {
        return reject("", ErrorCode::Unauthorized, "missing or wrong bearer token");
    };
    // axum answers an unreadable or oversized body in plain text by itself;
    // here it gets the same JSON error body as every other refusal.
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::InvalidArgument,
                format!("the request body is over the {} KiB limit", MAX_BODY / 1024),
            )
        }
        Err(rejection) => {
            return with_status(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidArgument,
                format!("could not read the request body: {}", rejection.body_text()),
            )
        }
    };
    match parse_command(&body) {
        Ok(cmd) if caller == Bearer::Admin => {
            respond(linked(&state, state.runtime.dispatch_admin(cmd).await))
        }
        Ok(cmd) => respond(linked(&state, state.runtime.dispatch(cmd).await)),
        Err(reply) => respond(reply),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.runtime.readiness().await;
    let body = json!({
        "ready": r.is_ready(),
        "storage": r.storage.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
        "migrations": match &r.migrations { Ok(v) => json!(v), Err(e) => json!(e) },
        "backlog": r.backlog,
        "backlog_limit": r.backlog_limit,
        "stalled_ms": r.stalled_ms,
        "commits_failing": r.commits_failing,
        "renderer": match r.renderer_up {
            None => "off",
            Some(true) => "up",
            Some(false) => "unreachable: generation jobs wait",
        },
        "cluster": r.cluster.as_ref().map(|c| json!({
            "node": c.node,
            "slots_served": c.slots_served,
            "slots": c.slots,
            "routing": match &c.routing {
                Ok(()) => "up".to_owned(),
                Err(e) => format!("down: {e}; commands for other nodes' guilds answer busy"),
            },
        })),
        "doors": state
            .doors
            .all()
            .into_iter()
            .map(|(door, s)| {
                let said = match s {
                    crate::doors::DoorState::Starting => "starting".to_owned(),
                    crate::doors::DoorState::Up => "up".to_owned(),
                    crate::doors::DoorState::Down(why) => format!("down: {why}"),
                };
                (door.to_owned(), json!(said))
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    // A door that cannot reach its chat service leaves its players with
    // no answers: not ready, though the HTTP API serves on.
    let ready = r.is_ready() && state.doors.all_up();
    let mut body = body;
    body["ready"] = json!(ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = crate::telemetry::render(&state.runtime).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_code_has_its_documented_status() {
        assert_eq!(status_of(None), StatusCode::OK);
        assert_eq!(
            status_of(Some(ErrorCode::InvalidArgument)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(Some(ErrorCode::UnknownCommand)),
            StatusCode::NOT_FOUND
        );
        for c in [
            ErrorCode::InsufficientFunds,
            ErrorCode::AlreadyClaimed,
            ErrorCode::NotFound,
            ErrorCode::LimitReached,
            ErrorCode::AlreadyFinished,
            ErrorCode::NameTaken,
            ErrorCode::Disabled,
        ] {
            assert_eq!(status_of(Some(c)), StatusCode::CONFLICT, "{c:?}");
        }
        assert_eq!(
            status_of(Some(ErrorCode::Busy)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(Some(ErrorCode::RateLimited)),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn token_comparison() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, Some("secret-token-123456")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret-token-123456"),
        );
        assert!(authorized(&h, Some("secret-token-123456")));
        assert!(!authorized(&h, Some("secret-token-123457")));
        assert!(
            !authorized(&h, None),
            "no configured token: nothing is authorized"
        );
    }
}
