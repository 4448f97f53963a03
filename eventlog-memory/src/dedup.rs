//! The deduplication window of an in-memory log: which (`source`, `id`)
//! pairs it stored recently, and under which number.

use eventlog_core::{EventEnvelope, SeqNo};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// The pairs stored within the window, by a keyed hash of the pair, so an
/// append copies no string; a hit is confirmed against the stored event.
/// Memory is bounded by the window: entries older than it are dropped as
/// appends come.
#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    hasher: RandomState,
    /// The newest number stored under each hash, and when.
    stored: HashMap<u64, (SeqNo, Instant)>,
    /// The same entries, oldest first, for expiry.
    order: VecDeque<(Instant, u64, SeqNo)>,
}

impl Dedup {
    /// `None` for a window of zero: the log does not deduplicate.
    pub(crate) fn new(window: Duration) -> Option<Self> {
        (!window.is_zero()).then(|| Self {
            window,
            hasher: RandomState::new(),
            stored: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    pub(crate) fn hash(&self, event: &EventEnvelope) -> u64 {
        self.hasher.hash_one((&event.source, &event.id))
    }

    /// The number under which an event of `hash` was stored within the
    /// window, if any; `events` confirms that it is the same pair.
    pub(crate) fn find(
        &self,
        hash: u64,
        event: &EventEnvelope,
        events: &[EventEnvelope],
        now: Instant,
    ) -> Option<SeqNo> {
        let &(seq_no, at) = self.stored.get(&hash)?;
        let stored = events.get(usize::try_from(seq_no - 1).ok()?)?;
        (now.duration_since(at) < self.window
            && stored.source == event.source
            && stored.id == event.id)
            .then_some(seq_no)
    }

    /// Notes that the event of `hash` is stored as `seq_no`, and forgets
    /// what left the window.
    pub(crate) fn insert(&mut self, hash: u64, seq_no: SeqNo, now: Instant) {
        while let Some(&(at, old, old_seq)) = self.order.front() {
            if now.duration_since(at) < self.window {
                break;
            }
            self.order.pop_front();
            if self.stored.get(&old).is_some_and(|&(n, _)| n == old_seq) {
                self.stored.remove(&old);
            }
        }
        self.stored.insert(hash, (seq_no, now));
        self.order.push_back((now, hash, seq_no));
    }
}
