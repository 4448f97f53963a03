//! The store behind an in-memory log and its [`Driver`]: events in a vector,
//! consumer positions in a map, and readers woken by appends.

use crate::dedup::Dedup;
use eventlog_core::driver::{Driver, ReadLimits, Reader, Record};
use eventlog_core::{Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The [`Driver`] of an in-memory log: a handle on its store.
#[derive(Debug, Clone)]
pub struct MemoryDriver {
    store: Arc<Store>,
}

impl MemoryDriver {
    /// An empty log accepting payloads up to `max_payload` bytes and
    /// deduplicating appends within `dedup_window` (zero: not at all).
    pub(crate) fn new(max_payload: usize, dedup_window: Duration) -> Self {
        Self {
            store: Arc::new(Store::new(max_payload, dedup_window)),
        }
    }

    /// How many readers are alive.
    pub(crate) fn readers(&self) -> usize {
        self.store.waiters.alive.load(Ordering::Relaxed)
    }
}

/// One in-memory log, shared by its handles and its readers.
#[derive(Debug)]
struct Store {
    /// The event with sequence number `n` is at index `n - 1`.
    events: RwLock<Vec<EventEnvelope>>,
    /// Each consumer's next sequence number.
    consumers: Mutex<HashMap<String, SeqNo>>,
    /// The leases of exclusive subscriptions: holder and end, by consumer.
    /// Fenced moves of a consumer happen with this locked.
    leases: Mutex<HashMap<String, (String, Instant)>>,
    waiters: Waiters,
    max_payload: usize,
    /// Taken only with `events` locked for writing.
    dedup: Option<Mutex<Dedup>>,
    dedup_window: Option<Duration>,
}

/// What a batch does with one of its events.
enum Plan {
    /// A new event, of this hash.
    Store(u64),
    Stored(SeqNo),
    /// A duplicate of the batch's event at this index.
    SameAs(usize),
}

impl Store {
    fn new(max_payload: usize, dedup_window: Duration) -> Self {
        Self {
            events: RwLock::new(Vec::new()),
            consumers: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            waiters: Waiters::default(),
            max_payload,
            dedup: Dedup::new(dedup_window).map(Mutex::new),
            dedup_window: (!dedup_window.is_zero()).then_some(dedup_window),
        }
    }

    /// Stores `event` as [`Driver::append`] says: the batch's way without
    /// its vectors, as appends one at a time are the common case.
    fn append_one(
        &self,
        mut event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        let mut events = self.events.write().expect("log lock poisoned");
        let mut dedup = self
            .dedup
            .as_ref()
            .map(|d| d.lock().expect("dedup lock poisoned"));
        let hash = dedup.as_ref().map(|d| d.hash(&event));
        if let (Some(d), Some(hash)) = (&mut dedup, hash)
            && let Some(seq_no) = d.find(hash, &event, &events)
        {
            return Ok(Appended::Duplicate(seq_no));
        }
        expected.check(events.len() as SeqNo)?;
        let seq_no = events.len() as SeqNo + 1;
        event.seq_no = Some(seq_no);
        events.push(event);
        if let (Some(d), Some(hash)) = (&mut dedup, hash) {
            d.insert(hash, seq_no);
        }
        Ok(Appended::Stored(seq_no))
    }

    /// Stores `batch` as [`Driver::append_batch`] says, under one write
    /// lock.
    fn append(
        &self,
        batch: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        let mut events = self.events.write().expect("log lock poisoned");
        let Some(dedup) = &self.dedup else {
            expected.check(events.len() as SeqNo)?;
            let first = events.len() as SeqNo + 1;
            events.extend(batch.into_iter().zip(first..).map(|(mut e, n)| {
                e.seq_no = Some(n);
                e
            }));
            return Ok((first..=events.len() as SeqNo)
                .map(Appended::Stored)
                .collect());
        };
        let mut dedup = dedup.lock().expect("dedup lock poisoned");
        let mut plans = Vec::with_capacity(batch.len());
        // The first event of the batch under each hash, confirmed by its pair.
        let mut firsts: HashMap<u64, usize> = HashMap::with_capacity(batch.len());
        for (index, event) in batch.iter().enumerate() {
            let hash = dedup.hash(event);
            let earlier = firsts
                .get(&hash)
                .copied()
                .filter(|&i| batch[i].source == event.source && batch[i].id == event.id);
            plans.push(match (dedup.find(hash, event, &events), earlier) {
                (Some(seq_no), _) => Plan::Stored(seq_no),
                (None, Some(index)) => Plan::SameAs(index),
                (None, None) => {
                    firsts.entry(hash).or_insert(index);
                    Plan::Store(hash)
                }
            });
        }
        if plans.iter().any(|p| matches!(p, Plan::Store(_))) {
            expected.check(events.len() as SeqNo)?;
        }
        let mut appended: Vec<Appended> = Vec::with_capacity(batch.len());
        for (mut event, plan) in batch.into_iter().zip(plans) {
            appended.push(match plan {
                Plan::Store(hash) => {
                    let seq_no = events.len() as SeqNo + 1;
                    event.seq_no = Some(seq_no);
                    events.push(event);
                    dedup.insert(hash, seq_no);
                    Appended::Stored(seq_no)
                }
                Plan::Stored(seq_no) => Appended::Duplicate(seq_no),
                Plan::SameAs(index) => Appended::Duplicate(appended[index].seq_no()),
            });
        }
        Ok(appended)
    }

    fn last(&self) -> SeqNo {
        self.events.read().expect("log lock poisoned").len() as SeqNo
    }

    fn next_of(&self, consumer: &str) -> Option<SeqNo> {
        self.consumers
            .lock()
            .expect("consumer lock poisoned")
            .get(consumer)
            .copied()
    }

    /// Replaces `consumer`'s next sequence number (1 for a new consumer)
    /// with `update(next)`.
    fn update_consumer(&self, consumer: &str, update: impl FnOnce(SeqNo) -> SeqNo) {
        let mut consumers = self.consumers.lock().expect("consumer lock poisoned");
        // `get_mut` first: `entry` would copy the name on every ack.
        match consumers.get_mut(consumer) {
            Some(next) => *next = update(*next),
            None => {
                consumers.insert(consumer.to_owned(), update(1));
            }
        }
    }

    /// Takes or renews `consumer`'s lease for `holder` until `ttl` from
    /// now, unless another holder's has not run out.
    fn lease(&self, consumer: &str, holder: &str, ttl: Duration) -> bool {
        let mut leases = self.leases.lock().expect("lease lock poisoned");
        let now = Instant::now();
        match leases.get_mut(consumer) {
            Some((other, until)) if other != holder && *until > now => false,
            Some(lease) => {
                *lease = (holder.to_owned(), now + ttl);
                true
            }
            None => {
                leases.insert(consumer.to_owned(), (holder.to_owned(), now + ttl));
                true
            }
        }
    }

    fn release(&self, consumer: &str, holder: &str) {
        let mut leases = self.leases.lock().expect("lease lock poisoned");
        if leases.get(consumer).is_some_and(|(held, _)| held == holder) {
            leases.remove(consumer);
        }
    }

    /// [`update_consumer`](Self::update_consumer), unless another holder
    /// than `holder` has a lease of `consumer` that has not run out.
    fn update_fenced(
        &self,
        consumer: &str,
        holder: &str,
        update: impl FnOnce(SeqNo) -> SeqNo,
    ) -> Result<(), EventLogError> {
        let leases = self.leases.lock().expect("lease lock poisoned");
        Self::fence(&leases, consumer, holder)?;
        self.update_consumer(consumer, update);
        Ok(())
    }

    /// `Fenced` when another holder than `holder` has a lease of
    /// `consumer` that has not run out.
    fn fenced(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        Self::fence(
            &self.leases.lock().expect("lease lock poisoned"),
            consumer,
            holder,
        )
    }

    fn fence(
        leases: &HashMap<String, (String, Instant)>,
        consumer: &str,
        holder: &str,
    ) -> Result<(), EventLogError> {
        match leases.get(consumer) {
            Some((other, until)) if other != holder && *until > Instant::now() => {
                Err(EventLogError::Fenced {
                    consumer: consumer.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Up to `limits` events from `next` on, into `records`; how many.
    fn read_from(&self, next: SeqNo, records: &mut VecDeque<Record>, limits: ReadLimits) -> usize {
        let events = self.events.read().expect("log lock poisoned");
        let start = usize::try_from(next - 1).unwrap_or(usize::MAX);
        let Some(available) = events.get(start..) else {
            return 0;
        };
        let mut bytes = 0;
        let mut taken = 0;
        for event in available.iter().take(limits.events) {
            if taken > 0 && bytes + event.payload.len() > limits.bytes {
                break;
            }
            bytes += event.payload.len();
            records.push_back(Ok(event.clone()));
            taken += 1;
        }
        taken
    }

    /// A copy of the event `seq_no`, if it is stored.
    fn get(&self, seq_no: SeqNo) -> Option<EventEnvelope> {
        let index = usize::try_from(seq_no.checked_sub(1)?).ok()?;
        let events = self.events.read().expect("log lock poisoned");
        events.get(index).cloned()
    }
}

impl Driver for MemoryDriver {
    type Reader = MemoryReader;

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("memory", self.store.max_payload, false)
            .with_dedup_window(self.store.dedup_window)
            .with_conditional_append(true)
            .with_exclusive_subscriptions(true)
    }

    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn read_wait(&self) -> Duration {
        Duration::ZERO
    }

    async fn append(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        let appended = self.store.append_one(event, expected)?;
        self.store.waiters.wake_all();
        Ok(appended)
    }

    async fn append_batch(
        &self,
        batch: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        let appended = self.store.append(batch, expected)?;
        self.store.waiters.wake_all();
        Ok(appended)
    }

    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        Ok(self.store.last())
    }

    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        // Nothing is ever removed.
        Ok(1)
    }

    async fn acknowledged(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        Ok(self
            .store
            .next_of(consumer)
            .map(|next| next - 1)
            .filter(|&n| n > 0))
    }

    async fn move_consumer(&self, consumer: &str, next: SeqNo) -> Result<(), EventLogError> {
        self.store.update_consumer(consumer, |_| next);
        Ok(())
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<(), EventLogError> {
        self.store
            .update_consumer(consumer, |next| next.max(seq_no + 1));
        Ok(())
    }

    async fn open_reader(
        &self,
        _consumer: &str,
        from: SeqNo,
    ) -> Result<MemoryReader, EventLogError> {
        Ok(MemoryReader::new(self.store.clone(), from))
    }

    async fn log_exists(&self) -> Result<bool, EventLogError> {
        Ok(true)
    }

    async fn lease(
        &self,
        consumer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        Ok(self.store.lease(consumer, holder, ttl))
    }

    async fn release(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        self.store.release(consumer, holder);
        Ok(())
    }

    async fn ack_fenced(
        &self,
        consumer: &str,
        seq_no: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.store
            .update_fenced(consumer, holder, |next| next.max(seq_no + 1))
    }

    async fn move_consumer_fenced(
        &self,
        consumer: &str,
        next: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.store.update_fenced(consumer, holder, |_| next)
    }

    async fn check_fenced(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        self.store.fenced(consumer, holder)
    }
}

/// A subscription's reader: the log from `next` on, waiting for appends.
pub struct MemoryReader {
    store: Arc<Store>,
    id: u64,
    next: SeqNo,
}

impl MemoryReader {
    fn new(store: Arc<Store>, next: SeqNo) -> Self {
        let id = store.waiters.next_id.fetch_add(1, Ordering::Relaxed);
        store.waiters.alive.fetch_add(1, Ordering::Relaxed);
        Self { store, id, next }
    }
}

impl MemoryReader {
    fn take(&mut self, records: &mut VecDeque<Record>, limits: ReadLimits) -> usize {
        let taken = self.store.read_from(self.next, records, limits);
        self.next += taken as SeqNo;
        taken
    }
}

impl Reader for MemoryReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> Result<(), EventLogError> {
        std::future::poll_fn(|cx| {
            if self.take(records, limits) > 0 {
                return Poll::Ready(());
            }
            self.store.waiters.register(self.id, cx.waker());
            // Look again: an append between the look above and the
            // registration did not see this waker.
            match self.take(records, limits) {
                0 => Poll::Pending,
                _ => Poll::Ready(()),
            }
        })
        .await;
        Ok(())
    }

    /// One event at a time: a consumer drops each event before it asks for
    /// the next, so the allocator's per-thread cache hands the freed
    /// strings straight back to the next clone, where a batch of clones
    /// overflows it.
    fn next_ready(&mut self) -> Option<Record> {
        let event = self.store.get(self.next)?;
        self.next += 1;
        Some(Ok(event))
    }
}

impl Drop for MemoryReader {
    fn drop(&mut self) {
        self.store.waiters.forget(self.id);
    }
}

/// The readers of one log that wait for its next append, and how many
/// readers are alive.
///
/// An append wakes the waiting ones only when `anyone` says there are any,
/// so an append nobody waits for costs one load.
#[derive(Debug, Default)]
struct Waiters {
    /// Each waiting reader's waker, by reader id: a reader polled again
    /// before an append replaces its waker, never adds one.
    wakers: Mutex<HashMap<u64, Waker>>,
    /// Whether `wakers` is not empty; written only with `wakers` locked.
    anyone: AtomicBool,
    next_id: AtomicU64,
    alive: AtomicUsize,
}

impl Waiters {
    /// Wakes every waiting reader. Called after an append has stored its
    /// events and released the log's write lock.
    ///
    /// No wake-up is lost: a reader registers before it looks at the log
    /// under the read lock. If that look came before the append's write
    /// lock, the registration happened before this load (the lock hands it
    /// over), so the load sees it; otherwise the look saw the new events.
    fn wake_all(&self) {
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
