//! The shared log, its consumers and its subscriptions.

use async_trait::async_trait;
use eventlog_core::{
    Capabilities, ConsumerState, EventEnvelope, EventLog, EventSource, EventStream, Result,
    SeekPosition, SeqNo, into_stream, validate,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// The payload limit of a log made with [`InMemoryEventLog::new`]: 1 MiB, the
/// same as the broker backends' defaults, so code tested here fits there.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// How many events a subscription copies out per lock.
const READ_BATCH: usize = 512;

/// A handle on one in-memory log. Clones share the log.
#[derive(Clone, Debug)]
pub struct InMemoryEventLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    events: RwLock<Vec<EventEnvelope>>,
    /// The last sequence number; subscribers wait on it. Written while the
    /// `events` write lock is held, so it never runs ahead of `events`.
    head: watch::Sender<SeqNo>,
    /// Each consumer's next sequence number.
    consumers: Mutex<HashMap<String, SeqNo>>,
    max_payload: usize,
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
                head: watch::Sender::new(0),
                consumers: Mutex::new(HashMap::new()),
                max_payload,
            }),
        }
    }

    /// How many subscription streams on this log are alive.
    pub fn subscription_count(&self) -> usize {
        self.shared.head.receiver_count()
    }

    fn last(&self) -> Option<SeqNo> {
        let last = *self.shared.head.borrow();
        (last > 0).then_some(last)
    }

    fn push_one(&self, envelope: EventEnvelope) -> SeqNo {
        let mut events = self.shared.events.write().expect("log lock poisoned");
        let seq_no = events.len() as SeqNo + 1;
        events.push(envelope.with_seq_no(seq_no));
        self.shared.head.send_replace(seq_no);
        seq_no
    }

    fn push(&self, envelopes: Vec<EventEnvelope>) -> Vec<SeqNo> {
        let mut events = self.shared.events.write().expect("log lock poisoned");
        let first = events.len() as SeqNo + 1;
        let seq_nos: Vec<SeqNo> = (first..first + envelopes.len() as SeqNo).collect();
        events.extend(
            envelopes
                .into_iter()
                .zip(&seq_nos)
                .map(|(e, &n)| e.with_seq_no(n)),
        );
        self.shared.head.send_replace(events.len() as SeqNo);
        seq_nos
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
        let next = consumers.entry(consumer.to_owned()).or_insert(1);
        *next = update(*next);
        *next
    }

    /// Moves `consumer` to `position` and returns its next sequence number.
    fn seek_now(&self, consumer: &str, position: SeekPosition) -> SeqNo {
        self.move_consumer(consumer, |next| self.resolve(position, next))
    }

    fn stream_from(&self, next: SeqNo) -> EventStream {
        into_stream(Reader {
            head: self.shared.head.subscribe(),
            shared: self.shared.clone(),
            next,
            buffer: VecDeque::new(),
        })
    }
}

/// A subscription: copies stored events out in batches, then waits on the
/// head for more.
struct Reader {
    shared: Arc<Shared>,
    head: watch::Receiver<SeqNo>,
    next: SeqNo,
    buffer: VecDeque<EventEnvelope>,
}

impl EventSource for Reader {
    async fn next_event(&mut self) -> Option<EventEnvelope> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next += 1;
                return Some(event);
            }
            // Mark the current head seen before reading, so an append after
            // the read wakes `changed` below: no lost wake-up.
            self.head.borrow_and_update();
            {
                let events = self.shared.events.read().expect("log lock poisoned");
                let from = (self.next - 1) as usize;
                let to = events.len().min(from + READ_BATCH);
                if from < to {
                    self.buffer.extend(events[from..to].iter().cloned());
                    continue;
                }
            }
            // The sender lives in `shared`, which this reader holds.
            self.head.changed().await.ok()?;
        }
    }
}

#[async_trait]
impl EventLog for InMemoryEventLog {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        validate::envelope(&envelope, self.shared.max_payload)?;
        Ok(self.push_one(envelope))
    }

    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        validate::batch(&envelopes, self.shared.max_payload)?;
        Ok(self.push(envelopes))
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        Ok(self.stream_from(self.seek_now(consumer, position)))
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
