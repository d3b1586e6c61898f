//! Whether each front door (Discord, Telegram) can reach its service. A
//! door that cannot start, or loses its service, says so here and retries
//! with backoff while the rest of kokoro serves; `/readyz` names it, the
//! gauge `kokoro_front_door_up{door}` shows it and the alert
//! `KokoroFrontDoorDown` fires when it stays down.

use std::sync::Arc;

use actors::telemetry as m;

/// One door's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorState {
    /// Not connected yet (the first attempt is under way).
    Starting,
    Up,
    /// Down, and why (never a token: errors name methods, not URLs).
    Down(String),
}

/// The doors this process runs. Cheap to clone; shared by the doors, which
/// write, and `/readyz`, which reads.
#[derive(Debug, Clone, Default)]
pub struct Doors(Arc<dashmap::DashMap<&'static str, DoorState>>);

impl Doors {
    pub fn starting(&self, door: &'static str) {
        self.set(door, DoorState::Starting);
    }

    pub fn up(&self, door: &'static str) {
        if self.0.get(door).is_some_and(|s| *s != DoorState::Up) {
            tracing::info!(door, "front door connected");
        }
        self.set(door, DoorState::Up);
    }

    /// Down for `why`; counted by `stage` (what it was doing: `connect`,
    /// `register`, `poll`).
    pub fn down(&self, door: &'static str, stage: &'static str, why: impl Into<String>) {
        let why = why.into();
        metrics::counter!(m::FRONT_DOOR_FAILURES_TOTAL, "door" => door, "stage" => stage)
            .increment(1);
        tracing::error!(door, stage, reason = %why, "front door cannot reach its service; retrying");
        self.set(door, DoorState::Down(format!("{stage}: {why}")));
    }

    fn set(&self, door: &'static str, state: DoorState) {
        let up = if state == DoorState::Up { 1.0 } else { 0.0 };
        metrics::gauge!(m::FRONT_DOOR_UP, "door" => door).set(up);
        self.0.insert(door, state);
    }

    pub fn state(&self, door: &str) -> Option<DoorState> {
        self.0.get(door).map(|s| s.clone())
    }

    /// Every door and its state, by name.
    pub fn all(&self) -> Vec<(&'static str, DoorState)> {
        let mut out: Vec<_> = self
            .0
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        out.sort_by_key(|(d, _)| *d);
        out
    }

    /// Whether every door is up (no doors: true).
    pub fn all_up(&self) -> bool {
        self.0.iter().all(|e| *e.value() == DoorState::Up)
    }
}

/// Waits before the next attempt: 1 s, doubling to a minute.
pub struct Backoff(std::time::Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(std::time::Duration::from_secs(1))
    }
}

impl Backoff {
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(std::time::Duration::from_secs(60));
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}
