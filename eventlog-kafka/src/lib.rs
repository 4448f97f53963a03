//! The Kafka backend of [`eventlog`](https://docs.rs/eventlog), over
//! librdkafka (built from source by `rdkafka`).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use eventlog_core::{EventEnvelope, EventLog};
//! use eventlog_kafka::{KafkaConfig, KafkaEventLog};
//!
//! let config = KafkaConfig::builder("127.0.0.1:9092", "orders").build()?;
//! let log = KafkaEventLog::connect(config).await?;
//! log.append(EventEnvelope::new("/shop", "order.placed", &b"{}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! # How the contract maps onto Kafka
//!
//! | EventLog | Kafka |
//! |---|---|
//! | a log | one topic `eventlog.<log>` (prefix configurable) with one partition, so the log has one total order; created on first use with the configured replication factor and retention (forever by default), or required to exist |
//! | a sequence number | the record's offset + 1 |
//! | `append` | an idempotent producer (`enable.idempotence`, `acks=all`), awaiting the delivery report; `message.timeout.ms` is the configured timeout, so an append never hangs for minutes |
//! | `append_batch` | all records queued, then all delivery reports awaited: librdkafka batches them and keeps their order |
//! | a consumer | the consumer group named after it (prefix configurable) |
//! | its position | the group's committed offset: the offset of the next record to read, which is the last acknowledged sequence number |
//! | `ack(c, n)` | commits offset `n` unless the committed offset is already there (never backwards); the generic log has checked the range |
//! | `seek(c, p)` | commits the offset of the position |
//! | `subscribe(c, p)` | a seek (not for `LastAcknowledged`), then a consumer of its own, assigned the partition at the position (group `eventlog-reader`, which never commits nor joins: no rebalance involves it); once caught up, the handle's shared tail instead (below) |
//! | `consumer_state` | committed offset and high watermark |
//! | `last_seq_no` | the high watermark |
//!
//! Blocking librdkafka calls (offsets, watermarks, metadata) run on Tokio's
//! blocking pool, with librdkafka's own bound at the configured timeout;
//! every public operation is bounded as a whole by the generic log.
//!
//! The contract's rules live in `eventlog-core`'s generic log; this crate is
//! its driver ([`KafkaDriver`], [`KafkaReader`]): the broker calls only.
//! Kafka has no compare-and-set of committed offsets, so `ack` reads the
//! committed offset and then commits; the generic log runs one ack of a
//! consumer at a time per handle, so concurrent acks end at the highest
//! (C37).
//!
//! **Idle subscriptions share a client.** A librdkafka consumer can hold a
//! partition at one position only, so a subscription reading behind the
//! end has a client of its own (threads, connections, buffers). Once
//! librdkafka reports the end of the partition (it caught up), it closes
//! that client and follows the handle's tail: one client at the end of the log whose events every
//! caught-up subscription of the handle receives through a broadcast
//! channel as deep as the read-ahead. A follower that falls further behind
//! than that (its application stopped taking events) opens a client of its
//! own again at its next event, with no gap. 1,000 idle subscriptions cost
//! about 24 KiB each (`docs/benchmarks.md`), not a client each.
//!
//! **One reader per consumer name.** Subscriptions do not join the group,
//! so two on one name both read every event, and their commits race; use
//! one consumer name per reader.
//!
//! **Transactions** are not used, so no control record takes an offset and
//! the numbering has no gap. Do not write to the topic with a transactional
//! producer.
//!
//! **Leak checks.** Kafka has no API that lists client connections, so the
//! feature `probe` adds `KafkaEventLog::subscription_count`, which counts
//! the librdkafka clients of subscription readers that exist in this
//! process, until librdkafka has destroyed them; production builds leave
//! it off.

mod codec;
mod config;
mod driver;
mod error;
mod log;
mod reader;

pub use config::{
    DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT, DEFAULT_TOPIC_PREFIX, KafkaConfig, KafkaConfigBuilder,
    Sasl,
};
pub use driver::KafkaDriver;
pub use log::KafkaEventLog;
pub use reader::KafkaReader;
