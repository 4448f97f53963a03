//! A subscription's reader: a Kafka consumer of its own, assigned the log's
//! partition at the wanted offset (no group membership, so no rebalance can
//! take the partition away). librdkafka reconnects after a broker restart
//! and goes on from its fetch position, so the reader outlives outages; the
//! generic log skips anything before the next expected sequence number.

use crate::codec;
use crate::driver::KafkaDriver;
use crate::error::BACKEND;
use chrono::{DateTime, Utc};
use eventlog_core::driver::{ReadLimits, Reader, Record, Undecodable};
use eventlog_core::{EventLogError, SeqNo};
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::BorrowedMessage;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Live readers per topic in this process, for `subscription_count`.
static LIVE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

pub(crate) fn live(topic: &str) -> usize {
    LIVE.lock()
        .expect("live lock poisoned")
        .get(topic)
        .copied()
        .unwrap_or(0)
}

/// The reader of one subscription.
pub struct KafkaReader {
    consumer: StreamConsumer,
    topic: String,
    wait: Duration,
}

impl KafkaReader {
    pub(crate) fn new(driver: &KafkaDriver, consumer: StreamConsumer) -> Self {
        let topic = driver.topic.clone();
        *LIVE
            .lock()
            .expect("live lock poisoned")
            .entry(topic.clone())
            .or_default() += 1;
        Self {
            consumer,
            topic,
            wait: eventlog_core::driver::Driver::read_wait(driver),
        }
    }
}

/// `message` as a record.
fn record(message: &BorrowedMessage<'_>) -> Record {
    let seq_no = message.offset() as SeqNo + 1;
    let timestamp = message
        .timestamp()
        .to_millis()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_else(Utc::now);
    codec::decode(
        seq_no,
        message.headers(),
        message.payload().unwrap_or_default(),
        timestamp,
    )
    .map_err(|e| Undecodable::from_error(seq_no, e))
}

impl Reader for KafkaReader {
    async fn read(&mut self, limits: ReadLimits) -> Result<Vec<Record>, EventLogError> {
        // `recv` is cancel-safe: a read that waited in vain loses nothing.
        let first = match tokio::time::timeout(self.wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Err(err)) => {
                return Err(EventLogError::Unavailable {
                    backend: BACKEND,
                    source: Box::new(err),
                });
            }
            Ok(Ok(message)) => record(&message),
        };
        let mut records = vec![first];
        let mut bytes = 0;
        // What librdkafka has already fetched, without waiting.
        while records.len() < limits.events && bytes < limits.bytes {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    bytes += message.payload_len();
                    records.push(record(&message));
                }
                // librdkafka retries by itself; the next read waits again.
                Some(Err(_)) | None => break,
            }
        }
        Ok(records)
    }

    /// librdkafka reconnects by itself and keeps its fetch position.
    fn recovers_from(&self, err: &EventLogError) -> bool {
        matches!(err, EventLogError::Unavailable { .. })
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        let mut live = LIVE.lock().expect("live lock poisoned");
        if let Some(n) = live.get_mut(&self.topic) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.topic);
            }
        }
    }
}
