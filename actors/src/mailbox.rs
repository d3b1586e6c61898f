//! What travels in a user actor's mailbox, and the answer channel that tells
//! a caller, when mail is dropped unread, that it is safe to send it again.

use tokio::sync::oneshot;

use crate::command::Command;
use crate::game::arena::entry::Fought;
use crate::game::Refusal;
use crate::group_commit::CommitResult;
use crate::job_queue::Finished;
use crate::reply::Reply;
use crate::writeset::Transfer;
use crate::writeset::WriteSet;

/// The mail was never looked at: the actor was passivating. Nothing happened;
/// the caller re-resolves the player's address and sends it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotDelivered;

pub type Delivery = Result<Reply, NotDelivered>;

/// Payloads are boxed: a small `Mail` keeps a busy mailbox's buffer small
/// (an idle one has none, see `postbox`).
pub(crate) enum Mail {
    Command(Box<Envelope<Command>>),
    /// Gold sent by another player; credited once per transfer id.
    Credit(Box<Envelope<Transfer>>),
    /// Gold another player is sending now: decide its credit and hand it
    /// back, to be committed in the same transaction as their debit.
    Half(Box<HalfAsk>),
    /// A give from a player of a higher key to this one: this actor
    /// coordinates it (asks the sender for its debit with `Debit`, then
    /// commits both), so that waits for a half only go up in key order.
    Coordinate(Box<Envelope<Command>>),
    /// A give this player sends, handed back by the recipient's actor that
    /// coordinates it: decide it as any command, and give the debit's
    /// WriteSet to `coordinator` rather than to group commit.
    Debit(Box<DebitAsk>),
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

/// A sender's actor asking the recipient's for their half of a give.
/// Dropped unread (the recipient passivating), its `reply` closes and the
/// sender commits its debit alone, the credit following by the outbox.
pub(crate) struct HalfAsk {
    pub transfer: Transfer,
    pub reply: oneshot::Sender<Result<Half, Refusal>>,
    pub span: tracing::Span,
}

/// The recipient's half of a give: its credit's WriteSet, and where the
/// sender tells it how the pair's commit ended. Until then the recipient's
/// actor waits, so the credit is its one WriteSet in flight.
pub(crate) struct Half {
    pub writes: WriteSet,
    pub adopt: oneshot::Sender<CommitResult>,
}

impl Mail {
    pub fn half(transfer: Transfer, reply: oneshot::Sender<Result<Half, Refusal>>) -> Self {
        Self::Half(Box::new(HalfAsk {
            transfer,
            reply,
            span: tracing::Span::current(),
        }))
    }
}

/// The recipient's actor handing a give back to its sender's to decide.
pub(crate) struct DebitAsk {
    pub command: Command,
    pub reply: Unread,
    pub coordinator: oneshot::Sender<DebitHalf>,
    pub span: tracing::Span,
}

/// The sender's half of a give the recipient coordinates: its debit's
/// WriteSet, and where it hears how the pair ended.
pub(crate) struct DebitHalf {
    pub writes: WriteSet,
    pub adopt: oneshot::Sender<Paired>,
}

/// What the coordinating recipient tells the sender of its debit.
pub(crate) enum Paired {
    /// The pair was committed (or not), as this says.
    Committed(CommitResult),
    /// The recipient could not take its credit: commit the debit alone.
    Alone(WriteSet),
    /// Group commit's backlog was full: nothing was written.
    Busy,
}

impl Mail {
    pub fn coordinate(body: Command, reply: Unread, span: tracing::Span) -> Self {
        Self::Coordinate(Box::new(Envelope { body, reply, span }))
    }

    pub fn debit(command: Command, reply: Unread, coordinator: oneshot::Sender<DebitHalf>) -> Self {
        Self::Debit(Box::new(DebitAsk {
            command,
            reply,
            coordinator,
            span: tracing::Span::current(),
        }))
    }
}
