//! A subscription: a Kafka consumer of its own, assigned the log's partition
//! at the wanted offset (no group membership, so no rebalance can take the
//! partition away). librdkafka reconnects after a broker restart and goes on
//! from its fetch position; the subscription skips anything before the next
//! expected sequence number, so the caller sees no gap and no duplicate.

use crate::codec;
use crate::log::KafkaEventLog;
use chrono::{DateTime, Utc};
use eventlog_core::{Backoff, EventEnvelope, EventSource, EventStream, SeqNo, into_stream};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Live subscriptions per topic in this process, for `subscription_count`.
static LIVE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

pub(crate) fn live(topic: &str) -> usize {
    LIVE.lock()
        .expect("live lock poisoned")
        .get(topic)
        .copied()
        .unwrap_or(0)
}

/// Counts a subscription as live until dropped.
struct Live(String);

impl Live {
    fn new(topic: &str) -> Self {
        *LIVE
            .lock()
            .expect("live lock poisoned")
            .entry(topic.to_owned())
            .or_default() += 1;
        Self(topic.to_owned())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut live = LIVE.lock().expect("live lock poisoned");
        if let Some(n) = live.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.0);
            }
        }
    }
}

struct Subscription {
    log: KafkaEventLog,
    consumer: String,
    reader: Arc<StreamConsumer>,
    /// The next sequence number to hand out.
    next: SeqNo,
    _live: Live,
}

/// The subscription of `consumer` through `reader`, handing out events from
/// `next` on.
pub(crate) fn open(
    log: KafkaEventLog,
    consumer: String,
    reader: StreamConsumer,
    next: SeqNo,
) -> EventStream {
    let live = Live::new(log.topic());
    let subscription = Subscription {
        log,
        consumer,
        reader: Arc::new(reader),
        next,
        _live: live,
    };
    into_stream(subscription)
}

impl EventSource for Subscription {
    async fn next_event(&mut self) -> Option<EventEnvelope> {
        let mut backoff = Backoff::default();
        loop {
            let message = match self.reader.recv().await {
                Ok(message) => message,
                Err(err) => {
                    if matches!(
                        err.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::UnknownTopic
                        )
                    ) && self.topic_is_gone().await
                    {
                        tracing::error!(topic = %self.log.topic(), consumer = %self.consumer, error = %err, "subscription ended: the log's topic was deleted");
                        return None;
                    }
                    // librdkafka retries by itself; these are reports.
                    tracing::warn!(topic = %self.log.topic(), consumer = %self.consumer, error = %err, "consumer error");
                    backoff.wait().await;
                    continue;
                }
            };
            let seq = message.offset() as SeqNo + 1;
            if seq < self.next {
                continue;
            }
            let timestamp = message
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or_else(Utc::now);
            match codec::decode(
                seq,
                message.headers(),
                message.payload().unwrap_or_default(),
                timestamp,
            ) {
                Ok(event) => {
                    self.next = seq + 1;
                    return Some(event);
                }
                Err(err) => {
                    tracing::error!(topic = %self.log.topic(), consumer = %self.consumer, error = %err, "subscription ended");
                    return None;
                }
            }
        }
    }
}

impl Subscription {
    /// Whether the broker's metadata confirms that the topic no longer
    /// exists (a report of an unknown topic may also come from a broker
    /// that has not heard of a new topic yet). Asked through the reader,
    /// a consumer, which never creates topics by asking.
    async fn topic_is_gone(&self) -> bool {
        let (reader, topic) = (Arc::clone(&self.reader), self.log.topic().to_owned());
        let timeout = self.log.config().timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            reader
                .fetch_metadata(Some(&topic), timeout)
                .map(|m| m.topics().first().and_then(|t| t.error()))
        })
        .await;
        matches!(
            metadata,
            Ok(Ok(Some(
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            )))
        )
    }
}
