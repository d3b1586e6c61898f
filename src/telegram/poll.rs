//! Taking updates without ever confirming one before it is durable.
//!
//! - **Long polling**: kokoro's own `getUpdates` loop. Telegram sends an
//!   update again until a later call's `offset` passes it, and never after,
//!   so the offset passes an update only once it was handled (its commands
//!   committed). A batch's updates are handled player by player in order,
//!   players side by side, and the offset moves when the whole batch is
//!   done; an update that must come again (`Handled::Again`) holds it there.
//! - **Webhook**: the route answers 200 only once the update was handled;
//!   Telegram delivers again whatever it did not get a 200 for.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use teloxide::prelude::*;
use teloxide::RequestError;

use super::{wanted, Handled, TelegramDoor, DOOR};
use crate::doors::{Backoff, Doors};

/// How long one `getUpdates` waits for updates (under teloxide's 17 s
/// request timeout).
const POLL_SECS: u32 = 10;

/// How often a node that does not hold the bot's slot looks whether it
/// does now (cluster mode), and a polling node whether it still does.
const LEASE_LOOK: Duration = Duration::from_millis(100);

/// Whether this node polls: always outside cluster mode; in it, while it
/// serves the bot's guild's slot, so that one node at a time polls (two
/// would each be sent the updates, and Telegram ends the older poll with
/// 409 Conflict).
fn polls_here(door: &TelegramDoor) -> bool {
    door.runtime.serves_guild(door.guild)
}

/// Returns once this node no longer holds the bot's slot.
async fn lease_lost(door: &TelegramDoor) {
    while polls_here(door) {
        tokio::time::sleep(LEASE_LOOK).await;
    }
}

/// Polls until the task is aborted.
pub(super) async fn poll(door: &Arc<TelegramDoor>, doors: &Doors) {
    // A webhook left by an earlier run would make getUpdates fail.
    let mut backoff = Backoff::default();
    while let Err(e) = door.bot.delete_webhook().send().await {
        doors.down(DOOR, "connect", format!("deleteWebhook failed: {e}"));
        backoff.wait().await;
    }
    backoff.reset();
    // 0: from the oldest update Telegram has not had confirmed.
    let mut offset: i32 = 0;
    let mut polling = true;
    loop {
        if !polls_here(door) {
            if polling {
                tracing::info!("another node holds the Telegram bot's slot and polls");
                polling = false;
            }
            tokio::time::sleep(LEASE_LOOK).await;
            continue;
        }
        if !polling {
            tracing::info!("this node holds the Telegram bot's slot: polling");
            polling = true;
            // From whatever the last poller left unconfirmed.
            offset = 0;
        }
        let asked = tokio::select! {
            asked = door
                .bot
                .get_updates()
                .offset(offset)
                .timeout(POLL_SECS)
                .allowed_updates(wanted())
                .send() => asked,
            // The slot moved mid-poll: the poll is let go (its updates,
            // unconfirmed, come to the new owner's poll).
            () = lease_lost(door) => continue,
        };
        let updates = match asked {
            Ok(u) => {
                doors.up(DOOR);
                backoff.reset();
                u
            }
            Err(RequestError::RetryAfter(wait)) => {
                tokio::time::sleep(wait.duration()).await;
                continue;
            }
            Err(e) => {
                doors.down(DOOR, "poll", format!("getUpdates failed: {e}"));
                backoff.wait().await;
                continue;
            }
        };
        if updates.is_empty() {
            continue;
        }
        match handle_batch(door, updates).await {
            Ok(next) => offset = next,
            // Not confirmed: the same updates come again (command ids make
            // the ones already handled harmless); wait before asking.
            Err(held) => {
                offset = held;
                backoff.wait().await;
            }
        }
    }
}

/// Handles a batch: each player's updates in order, players side by side.
/// `Ok`: the offset that confirms them all; `Err`: the offset that
/// confirms only those before the first that must come again.
async fn handle_batch(door: &Arc<TelegramDoor>, updates: Vec<Update>) -> Result<i32, i32> {
    let next = updates.iter().map(|u| u.id.0 as i32).max().unwrap_or(0) + 1;
    let mut by_player: BTreeMap<u64, Vec<Update>> = BTreeMap::new();
    for u in updates {
        let who = u.from().map_or(0, |f| f.id.0);
        by_player.entry(who).or_default().push(u);
    }
    let runs = by_player.into_values().map(|list| {
        let door = door.clone();
        async move {
            for u in list {
                let id = u.id.0 as i32;
                if door.handle(u).await == Handled::Again {
                    return Some(id);
                }
            }
            None
        }
    });
    let again = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .min();
    match again {
        None => Ok(next),
        Some(id) => {
            tracing::warn!(
                update = id,
                "a Telegram update could not be made durable; it will come again"
            );
            Err(id)
        }
    }
}

/// What the webhook route needs.
#[derive(Clone)]
struct Hook {
    secret: Arc<str>,
    door: Arc<OnceLock<Arc<TelegramDoor>>>,
}

/// The webhook route, at `path`, refusing requests without `secret`.
pub(super) fn webhook_route(
    path: &str,
    secret: String,
    door: Arc<OnceLock<Arc<TelegramDoor>>>,
) -> axum::Router {
    let path = if path.is_empty() { "/" } else { path };
    axum::Router::new()
        .route(path, post(on_hook))
        .with_state(Hook {
            secret: secret.into(),
            door,
        })
}

async fn on_hook(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get("X-Telegram-Bot-Api-Secret-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given.as_bytes() != hook.secret.as_bytes() {
        return StatusCode::UNAUTHORIZED;
    }
    // Not connected yet: Telegram delivers it again later.
    let Some(door) = hook.door.get() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            // Answered 200: Telegram would send what kokoro cannot read for ever.
            tracing::warn!(error = %e, "a Telegram webhook update could not be read");
            return StatusCode::OK;
        }
    };
    match tokio::time::timeout(Duration::from_secs(50), door.handle(update)).await {
        Ok(Handled::Done) => StatusCode::OK,
        Ok(Handled::Again) | Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
