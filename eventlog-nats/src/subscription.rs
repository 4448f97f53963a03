//! A subscription: pull requests on the durable consumer, one batch at a
//! time.
//!
//! Each pull request waits on the server up to the configured block time,
//! so a new event is delivered as soon as it is stored. After any failed
//! pull (a lost connection, a restarted server) the consumer is reset to its
//! ack floor before the next one: deliveries lost in flight come again at
//! once instead of after the ack wait, and the subscription skips those it
//! already handed out, so the caller sees no gap and no duplicate.

use crate::codec;
use crate::log::NatsEventLog;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::Batch;
use chrono::{DateTime, Utc};
use eventlog_core::{Backoff, EventEnvelope, EventSource, EventStream, SeqNo, into_stream};
use futures::{FutureExt, StreamExt};

/// Messages per pull request.
const BATCH: usize = 512;

struct Subscription {
    log: NatsEventLog,
    consumer: String,
    pull: PullConsumer,
    batch: Option<Batch>,
    /// A pull failed: reset to the ack floor before the next one.
    dirty: bool,
    /// The last sequence number handed out.
    last: SeqNo,
}

/// The subscription of `consumer`, whose durable is reset so that the next
/// delivery follows `last`.
pub(crate) fn open(
    log: NatsEventLog,
    consumer: String,
    pull: PullConsumer,
    last: SeqNo,
) -> EventStream {
    let subscription = Subscription {
        log,
        consumer,
        pull,
        batch: None,
        dirty: false,
        last,
    };
    into_stream(subscription)
}

impl EventSource for Subscription {
    async fn next_event(&mut self) -> Option<EventEnvelope> {
        let mut backoff = Backoff::default();
        loop {
            match self.poll_once().await {
                Ok(Some(event)) => return Some(event),
                Ok(None) => backoff.reset(),
                Err(Failure::Fatal(reason)) => {
                    tracing::error!(log = %self.log.config().log, consumer = %self.consumer, %reason, "subscription ended");
                    return None;
                }
                Err(Failure::Transient(reason)) => {
                    let timeout = self.log.config().timeout;
                    // A deleted stream fails every pull: end instead of
                    // retrying forever.
                    if let Ok(Ok(false)) =
                        tokio::time::timeout(timeout, self.log.stream_exists()).await
                    {
                        tracing::error!(log = %self.log.config().log, consumer = %self.consumer, %reason, "subscription ended: the log's stream was deleted");
                        return None;
                    }
                    tracing::warn!(log = %self.log.config().log, consumer = %self.consumer, %reason, "pull failed; retrying");
                    self.batch = None;
                    self.dirty = true;
                    backoff.wait().await;
                }
            }
        }
    }
}

impl Subscription {
    /// The next new event, or `None` when a pull request ended without one.
    async fn poll_once(&mut self) -> Result<Option<EventEnvelope>, Failure> {
        let config = self.log.config();
        let (timeout, block) = (config.timeout, config.block);
        if self.dirty {
            tokio::time::timeout(timeout, self.log.reset(&self.consumer, None))
                .await
                .map_err(|_| Failure::Transient("reset timed out".into()))?
                .map_err(|e| Failure::Transient(format!("{e:#}")))?;
            self.dirty = false;
        }
        let batch = match &mut self.batch {
            Some(batch) => batch,
            None => {
                let request = self
                    .pull
                    .batch()
                    .max_messages(BATCH)
                    .expires(block)
                    .messages();
                let batch = tokio::time::timeout(timeout, request)
                    .await
                    .map_err(|_| Failure::Transient("pull request timed out".into()))?
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                self.batch.insert(batch)
            }
        };
        // A message already received needs no timer: one per message would
        // cost more than the rest of its handling.
        let next = match batch.next().now_or_never() {
            Some(next) => Ok(next),
            None => tokio::time::timeout(block + timeout, batch.next()).await,
        };
        let message = match next {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "no answer to a pull within {:?}",
                    block + timeout
                )));
            }
            Ok(None) => {
                self.batch = None;
                return Ok(None);
            }
            Ok(Some(Err(e))) => return Err(Failure::Transient(e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        let info = message
            .info()
            .map_err(|e| Failure::Fatal(format!("not a JetStream delivery: {e}")))?;
        let seq = info.stream_sequence;
        if seq <= self.last {
            return Ok(None);
        }
        let published =
            DateTime::<Utc>::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64);
        let event = codec::decode(
            seq,
            message.message.headers.as_ref(),
            message.message.payload.clone(),
            published,
        )
        .map_err(|e| Failure::Fatal(e.to_string()))?;
        if let Some(reply) = message.message.reply.clone() {
            self.log.inner.remember_reply(&self.consumer, seq, reply);
        }
        self.last = seq;
        Ok(Some(event))
    }
}

/// Why a pull failed: a lost server is retried, anything else ends the
/// subscription.
enum Failure {
    Transient(String),
    Fatal(String),
}
