//! A generation job as the queues, the rules and storage see it: who asked,
//! for which workflow, what it cost, and how it can end.

use crate::game::generation::workflow::Workflow;
use crate::ids::UserKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub key: UserKey,
    pub workflow: Workflow,
    pub prompt: String,
    /// The player's upload id, for workflows that take an input image.
    pub image: Option<String>,
    /// The job's price in credits.
    pub cost: i64,
    /// Whether `cost` is held (charged only if the job succeeds, released
    /// otherwise) rather than charged when queued and refunded on failure,
    /// as jobs queued before holds were.
    pub held: bool,
    /// Where the player asked, to tell them when the job ends:
    /// `discord:<channel id>` or `telegram:<chat id>`; set by the front
    /// door, never by the player.
    pub notify: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// Failed and cancelled jobs give their credits back (released, or
    /// refunded if they were charged when queued).
    pub fn refunds(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled)
    }
}

/// What rendering a job came to, reported by its queue to the player's actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Where the result can be fetched.
    Done(String),
    /// Why it failed, in words fit for the player.
    Failed(String),
}

/// A job as stored, for `jobs` and for `cancel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    pub job: Job,
    pub status: JobStatus,
    pub result: Option<String>,
    pub finished_ms: Option<i64>,
}
