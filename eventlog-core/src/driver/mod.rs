//! The implementer's API: what a backend writes to become an
//! [`EventLog`](crate::EventLog).
//!
//! A backend implements [`Driver`] (and its [`Reader`]) with its broker's
//! primitives only, and wraps it in a [`DriverLog`], the one generic log
//! that applies the contract: validation, the meaning of every
//! [`SeekPosition`](crate::SeekPosition), the timeout of each operation,
//! acks that never move backwards, and the subscription engine (read-ahead,
//! reconnection, skipping what was handed out, gap and decode reports).
//! A driver never sees a rule of the contract: every input it gets is
//! already checked, every call is already bounded in time, and every event
//! it reads is checked against the one before.
//!
//! Application code never needs this module; it is kept apart from the user
//! API as OpenDAL keeps its `raw` module.
//!
//! A call goes one way: facade → [`DriverLog`] (the rules) → [`Driver`]
//! (the broker calls).

mod exclusive;
mod log;
mod subscription;

pub use crate::backoff::Backoff;
pub use log::{AsDriverLog, DriverLog, SubscriptionSettings};

use crate::{Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

/// The broker primitives of one log.
///
/// Every method gets input the generic log has already validated, and runs
/// inside the operation's timeout, so a driver need not bound its calls
/// (a client-side backstop slightly longer than [`timeout`](Self::timeout)
/// is still wise, so a dropped call does not linger). Errors are
/// [`EventLogError`]s: a driver classifies its client's failures
/// (`Unavailable` for a broker that cannot be reached, `Unauthorized`,
/// `Backend` for the rest, with the client's error as `source`).
pub trait Driver: Send + Sync + 'static {
    /// A reader of the log's events for one subscription.
    type Reader: Reader;

    /// What the backend is and accepts.
    fn capabilities(&self) -> Capabilities;

    /// The bound of each public operation of the log; `None` for a log
    /// with no broker, whose operations never wait on anything outside the
    /// process.
    fn timeout(&self) -> Option<Duration>;

    /// How long a [`Reader::read`] waits on the broker for new events
    /// before it returns none (its block time); a read that takes longer
    /// than this plus [`timeout`](Self::timeout) is abandoned as failed.
    /// Without a timeout, reads may wait for new events as long as it
    /// takes.
    fn read_wait(&self) -> Duration;

    /// Limits of the broker beyond the common ones, such as the encoded size
    /// of an event; called for every event of an append or a batch before
    /// anything is stored. The common rules are already checked.
    fn check_event(&self, event: &EventEnvelope) -> Result<(), EventLogError> {
        let _ = event;
        Ok(())
    }

    /// Stores `event` at the end of the log and returns its sequence number.
    ///
    /// A driver that declares a
    /// [`dedup_window`](Capabilities::dedup_window) first looks the event's
    /// [`dedup_key`] up: if the log stored it within the window, nothing is
    /// stored and the answer is [`Appended::Duplicate`]. Then, for
    /// `expected` other than `Any` (only when the driver declares
    /// [`conditional_append`](Capabilities::conditional_append)), the event
    /// is stored only if the log's last number is as expected, atomically;
    /// otherwise the answer is [`EventLogError::Conflict`] with the actual
    /// last number.
    fn append(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> impl Future<Output = Result<Appended, EventLogError>> + Send;

    /// Stores `events` (at least one) in this order, as
    /// [`append`](Self::append) would each, and returns what it did with
    /// each, contiguously where the broker can. An event whose key came
    /// earlier in the batch is a duplicate of that one. `expected` applies
    /// to the log before the batch; on a conflict nothing is stored.
    fn append_batch(
        &self,
        events: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> impl Future<Output = Result<Vec<Appended>, EventLogError>> + Send;

    /// The sequence number of the last stored event; 0 for an empty log.
    fn last_seq_no(&self) -> impl Future<Output = Result<SeqNo, EventLogError>> + Send;

    /// The sequence number of the first event the log still holds (after
    /// retention removed older ones); the last plus one when it holds none.
    /// Asked when a subscription's numbering jumps, to tell events that are
    /// gone from events its consumer was moved past.
    fn first_seq_no(&self) -> impl Future<Output = Result<SeqNo, EventLogError>> + Send;

    /// The last sequence number `consumer` acknowledged (or was moved past),
    /// as the broker keeps it; `None` for a consumer at the beginning or
    /// unknown to the broker.
    fn acknowledged(
        &self,
        consumer: &str,
    ) -> impl Future<Output = Result<Option<SeqNo>, EventLogError>> + Send;

    /// Moves `consumer` so that its next event is `next` (1 or more; it may
    /// be past the end): everything before is acknowledged, nothing after.
    /// Creates the consumer if the broker does not know it.
    fn move_consumer(
        &self,
        consumer: &str,
        next: SeqNo,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;

    /// Acknowledges every event up to `seq_no` (stored, 1 or more) for
    /// `consumer`, leaving a position already past it where it is. The
    /// generic log never runs two of these for one consumer at once.
    fn ack(
        &self,
        consumer: &str,
        seq_no: SeqNo,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;

    /// A reader of the log's events for `consumer`, from `from` on, without
    /// moving the consumer's stored position. It may also give events
    /// before `from` (the generic log drops them), such as the consumer's
    /// unacknowledged ones.
    fn open_reader(
        &self,
        consumer: &str,
        from: SeqNo,
    ) -> impl Future<Output = Result<Self::Reader, EventLogError>> + Send;

    /// Whether the log still exists; asked when a read fails, so a deleted
    /// log ends its subscriptions instead of being retried forever.
    fn log_exists(&self) -> impl Future<Output = Result<bool, EventLogError>> + Send;

    /// Takes the lease of `consumer` for `holder`, or renews it, until
    /// `ttl` from now: `true` when `holder` holds it now, `false` when
    /// another holder's lease has not run out. Called only when the driver
    /// declares [`exclusive_subscriptions`](Capabilities::exclusive_subscriptions);
    /// such a driver also fences [`ack_fenced`](Self::ack_fenced) and
    /// [`move_consumer_fenced`](Self::move_consumer_fenced), and answers
    /// [`check_fenced`](Self::check_fenced).
    fn lease(
        &self,
        consumer: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, EventLogError>> + Send {
        let _ = (consumer, holder, ttl);
        let backend = self.capabilities().backend;
        async move {
            Err(EventLogError::Unsupported {
                backend,
                feature: "exclusive subscriptions",
            })
        }
    }

    /// Ends `holder`'s lease of `consumer`, if it holds one.
    fn release(
        &self,
        consumer: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send {
        let _ = (consumer, holder);
        async { Ok(()) }
    }

    /// [`ack`](Self::ack), unless another holder than `holder` holds a
    /// lease of `consumer` that has not run out: then
    /// [`EventLogError::Fenced`] and nothing changes, checked atomically
    /// with the ack. A driver without leases acks.
    fn ack_fenced(
        &self,
        consumer: &str,
        seq_no: SeqNo,
        holder: &str,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send {
        let _ = holder;
        self.ack(consumer, seq_no)
    }

    /// `Ok` unless another holder than `holder` holds a lease of
    /// `consumer` that has not run out: then [`EventLogError::Fenced`].
    /// Asked before a subscription that moves nothing opens its reader
    /// beside a holder's. A driver without leases has none to check.
    fn check_fenced(
        &self,
        consumer: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send {
        let _ = (consumer, holder);
        async { Ok(()) }
    }

    /// [`move_consumer`](Self::move_consumer), fenced as
    /// [`ack_fenced`](Self::ack_fenced).
    fn move_consumer_fenced(
        &self,
        consumer: &str,
        next: SeqNo,
        holder: &str,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send {
        let _ = holder;
        self.move_consumer(consumer, next)
    }
}

/// The identity of `event` for deduplication: its (`source`, `id`) pair
/// (CloudEvents ids are unique only per source), as 32 lowercase hex
/// digits of a SHA-256 over both, length-prefixed so no two pairs share a
/// key. Safe as a NATS header, a Redis key or a map key, whatever the
/// attributes hold.
pub fn dedup_key(event: &EventEnvelope) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::new()
        .chain_update((event.source.len() as u64).to_be_bytes())
        .chain_update(event.source.as_bytes())
        .chain_update(event.id.as_bytes())
        .finalize();
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut key, byte| {
            let _ = write!(key, "{byte:02x}");
            key
        })
}

/// `fut` within `after`, as `operation`: for the calls a driver makes
/// outside the generic log's operations, such as connecting.
pub async fn bounded<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, EventLogError>>,
) -> Result<T, EventLogError> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(EventLogError::Timeout { operation, after }))
}

/// How much one [`Reader::read`] may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadLimits {
    /// At most this many events.
    pub events: usize,
    /// At most about this many payload bytes; one event is returned even if
    /// it alone is larger.
    pub bytes: usize,
}

impl ReadLimits {
    /// The same limits, with at most `events` events.
    pub fn with_events(self, events: usize) -> Self {
        Self { events, ..self }
    }
}

/// One stored event as a reader found it.
pub type Record = Result<EventEnvelope, Undecodable>;

/// A stored event that is not in the documented wire format (a foreign
/// producer wrote it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Where it is stored.
    pub seq_no: SeqNo,
    /// What is wrong with it.
    pub reason: String,
}

impl Undecodable {
    /// The event at `seq_no`, which a decoder refused with `err` (usually
    /// a `Decode` error, whose reason is kept).
    pub fn from_error(seq_no: SeqNo, err: EventLogError) -> Self {
        let reason = match err {
            EventLogError::Decode { reason, .. } => reason,
            other => other.to_string(),
        };
        Self { seq_no, reason }
    }
}

impl From<Undecodable> for EventLogError {
    fn from(u: Undecodable) -> Self {
        EventLogError::Decode {
            seq_no: u.seq_no,
            reason: u.reason,
        }
    }
}

/// The events of one subscription, read from the broker.
pub trait Reader: Send + Unpin + 'static {
    /// Appends to `records` the next stored events in sequence order, each
    /// carrying its sequence number, within `limits`. Waits a while (the
    /// backend's block time) for at least one, and adds none when none
    /// came. `records` is empty when called, and reused from read to read.
    ///
    /// After an error the generic log opens a new reader (after a backoff)
    /// when the error is retryable and the log still exists, unless this
    /// one [`recovers_from`](Self::recovers_from) it.
    fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;

    /// The next event if it can be read at once, without waiting; `None`
    /// has the generic log call [`read`](Self::read). A reader with nothing
    /// to wait on (the in-memory log) answers here, so its subscriptions
    /// hand out each event with no future and no buffer; the default never
    /// can.
    fn next_ready(&mut self) -> Option<Record> {
        None
    }

    /// Whether this reader recovers from the retryable `err` by itself (its
    /// client reconnects and goes on from where it was), so the generic log
    /// reads from it again after a backoff instead of opening a new one.
    fn recovers_from(&self, err: &EventLogError) -> bool {
        let _ = err;
        false
    }
}

#[cfg(test)]
mod tests;
