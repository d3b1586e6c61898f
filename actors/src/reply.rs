//! What every front door gets back: one `Reply` type with a stable error-code
//! vocabulary, so Discord, HTTP and the load tester report the same outcome
//! the same way. HTTP status codes are derived from `ErrorCode` in the app.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The error vocabulary of the API. The string forms are part of the HTTP
/// contract (DESIGN.md) and must not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthorized,
    /// An admin command from a caller who is not an admin.
    Forbidden,
    UnknownCommand,
    InsufficientFunds,
    AlreadyClaimed,
    Cooldown,
    NotFound,
    LimitReached,
    /// The job asked about has already finished (done, failed or cancelled).
    AlreadyFinished,
    /// The player already has something by that name (a roleplay character).
    NameTaken,
    /// The server does not offer this (image generation with no renderer).
    Disabled,
    /// A Discord account younger than the guild lets verify.
    AccountTooNew,
    /// The wrong answer to the guild's verification question.
    WrongAnswer,
    RateLimited,
    Busy,
    StorageUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::UnknownCommand => "unknown_command",
            Self::InsufficientFunds => "insufficient_funds",
            Self::AlreadyClaimed => "already_claimed",
            Self::Cooldown => "cooldown",
            Self::NotFound => "not_found",
            Self::LimitReached => "limit_reached",
            Self::AlreadyFinished => "already_finished",
            Self::NameTaken => "name_taken",
            Self::Disabled => "disabled",
            Self::AccountTooNew => "account_too_new",
            Self::WrongAnswer => "wrong_answer",
            Self::RateLimited => "rate_limited",
            Self::Busy => "busy",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Internal => "internal",
        }
    }

    /// Refusals by the game's rules: the command was understood and valid,
    /// the state said no. Nothing was written.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::InsufficientFunds
                | Self::AlreadyClaimed
                | Self::Cooldown
                | Self::NotFound
                | Self::LimitReached
                | Self::AlreadyFinished
                | Self::NameTaken
                | Self::Disabled
                | Self::AccountTooNew
                | Self::WrongAnswer
        )
    }

    /// Transient: the same command may succeed if retried later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Busy | Self::StorageUnavailable | Self::RateLimited
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// The answer to one command, in the shape the HTTP API returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub command: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Whether this is the stored first reply to a command id seen before:
    /// nothing was done again. Not part of the body (a replay's body is the
    /// first one's); a front door that acts on a reply (announces a
    /// level-up) acts once.
    #[serde(skip)]
    pub replayed: bool,
}

/// A replay equals the reply it repeats.
impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        (
            self.ok,
            &self.command,
            &self.data,
            &self.message,
            &self.error,
        ) == (
            other.ok,
            &other.command,
            &other.data,
            &other.message,
            &other.error,
        )
    }
}

impl Reply {
    pub fn ok(command: &str, data: Value, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            command: command.to_owned(),
            data,
            message: message.into(),
            error: None,
            replayed: false,
        }
    }

    pub fn error(command: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            command: command.to_owned(),
            data: Value::Null,
            message: String::new(),
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
            replayed: false,
        }
    }

    /// This stored first reply, answered again.
    pub fn replay(self) -> Self {
        Self {
            replayed: true,
            ..self
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|e| e.code)
    }

    /// `"ok"` or the error code: the outcome label used by metrics and logs.
    pub fn outcome(&self) -> &'static str {
        self.code().map_or("ok", ErrorCode::as_str)
    }
}
