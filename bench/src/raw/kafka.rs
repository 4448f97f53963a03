//! Kafka: an idempotent `acks=all` producer awaiting delivery reports, a
//! consumer assigned the partition, synchronous offset commits.

use crate::target::Target;
use anyhow::Result;
use async_trait::async_trait;
use eventlog::{AttributeReader, EventEnvelope, attributes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct RawKafka {
    bootstrap: String,
    topic: String,
    producer: FutureProducer,
}

impl RawKafka {
    /// A topic for `log` on the broker at `url` (`kafka://host:port`).
    pub(crate) async fn open(url: &str, log: &str) -> Result<Self> {
        let bootstrap = url.trim_start_matches("kafka://");
        let topic = format!("raw.{log}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        admin
            .create_topics(
                [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            topic,
            producer,
        })
    }

    fn record<'a>(&'a self, event: &'a EventEnvelope) -> FutureRecord<'a, (), [u8]> {
        let pairs = attributes(event);
        let headers = pairs.iter().fold(
            OwnedHeaders::new_with_capacity(pairs.len()),
            |h, (name, value)| {
                h.insert(Header {
                    key: &format!("ce_{name}"),
                    value: Some(value.as_bytes()),
                })
            },
        );
        FutureRecord::to(&self.topic)
            .payload(&event.payload[..])
            .headers(headers)
    }

    fn consumer(&self, group: &str, offset: Offset) -> Result<Arc<StreamConsumer>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, 0, offset)?;
        consumer.assign(&list)?;
        Ok(Arc::new(consumer))
    }
}

#[async_trait]
impl Target for RawKafka {
    async fn append(&self, event: EventEnvelope) -> Result<()> {
        self.producer
            .send(self.record(&event), TIMEOUT)
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    async fn append_batch(&self, events: Vec<EventEnvelope>) -> Result<()> {
        let deliveries: Vec<_> = events
            .iter()
            .map(|e| {
                self.producer
                    .send_result(self.record(e))
                    .map_err(|(e, _)| e)
            })
            .collect::<Result<_, _>>()?;
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    async fn consume(&self, consumer: &str, n: u64, ack_every: u64) -> Result<()> {
        let reader = self.consumer(consumer, Offset::Beginning)?;
        let mut read = 0;
        while read < n {
            let message = reader.recv().await?;
            let offset = rdkafka::Message::offset(&message);
            read += 1;
            decode(read, &message)?;
            if ack_every > 0 && read % ack_every == 0 {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&self.topic, 0, Offset::Offset(offset + 1))?;
                let committer = reader.clone();
                tokio::task::spawn_blocking(move || committer.commit(&list, CommitMode::Sync))
                    .await??;
            }
        }
        Ok(())
    }

    async fn arrivals(&self, consumer: &str) -> Result<mpsc::UnboundedReceiver<Instant>> {
        let reader = self.consumer(consumer, Offset::End)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while reader.recv().await.is_ok() {
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// What a CloudEvents reader does with each record: its `ce_` headers.
fn decode(seq_no: u64, message: &impl rdkafka::Message) -> Result<EventEnvelope> {
    let payload = message.payload().unwrap_or_default().to_vec();
    let mut reader = AttributeReader::new(seq_no, payload, None);
    for header in message.headers().into_iter().flat_map(|h| h.iter()) {
        if let Some(attribute) = header.key.strip_prefix("ce_") {
            reader.set_bytes(attribute, header.value.unwrap_or_default().to_vec())?;
        }
    }
    Ok(reader.finish()?)
}
