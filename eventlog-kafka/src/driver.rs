//! The Kafka driver: the broker calls behind [`KafkaEventLog`](crate::KafkaEventLog).

use crate::codec;
use crate::config::KafkaConfig;
use crate::error::{AuthWatch, BACKEND, from_kafka};
use crate::reader::KafkaReader;
use eventlog_core::driver::{Driver, bounded};
use eventlog_core::{Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The log's one partition: one total order.
pub(crate) const PARTITION: i32 = 0;
/// How much longer than librdkafka's own timeouts connecting may take, so
/// librdkafka reports its own (more precise) failure first.
const GRACE: Duration = Duration::from_secs(1);
/// How long before the operation's bound an append gives up on its
/// delivery report.
const DOUBT: Duration = Duration::from_millis(50);
/// The group name of the client that asks whether the topic exists; it
/// never commits.
const METADATA_GROUP: &str = "eventlog-metadata";
/// How long a subscription's read waits for a new event before it returns
/// none.
const READ_WAIT: Duration = Duration::from_secs(1);
/// How many groups' offset clients a handle keeps (each is a librdkafka
/// client with its own threads and connections); the least recently used
/// idle one is closed to make room, and made again when needed.
const GROUP_CLIENTS: usize = 16;

/// The offset client of one consumer group.
struct Group {
    client: BaseConsumer,
    /// Held by each read-then-commit on a blocking thread until librdkafka
    /// returns, even after the operation timed out: a commit that outlives
    /// its timeout lands before the next one of the group starts, never
    /// after it (which would move the position back).
    commits: Mutex<()>,
    /// When it was last used, in uses of the cache.
    used: std::sync::atomic::AtomicU64,
}

impl Group {
    /// The group's committed offset: the last acknowledged sequence
    /// number, `None` before any commit.
    fn committed(&self, list: TopicPartitionList, t: Duration) -> KafkaResult<Option<SeqNo>> {
        let committed = self.client.committed_offsets(list, t)?;
        Ok(match committed.elements().first().map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o as SeqNo),
            _ => None,
        })
    }

    /// Commits `to` after the group's commits in flight; with `unless`
    /// (a sequence number and the partition to read), not when the group's
    /// position is already at or past that number. Kafka has no
    /// compare-and-set of offsets: the lock makes the read and the commit
    /// one step for this handle.
    fn commit(
        &self,
        to: &TopicPartitionList,
        unless: Option<(SeqNo, TopicPartitionList)>,
        t: Duration,
    ) -> KafkaResult<()> {
        let _one_at_a_time = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seq_no, read)) = unless
            && self
                .committed(read, t)?
                .is_some_and(|acked| seq_no <= acked)
        {
            return Ok(());
        }
        self.client.commit(to, CommitMode::Sync)
    }
}

/// The broker calls of one single-partition topic.
pub struct KafkaDriver {
    pub(crate) config: KafkaConfig,
    pub(crate) topic: String,
    /// Replaced when its producer id is no longer good (see
    /// `renew_producer`), with the number of replacements so far.
    producer: RwLock<(u64, FutureProducer<AuthWatch>)>,
    /// What the producers' error callbacks saw of a refused login.
    watch: AuthWatch,
    /// Per consumer group used lately, a client that reads and commits its
    /// offsets; it never joins the group, so no rebalance ever involves it.
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Uses of `groups`, the clock of its least-recently-used eviction.
    uses: std::sync::atomic::AtomicU64,
    /// The end of the log, read once for every caught-up subscription.
    pub(crate) tail: Arc<crate::reader::TailSlot>,
}

impl fmt::Debug for KafkaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDriver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The librdkafka settings every client of `config` shares.
///
/// A client gives up on a request the broker leaves unanswered
/// (`socket.timeout.ms`) after the operation timeout. A subscription's
/// reader waits at least 10 s: its fetches are short polls (100 ms,
/// `fetch.wait.max.ms`) of about 1 MiB (`max.partition.fetch.bytes`), so a
/// fetch that long unanswered was lost (a starved or restarted broker) and is sent
/// again, where librdkafka's default would leave the reader silent for a
/// minute.
pub(crate) fn client_config(config: &KafkaConfig, reader: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    let socket_timeout = match reader {
        true => config.timeout.max(Duration::from_secs(10)),
        false => config.timeout,
    }
    // librdkafka's range for it; the operation's own bound still holds.
    .clamp(Duration::from_millis(10), Duration::from_secs(300));
    c.set("socket.timeout.ms", socket_timeout.as_millis().to_string());
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("eventlog-{}", config.log))
        .set(
            "security.protocol",
            match (config.tls, config.sasl.is_some()) {
                (false, false) => "plaintext",
                (true, false) => "ssl",
                (false, true) => "sasl_plaintext",
                (true, true) => "sasl_ssl",
            },
        );
    if let Some(sasl) = &config.sasl {
        c.set("sasl.mechanism", &sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    if let Some(ca) = &config.ca_location {
        c.set("ssl.ca.location", ca);
    }
    for (key, value) in &config.properties {
        c.set(key, value.expose());
    }
    c
}

impl KafkaDriver {
    /// Connects to the brokers of `config`, creating the topic if
    /// configured so and checking that it has one partition.
    pub(crate) async fn connect(config: KafkaConfig) -> Result<Self, EventLogError> {
        let watch = AuthWatch::default();
        let producer = RwLock::new((0, new_producer(&config, &watch)?));
        let topic = config.topic();
        let tail = Arc::new(crate::reader::TailSlot::new(&config));
        let driver = Self {
            config,
            topic,
            producer,
            watch,
            groups: Mutex::new(HashMap::new()),
            uses: Default::default(),
            tail,
        };
        bounded(
            "connect",
            driver.config.timeout + GRACE,
            driver.ensure_topic(),
        )
        .await
        .map_err(|e| driver.watch.explain(e))?;
        Ok(driver)
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Runs the blocking librdkafka call `f` off the async runtime, with
    /// librdkafka's own bound at the operation timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(Duration) -> rdkafka::error::KafkaResult<T> + Send + 'static,
    ) -> Result<T, EventLogError> {
        let after = self.timeout();
        tokio::task::spawn_blocking(move || f(after))
            .await
            .map_err(|e| EventLogError::Backend {
                backend: BACKEND,
                source: Box::new(e),
            })?
            .map_err(|e| from_kafka(operation, after, e))
    }

    async fn ensure_topic(&self) -> Result<(), EventLogError> {
        match self.topic_partitions().await? {
            Some(1) => Ok(()),
            Some(n) => Err(EventLogError::InvalidConfig {
                reason: format!(
                    "topic {} has {n} partitions; a log needs exactly 1 for one total order",
                    self.topic
                ),
            }),
            None => Err(EventLogError::InvalidConfig {
                reason: format!(
                    "topic {} does not exist, and create_topic is off",
                    self.topic
                ),
            }),
        }
    }

    /// Creates the topic if configured so and returns its partition count.
    async fn topic_partitions(&self) -> Result<Option<usize>, EventLogError> {
        let config = &self.config;
        if config.create_topic {
            let admin: AdminClient<DefaultClientContext> = client_config(config, false)
                .create()
                .map_err(|e| invalid_config(&e))?;
            let retention = config
                .retention
                .map_or("-1".to_owned(), |r| r.as_millis().to_string());
            let topic = NewTopic::new(
                &self.topic,
                1,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("retention.ms", &retention);
            let options = AdminOptions::new()
                .operation_timeout(Some(self.timeout()))
                .request_timeout(Some(self.timeout()));
            let results = admin
                .create_topics([&topic], &options)
                .await
                .map_err(|e| from_kafka("connect", self.timeout(), e))?;
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(EventLogError::Backend {
                            backend: BACKEND,
                            source: format!("creating topic {topic}: {code}").into(),
                        });
                    }
                }
            }
        }
        let producer = self.producer();
        let topic = self.topic.clone();
        self.blocking("connect", move |t| {
            let metadata = producer.client().fetch_metadata(Some(&topic), t)?;
            Ok(metadata
                .topics()
                .first()
                .filter(|m| m.error().is_none())
                .map(|m| m.partitions().len()))
        })
        .await
    }

    fn producer(&self) -> FutureProducer<AuthWatch> {
        self.producer
            .read()
            .expect("producer lock poisoned")
            .1
            .clone()
    }

    /// Replaces the producer after a delivery error that leaves its producer
    /// id in doubt: a timed-out or fenced delivery, or a fatal idempotence
    /// error. The failed append is reported; the next one gets a fresh
    /// producer id. Apache Kafka would let librdkafka bump the epoch of the
    /// old id instead, but tansu 0.6 loses its storage task when it meets
    /// such a bump after a restart, so a fresh id is the portable way.
    ///
    /// `sent_by` is the number of the producer that sent the failed
    /// append: when concurrent appends fail together, the first replaces
    /// it and the others find it replaced already.
    fn renew_producer(&self, sent_by: u64, code: Option<RDKafkaErrorCode>) {
        let stale = matches!(
            code,
            Some(
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::Unknown
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::ProducerFenced
            )
        ) || self.producer().client().fatal_error().is_some();
        if !stale {
            return;
        }
        let mut current = self.producer.write().expect("producer lock poisoned");
        if current.0 != sent_by {
            return;
        }
        match new_producer(&self.config, &self.watch) {
            Ok(producer) => {
                tracing::warn!(topic = %self.topic, ?code, "replacing the producer");
                let (_, old) = std::mem::replace(&mut *current, (sent_by + 1, producer));
                drop(current);
                // The appends still in flight on the old producer may land:
                // they get their own delivery reports (librdkafka times
                // them out at the same bound) before it goes. Not on the
                // runtime: flushing blocks.
                let bound = self.timeout();
                tokio::task::spawn_blocking(move || {
                    let _ = old.flush(bound);
                    drop(old)
                });
            }
            Err(err) => {
                tracing::error!(topic = %self.topic, %err, "cannot replace the producer")
            }
        }
    }

    /// The low and high watermarks: the offset of the first stored event,
    /// and the offset the next event gets. Offsets are sequence numbers
    /// minus one, so the high watermark is the last sequence number and the
    /// low one plus one the first.
    async fn watermarks(&self) -> Result<(SeqNo, SeqNo), EventLogError> {
        let producer = self.producer();
        let topic = self.topic.clone();
        let (low, high) = self
            .blocking("last_seq_no", move |t| {
                producer.client().fetch_watermarks(&topic, PARTITION, t)
            })
            .await?;
        Ok((low.max(0) as SeqNo, high.max(0) as SeqNo))
    }

    /// The offset client of `consumer`'s group.
    fn group(&self, consumer: &str) -> Result<Arc<Group>, EventLogError> {
        use std::sync::atomic::Ordering::Relaxed;
        let name = self.config.group(consumer);
        let now = self.uses.fetch_add(1, Relaxed);
        let mut groups = self.groups.lock().expect("groups lock poisoned");
        if let Some(group) = groups.get(&name) {
            group.used.store(now, Relaxed);
            return Ok(group.clone());
        }
        let mut evicted = Vec::new();
        while groups.len() >= GROUP_CLIENTS {
            // Only idle ones: a commit in flight keeps its group's lock.
            let idle = groups
                .iter()
                .filter(|(_, g)| Arc::strong_count(g) == 1)
                .min_by_key(|(_, g)| g.used.load(Relaxed))
                .map(|(name, _)| name.clone());
            match idle.and_then(|idle| groups.remove(&idle)) {
                Some(group) => evicted.push(group),
                None => break,
            }
        }
        if !evicted.is_empty() {
            // Destroying a librdkafka client blocks until its threads end.
            tokio::task::spawn_blocking(move || drop(evicted));
        }
        let client: BaseConsumer = client_config(&self.config, false)
            .set("group.id", &name)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| invalid_config(&e))?;
        let group = Arc::new(Group {
            client,
            commits: Mutex::new(()),
            used: now.into(),
        });
        groups.insert(name, group.clone());
        Ok(group)
    }

    /// The offset of the event after `seq_no`, as Kafka counts: sequence
    /// numbers past `i64::MAX` have none.
    fn offset_after(seq_no: SeqNo) -> Result<Offset, EventLogError> {
        offset_after(seq_no).map(Offset::Offset)
    }

    fn partition_at(&self, offset: Offset) -> Result<TopicPartitionList, EventLogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, PARTITION, offset)
            .map_err(|e| from_kafka("offsets", self.timeout(), e))?;
        Ok(list)
    }

    /// The committed offset of `consumer`'s group: the next sequence number
    /// minus one, so the last acknowledged one. `None` before any commit.
    async fn committed(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        let group = self.group(consumer)?;
        let list = self.partition_at(Offset::Invalid)?;
        self.blocking("consumer_state", move |t| group.committed(list, t))
            .await
    }

    /// Queues `event` on the current producer: its delivery, and the
    /// producer's number.
    fn send(&self, event: &EventEnvelope) -> Result<(u64, DeliveryFuture), EventLogError> {
        let record = FutureRecord::<(), [u8]>::to(&self.topic)
            .payload(&event.payload[..])
            .headers(codec::encode(event));
        let (number, producer) = &*self.producer.read().expect("producer lock poisoned");
        producer
            .send_result(record)
            .map(|delivery| (*number, delivery))
            .map_err(|(e, _)| from_kafka("append", self.timeout(), e))
    }

    async fn delivered(
        &self,
        operation: &'static str,
        (sent_by, delivery): (u64, DeliveryFuture),
    ) -> Result<SeqNo, EventLogError> {
        let after = self.timeout();
        // Just inside the operation's bound (librdkafka times the message
        // out at the same bound): the delivery is in doubt, and so is the
        // producer id. A caller that drops the append renews nothing.
        let Ok(report) = tokio::time::timeout(after.saturating_sub(DOUBT), delivery).await else {
            self.renew_producer(sent_by, Some(RDKafkaErrorCode::MessageTimedOut));
            return Err(EventLogError::Timeout { operation, after });
        };
        match report {
            // A broker that recognises a resend of the idempotent producer
            // (after a reconnection) may confirm it with no offset (tansu
            // answers `DuplicateSequenceNumber`, and librdkafka reports
            // offset -1): stored, but not where. The soak's kills found it.
            Ok(Ok(delivery)) => u64::try_from(delivery.offset)
                .map(|offset| offset + 1)
                .map_err(|_| EventLogError::Backend {
                    backend: BACKEND,
                    source: format!(
                        "the broker confirmed the {operation} without an offset ({}): \
                         the event is stored (and in a batch, perhaps the ones after \
                         it), at an unknown position; appending it again would store \
                         it twice",
                        delivery.offset
                    )
                    .into(),
                }),
            Ok(Err((e, _))) => {
                self.renew_producer(sent_by, e.rdkafka_error_code());
                Err(from_kafka(operation, after, e))
            }
            Err(_) => Err(EventLogError::Backend {
                backend: BACKEND,
                source: "the producer went away".into(),
            }),
        }
    }
}

impl Driver for KafkaDriver {
    type Reader = KafkaReader;

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BACKEND, self.config.max_payload, true)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.config.timeout)
    }

    fn read_wait(&self) -> Duration {
        READ_WAIT
    }

    // No deduplication and no condition (the capabilities say so, and the
    // generic log refuses conditions): `expected` is always `Any`.
    async fn append(
        &self,
        event: EventEnvelope,
        _expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        self.delivered("append", self.send(&event)?)
            .await
            .map(Appended::Stored)
    }

    async fn append_batch(
        &self,
        events: Vec<EventEnvelope>,
        _expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        // All records are queued before any delivery is awaited: librdkafka
        // batches them, and the idempotent producer keeps their order.
        let deliveries = events
            .iter()
            .map(|e| self.send(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seq_nos = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            seq_nos.push(Appended::Stored(
                self.delivered("append_batch", delivery).await?,
            ));
        }
        Ok(seq_nos)
    }

    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        Ok(self.watermarks().await?.1)
    }

    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        Ok(self.watermarks().await?.0 + 1)
    }

    async fn acknowledged(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        Ok(self.committed(consumer).await?.filter(|&n| n > 0))
    }

    async fn move_consumer(&self, consumer: &str, next: SeqNo) -> Result<(), EventLogError> {
        let group = self.group(consumer)?;
        let to = self.partition_at(Self::offset_after(next - 1)?)?;
        self.blocking("seek", move |t| group.commit(&to, None, t))
            .await
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<(), EventLogError> {
        let group = self.group(consumer)?;
        let to = self.partition_at(Self::offset_after(seq_no)?)?;
        let read = self.partition_at(Offset::Invalid)?;
        self.blocking("ack", move |t| group.commit(&to, Some((seq_no, read)), t))
            .await
    }

    async fn open_reader(&self, consumer: &str, from: SeqNo) -> Result<KafkaReader, EventLogError> {
        // Reading past the end is out of range for Kafka: start at the end;
        // the generic log skips up to `from`.
        let end = self.watermarks().await?.1;
        let _ = consumer;
        KafkaReader::open(self, &self.tail, (from - 1).min(end))
    }

    async fn log_exists(&self) -> Result<bool, EventLogError> {
        // Asked through a consumer, which never creates a topic by asking
        // (a producer may, on brokers that auto-create topics).
        let group = self.group(METADATA_GROUP)?;
        let topic = self.topic.clone();
        self.blocking("subscription", move |t| {
            let metadata = group.client.fetch_metadata(Some(&topic), t)?;
            Ok(metadata.topics().first().is_some_and(|m| {
                m.error()
                    != Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            }))
        })
        .await
    }
}
/// The offset of the event after `seq_no`: `seq_no` itself, as Kafka
/// counts from 0; sequence numbers past `i64::MAX` have none.
pub(crate) fn offset_after(seq_no: SeqNo) -> Result<i64, EventLogError> {
    i64::try_from(seq_no).map_err(|_| EventLogError::InvalidPosition {
        position: seq_no.to_string(),
        reason: format!("Kafka offsets end at {}", i64::MAX),
    })
}

/// The idempotent producer of `config`, reporting to `watch`.
fn new_producer(
    config: &KafkaConfig,
    watch: &AuthWatch,
) -> Result<FutureProducer<AuthWatch>, EventLogError> {
    client_config(config, false)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        // librdkafka's range, where 0 would mean no bound at all.
        .set(
            "message.timeout.ms",
            config
                .timeout
                .as_millis()
                .clamp(1, i32::MAX as u128)
                .to_string(),
        )
        .set(
            "message.max.bytes",
            (config.max_payload + 64 * 1024).to_string(),
        )
        .create_with_context(watch.clone())
        .map_err(|e| invalid_config(&e))
}

/// A client that librdkafka refuses to create: a bad property.
fn invalid_config(err: &rdkafka::error::KafkaError) -> EventLogError {
    EventLogError::InvalidConfig {
        reason: format!("librdkafka refused the configuration: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_past_kafkas_offsets_are_refused() {
        assert!(matches!(
            KafkaDriver::offset_after(i64::MAX as SeqNo),
            Ok(Offset::Offset(i64::MAX))
        ));
        for past in [i64::MAX as SeqNo + 1, SeqNo::MAX] {
            assert!(matches!(
                KafkaDriver::offset_after(past),
                Err(EventLogError::InvalidPosition { .. })
            ));
        }
    }
}
