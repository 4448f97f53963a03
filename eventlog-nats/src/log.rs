//! `NatsEventLog`: the `EventLog` methods over one JetStream stream.

use crate::config::{Credentials, NatsConfig};
use crate::error::{BACKEND, classify};
use crate::{codec, subscription};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions, Subject};
use async_trait::async_trait;
use eventlog_core::{
    Capabilities, ConsumerState, EventEnvelope, EventLog, EventLogError, EventStream, Result,
    SeekPosition, SeqNo, validate, with_timeout,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much longer than the configured timeout the client's own request
/// timeouts are.
const BACKSTOP: Duration = Duration::from_secs(1);

/// The oldest server with the consumer reset API (ADR-60) that seek and
/// resumption stand on.
const MIN_SERVER: (u64, u64) = (2, 14);
/// Room kept beside the payload for the attribute headers.
const HEADER_ROOM: usize = 8 * 1024;
/// At most this many delivered, unacknowledged messages per consumer keep
/// their reply subject for a fast ack; beyond, acks take the slower reset path.
const MAX_REPLIES: usize = 100_000;

/// An [`EventLog`] on a JetStream stream. Cheap to clone: clones share one
/// connection, which reconnects by itself.
#[derive(Clone)]
pub struct NatsEventLog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: NatsConfig,
    pub(crate) client: Client,
    js: jetstream::Context,
    pub(crate) stream: stream::Stream,
    subject: String,
    /// The server's `max_payload`: headers and body together.
    max_message: usize,
    /// Per consumer, the reply subjects of messages delivered to this
    /// handle's subscriptions and not yet acknowledged: `ack` through them
    /// is one round trip.
    pub(crate) replies: Mutex<HashMap<String, VecDeque<(SeqNo, Subject)>>>,
}

impl fmt::Debug for NatsEventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsEventLog")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl NatsEventLog {
    /// Connects to the log described by `config`, creating its stream if
    /// configured so, and checks that the server is 2.14 or newer.
    pub async fn connect(config: NatsConfig) -> Result<Self> {
        let timeout = config.timeout;
        let options = options(&config).await?;
        let client = with_timeout("connect", timeout, async {
            options
                .connect(&config.servers)
                .await
                .map_err(|e| crate::error::from_connect(e).into())
        })
        .await?;
        check_version(&client.server_info().version)?;
        let mut js = jetstream::new(client.clone());
        // Backstops only: every call is bounded by `with_timeout`, which must
        // fire first to report the operation that timed out.
        js.set_timeout(timeout + BACKSTOP);
        let stream = with_timeout("connect", timeout, open_stream(&client, &js, &config)).await?;
        let max_message = client.server_info().max_payload;
        let subject = config.subject();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                js,
                stream,
                subject,
                max_message,
                replies: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Connects to the log a URL names; see [`NatsConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(NatsConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// The JetStream stream that holds the log.
    pub fn stream_name(&self) -> String {
        self.inner.config.stream_name()
    }

    fn max_payload(&self) -> usize {
        self.inner.max_message.saturating_sub(HEADER_ROOM)
    }

    async fn within<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        with_timeout(operation, self.inner.config.timeout, fut).await
    }

    /// Publishes one event and returns the future of its acknowledgement.
    async fn publish(
        &self,
        envelope: &EventEnvelope,
    ) -> Result<jetstream::context::PublishAckFuture> {
        let headers = codec::encode(envelope);
        let header_bytes: usize = headers
            .iter()
            .map(|(k, v)| {
                AsRef::<str>::as_ref(k).len()
                    + v.iter().map(|v| v.as_str().len() + 4).sum::<usize>()
            })
            .sum();
        let size = header_bytes + envelope.payload.len();
        if size > self.inner.max_message {
            return Err(EventLogError::PayloadTooLarge {
                size,
                limit: self.inner.max_message,
            }
            .into());
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(envelope.payload.clone())
            .headers(headers)
            .message_id(&envelope.id)
            .expected_stream(self.inner.config.stream_name());
        self.inner
            .js
            .send_publish(self.inner.subject.clone(), message)
            .await
            .map_err(|e| classify(&self.inner.client, e).into())
    }

    async fn await_ack(&self, ack: jetstream::context::PublishAckFuture) -> Result<SeqNo> {
        Ok(ack
            .await
            .map_err(|e| classify(&self.inner.client, e))?
            .sequence)
    }

    async fn last(&self) -> Result<SeqNo> {
        let info = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(|e| classify(&self.inner.client, e))?;
        Ok(info.state.last_sequence)
    }

    /// The durable consumer named `consumer`, created at the beginning if it
    /// does not exist.
    pub(crate) async fn consumer(&self, consumer: &str) -> Result<consumer::PullConsumer> {
        self.inner
            .stream
            .get_or_create_consumer(consumer, durable(consumer))
            .await
            .map_err(|e| classify(&self.inner.client, e).into())
    }

    /// Resets `consumer` so the next delivery is `next` (its ack floor
    /// becomes `next - 1`), or to its ack floor with `None`; returns the
    /// next sequence number. Forgets the replies of earlier deliveries.
    pub(crate) async fn reset(&self, consumer: &str, next: Option<SeqNo>) -> Result<SeqNo> {
        self.consumer(consumer).await?;
        let reply = self
            .inner
            .stream
            .reset_consumer(consumer, next)
            .await
            .map_err(|e| classify(&self.inner.client, e))?;
        self.inner
            .replies
            .lock()
            .expect("replies lock poisoned")
            .remove(consumer);
        Ok(reply.reset_seq.max(1))
    }

    async fn seek_now(&self, consumer: &str, position: SeekPosition) -> Result<SeqNo> {
        let next = match position {
            SeekPosition::Beginning => Some(1),
            SeekPosition::Latest => Some(self.last().await? + 1),
            SeekPosition::Sequence(n) => Some(n),
            _ => None,
        };
        self.reset(consumer, next).await
    }

    /// Whether the log's stream still exists: `false` once someone deleted
    /// it.
    pub(crate) async fn stream_exists(&self) -> Result<bool> {
        let name = self.inner.config.stream_name();
        match self.inner.js.get_stream(name).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(classify(&self.inner.client, e).into()),
            },
        }
    }

    /// The ack floor of `consumer`, `None` when it does not exist.
    async fn ack_floor(&self, consumer: &str) -> Result<Option<SeqNo>> {
        match self.inner.stream.consumer_info(consumer).await {
            Ok(info) => Ok(Some(info.ack_floor.stream_sequence)),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(classify(&self.inner.client, e).into()),
        }
    }

    /// The reply subject of message `seq_no` if a subscription of this
    /// handle received it and it is not acknowledged yet.
    fn reply_of(&self, consumer: &str, seq_no: SeqNo) -> Option<Subject> {
        self.inner
            .replies
            .lock()
            .expect("replies lock poisoned")
            .get(consumer)
            .and_then(|replies| {
                // Deliveries come in sequence order: the queue is sorted.
                let at = replies
                    .binary_search_by_key(&seq_no, |(seq, _)| *seq)
                    .ok()?;
                Some(replies[at].1.clone())
            })
    }

    /// Forgets the replies of `consumer` up to `seq_no`: acknowledged now.
    fn forget_replies(&self, consumer: &str, seq_no: SeqNo) {
        if let Some(replies) = self
            .inner
            .replies
            .lock()
            .expect("replies lock poisoned")
            .get_mut(consumer)
        {
            while replies.front().is_some_and(|(seq, _)| *seq <= seq_no) {
                replies.pop_front();
            }
        }
    }
}

impl Inner {
    /// Keeps the reply subject of a delivered message for a fast `ack`.
    pub(crate) fn remember_reply(&self, consumer: &str, seq_no: SeqNo, reply: Subject) {
        let mut all = self.replies.lock().expect("replies lock poisoned");
        // No allocation for the consumer's name on the hot path.
        let replies = match all.get_mut(consumer) {
            Some(replies) => replies,
            None => all.entry(consumer.to_owned()).or_default(),
        };
        if replies.len() >= MAX_REPLIES {
            replies.pop_front();
        }
        replies.push_back((seq_no, reply));
    }
}

/// The durable pull consumer of one consumer name: cumulative acks; no
/// limit on unacknowledged deliveries, so a subscriber that never acks does
/// not stall; a long ack wait, since redelivery is driven by resets, not
/// timers (a subscription skips what it already handed out anyway).
fn durable(name: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::All,
        ack_wait: Duration::from_secs(3600),
        max_ack_pending: -1,
        max_deliver: -1,
        ..Default::default()
    }
}

async fn options(config: &NatsConfig) -> Result<ConnectOptions> {
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
        _ => options,
    };
    Ok(options)
}

fn check_version(version: &str) -> Result<()> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER {
        return Err(EventLogError::InvalidConfig {
            reason: format!(
                "NATS server {}.{} or newer is needed (consumer reset), the server is {version}",
                MIN_SERVER.0, MIN_SERVER.1
            ),
        }
        .into());
    }
    Ok(())
}

async fn open_stream(
    client: &Client,
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream> {
    let name = config.stream_name();
    let result = if config.create_stream {
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![config.subject()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
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
    };
    Ok(result?)
}

#[async_trait]
impl EventLog for NatsEventLog {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        validate::envelope(&envelope, self.max_payload())?;
        self.within("append", async {
            self.await_ack(self.publish(&envelope).await?).await
        })
        .await
    }

    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        validate::batch(&envelopes, self.max_payload())?;
        // Pipelined: every publish goes out before the first acknowledgement
        // is awaited; one connection keeps them in order.
        self.within("append_batch", async {
            let mut acks = Vec::with_capacity(envelopes.len());
            for envelope in &envelopes {
                acks.push(self.publish(envelope).await?);
            }
            let mut seq_nos = Vec::with_capacity(acks.len());
            for ack in acks {
                seq_nos.push(self.await_ack(ack).await?);
            }
            Ok(seq_nos)
        })
        .await
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        // Even from LastAcknowledged: a reset to the ack floor delivers what
        // a dead predecessor received but never acknowledged, at once.
        let next = self
            .within("subscribe", self.seek_now(consumer, position))
            .await?;
        let pull = self.within("subscribe", self.consumer(consumer)).await?;
        Ok(subscription::open(
            self.clone(),
            consumer.to_owned(),
            pull,
            next - 1,
        ))
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()> {
        validate::consumer_name(consumer)?;
        if seq_no == 0 {
            return Err(EventLogError::AckOutOfRange {
                consumer: consumer.to_owned(),
                seq_no,
                last: None,
            }
            .into());
        }
        self.within("ack", async {
            if let Some(reply) = self.reply_of(consumer, seq_no) {
                // AckAll through the delivered message: covers everything up
                // to it. A request, so the server has applied it on return.
                self.inner
                    .client
                    .request(reply, "+ACK".into())
                    .await
                    .map_err(|e| classify(&self.inner.client, e))?;
                self.forget_replies(consumer, seq_no);
                return Ok(());
            }
            let floor = self.ack_floor(consumer).await?;
            if floor.is_some_and(|floor| seq_no <= floor) {
                return Ok(());
            }
            let last = self.last().await?;
            validate::ack(consumer, seq_no, (last > 0).then_some(last))?;
            self.reset(consumer, Some(seq_no + 1)).await.map(drop)
        })
        .await
    }

    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        if position == SeekPosition::LastAcknowledged {
            return Ok(());
        }
        self.within("seek", self.seek_now(consumer, position))
            .await
            .map(drop)
    }

    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>> {
        let last = self.within("last_seq_no", self.last()).await?;
        Ok((last > 0).then_some(last))
    }

    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState> {
        validate::consumer_name(consumer)?;
        self.within("consumer_state", async {
            let floor = self.ack_floor(consumer).await?.unwrap_or(0);
            let last = self.last().await?;
            Ok(ConsumerState::from_next(
                floor + 1,
                (last > 0).then_some(last),
            ))
        })
        .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BACKEND, self.max_payload(), true)
    }
}
