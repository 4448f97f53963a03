//! The NATS driver: the broker calls behind [`NatsEventLog`](crate::NatsEventLog).

use crate::codec;
use crate::config::{Credentials, NatsConfig};
use crate::error::{BACKEND, classify};
use crate::reader::{NatsReader, Replies};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions};
use eventlog_core::driver::{Backoff, Driver, bounded, dedup_key};
use eventlog_core::{Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How much longer than the configured timeout the client's own request
/// timeouts are.
const BACKSTOP: Duration = Duration::from_secs(1);

/// The oldest server with the consumer reset API (ADR-60) that seek and
/// resumption stand on.
const MIN_SERVER: (u64, u64) = (2, 14);
/// Room kept beside the payload for the attribute headers: the largest
/// attributes core allows, each byte percent-encoded, plus the `ce-` names.
const HEADER_ROOM: usize = 3 * eventlog_core::validate::MAX_ATTRIBUTES + 8 * 1024;

/// The broker calls of one JetStream stream.
pub struct NatsDriver {
    pub(crate) config: NatsConfig,
    pub(crate) client: Client,
    pub(crate) js: jetstream::Context,
    pub(crate) stream: stream::Stream,
    subject: String,
    /// The server's `max_payload`: headers and body together.
    pub(crate) max_message: usize,
    /// Reply subjects of delivered messages, for one-round-trip acks.
    pub(crate) replies: Arc<Replies>,
    /// The stream's deduplication window; `None` when this handle sends
    /// no message ids.
    dedup_window: Option<Duration>,
    /// The bucket of exclusive subscriptions' leases, once found.
    pub(crate) leases: tokio::sync::OnceCell<jetstream::kv::Store>,
    /// The leases this handle took, by consumer.
    pub(crate) held: std::sync::Mutex<std::collections::HashMap<String, crate::lease::Held>>,
}

impl fmt::Debug for NatsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDriver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NatsDriver {
    /// Connects to the servers of `config`, creating the stream if
    /// configured so.
    pub(crate) async fn connect(config: NatsConfig) -> Result<Self, EventLogError> {
        let timeout = config.timeout;
        let options = options(&config).await?;
        let client = bounded("connect", timeout, async {
            options
                .connect(&config.servers)
                .await
                .map_err(crate::error::from_connect)
        })
        .await?;
        check_version(&client.server_info().version)?;
        let mut js = jetstream::new(client.clone());
        // A backstop only: the generic log's timeout must fire first to
        // name the operation that timed out.
        js.set_timeout(timeout + BACKSTOP);
        let stream = bounded("connect", timeout, open_stream(&client, &js, &config)).await?;
        let max_message = client.server_info().max_payload;
        let subject = config.subject();
        let dedup_window =
            (!config.dedup_window.is_zero()).then(|| stream.cached_info().config.duplicate_window);
        Ok(Self {
            dedup_window,
            config,
            client,
            js,
            stream,
            subject,
            max_message,
            replies: Arc::default(),
            leases: tokio::sync::OnceCell::new(),
            held: Default::default(),
        })
    }

    pub(crate) fn classify(
        &self,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> EventLogError {
        classify(&self.client, err)
    }

    /// Publishes one event, stored only if the stream's last sequence is
    /// `expected`, and returns the future of its acknowledgement.
    async fn publish(
        &self,
        event: &EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<jetstream::context::PublishAckFuture, EventLogError> {
        let mut message = jetstream::message::PublishMessage::build()
            .payload(event.payload.clone())
            .headers(codec::encode(event))
            .expected_stream(self.config.stream_name());
        if self.dedup_window.is_some() {
            // Both attributes: CloudEvents ids are unique per source only.
            message = message.message_id(dedup_key(event));
        }
        if let Some(last) = expected.as_last() {
            message = message.expected_last_sequence(last);
        }
        self.js
            .send_publish(self.subject.clone(), message)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Whether the event of `key` is stored as `seq_no`.
    async fn stored_as(&self, key: &str, seq_no: SeqNo) -> Result<bool, EventLogError> {
        match self.stream.direct_get(seq_no).await {
            Ok(message) => Ok(message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .is_some_and(|id| id.as_str() == key)),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// The outcome of `event`'s publish. `retried_at` is where an earlier
    /// attempt of a conditional append would have stored it: just after
    /// the position it expected (for a batch, after the event before it).
    async fn await_ack(
        &self,
        event: &EventEnvelope,
        ack: jetstream::context::PublishAckFuture,
        expected: ExpectedLast,
        retried_at: SeqNo,
    ) -> Result<Appended, EventLogError> {
        match ack.await {
            Ok(ack) if ack.duplicate => Ok(Appended::Duplicate(ack.sequence)),
            Ok(ack) => Ok(Appended::Stored(ack.sequence)),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                // "wrong last sequence: <n>" names the stream's last.
                let said = std::error::Error::source(&e)
                    .map(|source| source.to_string())
                    .and_then(|text| text.rsplit(':').next()?.trim().parse::<SeqNo>().ok());
                let actual = match said {
                    Some(n) => n,
                    None => self.last_seq_no().await?,
                };
                // The server checks the condition before the message id: a
                // retry finds what an earlier attempt stored with one look.
                if self.dedup_window.is_some()
                    && (1..=actual).contains(&retried_at)
                    && self.stored_as(&dedup_key(event), retried_at).await?
                {
                    return Ok(Appended::Duplicate(retried_at));
                }
                Err(EventLogError::conflict(expected, actual))
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    /// The durable consumer named `consumer`, created at the beginning if it
    /// does not exist.
    pub(crate) async fn consumer(
        &self,
        consumer: &str,
    ) -> Result<consumer::PullConsumer, EventLogError> {
        self.stream
            .get_or_create_consumer(consumer, durable(consumer))
            .await
            .map_err(|e| self.classify(e))
    }

    /// Resets `consumer` so the next delivery is `next` (its ack floor
    /// becomes `next - 1`), or to its ack floor with `None`. Forgets the
    /// replies of earlier deliveries.
    ///
    /// While a pull request of the consumer is being served (one a dropped
    /// subscription left behind), the server may answer a reset without
    /// applying it (seen on 2.14 and 2.15: the answer and every consumer
    /// info after it show the old floor), so a reset to `next` is sent
    /// again until the answer shows the floor at `next - 1`: a subscription
    /// opened next must start from there.
    pub(crate) async fn reset(
        &self,
        consumer: &str,
        next: Option<SeqNo>,
    ) -> Result<(), EventLogError> {
        self.consumer(consumer).await?;
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        loop {
            let reset = self
                .stream
                .reset_consumer(consumer, next)
                .await
                .map_err(|e| self.classify(e))?;
            self.replies.forget(consumer);
            match next {
                Some(next) if reset.info.ack_floor.stream_sequence != next - 1 => {
                    // Bounded by the operation's timeout in the generic log.
                    backoff.wait().await;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The ack floor of `consumer`, `None` when it does not exist.
    async fn ack_floor(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        match self.stream.consumer_info(consumer).await {
            Ok(info) => Ok(Some(info.ack_floor.stream_sequence)),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// The encoded size of `event`: its headers and its payload.
    fn message_size(event: &EventEnvelope) -> usize {
        let headers = codec::encode(event);
        let header_bytes: usize = headers
            .iter()
            .map(|(k, v)| {
                AsRef::<str>::as_ref(k).len()
                    + v.iter().map(|v| v.as_str().len() + 4).sum::<usize>()
            })
            .sum();
        header_bytes + event.payload.len()
    }
}

impl Driver for NatsDriver {
    type Reader = NatsReader;

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BACKEND, self.max_message.saturating_sub(HEADER_ROOM), true)
            .with_dedup_window(self.dedup_window)
            .with_conditional_append(true)
            .with_exclusive_subscriptions(true)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.config.timeout)
    }

    fn read_wait(&self) -> Duration {
        self.config.block
    }

    fn check_event(&self, event: &EventEnvelope) -> Result<(), EventLogError> {
        // The server's own limit, checked before anything of a batch is
        // sent. An upper bound first (every value byte percent-encoded,
        // every header at its longest framing), so the common event is
        // not encoded twice.
        let values = event.id.len()
            + event.source.len()
            + event.event_type.len()
            + event.subject.as_ref().map_or(0, String::len)
            + event.content_type.as_ref().map_or(0, String::len);
        let extensions: usize = event
            .extensions
            .iter()
            .map(|(k, v)| k.len() + 3 * v.len())
            .sum();
        // The stream name (at most a 128-character log and its prefix) and
        // the fixed headers fit in the constant.
        let framing = 32 * (event.extensions.len() + 10) + 512;
        if event.payload.len() + 3 * values + extensions + framing <= self.max_message {
            return Ok(());
        }
        let size = Self::message_size(event);
        if size > self.max_message {
            return Err(EventLogError::PayloadTooLarge {
                size,
                limit: self.max_message,
            });
        }
        Ok(())
    }

    async fn append(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        let retried_at = expected.as_last().map_or(0, |last| last + 1);
        let ack = self.publish(&event, expected).await?;
        self.await_ack(&event, ack, expected, retried_at).await
    }

    async fn append_batch(
        &self,
        events: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        let mut appended = Vec::with_capacity(events.len());
        if expected != ExpectedLast::Any {
            // One at a time, each expecting the one before: the first
            // carries the batch's condition. A writer that appends without
            // a condition between two of them fails the rest with a
            // conflict (docs/reliability.md).
            let mut expected = expected;
            let mut retried_at = expected.as_last().map_or(0, |last| last + 1);
            for event in &events {
                let ack = self.publish(event, expected).await?;
                let outcome = self.await_ack(event, ack, expected, retried_at).await?;
                if let Appended::Stored(n) = outcome {
                    expected = ExpectedLast::SeqNo(n);
                }
                retried_at = outcome.seq_no() + 1;
                appended.push(outcome);
            }
            return Ok(appended);
        }
        // Pipelined: every publish goes out before the first acknowledgement
        // is awaited; one connection keeps them in order.
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            acks.push(self.publish(event, expected).await?);
        }
        for (event, ack) in events.iter().zip(acks) {
            // Without a condition there is no conflict to look behind.
            appended.push(self.await_ack(event, ack, expected, 0).await?);
        }
        Ok(appended)
    }

    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        let info = self.stream.get_info().await.map_err(|e| self.classify(e))?;
        Ok(info.state.last_sequence)
    }

    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        let info = self.stream.get_info().await.map_err(|e| self.classify(e))?;
        Ok(match info.state.messages {
            0 => info.state.last_sequence + 1,
            _ => info.state.first_sequence,
        })
    }

    async fn acknowledged(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        Ok(self.ack_floor(consumer).await?.filter(|&floor| floor > 0))
    }

    async fn move_consumer(&self, consumer: &str, next: SeqNo) -> Result<(), EventLogError> {
        self.reset(consumer, Some(next)).await
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<(), EventLogError> {
        if let Some(reply) = self.replies.reply_of(consumer, seq_no) {
            // AckAll through the delivered message: covers everything up to
            // it, and the server never moves its floor back. A request, so
            // the server has applied it on return.
            self.client
                .request(reply, "+ACK".into())
                .await
                .map_err(|e| self.classify(e))?;
            self.replies.acked(consumer, seq_no);
            return Ok(());
        }
        if self
            .ack_floor(consumer)
            .await?
            .is_some_and(|floor| seq_no <= floor)
        {
            return Ok(());
        }
        self.reset(consumer, Some(seq_no + 1)).await
    }

    async fn ack_fenced(
        &self,
        consumer: &str,
        seq_no: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.check_lease(consumer, holder).await?;
        self.ack(consumer, seq_no).await
    }

    async fn move_consumer_fenced(
        &self,
        consumer: &str,
        next: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.check_lease(consumer, holder).await?;
        self.move_consumer(consumer, next).await
    }

    async fn check_fenced(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        self.check_lease(consumer, holder).await
    }

    async fn lease(
        &self,
        consumer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        self.take_lease(consumer, holder, ttl).await
    }

    async fn release(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        self.end_lease(consumer, holder).await
    }

    async fn open_reader(&self, consumer: &str, _from: SeqNo) -> Result<NatsReader, EventLogError> {
        // A reset to the ack floor delivers at once what a dead predecessor
        // (or a failed pull) received and never acknowledged.
        self.reset(consumer, None).await?;
        let pull = self.consumer(consumer).await?;
        Ok(NatsReader::new(self, consumer, pull))
    }

    async fn log_exists(&self) -> Result<bool, EventLogError> {
        let name = self.config.stream_name();
        match self.js.get_stream(name).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(self.classify(e)),
            },
        }
    }
}
/// The durable consumers' ack wait: a year (see [`durable`]).
const ACK_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The durable pull consumer of one consumer name: cumulative acks; no
/// limit on unacknowledged deliveries, so a subscriber that never acks does
/// not stall; an ack wait of a year, since redelivery is driven by resets
/// (each new reader resets to the ack floor), never by timers: with a
/// shorter one, a live subscriber that never acks (`eventlog tail` without
/// `--ack`) was sent its whole pending set again after each wait.
fn durable(name: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: -1,
        max_deliver: -1,
        ..Default::default()
    }
}

async fn options(config: &NatsConfig) -> Result<ConnectOptions, EventLogError> {
    let mut options = ConnectOptions::new()
        .name(format!("eventlog:{}", config.log))
        .connection_timeout(config.timeout)
        .request_timeout(Some(config.timeout + BACKSTOP))
        .require_tls(config.require_tls);
    if let Some(path) = &config.root_certificates {
        // The client reads the file only once connected; a typo is a
        // configuration error, not an unreachable broker.
        std::fs::File::open(path).map_err(|e| EventLogError::InvalidConfig {
            reason: format!("root certificates {}: {e}", path.display()),
        })?;
        options = options.add_root_certificates(path.clone());
    }
    options = match &config.credentials {
        Credentials::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        Credentials::Token(token) => options.token(token.expose().to_owned()),
        Credentials::NKey(seed) => options.nkey(seed.expose().to_owned()),
        Credentials::CredsFile(path) => {
            options
                .credentials_file(path)
                .await
                .map_err(|e| EventLogError::InvalidConfig {
                    reason: format!("creds file {}: {e}", path.display()),
                })?
        }
        Credentials::None => options,
    };
    Ok(options)
}

fn check_version(version: &str) -> Result<(), EventLogError> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER {
        return Err(EventLogError::InvalidConfig {
            reason: format!(
                "NATS server {}.{} or newer is needed (consumer reset), the server is {version}",
                MIN_SERVER.0, MIN_SERVER.1
            ),
        });
    }
    Ok(())
}

async fn open_stream(
    client: &Client,
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, EventLogError> {
    let name = config.stream_name();
    if config.create_stream {
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![config.subject()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_consumers: config.max_consumers.map_or(0, |max| max as i32),
            // Zero is the server's default window: deduplication is off on
            // the client side then.
            duplicate_window: config.dedup_window,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| classify(client, e))
    } else {
        js.get_stream(&name).await.map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                EventLogError::InvalidConfig {
                    reason: format!("stream {name} does not exist, and create_stream is off"),
                }
            }
            _ => classify(client, e),
        })
    }
}
