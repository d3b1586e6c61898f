//! `POST /v1/payments/webhook`: the payment provider tells kokoro that a
//! player bought credits, or that a payment was charged back.
//!
//! The body is signed: `X-Kokoro-Signature: sha256=<hex>`, the HMAC-SHA256
//! of the raw body with the shared secret `KOKORO_PAYMENT_SECRET` (from the
//! environment only, never logged). A bad or missing signature is 401 and
//! changes nothing. The event becomes a `payment` or `chargeback` command
//! on the player's actor whose command id is the provider's payment id, so
//! a replay (providers retry until they get a 2xx) answers the first reply
//! and adds nothing; the payment row is a guard as well.
//!
//!     {"id": "pay_123", "type": "payment.succeeded" | "payment.refunded",
//!      "guild_id": "1", "user_id": "2", "credits": 500}

use actors::{Command, CommandId, CommandKind, ErrorCode, GuildId, UserId, UserKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::http::AppState;

pub const SIGNATURE_HEADER: &str = "x-kokoro-signature";

/// The signature header's value for `body`: what a provider sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` (compared in constant time).
fn signed(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    crate::http::refuse(status, "payment", code, message)
}

pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(secret) = state.payment_secret.as_deref() else {
        return refuse(
            StatusCode::NOT_FOUND,
            ErrorCode::Disabled,
            "payments are not enabled on this server (KOKORO_PAYMENT_SECRET is unset)",
        );
    };
    // axum would answer an oversized or unreadable body in plain text.
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            return refuse(
                rejection.status(),
                ErrorCode::InvalidArgument,
                &format!("could not read the request body: {}", rejection.body_text()),
            )
        }
    };
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !signed(secret.as_bytes(), &body, header) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "bad or missing X-Kokoro-Signature",
        );
    }
    let command = match event(&body) {
        Ok(c) => c,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, &why),
    };
    let reply = state.runtime.dispatch_admin(command).await;
    let status = crate::http::status_of(reply.code());
    (status, Json(reply)).into_response()
}

/// The command a signed event body stands for.
fn event(body: &[u8]) -> Result<Command, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let id = v["id"]
        .as_str()
        .ok_or("id (the provider's payment id) is missing")?;
    let name = match v["type"].as_str() {
        Some("payment.succeeded") => "payment",
        Some("payment.refunded") => "chargeback",
        _ => return Err("type must be payment.succeeded or payment.refunded".into()),
    };
    let id_of = |field: &str| -> Result<i64, String> {
        v[field]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("{field} must be a decimal string"))
    };
    let guild = GuildId::new(id_of("guild_id")?).map_err(|e| format!("guild_id {e}"))?;
    let user = UserId::new(id_of("user_id")?).map_err(|e| format!("user_id {e}"))?;
    let args = json!({ "payment_id": id, "credits": v["credits"] });
    let kind = CommandKind::parse(name, &args).map_err(|e| e.to_string())?;
    // One command id per payment and per kind of event: the purchase and
    // its chargeback are two commands, each applied once.
    let command_id = format!("{name}:{id}")
        .parse::<CommandId>()
        .map_err(|_| "id must be letters, digits, _, -, . or :".to_owned())?;
    Ok(Command {
        id: Some(command_id),
        key: UserKey::new(guild, user),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_checked_against_the_raw_body() {
        let body = br#"{"id":"pay_1"}"#;
        let sig = sign(b"secret", body);
        assert!(signed(b"secret", body, Some(&sig)));
        assert!(!signed(b"other", body, Some(&sig)));
        assert!(!signed(b"secret", br#"{"id":"pay_2"}"#, Some(&sig)));
        assert!(!signed(b"secret", body, None));
        assert!(!signed(b"secret", body, Some("sha256=zz")));
    }
}
