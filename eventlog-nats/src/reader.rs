//! A subscription's reader: pull requests on the durable consumer, and the
//! reply subjects of what it received, for one-round-trip acks.
//!
//! Each pull request waits on the server up to the configured block time,
//! so a new event is delivered as soon as it is stored. After a failed pull
//! the generic log opens a new reader, which resets the consumer to its ack
//! floor first: deliveries lost in flight come again at once instead of
//! after the ack wait, and the generic log drops those it already handed
//! out.

use crate::codec;
use crate::driver::NatsDriver;
use crate::error::BACKEND;
use async_nats::Subject;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::Batch;
use chrono::{DateTime, Utc};
use eventlog_core::driver::{ReadLimits, Reader, Record, Undecodable};
use eventlog_core::{EventLogError, SeqNo};
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// At most this many delivered, unacknowledged messages per consumer keep
/// their reply subject for a fast ack; beyond, acks take the slower reset
/// path.
const MAX_REPLIES: usize = 100_000;

/// Delivered messages' numbers and reply subjects, in sequence order.
type Pending = VecDeque<(SeqNo, Subject)>;

/// Per consumer, the reply subjects of messages delivered to this handle's
/// newest reader of it and not yet acknowledged, in sequence order, with
/// that reader's number.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    all: Mutex<HashMap<String, (u64, Pending)>>,
    /// The number of the next reader.
    readers: std::sync::atomic::AtomicU64,
}

impl Replies {
    /// A number for a new reader.
    fn new_reader(&self) -> u64 {
        self.readers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Keeps the reply subject of a message delivered to `reader`; the
    /// subjects an older reader kept go (and an older reader keeps none).
    fn remember(&self, consumer: &str, reader: u64, seq_no: SeqNo, reply: Subject) {
        let mut all = self.all.lock().expect("replies lock poisoned");
        // No allocation for the consumer's name on the hot path.
        let (owner, replies) = match all.get_mut(consumer) {
            Some(entry) => entry,
            None => all.entry(consumer.to_owned()).or_default(),
        };
        match reader.cmp(owner) {
            // An older reader that still delivers: its acks take the reset path.
            std::cmp::Ordering::Less => return,
            std::cmp::Ordering::Greater => {
                *owner = reader;
                replies.clear();
            }
            std::cmp::Ordering::Equal => {}
        }
        if replies.len() >= MAX_REPLIES {
            replies.pop_front();
        }
        replies.push_back((seq_no, reply));
    }

    /// The reply subject of message `seq_no`, if a reader of this handle
    /// received it and it is not acknowledged yet.
    pub(crate) fn reply_of(&self, consumer: &str, seq_no: SeqNo) -> Option<Subject> {
        let all = self.all.lock().expect("replies lock poisoned");
        let (_, replies) = all.get(consumer)?;
        let at = replies
            .binary_search_by_key(&seq_no, |(seq, _)| *seq)
            .ok()?;
        Some(replies[at].1.clone())
    }

    /// Everything of `consumer` up to `seq_no` is acknowledged.
    pub(crate) fn acked(&self, consumer: &str, seq_no: SeqNo) {
        if let Some((_, replies)) = self
            .all
            .lock()
            .expect("replies lock poisoned")
            .get_mut(consumer)
        {
            while replies.front().is_some_and(|(seq, _)| *seq <= seq_no) {
                replies.pop_front();
            }
        }
    }

    /// Forgets `consumer`'s replies: it was moved, so they are stale.
    pub(crate) fn forget(&self, consumer: &str) {
        self.all
            .lock()
            .expect("replies lock poisoned")
            .remove(consumer);
    }

    /// Forgets `consumer`'s replies if `reader` kept them.
    fn forget_reader(&self, consumer: &str, reader: u64) {
        let mut all = self.all.lock().expect("replies lock poisoned");
        if all.get(consumer).is_some_and(|(owner, _)| *owner == reader) {
            all.remove(consumer);
        }
    }
}

/// The reader of one subscription.
pub struct NatsReader {
    replies: Arc<Replies>,
    /// Its number among the handle's readers.
    number: u64,
    consumer: String,
    pull: PullConsumer,
    batch: Option<Batch>,
    block: std::time::Duration,
    /// The largest message the server takes: a pull asks for at least
    /// that many bytes, so one event always fits.
    max_message: usize,
}

impl NatsReader {
    pub(crate) fn new(driver: &NatsDriver, consumer: &str, pull: PullConsumer) -> Self {
        Self {
            replies: driver.replies.clone(),
            number: driver.replies.new_reader(),
            consumer: consumer.to_owned(),
            pull,
            batch: None,
            block: driver.config.block,
            max_message: driver.max_message,
        }
    }

    /// The next message of the current pull request, starting one if
    /// there is none; `None` when the request ended.
    async fn next_message(
        &mut self,
        limits: ReadLimits,
    ) -> Result<Option<async_nats::jetstream::Message>, EventLogError> {
        let batch = match &mut self.batch {
            Some(batch) => batch,
            None => {
                let batch = self
                    .pull
                    .batch()
                    .max_messages(limits.events)
                    .max_bytes(limits.bytes.max(self.max_message))
                    .expires(self.block)
                    .messages()
                    .await
                    .map_err(unavailable)?;
                self.batch.insert(batch)
            }
        };
        match batch.next().await {
            None => {
                self.batch = None;
                Ok(None)
            }
            Some(Err(e)) => Err(unavailable(e)),
            Some(Ok(message)) => Ok(Some(message)),
        }
    }

    /// `message` as a record, keeping its reply subject.
    fn record(&self, message: async_nats::jetstream::Message) -> Result<Record, EventLogError> {
        let info = message.info().map_err(|e| EventLogError::Backend {
            backend: BACKEND,
            source: format!("not a JetStream delivery: {e}").into(),
        })?;
        let seq_no = info.stream_sequence;
        let published =
            DateTime::<Utc>::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64);
        let record = codec::decode(
            seq_no,
            message.message.headers.as_ref(),
            message.message.payload.clone(),
            published,
        )
        .map_err(|e| Undecodable::from_error(seq_no, e));
        if let Some(reply) = message.message.reply.clone() {
            self.replies
                .remember(&self.consumer, self.number, seq_no, reply);
        }
        Ok(record)
    }
}

/// A failed pull: the connection or the server went away (the generic log
/// tells a deleted stream apart before it retries).
fn unavailable(err: impl Into<eventlog_core::BoxError>) -> EventLogError {
    EventLogError::Unavailable {
        backend: BACKEND,
        source: err.into(),
    }
}

impl Drop for NatsReader {
    /// Its reply subjects go with it (not a newer reader's): acks after
    /// the subscription ended take the reset path, and a handle keeps
    /// nothing for consumers it no longer reads.
    fn drop(&mut self) {
        self.replies.forget_reader(&self.consumer, self.number);
    }
}

impl Reader for NatsReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> Result<(), EventLogError> {
        let Some(first) = self.next_message(limits).await? else {
            return Ok(());
        };
        records.push_back(self.record(first)?);
        // What has already arrived, without waiting: a timer per message
        // would cost more than the rest of its handling.
        while records.len() < limits.events {
            let Some(batch) = &mut self.batch else { break };
            match batch.next().now_or_never() {
                Some(Some(Ok(message))) => records.push_back(self.record(message)?),
                Some(Some(Err(e))) => return Err(unavailable(e)),
                Some(None) => {
                    self.batch = None;
                    break;
                }
                None => break,
            }
        }
        Ok(())
    }
}
