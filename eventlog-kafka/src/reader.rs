//! A subscription's reader. Behind the end of the log it reads with a Kafka
//! consumer of its own, assigned the log's partition at the wanted offset
//! (in a group that never joins nor commits, so no rebalance can take the
//! partition away). Once that client reports the end of the partition
//! (librdkafka knows it from its fetches: no request is added), the reader
//! closes it and follows the handle's tail instead: one client per handle
//! that reads new events once for every caught-up subscription, so idle
//! subscriptions cost no client each (librdkafka cannot assign one
//! partition twice in a client). A subscription that falls behind the tail
//! by more than its read-ahead gets a client of its own again. librdkafka
//! reconnects after a broker restart and goes on from its fetch position,
//! so readers outlive outages; the generic log skips anything before the
//! next expected sequence number.

use crate::codec;
use crate::config::KafkaConfig;
use crate::driver::KafkaDriver;
use crate::error::BACKEND;
use chrono::{DateTime, Utc};
use eventlog_core::driver::{ReadLimits, Reader, Record, Undecodable};
use eventlog_core::{EventLogError, SeqNo};
use futures::FutureExt;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
#[cfg(feature = "probe")]
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
#[cfg(feature = "probe")]
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

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

/// A Kafka consumer that reads the log.
pub(crate) type ReaderClient = StreamConsumer<ReaderContext>;

/// The group name of every reader client; none ever commits.
const READER_GROUP: &str = "eventlog-reader";

/// How to make the clients that read one log.
pub(crate) struct Clients {
    config: KafkaConfig,
    topic: String,
}

impl Clients {
    /// A client reading the log from `offset`; with `eof`, it reports
    /// reaching the end of the log (librdkafka learns the end from its
    /// fetches, so this costs no request).
    fn open(&self, offset: i64, eof: bool) -> Result<ReaderClient, EventLogError> {
        // librdkafka prefetches up to 100,000 messages or 64 MiB per
        // partition by default; the generic log reads ahead at most its
        // own limits, so the client's queue need not hold more (one event
        // of the largest size always fits).
        let settings = &self.config.subscription;
        let queue_kib = settings
            .read_ahead_bytes
            .max(self.config.max_payload + 64 * 1024)
            .div_ceil(1024)
            .min(2_097_151); // librdkafka's maximum
        // librdkafka assigns only in a group; a reader never commits (acks
        // go through the consumer's own group), so all share one name.
        let client: ReaderClient = crate::driver::client_config(&self.config, true)
            .set("group.id", self.config.group(READER_GROUP))
            .set(
                "queued.min.messages",
                settings.read_ahead_events.min(10_000_000).to_string(),
            )
            .set("queued.max.messages.kbytes", queue_kib.to_string())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", eof.to_string())
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .create_with_context(ReaderContext::new(&self.topic))
            .map_err(|e| EventLogError::InvalidConfig {
                reason: format!("librdkafka refused the configuration: {e}"),
            })?;
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(
            &self.topic,
            crate::driver::PARTITION,
            Offset::Offset(offset),
        )
        .and_then(|()| client.assign(&at))
        .map_err(|e| crate::error::from_kafka("subscribe", self.config.timeout, e))?;
        Ok(client)
    }
}

/// Destroys `client` off the async runtime: librdkafka's destroy blocks
/// until its threads end.
fn close(client: Arc<ReaderClient>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(client))),
        Err(_) => drop(client),
    }
}

/// What the tail hands every follower.
#[derive(Clone)]
enum TailItem {
    /// The event at this offset, shared by the followers.
    Record(Arc<(i64, Record)>),
    /// librdkafka reported a failure.
    Failed(Arc<KafkaError>),
}

/// One client at the end of the log, whose events every caught-up
/// subscription of the handle follows. It stops with its last follower.
pub(crate) struct Tail {
    client: Arc<ReaderClient>,
    /// The offset of the next event it hands out, and the channel it
    /// hands events out on: one lock, so a follower joins at a known
    /// offset.
    state: Arc<std::sync::Mutex<(i64, broadcast::Sender<TailItem>)>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Tail {
    /// A follower from `next` on, when the tail has handed out nothing
    /// after it yet.
    fn follow(&self, next: i64) -> Option<broadcast::Receiver<TailItem>> {
        let state = self.state.lock().expect("tail lock poisoned");
        (state.0 <= next).then(|| state.1.subscribe())
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The handle's tail, made when a caught-up subscription first needs it.
pub(crate) struct TailSlot {
    clients: Clients,
    current: tokio::sync::Mutex<Weak<Tail>>,
}

impl TailSlot {
    pub(crate) fn new(config: &KafkaConfig) -> Self {
        Self {
            clients: Clients {
                config: config.clone(),
                topic: config.topic(),
            },
            current: tokio::sync::Mutex::new(Weak::new()),
        }
    }

    /// The live tail, or a new one from `end`, where a reader of the log
    /// just found its end.
    async fn get(&self, end: i64) -> Result<Arc<Tail>, EventLogError> {
        let mut current = self.current.lock().await;
        if let Some(tail) = current.upgrade() {
            return Ok(tail);
        }
        let client = Arc::new(self.clients.open(end, false)?);
        let capacity = self.clients.config.subscription.read_ahead_events.max(16);
        let state = Arc::new(std::sync::Mutex::new((end, broadcast::channel(capacity).0)));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(run_tail(client.clone(), state.clone(), stopped));
        let tail = Arc::new(Tail {
            client,
            state,
            stop: Some(stop),
        });
        *current = Arc::downgrade(&tail);
        Ok(tail)
    }
}

/// Reads the log's new events with `client` and hands each to the
/// followers, until `stopped`.
async fn run_tail(
    client: Arc<ReaderClient>,
    state: Arc<std::sync::Mutex<(i64, broadcast::Sender<TailItem>)>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let item = tokio::select! {
            _ = &mut stopped => break,
            message = client.recv() => match message {
                Ok(message) => TailItem::Record(Arc::new((message.offset(), record(&message)))),
                Err(err) => TailItem::Failed(Arc::new(err)),
            },
        };
        let mut state = state.lock().expect("tail lock poisoned");
        if let TailItem::Record(read) = &item {
            state.0 = read.0 + 1;
        }
        // No follower left: the tail stops at the next turn.
        let _ = state.1.send(item);
    }
    close(client);
}

/// A reader's own client, destroyed off the async runtime when dropped
/// (a subscription dropped, or a reader given up after a failure): a
/// destroy on a runtime thread would stall every task on it.
struct OwnClient(Option<Arc<ReaderClient>>);

impl OwnClient {
    fn new(client: ReaderClient) -> Self {
        Self(Some(Arc::new(client)))
    }

    fn get(&self) -> &Arc<ReaderClient> {
        self.0
            .as_ref()
            .expect("a reader's client lives until it is dropped")
    }
}

impl Drop for OwnClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            close(client);
        }
    }
}

/// Where a reader's events come from.
enum Source {
    /// A client of its own.
    Own(OwnClient),
    /// The handle's tail.
    Tail(Arc<Tail>, broadcast::Receiver<TailItem>),
}

/// The reader of one subscription.
pub struct KafkaReader {
    source: Source,
    tails: Arc<TailSlot>,
    /// The offset of the next event it wants.
    next: i64,
    topic: String,
    wait: Duration,
    timeout: Duration,
    /// librdkafka reported a failure and no message came since: a read
    /// that waits in vain asks the broker whether it answers before it
    /// says all is well (librdkafka itself only reports failures).
    failing: bool,
    /// It fell behind the tail while taking what was already there: the
    /// next read leaves the tail first, so the records taken are returned
    /// even if a client of its own cannot be made now.
    lagged: bool,
}

impl KafkaReader {
    /// A reader from sequence number `start + 1` (offset `start`).
    pub(crate) fn open(
        driver: &KafkaDriver,
        tails: &Arc<TailSlot>,
        start: SeqNo,
    ) -> Result<Self, EventLogError> {
        let next = crate::driver::offset_after(start)?;
        Ok(Self {
            source: Source::Own(OwnClient::new(tails.clients.open(next, true)?)),
            tails: tails.clone(),
            next,
            topic: driver.topic.clone(),
            wait: eventlog_core::driver::Driver::read_wait(driver),
            timeout: driver.config.timeout,
            failing: false,
            lagged: false,
        })
    }

    /// Follows the tail instead of its own client, which has just reached
    /// the end of the log, if the tail has handed out nothing it has not
    /// read. A tail that cannot be made now is tried at the next end.
    async fn follow_tail(&mut self) {
        let tail = match self.tails.get(self.next).await {
            Ok(tail) => tail,
            Err(err) => {
                tracing::debug!(error = %err, "the tail of the log could not be made");
                return;
            }
        };
        if let Some(followed) = tail.follow(self.next) {
            self.source = Source::Tail(tail, followed);
        }
    }

    /// Reads with a client of its own again, from where it is.
    fn leave_tail(&mut self) -> Result<(), EventLogError> {
        self.source = Source::Own(OwnClient::new(self.tails.clients.open(self.next, true)?));
        Ok(())
    }

    fn client(&self) -> Arc<ReaderClient> {
        match &self.source {
            Source::Own(client) => client.get().clone(),
            Source::Tail(tail, _) => tail.client.clone(),
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
        let (consumer, topic) = (self.client(), self.topic.clone());
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
        if self.lagged {
            self.leave_tail()?;
            self.lagged = false;
        }
        // Its own client reached the end of the log: time to follow the tail.
        let mut at_end = false;
        let first = match &mut self.source {
            // `recv` is cancel-safe: a read that waited in vain loses nothing.
            Source::Own(client) => match tokio::time::timeout(self.wait, client.get().recv()).await
            {
                Err(_) => None,
                Ok(Err(KafkaError::PartitionEOF(_))) => {
                    at_end = true;
                    None
                }
                Ok(Err(err)) => Some(TailItem::Failed(Arc::new(err))),
                Ok(Ok(message)) => Some(TailItem::Record(Arc::new((
                    message.offset(),
                    record(&message),
                )))),
            },
            Source::Tail(_, followed) => {
                match tokio::time::timeout(self.wait, followed.recv()).await {
                    Err(_) => None,
                    Ok(Ok(item)) => Some(item),
                    // It fell behind the tail by more than its read-ahead.
                    Ok(Err(_)) => {
                        self.leave_tail()?;
                        return Ok(());
                    }
                }
            }
        };
        match first {
            None if at_end => {
                self.failing = false;
                self.follow_tail().await;
                return Ok(());
            }
            None if self.failing => {
                self.check_broker().await?;
                self.failing = false;
                return Ok(());
            }
            None => return Ok(()),
            Some(TailItem::Failed(err)) => {
                self.failing = true;
                return Err(EventLogError::Unavailable {
                    backend: BACKEND,
                    source: Box::new(err),
                });
            }
            Some(TailItem::Record(read)) => self.take(records, read, 0),
        };
        self.failing = false;
        // What is already here, without waiting.
        let mut bytes = 0;
        while records.len() < limits.events && bytes < limits.bytes {
            let next = match &mut self.source {
                Source::Own(client) => match client.get().recv().now_or_never() {
                    Some(Ok(message)) => {
                        TailItem::Record(Arc::new((message.offset(), record(&message))))
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        at_end = true;
                        break;
                    }
                    // librdkafka retries by itself; the next read waits again.
                    Some(Err(_)) | None => break,
                },
                Source::Tail(_, followed) => match followed.try_recv() {
                    Ok(item @ TailItem::Record(..)) => item,
                    // It fell behind the tail by more than its read-ahead:
                    // what the tail dropped, its own client reads, from the
                    // next read on.
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        self.lagged = true;
                        break;
                    }
                    _ => break,
                },
            };
            if let TailItem::Record(read) = next {
                bytes = self.take(records, read, bytes);
            }
        }
        if at_end {
            self.follow_tail().await;
        }
        Ok(())
    }

    /// librdkafka reconnects by itself and keeps its fetch position.
    fn recovers_from(&self, err: &EventLogError) -> bool {
        matches!(err, EventLogError::Unavailable { .. })
    }
}

impl KafkaReader {
    /// Adds the event at `offset` unless it was read already; returns the
    /// payload bytes read so far.
    fn take(
        &mut self,
        records: &mut VecDeque<Record>,
        read: Arc<(i64, Record)>,
        bytes: usize,
    ) -> usize {
        let (offset, record) = Arc::unwrap_or_clone(read);
        if offset < self.next {
            return bytes;
        }
        self.next = offset + 1;
        let size = record.as_ref().map_or(0, |event| event.payload.len());
        records.push_back(record);
        bytes + size
    }
}
