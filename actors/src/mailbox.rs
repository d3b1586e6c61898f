//! What travels in a user actor's mailbox, and the answer channel that tells
//! a caller, when mail is dropped unread, that it is safe to send it again.

use tokio::sync::oneshot;

use crate::arena::Fought;
use crate::command::Command;
use crate::job_queue::Finished;
use crate::reply::Reply;
use crate::writeset::Transfer;

/// The mail was never looked at: the actor was passivating. Nothing happened;
/// the caller re-resolves the player's address and sends it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotDelivered;

pub type Delivery = Result<Reply, NotDelivered>;

/// Payloads are boxed: a mailbox allocates its first block of 32 slots when
/// it is created, so a small `Mail` keeps an idle player small.
pub(crate) enum Mail {
    Command(Box<Envelope<Command>>),
    /// Gold sent by another player; credited once per transfer id.
    Credit(Box<Envelope<Transfer>>),
    /// A generation job of this player's finished rendering: record the
    /// result, or refund it.
    JobDone(Box<Envelope<Finished>>),
    /// This player fought in the arena: pay the result.
    Fought(Box<Envelope<Fought>>),
    /// Asked by the registry to leave, for `Why`; honoured only if no
    /// other mail is waiting (an actor with mail is not idle).
    Passivate(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// No mail for the idle timeout.
    Idle,
    /// Making room under the resident cap.
    Evicted,
}

pub(crate) struct Envelope<T> {
    pub body: T,
    pub reply: Unread,
    /// The sender's span (the command's), so what the actor logs while
    /// handling this mail carries the command's fields.
    pub span: tracing::Span,
}

impl Mail {
    pub fn command(body: Command, reply: Unread) -> Self {
        Self::Command(Box::new(Envelope {
            body,
            reply,
            span: tracing::Span::current(),
        }))
    }

    pub fn job_done(body: Finished, reply: Unread) -> Self {
        Self::JobDone(Box::new(Envelope {
            body,
            reply,
            span: tracing::Span::current(),
        }))
    }

    pub fn fought(body: Fought, reply: Unread) -> Self {
        Self::Fought(Box::new(Envelope {
            body,
            reply,
            span: tracing::Span::current(),
        }))
    }

    pub fn credit(body: Transfer, reply: Unread) -> Self {
        Self::Credit(Box::new(Envelope {
            body,
            reply,
            span: tracing::Span::current(),
        }))
    }
}

/// An answer channel for mail not yet read. Dropped unread (mailbox closed
/// during passivation) it answers `NotDelivered`, so the caller retries. Once
/// the actor starts on the mail it calls `open`, after which a drop (a crash
/// mid-command) reads as a lost answer, never as safe to retry.
pub(crate) struct Unread(Option<oneshot::Sender<Delivery>>);

impl Unread {
    pub fn new(tx: oneshot::Sender<Delivery>) -> Self {
        Self(Some(tx))
    }

    pub fn open(mut self) -> Answer {
        Answer(self.0.take())
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Err(NotDelivered));
        }
    }
}

/// An answer channel for mail being handled.
pub(crate) struct Answer(Option<oneshot::Sender<Delivery>>);

impl Answer {
    pub fn send(mut self, reply: Reply) {
        if let Some(tx) = self.0.take() {
            // The caller may have given up waiting; the outcome stands.
            let _ = tx.send(Ok(reply));
        }
    }
}
