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
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::BorrowedMessage;
#[cfg(feature = "probe")]
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
#[cfg(feature = "probe")]
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Live reader clients per topic in this process, for
/// `subscription_count` (feature `probe`).
#[cfg(feature = "probe")]
static LIVE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

#[cfg(feature = "probe")]
pub(crate) fn live(topic: &str) -> usize {
    LIVE.lock()
        .expect("live lock poisoned")
        .get(topic)
        .copied()
        .unwrap_or(0)
}

/// The context of a reader's librdkafka client. With the feature `probe`
/// it counts the client in [`LIVE`] from its creation until librdkafka has
/// destroyed it: rdkafka drops a client's context only after
/// `rd_kafka_destroy` returns, so the leak check (C14) sees the native
/// clients themselves, whatever holds them.
pub(crate) struct ReaderContext {
    #[cfg(feature = "probe")]
    topic: String,
}

impl ReaderContext {
    pub(crate) fn new(#[cfg_attr(not(feature = "probe"), expect(unused))] topic: &str) -> Self {
        #[cfg(feature = "probe")]
        {
            *LIVE
                .lock()
                .expect("live lock poisoned")
                .entry(topic.to_owned())
                .or_default() += 1;
        }
        Self {
            #[cfg(feature = "probe")]
            topic: topic.to_owned(),
        }
    }
}

impl ClientContext for ReaderContext {}
impl ConsumerContext for ReaderContext {}

#[cfg(feature = "probe")]
impl Drop for ReaderContext {
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

/// A subscription's Kafka consumer.
pub(crate) type ReaderClient = StreamConsumer<ReaderContext>;

/// The reader of one subscription.
pub struct KafkaReader {
    consumer: Arc<ReaderClient>,
    topic: String,
    wait: Duration,
    timeout: Duration,
    /// librdkafka reported a failure and no message came since: a read
    /// that waits in vain asks the broker whether it answers before it
    /// says all is well (librdkafka itself only reports failures).
    failing: bool,
}

impl KafkaReader {
    pub(crate) fn new(driver: &KafkaDriver, consumer: ReaderClient) -> Self {
        Self {
            consumer: Arc::new(consumer),
            topic: driver.topic.clone(),
            wait: eventlog_core::driver::Driver::read_wait(driver),
            timeout: driver.config.timeout,
            failing: false,
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

impl KafkaReader {
    /// Whether the broker answers: a watermark request of the log's
    /// partition.
    async fn check_broker(&self) -> Result<(), EventLogError> {
        // Within the generic log's bound of a read (the wait plus the
        // operation timeout), which already spent the wait.
        let timeout = self.timeout / 2;
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            consumer
                .client()
                .fetch_watermarks(&topic, crate::driver::PARTITION, timeout)
        })
        .await
        .map_err(|e| EventLogError::Backend {
            backend: BACKEND,
            source: Box::new(e),
        })?
        .map(drop)
        .map_err(|e| EventLogError::Unavailable {
            backend: BACKEND,
            source: Box::new(e),
        })
    }
}

impl Reader for KafkaReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> Result<(), EventLogError> {
        // `recv` is cancel-safe: a read that waited in vain loses nothing.
        let first = match tokio::time::timeout(self.wait, self.consumer.recv()).await {
            Err(_) if self.failing => {
                self.check_broker().await?;
                self.failing = false;
                return Ok(());
            }
            Err(_) => return Ok(()),
            Ok(Err(err)) => {
                self.failing = true;
                return Err(EventLogError::Unavailable {
                    backend: BACKEND,
                    source: Box::new(err),
                });
            }
            Ok(Ok(message)) => record(&message),
        };
        self.failing = false;
        records.push_back(first);
        let mut bytes = 0;
        // What librdkafka has already fetched, without waiting.
        while records.len() < limits.events && bytes < limits.bytes {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    bytes += message.payload_len();
                    records.push_back(record(&message));
                }
                // librdkafka retries by itself; the next read waits again.
                Some(Err(_)) | None => break,
            }
        }
        Ok(())
    }

    /// librdkafka reconnects by itself and keeps its fetch position.
    fn recovers_from(&self, err: &EventLogError) -> bool {
        matches!(err, EventLogError::Unavailable { .. })
    }
}
