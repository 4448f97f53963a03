//! The deduplication window of an in-memory log: which (`source`, `id`)
//! pairs it stored recently, and under which number.

use eventlog_core::{EventEnvelope, SeqNo};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// The pairs stored within the window, by a keyed hash of the pair, so an
/// append copies no string; a hit is confirmed against the stored event.
/// Memory is bounded by the window (about 35 bytes per event in it):
/// entries older than it are dropped as appends come.
#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    /// Seeded per log: a caller cannot choose pairs that collide.
    hasher: foldhash::fast::RandomState,
    /// The newest number stored under each hash.
    stored: HashMap<u64, SeqNo, NoHash>,
    /// The hash of each event of the window, oldest first, and when it was
    /// stored (milliseconds after `start`).
    order: VecDeque<(u64, u64)>,
    /// The number of `order`'s first entry.
    first: SeqNo,
    start: Instant,
}

/// The map's keys are hashes already.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoHash;

impl BuildHasher for NoHash {
    type Hasher = Passed;
    fn build_hasher(&self) -> Passed {
        Passed(0)
    }
}

/// Hands a `u64` key through as its own hash.
#[derive(Debug)]
pub(crate) struct Passed(u64);

impl std::hash::Hasher for Passed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used, by `u64` keys.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Dedup {
    /// `None` for a window of zero: the log does not deduplicate.
    pub(crate) fn new(window: Duration) -> Option<Self> {
        (!window.is_zero()).then(|| Self {
            window,
            hasher: foldhash::fast::RandomState::default(),
            stored: HashMap::default(),
            order: VecDeque::new(),
            first: 1,
            start: Instant::now(),
        })
    }

    pub(crate) fn hash(&self, event: &EventEnvelope) -> u64 {
        self.hasher.hash_one((&event.source, &event.id))
    }

    /// Milliseconds since the log was made: what is kept per event.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// The number under which an event of `hash` was stored within the
    /// window, if any; `events` confirms that it is the same pair.
    pub(crate) fn find(
        &mut self,
        hash: u64,
        event: &EventEnvelope,
        events: &[EventEnvelope],
    ) -> Option<SeqNo> {
        self.expire();
        let &seq_no = self.stored.get(&hash)?;
        let stored = events.get(usize::try_from(seq_no - 1).ok()?)?;
        (stored.source == event.source && stored.id == event.id).then_some(seq_no)
    }

    /// Notes that the event of `hash` is stored as `seq_no`, the log's
    /// next number.
    pub(crate) fn insert(&mut self, hash: u64, seq_no: SeqNo) {
        // Numbers the window never saw (stored with deduplication off) are
        // not in it.
        if self.order.is_empty() {
            self.first = seq_no;
        }
        debug_assert_eq!(self.first + self.order.len() as SeqNo, seq_no);
        self.stored.insert(hash, seq_no);
        self.order.push_back((hash, self.now()));
    }

    /// Forgets what left the window.
    fn expire(&mut self) {
        let now = self.now();
        let window = self.window_ms();
        while let Some(&(hash, at)) = self.order.front() {
            if now.saturating_sub(at) < window {
                break;
            }
            self.order.pop_front();
            if self.stored.get(&hash) == Some(&self.first) {
                self.stored.remove(&hash);
            }
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_left_the_window_is_forgotten() {
        let mut dedup = Dedup::new(Duration::from_millis(1)).expect("a window");
        let events: Vec<EventEnvelope> = (0..1000)
            .map(|i| EventEnvelope::new("/s", "t", &b""[..]).with_id(i.to_string()))
            .collect();
        for (n, event) in events.iter().enumerate() {
            let hash = dedup.hash(event);
            dedup.insert(hash, n as SeqNo + 1);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // Polled: expiry happens as lookups come, once the window has passed.
        while !dedup.order.is_empty() && Instant::now() < deadline {
            let hash = dedup.hash(&events[0]);
            let _ = dedup.find(hash, &events[0], &events);
        }
        assert!(dedup.order.is_empty() && dedup.stored.is_empty());
        // The next event starts a new window at its own number.
        let hash = dedup.hash(&events[5]);
        dedup.insert(hash, 1001);
        assert_eq!(dedup.first, 1001);
    }
}
