//! What a workload drives: the EventLog API, or a broker's raw client doing
//! the same work with the same durability settings.

use anyhow::Result;
use async_trait::async_trait;
use eventlog::{EventEnvelope, EventLog, SeekPosition};
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One log, written and read by one client.
#[async_trait]
pub(crate) trait Target: Send + Sync {
    /// Stores one event and waits for the broker's acknowledgement.
    async fn append(&self, event: EventEnvelope) -> Result<()>;
    /// Stores the events in order, in the client's fastest way.
    async fn append_batch(&self, events: Vec<EventEnvelope>) -> Result<()>;
    /// Reads the log from the beginning as `consumer` until the `n`th event
    /// arrives, acknowledging every `ack_every`th event (0: none).
    async fn consume(&self, consumer: &str, n: u64, ack_every: u64) -> Result<()>;
    /// A reader of new events that reports when each one arrives.
    async fn arrivals(&self, consumer: &str) -> Result<mpsc::UnboundedReceiver<Instant>>;
}

/// The EventLog API on any backend.
pub(crate) struct Log(pub(crate) Arc<dyn EventLog>);

#[async_trait]
impl Target for Log {
    async fn append(&self, event: EventEnvelope) -> Result<()> {
        self.0.append(event).await.map(drop)
    }

    async fn append_batch(&self, events: Vec<EventEnvelope>) -> Result<()> {
        self.0.append_batch(events).await.map(drop)
    }

    async fn consume(&self, consumer: &str, n: u64, ack_every: u64) -> Result<()> {
        let mut events = self.0.subscribe(consumer, SeekPosition::Beginning).await?;
        while let Some(event) = events.next().await {
            let seq = event.seq_no.unwrap_or_default();
            if ack_every > 0 && seq % ack_every == 0 {
                self.0.ack(consumer, seq).await?;
            }
            if seq >= n {
                return Ok(());
            }
        }
        anyhow::bail!("the subscription ended")
    }

    async fn arrivals(&self, consumer: &str) -> Result<mpsc::UnboundedReceiver<Instant>> {
        let mut events = self.0.subscribe(consumer, SeekPosition::Latest).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while events.next().await.is_some() {
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}
