//! The NATS JetStream backend of [`eventlog`](https://docs.rs/eventlog).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use eventlog_core::{EventEnvelope, EventLog};
//! use eventlog_nats::{NatsConfig, NatsEventLog};
//!
//! let config = NatsConfig::builder("nats://127.0.0.1:4222", "orders")
//!     .with_user_password("app", "secret")
//!     .build()?;
//! let log = NatsEventLog::connect(config).await?;
//! log.append(EventEnvelope::new("/shop", "order.placed", &b"{}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! # How the contract maps onto JetStream
//!
//! NATS server 2.14 or newer is needed: seeking and resuming use the
//! consumer reset API (ADR-60); `connect` checks the version.
//!
//! | EventLog | JetStream |
//! |---|---|
//! | a log | one stream `EVENTLOG_<log>` on the subject `eventlog.<log>` (prefixes configurable), file storage, created on first use unless configured to require it |
//! | a sequence number | the stream sequence |
//! | `append` | a publish with the envelope id as `Nats-Msg-Id`, awaiting the JetStream acknowledgement; the attributes in `ce-` headers (binary content mode) |
//! | `append_batch` | pipelined publishes: all sent, then all acknowledgements awaited |
//! | a consumer | a durable pull consumer named after it: `AckPolicy::All`, no limit on unacknowledged deliveries, a one-hour ack wait |
//! | its position | the durable's ack floor (`nats consumer info`), `LastAcknowledged` is the floor + 1 |
//! | `seek(c, p)` | a consumer reset to the position: ack floor and delivery point move together |
//! | `subscribe(c, p)` | a seek, or for `LastAcknowledged` a reset to the ack floor, so what a dead predecessor received and never acknowledged comes again at once; then pull requests |
//! | `ack(c, n)` | for a message this handle's subscription received: an ack of it through its reply subject (cumulative under `AckPolicy::All`), awaited; otherwise (another process, or a message not delivered yet) a reset to `n + 1` after checking the floor (never backwards) and the stream's last sequence (never past the end) |
//! | `consumer_state` | the durable's ack floor and the stream's last sequence |
//! | an exclusive subscription | a key `<stream>.<consumer>` of the bucket `eventlog_leases` holding its token, with a per-message TTL |
//!
//! **Payload limit.** A message (headers and body) must fit the server's
//! `max_payload` (1 MiB by default); 8 KiB of it are kept for the attribute
//! headers, so `capabilities().max_payload` is `max_payload - 8 KiB`.
//!
//! **Duplicates.** JetStream drops a publish whose `Nats-Msg-Id` it has seen
//! within the stream's duplicate window (2 minutes by default): appending an
//! envelope with an id used moments before returns the first sequence number
//! and stores nothing. Retrying an append after a timeout is therefore safe.
//!
//! **One reader per consumer name.** Two live plain subscriptions on one
//! name pull from the same durable and split the new events between them;
//! each reset one makes re-delivers to both. An exclusive subscription
//! (`subscribe_with` and `SubscribeOptions::exclusive`) holds the name
//! alone: its lease is a key of the key-value bucket `eventlog_leases`
//! (`<stream>.<consumer>`, the holder's token, a per-message TTL of the
//! lease rounded up to whole seconds), taken and renewed by publishes that
//! expect the key's revision. JetStream has no conditional ack, so a fenced
//! ack or seek reads the key first: a holder frozen between that read and
//! its ack for longer than a lease can still land the ack. Acks through a
//! handle that holds no lease cost that read (one more round trip); the
//! holder's own acks skip it while its lease surely lives. See
//! `docs/reliability.md` in the repository.
//!
//! **Faults.** Operations are bounded as a whole by the configured timeout
//! (default 5 s) and fail with `Timeout` or `Unavailable` while the server is
//! away; the connection reconnects by itself. A subscription whose pull fails
//! opens a new reader, which resets its consumer to the ack floor once the
//! server answers; the generic log skips what it already handed out: no gap,
//! no duplicate. What `subscribe_checked` reports (undecodable messages, gaps,
//! a deleted stream, outages) is the same on every backend: see
//! `eventlog_core::CheckedEventStream`.
//!
//! The contract's rules live in `eventlog-core`'s generic log; this crate is
//! its driver ([`NatsDriver`], [`NatsReader`]): the broker calls only.

mod codec;
mod config;
mod driver;
mod error;
mod lease;
mod log;
mod reader;

pub use config::{
    Credentials, DEFAULT_STREAM_PREFIX, DEFAULT_SUBJECT_PREFIX, DEFAULT_TIMEOUT, NatsConfig,
    NatsConfigBuilder,
};
pub use driver::NatsDriver;
pub use log::NatsEventLog;
pub use reader::NatsReader;
