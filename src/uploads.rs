//! `POST /v1/uploads`: a player's input picture, for the workflows that take
//! one. Multipart, with the fields `guild_id`, `user_id` (decimal strings)
//! and `image` (the file), and the API token as for commands. The picture is
//! checked by its content (PNG, JPEG or WebP; size and pixel limits) and
//! kept for a day; the answer's `upload_id` is what `generate` takes as
//! `image`. A bad file gets 400 with the reason and nothing is kept.

use actors::uploads::UploadError;
use actors::{ErrorCode, GuildId, Reply, UserId, UserKey};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::AppState;

/// The largest request body the route reads (the file and its fields).
pub const MAX_BODY: usize = actors::uploads::MAX_BYTES + 64 * 1024;

fn refuse(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    crate::http::refuse(status, "upload", code, message)
}

pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    // The token first: a caller without it learns nothing of the route.
    if !crate::http::may_call(&headers, &state) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token",
        );
    }
    let mut form = match form {
        Ok(f) => f,
        Err(rejection) => {
            return refuse(
                rejection.status(),
                ErrorCode::InvalidArgument,
                format!(
                    "the body must be multipart/form-data with guild_id, user_id and image: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let Some(uploads) = state.runtime.config().uploads.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            ErrorCode::Disabled,
            "uploads are not enabled on this server",
        );
    };
    let (mut guild, mut user, mut image) = (None, None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return refuse(
                    e.status(),
                    ErrorCode::InvalidArgument,
                    format!("unreadable form: {}", e.body_text()),
                )
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    e.status(),
                    ErrorCode::InvalidArgument,
                    format!("unreadable form: {}", e.body_text()),
                )
            }
        };
        let text = || {
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        match name.as_str() {
            "guild_id" => guild = text().and_then(|g| GuildId::new(g).ok()),
            "user_id" => user = text().and_then(|u| UserId::new(u).ok()),
            "image" => image = Some(bytes),
            other => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidArgument,
                    format!(
                        "unexpected field {:?}; the fields are guild_id, user_id and image",
                        other.chars().take(40).collect::<String>()
                    ),
                )
            }
        }
    }
    let (Some(guild), Some(user)) = (guild, user) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "guild_id and user_id must be decimal ids",
        );
    };
    let Some(image) = image else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "the image field (the picture) is missing",
        );
    };
    match uploads.store(UserKey::new(guild, user), &image).await {
        Ok(up) => {
            let data = json!({
                "upload_id": up.id, "type": up.format.mime(),
                "width": up.width, "height": up.height,
            });
            let msg = format!("Kept your {}×{} picture as {}.", up.width, up.height, up.id);
            (StatusCode::OK, Json(Reply::ok("upload", data, msg))).into_response()
        }
        Err(UploadError::Storage) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            UploadError::Storage.to_string(),
        ),
        Err(UploadError::TooLarge) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidArgument,
            UploadError::TooLarge.to_string(),
        ),
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            e.to_string(),
        ),
    }
}

/// Why a picture could not be fetched from a chat service.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the picture is larger than {} MB", actors::uploads::MAX_BYTES / (1024 * 1024))]
    TooBig,
    #[error("the picture could not be downloaded; send it again")]
    Unreachable,
}

/// Downloads a picture a player sent (a Discord attachment, a Telegram
/// file), reading at most `MAX_BYTES`: the size a service announces is not
/// trusted.
pub async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut response = client
        .get(url)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|_| FetchError::Unreachable)?;
    if response
        .content_length()
        .is_some_and(|n| n > actors::uploads::MAX_BYTES as u64)
    {
        return Err(FetchError::TooBig);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| FetchError::Unreachable)?
    {
        if bytes.len() + chunk.len() > actors::uploads::MAX_BYTES {
            return Err(FetchError::TooBig);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// An error's text as a sentence for players: "the file is empty" as
/// "The file is empty.".
pub fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), chars.as_str())
    })
}
