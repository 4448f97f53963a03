//! NATS JetStream: publish awaiting the ack, pull consumers with
//! `AckPolicy::All`, double acks.

use crate::target::Target;
use anyhow::Result;
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use eventlog::{AttributeReader, EventEnvelope, attributes};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(crate) struct RawNats {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
}

impl RawNats {
    pub(crate) async fn open(url: &str, log: &str) -> Result<Self> {
        let js = jetstream::new(async_nats::connect(url).await?);
        let subject = format!("raw.{log}");
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("RAW_{log}"),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(Self {
            js,
            stream,
            subject,
        })
    }

    async fn publish(&self, event: &EventEnvelope) -> Result<jetstream::context::PublishAckFuture> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in attributes(event) {
            headers.insert(format!("ce-{name}"), value.as_ref());
        }
        headers.insert("Nats-Msg-Id", event.id.as_str());
        Ok(self
            .js
            .publish_with_headers(self.subject.clone(), headers, event.payload.clone())
            .await?)
    }

    async fn pull(
        &self,
        name: &str,
        deliver: consumer::DeliverPolicy,
    ) -> Result<consumer::PullConsumer> {
        let config = consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: consumer::AckPolicy::All,
            max_ack_pending: -1,
            deliver_policy: deliver,
            ..Default::default()
        };
        Ok(self.stream.create_consumer(config).await?)
    }
}

#[async_trait]
impl Target for RawNats {
    async fn append(&self, event: EventEnvelope) -> Result<()> {
        self.publish(&event).await?.await?;
        Ok(())
    }

    async fn append_batch(&self, events: Vec<EventEnvelope>) -> Result<()> {
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            acks.push(self.publish(event).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    async fn consume(&self, consumer: &str, n: u64, ack_every: u64) -> Result<()> {
        let pull = self.pull(consumer, consumer::DeliverPolicy::All).await?;
        let mut read = 0;
        while read < n {
            let mut batch = pull
                .batch()
                .max_messages(512)
                .expires(Duration::from_secs(1))
                .messages()
                .await?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                read += 1;
                decode(read, &message)?;
                if ack_every > 0 && read % ack_every == 0 {
                    message.double_ack().await.map_err(|e| anyhow::anyhow!(e))?;
                }
                if read == n {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn arrivals(&self, consumer: &str) -> Result<mpsc::UnboundedReceiver<Instant>> {
        let pull = self.pull(consumer, consumer::DeliverPolicy::New).await?;
        let mut messages = pull.messages().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(_)) = messages.next().await {
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// What a CloudEvents reader does with each message: its `ce-` headers.
fn decode(seq_no: u64, message: &jetstream::Message) -> Result<EventEnvelope> {
    let mut reader = AttributeReader::new(seq_no, message.payload.clone(), None);
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        if let (Some(attribute), Some(value)) = (
            AsRef::<str>::as_ref(name).strip_prefix("ce-"),
            values.last(),
        ) {
            reader.set(attribute, value.as_str().to_owned())?;
        }
    }
    Ok(reader.finish()?)
}
