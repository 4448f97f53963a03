//! `KafkaEventLog`: the `EventLog` methods over one single-partition topic.

use crate::config::KafkaConfig;
use crate::error::{AuthWatch, BACKEND, from_kafka};
use crate::{codec, subscription};
use async_trait::async_trait;
use eventlog_core::{
    Capabilities, ConsumerState, EventEnvelope, EventLog, EventLogError, EventStream, Result,
    SeekPosition, SeqNo, validate, with_timeout,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The log's one partition: one total order.
pub(crate) const PARTITION: i32 = 0;
/// How much longer than librdkafka's own timeouts an operation may take,
/// so librdkafka reports its own (more precise) failure first.
const GRACE: Duration = Duration::from_secs(1);

/// An [`EventLog`] on a Kafka topic. Cheap to clone: clones share one
/// idempotent producer and one offset client per consumer group.
#[derive(Clone)]
pub struct KafkaEventLog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: KafkaConfig,
    pub(crate) topic: String,
    /// Replaced when its producer id is no longer good (see `renew_producer`).
    producer: RwLock<FutureProducer<AuthWatch>>,
    /// What the producers' error callbacks saw of a refused login.
    watch: AuthWatch,
    /// Per consumer group, a client that reads and commits its offsets; it
    /// never joins the group, so no rebalance ever involves it.
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl fmt::Debug for KafkaEventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaEventLog")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The librdkafka settings every client of `config` shares.
///
/// Clients whose every call is bounded by the operation timeout (the
/// producer, the admin and offset clients) give up on a silent connection
/// after it too (`socket.timeout.ms`); a subscription's reader keeps
/// librdkafka's default (60 s), since a fetch may legitimately take longer
/// than one operation (a broker that answers a fetch from the start of a
/// long log with all of it), and one abandoned at the timeout would be sent
/// again forever.
pub(crate) fn client_config(config: &KafkaConfig, bounded: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    if bounded {
        c.set("socket.timeout.ms", config.timeout.as_millis().to_string());
    }
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

impl KafkaEventLog {
    /// Connects to the log described by `config`, creating its topic (one
    /// partition) if configured so and checking that it has one partition.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        let watch = AuthWatch::default();
        let producer = RwLock::new(new_producer(&config, &watch)?);
        let topic = config.topic();
        let log = Self {
            inner: Arc::new(Inner {
                config,
                topic,
                producer,
                watch,
                groups: Mutex::new(HashMap::new()),
            }),
        };
        log.ensure_topic()
            .await
            .map_err(|e| log.inner.watch.explain(e))?;
        Ok(log)
    }

    /// Connects to the log a URL names; see [`KafkaConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(KafkaConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// The topic that holds the log.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// How many subscriptions on this log's topic are alive in this
    /// process, each holding a Kafka consumer.
    pub fn subscription_count(&self) -> usize {
        subscription::live(&self.inner.topic)
    }

    fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// Runs the blocking librdkafka call `f` off the async runtime, bounded.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(Duration) -> rdkafka::error::KafkaResult<T> + Send + 'static,
    ) -> Result<T> {
        let after = self.timeout();
        with_timeout(operation, after + GRACE, async move {
            tokio::task::spawn_blocking(move || f(after))
                .await?
                .map_err(|e| from_kafka(operation, after, e).into())
        })
        .await
    }

    async fn ensure_topic(&self) -> Result<()> {
        let partitions = self.topic_partitions().await?;
        match partitions {
            Some(1) => Ok(()),
            Some(n) => Err(EventLogError::InvalidConfig {
                reason: format!(
                    "topic {} has {n} partitions; a log needs exactly 1 for one total order",
                    self.inner.topic
                ),
            }
            .into()),
            None => Err(EventLogError::InvalidConfig {
                reason: format!(
                    "topic {} does not exist, and create_topic is off",
                    self.inner.topic
                ),
            }
            .into()),
        }
    }

    /// Creates the topic if configured so and returns its partition count.
    async fn topic_partitions(&self) -> Result<Option<usize>> {
        let config = &self.inner.config;
        if config.create_topic {
            let admin: AdminClient<DefaultClientContext> = client_config(config, true)
                .create()
                .map_err(|e| invalid_config(&e))?;
            let retention = config
                .retention
                .map_or("-1".to_owned(), |r| r.as_millis().to_string());
            let topic = NewTopic::new(
                &self.inner.topic,
                1,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("retention.ms", &retention);
            let options = AdminOptions::new()
                .operation_timeout(Some(self.timeout()))
                .request_timeout(Some(self.timeout()));
            let results = with_timeout("connect", self.timeout() + GRACE, async {
                admin
                    .create_topics([&topic], &options)
                    .await
                    .map_err(|e| from_kafka("connect", self.timeout(), e).into())
            })
            .await?;
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(EventLogError::Backend {
                            backend: BACKEND,
                            source: format!("creating topic {topic}: {code}").into(),
                        }
                        .into());
                    }
                }
            }
        }
        let producer = self.producer();
        let topic = self.inner.topic.clone();
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
        self.inner
            .producer
            .read()
            .expect("producer lock poisoned")
            .clone()
    }

    /// Replaces the producer after a delivery error that leaves its producer
    /// id in doubt: a timed-out or fenced delivery, or a fatal idempotence
    /// error. The failed append is reported; the next one gets a fresh
    /// producer id. Apache Kafka would let librdkafka bump the epoch of the
    /// old id instead, but tansu 0.6 loses its storage task when it meets
    /// such a bump after a restart, so a fresh id is the portable way.
    fn renew_producer(&self, code: Option<RDKafkaErrorCode>) {
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
        match new_producer(&self.inner.config, &self.inner.watch) {
            Ok(producer) => {
                tracing::warn!(topic = %self.inner.topic, ?code, "replacing the producer");
                let old = std::mem::replace(
                    &mut *self.inner.producer.write().expect("producer lock poisoned"),
                    producer,
                );
                // Dropping a producer purges and flushes: not on the runtime.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(err) => {
                tracing::error!(topic = %self.inner.topic, %err, "cannot replace the producer")
            }
        }
    }

    /// The high watermark: the offset the next event gets, which is the
    /// sequence number of the last one.
    pub(crate) async fn high_watermark(&self) -> Result<SeqNo> {
        let producer = self.producer();
        let topic = self.inner.topic.clone();
        let (_, high) = self
            .blocking("last_seq_no", move |t| {
                producer.client().fetch_watermarks(&topic, PARTITION, t)
            })
            .await?;
        Ok(high.max(0) as SeqNo)
    }

    /// The offset client of `consumer`'s group.
    fn group_client(&self, consumer: &str) -> Result<Arc<BaseConsumer>> {
        let group = self.inner.config.group(consumer);
        let mut groups = self.inner.groups.lock().expect("groups lock poisoned");
        if let Some(client) = groups.get(&group) {
            return Ok(client.clone());
        }
        let client: BaseConsumer = client_config(&self.inner.config, true)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| invalid_config(&e))?;
        let client = Arc::new(client);
        groups.insert(group, client.clone());
        Ok(client)
    }

    fn partition_at(&self, offset: Offset) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.inner.topic, PARTITION, offset)
            .map_err(|e| from_kafka("offsets", self.timeout(), e))?;
        Ok(list)
    }

    /// The committed offset of `consumer`'s group: the next sequence number
    /// minus one, so the last acknowledged one. `None` before any commit.
    pub(crate) async fn committed(&self, consumer: &str) -> Result<Option<SeqNo>> {
        let client = self.group_client(consumer)?;
        let list = self.partition_at(Offset::Invalid)?;
        let committed = self
            .blocking("consumer_state", move |t| client.committed_offsets(list, t))
            .await?;
        let offset = committed.elements().first().map(|e| e.offset());
        Ok(match offset {
            Some(Offset::Offset(o)) if o >= 0 => Some(o as SeqNo),
            _ => None,
        })
    }

    /// Commits `offset` (the next event's offset) for `consumer`'s group.
    async fn commit(&self, operation: &'static str, consumer: &str, offset: SeqNo) -> Result<()> {
        let client = self.group_client(consumer)?;
        let list = self.partition_at(Offset::Offset(offset as i64))?;
        self.blocking(operation, move |_| client.commit(&list, CommitMode::Sync))
            .await
    }

    /// Moves `consumer` to `position` and returns its next sequence number.
    async fn seek_now(&self, consumer: &str, position: SeekPosition) -> Result<SeqNo> {
        let next = match position {
            SeekPosition::Beginning => 1,
            SeekPosition::Latest => self.high_watermark().await? + 1,
            SeekPosition::Sequence(n) => n,
            _ => return Ok(self.committed(consumer).await?.unwrap_or(0) + 1),
        };
        self.commit("seek", consumer, next - 1).await?;
        Ok(next)
    }

    /// A Kafka consumer for a subscription of `consumer`, reading from
    /// `offset`.
    pub(crate) fn reader(&self, consumer: &str, offset: SeqNo) -> Result<StreamConsumer> {
        let reader: StreamConsumer = client_config(&self.inner.config, false)
            .set("group.id", self.inner.config.group(consumer))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(|e| invalid_config(&e))?;
        reader
            .assign(&self.partition_at(Offset::Offset(offset as i64))?)
            .map_err(|e| from_kafka("subscribe", self.timeout(), e))?;
        Ok(reader)
    }

    fn send(&self, envelope: &EventEnvelope) -> Result<DeliveryFuture> {
        let record = FutureRecord::<(), [u8]>::to(&self.inner.topic)
            .payload(&envelope.payload[..])
            .headers(codec::encode(envelope));
        self.producer()
            .send_result(record)
            .map_err(|(e, _)| from_kafka("append", self.timeout(), e).into())
    }

    async fn delivered(&self, operation: &'static str, delivery: DeliveryFuture) -> Result<SeqNo> {
        let after = self.timeout();
        let Ok(report) = tokio::time::timeout(after + GRACE, delivery).await else {
            // librdkafka has not even timed the message out: the same doubt.
            self.renew_producer(Some(RDKafkaErrorCode::MessageTimedOut));
            return Err(EventLogError::Timeout { operation, after }.into());
        };
        match report {
            Ok(Ok(delivery)) => Ok(delivery.offset as SeqNo + 1),
            Ok(Err((e, _))) => {
                self.renew_producer(e.rdkafka_error_code());
                Err(from_kafka(operation, after, e).into())
            }
            Err(_) => Err(EventLogError::Backend {
                backend: BACKEND,
                source: "the producer went away".into(),
            }
            .into()),
        }
    }
}

/// The idempotent producer of `config`, reporting to `watch`.
fn new_producer(
    config: &KafkaConfig,
    watch: &AuthWatch,
) -> Result<FutureProducer<AuthWatch>, EventLogError> {
    client_config(config, true)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", config.timeout.as_millis().to_string())
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

#[async_trait]
impl EventLog for KafkaEventLog {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        validate::envelope(&envelope, self.inner.config.max_payload)?;
        self.delivered("append", self.send(&envelope)?).await
    }

    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        validate::batch(&envelopes, self.inner.config.max_payload)?;
        // All records are queued before any delivery is awaited: librdkafka
        // batches them, and the idempotent producer keeps their order.
        let deliveries = envelopes
            .iter()
            .map(|e| self.send(e))
            .collect::<Result<Vec<_>>>()?;
        let mut seq_nos = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            seq_nos.push(self.delivered("append_batch", delivery).await?);
        }
        Ok(seq_nos)
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        let next = self.seek_now(consumer, position).await?;
        // Reading past the end is out of range for Kafka: start at the end
        // and skip up to `next`.
        let end = self.high_watermark().await?;
        let reader = self.reader(consumer, (next - 1).min(end))?;
        Ok(subscription::open(
            self.clone(),
            consumer.to_owned(),
            reader,
            next,
        ))
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()> {
        validate::consumer_name(consumer)?;
        let last = self.high_watermark().await?;
        validate::ack(consumer, seq_no, (last > 0).then_some(last))?;
        if self
            .committed(consumer)
            .await?
            .is_some_and(|acked| seq_no <= acked)
        {
            return Ok(());
        }
        self.commit("ack", consumer, seq_no).await
    }

    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        self.seek_now(consumer, position).await.map(drop)
    }

    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>> {
        let last = self.high_watermark().await?;
        Ok((last > 0).then_some(last))
    }

    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState> {
        validate::consumer_name(consumer)?;
        let acked = self.committed(consumer).await?.unwrap_or(0);
        let last = self.high_watermark().await?;
        Ok(ConsumerState::from_next(
            acked + 1,
            (last > 0).then_some(last),
        ))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BACKEND, self.inner.config.max_payload, true)
    }
}
