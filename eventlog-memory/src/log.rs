//! The shared log and its consumers; its subscriptions are in `subscription`.

use crate::subscription::{Subscription, Waiters};
use async_trait::async_trait;
use eventlog_core::{
    Capabilities, ConsumerState, EventEnvelope, EventLog, EventStream, Result, SeekPosition, SeqNo,
    validate,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// The payload limit of a log made with [`InMemoryEventLog::new`]: 1 MiB, the
/// same as the broker backends' defaults, so code tested here fits there.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// A handle on one in-memory log. Clones share the log.
#[derive(Clone, Debug)]
pub struct InMemoryEventLog {
    shared: Arc<Shared>,
}

/// The log itself, shared by its handles and its subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The event with sequence number `n` is at index `n - 1`.
    events: RwLock<Vec<EventEnvelope>>,
    /// The subscriptions waiting for the next append.
    pub(crate) waiters: Waiters,
    /// Each consumer's next sequence number.
    consumers: Mutex<HashMap<String, SeqNo>>,
    max_payload: usize,
}

impl Shared {
    /// A copy of the event `seq_no`, if it is stored.
    pub(crate) fn get(&self, seq_no: SeqNo) -> Option<EventEnvelope> {
        let index = usize::try_from(seq_no.checked_sub(1)?).ok()?;
        let events = self.events.read().expect("log lock poisoned");
        events.get(index).cloned()
    }

    fn last(&self) -> Option<SeqNo> {
        let len = self.events.read().expect("log lock poisoned").len();
        (len > 0).then_some(len as SeqNo)
    }

    fn push_one(&self, mut envelope: EventEnvelope) -> SeqNo {
        let mut events = self.events.write().expect("log lock poisoned");
        let seq_no = events.len() as SeqNo + 1;
        envelope.seq_no = Some(seq_no);
        events.push(envelope);
        drop(events);
        self.waiters.wake_all();
        seq_no
    }

    fn push(&self, envelopes: Vec<EventEnvelope>) -> Vec<SeqNo> {
        let mut events = self.events.write().expect("log lock poisoned");
        let first = events.len() as SeqNo + 1;
        events.extend(envelopes.into_iter().zip(first..).map(|(mut e, n)| {
            e.seq_no = Some(n);
            e
        }));
        let last = events.len() as SeqNo;
        drop(events);
        self.waiters.wake_all();
        (first..=last).collect()
    }
}

impl Default for InMemoryEventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEventLog {
    /// An empty log accepting payloads up to [`DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// An empty log accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                events: RwLock::new(Vec::new()),
                waiters: Waiters::default(),
                consumers: Mutex::new(HashMap::new()),
                max_payload,
            }),
        }
    }

    /// How many subscription streams on this log are alive.
    pub fn subscription_count(&self) -> usize {
        self.shared.waiters.alive()
    }

    fn last(&self) -> Option<SeqNo> {
        self.shared.last()
    }

    /// The next sequence number `position` names now.
    fn resolve(&self, position: SeekPosition, stored: SeqNo) -> SeqNo {
        match position {
            SeekPosition::Beginning => 1,
            SeekPosition::Latest => self.last().unwrap_or(0) + 1,
            SeekPosition::Sequence(n) => n,
            _ => stored,
        }
    }

    /// Replaces `consumer`'s next sequence number (1 for a new consumer)
    /// with `update(next)`, and returns it.
    fn move_consumer(&self, consumer: &str, update: impl FnOnce(SeqNo) -> SeqNo) -> SeqNo {
        let mut consumers = self
            .shared
            .consumers
            .lock()
            .expect("consumer lock poisoned");
        // `get_mut` first: `entry` would copy the name on every ack.
        if let Some(next) = consumers.get_mut(consumer) {
            *next = update(*next);
            return *next;
        }
        let next = update(1);
        consumers.insert(consumer.to_owned(), next);
        next
    }

    /// Moves `consumer` to `position` and returns its next sequence number.
    fn seek_now(&self, consumer: &str, position: SeekPosition) -> SeqNo {
        self.move_consumer(consumer, |next| self.resolve(position, next))
    }
}

#[async_trait]
impl EventLog for InMemoryEventLog {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        validate::envelope(&envelope, self.shared.max_payload)?;
        Ok(self.shared.push_one(envelope))
    }

    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        validate::batch(&envelopes, self.shared.max_payload)?;
        Ok(self.shared.push(envelopes))
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        let next = self.seek_now(consumer, position);
        Ok(Box::pin(Subscription::new(self.shared.clone(), next)))
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()> {
        validate::consumer_name(consumer)?;
        validate::ack(consumer, seq_no, self.last())?;
        self.move_consumer(consumer, |next| next.max(seq_no + 1));
        Ok(())
    }

    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        self.seek_now(consumer, position);
        Ok(())
    }

    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>> {
        Ok(self.last())
    }

    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState> {
        validate::consumer_name(consumer)?;
        let next = self
            .shared
            .consumers
            .lock()
            .expect("consumer lock poisoned")
            .get(consumer)
            .copied();
        Ok(ConsumerState::from_next(next.unwrap_or(1), self.last()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("memory", self.shared.max_payload, false)
    }
}
