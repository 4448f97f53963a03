//! Subscriptions: a stream that reads the shared log, and the registry of
//! those waiting for the next append.

use crate::log::Shared;
use eventlog_core::{EventEnvelope, SeqNo};
use futures::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The subscriptions of one log that wait for its next append, and how many
/// subscriptions are alive.
///
/// An append wakes the waiting ones only when [`anyone`](Self::anyone) says
/// there are any, so an append nobody waits for costs one load, where a
/// `tokio::sync::watch` took a lock and notified eight `Notify`s each time
/// (a quarter of an append's instructions).
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Each waiting subscription's waker, by subscription id: a subscription
    /// polled again before an append replaces its waker, never adds one.
    wakers: Mutex<HashMap<u64, Waker>>,
    /// Whether `wakers` is not empty; written only with `wakers` locked.
    anyone: AtomicBool,
    next_id: AtomicU64,
    alive: AtomicUsize,
}

impl Waiters {
    /// How many subscriptions are alive.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Wakes every waiting subscription. Called after an append has stored
    /// its events and released the log's write lock.
    ///
    /// No wake-up is lost: a subscription registers before it looks at the
    /// log under the read lock (see [`Subscription::poll_next`]). If that
    /// look came before the append's write lock, the registration happened
    /// before this load (the lock hands it over), so the load sees it;
    /// otherwise the look saw the new events.
    pub(crate) fn wake_all(&self) {
        if !self.anyone.load(Ordering::Acquire) {
            return;
        }
        let mut wakers = self.wakers.lock().expect("waiter lock poisoned");
        self.anyone.store(false, Ordering::Release);
        // `drain` keeps the map's capacity for the next waits.
        for (_, waker) in wakers.drain() {
            waker.wake();
        }
    }

    fn register(&self, id: u64, waker: &Waker) {
        let mut wakers = self.wakers.lock().expect("waiter lock poisoned");
        match wakers.get_mut(&id) {
            Some(old) => old.clone_from(waker),
            None => {
                wakers.insert(id, waker.clone());
            }
        }
        self.anyone.store(true, Ordering::Release);
    }

    fn forget(&self, id: u64) {
        self.wakers
            .lock()
            .expect("waiter lock poisoned")
            .remove(&id);
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A subscription: the events of the log from `next` on, then each new one
/// as it is appended. It never ends: the log lives as long as it does.
///
/// It clones one event at a time out of the log, each under a read lock of
/// its own (about 25 instructions), rather than copying a batch out at once:
/// a consumer drops each event before it asks for the next, so the
/// allocator's per-thread cache hands the freed strings straight back to the
/// next clone. Batches of 512 clones overflowed that cache and cost about
/// 150 more instructions per event in `malloc` and `free`.
///
/// It is a [`Stream`] of its own rather than an
/// [`EventSource`](eventlog_core::EventSource) turned into one by
/// [`into_stream`](eventlog_core::into_stream): that builds a future per
/// event and moves the source and the event through it, about 280
/// instructions per event, a fifth of a replayed event here (and nothing
/// beside a broker's round trip).
pub(crate) struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    next: SeqNo,
}

impl Subscription {
    /// A subscription to `shared` from `next` on.
    pub(crate) fn new(shared: Arc<Shared>, next: SeqNo) -> Self {
        let id = shared.waiters.next_id.fetch_add(1, Ordering::Relaxed);
        shared.waiters.alive.fetch_add(1, Ordering::Relaxed);
        Self { shared, id, next }
    }

    fn take_next(&mut self) -> Option<EventEnvelope> {
        let event = self.shared.get(self.next)?;
        self.next += 1;
        Some(event)
    }
}

impl Stream for Subscription {
    type Item = EventEnvelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EventEnvelope>> {
        let this = self.get_mut();
        if let Some(event) = this.take_next() {
            return Poll::Ready(Some(event));
        }
        this.shared.waiters.register(this.id, cx.waker());
        // Look again: an append between the look above and the
        // registration did not see this waker.
        match this.take_next() {
            Some(event) => Poll::Ready(Some(event)),
            None => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.waiters.forget(self.id);
    }
}
