//! The bounded channel under every player's mailbox: many senders, one
//! receiver (the player's actor), `try_send` only, and an async `recv`.
//!
//! Why not flume, which the persistence actor still uses: a million idle
//! players each hold one of these, and flume's costs four allocations per
//! idle channel (its shared state, the queue's buffer, the list of waiting
//! receivers and the waiting receiver's hook: about 360 bytes, a third of
//! a resident player). This one is one allocation of 96 bytes while idle:
//! a queue under a mutex and the waiting actor's waker, its buffer freed
//! whenever it empties.
//!
//! What the registry relies on: a send to a channel whose receiver is gone
//! hands the mail back as `Disconnected`, and mail still queued when the
//! receiver goes is dropped there and then (each dropped `Unread` answers
//! its caller "not delivered").

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A channel holding at most `capacity` (at least 1) items.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            receiver_gone: false,
        }),
        capacity: capacity.max(1),
        senders: AtomicUsize::new(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    senders: AtomicUsize,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver's, while it waits for an item.
    waker: Option<Waker>,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    /// Every critical section here only moves items and wakers, which
    /// cannot leave the state half-changed: a poisoned lock is still sound.
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why an item was handed back.
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    /// The channel holds `capacity` items already.
    Full(T),
    /// The receiver is gone.
    Disconnected(T),
}

impl<T> TrySendError<T> {
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Disconnected(t) => t,
        }
    }
}

/// Every sender is gone and nothing is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `item` now, saying how many items are queued with it, or
    /// hands it back.
    pub fn try_send(&self, item: T) -> Result<usize, TrySendError<T>> {
        let (depth, waker) = {
            let mut state = self.0.state();
            if state.receiver_gone {
                return Err(TrySendError::Disconnected(item));
            }
            if state.queue.len() >= self.0.capacity {
                return Err(TrySendError::Full(item));
            }
            state.queue.push_back(item);
            (state.queue.len(), state.waker.take())
        };
        // Woken outside the lock: the receiver takes it at once.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(depth)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: a waiting receiver learns the channel closed.
            let waker = self.0.state().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

pub(crate) struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next item, waiting for one; `Closed` once every sender is gone
    /// and nothing is left.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv(self)
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        take(&mut self.0.state())
    }

    pub fn is_empty(&self) -> bool {
        self.0.state().queue.is_empty()
    }
}

/// Pops the next item, freeing the buffer when that empties the queue: an
/// idle player keeps no buffer at all.
fn take<T>(state: &mut State<T>) -> Option<T> {
    let item = state.queue.pop_front()?;
    if state.queue.is_empty() {
        state.queue = VecDeque::new();
    }
    Some(item)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.0.state();
            state.receiver_gone = true;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: dropping mail answers its callers.
        drop(left);
    }
}

/// The future of `Receiver::recv`.
pub(crate) struct Recv<'a, T>(&'a Receiver<T>);

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let shared = &self.0 .0;
        let mut state = shared.state();
        if let Some(item) = take(&mut state) {
            return Poll::Ready(Ok(item));
        }
        // Read under the lock: the last sender's drop takes the waker
        // under it too, so it either sees this waker or this sees zero.
        if shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(Err(Closed));
        }
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its drops: mail that is dropped answers its caller.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_full_channel_hands_the_item_back() {
        let (tx, rx) = bounded(2);
        assert_eq!(
            (tx.try_send(1).ok(), tx.try_send(2).ok()),
            (Some(1), Some(2))
        );
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Some(1));
        assert!(tx.try_send(3).is_ok());
        assert_eq!(
            (rx.try_recv(), rx.try_recv(), rx.try_recv()),
            (Some(2), Some(3), None)
        );
        assert!(rx.is_empty());
    }

    #[test]
    fn mail_queued_when_the_receiver_goes_is_dropped_and_later_mail_handed_back() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = bounded(4);
        for _ in 0..3 {
            assert!(tx.try_send(Counted(dropped.clone())).is_ok());
        }
        drop(rx);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            3,
            "dropped with the receiver"
        );
        match tx.try_send(Counted(dropped.clone())) {
            Err(TrySendError::Disconnected(c)) => drop(c),
            _ => panic!("a send after the receiver went must be handed back"),
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn recv_waits_for_an_item_and_ends_when_every_sender_is_gone() {
        let (tx, rx) = bounded::<u32>(4);
        let second = tx.clone();
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(n) = rx.recv().await {
                got.push(n);
            }
            got
        });
        tokio::task::yield_now().await;
        assert!(tx.try_send(1).is_ok());
        tokio::task::yield_now().await;
        assert!(second.try_send(2).is_ok());
        drop(tx);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one sender is left");
        drop(second);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the receiver sees the last sender go")
            .unwrap();
        assert_eq!(got, [1, 2]);
    }

    /// Many senders on two threads against one waiting receiver: every item
    /// arrives exactly once, and no wake-up is lost (the test would hang).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing_and_deliver_nothing_twice() {
        const SENDERS: u64 = 16;
        const EACH: u64 = 5_000;
        let (tx, rx) = bounded::<u64>(8);
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let mut item = s * EACH + i;
                        loop {
                            match tx.try_send(item) {
                                Ok(_) => break,
                                Err(TrySendError::Full(back)) => {
                                    item = back;
                                    tokio::task::yield_now().await;
                                }
                                Err(TrySendError::Disconnected(_)) => panic!("receiver gone"),
                            }
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let receiver = tokio::spawn(async move {
            let mut seen = vec![false; (SENDERS * EACH) as usize];
            let mut n = 0;
            while let Ok(item) = rx.recv().await {
                assert!(
                    !std::mem::replace(&mut seen[item as usize], true),
                    "{item} twice"
                );
                n += 1;
            }
            n
        });
        for s in senders {
            s.await.unwrap();
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), receiver)
            .await
            .expect("no wake-up lost")
            .unwrap();
        assert_eq!(n, SENDERS * EACH);
    }

    #[test]
    fn an_idle_channel_is_one_small_allocation() {
        assert!(
            std::mem::size_of::<Shared<crate::mailbox::Mail>>() <= 80,
            "an idle player's channel grew to {} bytes",
            std::mem::size_of::<Shared<crate::mailbox::Mail>>()
        );
    }
}
