//! One persistent, ordered, replayable event log with consumer groups, over
//! the broker you already run.
//!
//! Write application code once against [`EventLog`]; pick the backend with
//! a Cargo feature, and the broker with a URL:
//!
//! | feature  | backend                    | URL                                   | module     |
//! |----------|----------------------------|---------------------------------------|------------|
//! | `memory` | in-memory, the default     | `memory://<log>`                      | [`memory`] |
//! | `nats`   | NATS JetStream (2.14+)     | `nats://host:4222/<log>`              | `nats`     |
//! | `kafka`  | Kafka                      | `kafka://host:9092/<log>`             | `kafka`    |
//! | `redis`  | Redis Streams (7.0+)       | `redis://host:6379/<log>`, `rediss://`| `redis`    |
//!
//! `full` enables all of them; `tls` adds TLS where a backend makes it a
//! feature (`rediss://`, Kafka SSL and SCRAM).
//!
//! ```
//! use eventlog::{EventEnvelope, EventLogExt, SeekPosition};
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let log = eventlog::connect("memory://orders").await?;
//! log.append(EventEnvelope::new("/shop", "order.placed", &b"{\"id\":1}"[..])).await?;
//! let mut events = log.subscribe("billing", SeekPosition::Beginning).await?;
//! while let Some(event) = events.next().await {
//!     println!("{}: {}", event.seq(), event.event_type);
//!     log.ack_event("billing", &event).await?;
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! [`copy`] moves a log between backends, keeping order, ids and attributes.
//!
//! Every backend also has a typed builder (`eventlog::redis::RedisConfig`,
//! …) for those who prefer code to URLs.

mod connect;
mod copy;
pub mod process;

pub use connect::{BACKENDS, Backend, CREDENTIAL_VARIABLES, connect, connect_with_env};
pub use copy::{CopyReport, copy};
pub use eventlog_core::{
    AppendOptions, Appended, AttributeReader, BoxError, Capabilities, CheckedEventStream,
    ConsumerState, DEFAULT_DEDUP_WINDOW, DEFAULT_LEASE, EventEnvelope, EventLog, EventLogError,
    EventLogExt, EventStream, ExpectedLast, MAX_MEMBERS, Member, PARTITION_KEY, Result,
    SPEC_VERSION, Secret, SeekPosition, SeqNo, SubscribeOptions, WhenBusy, attributes, driver,
    partition_of, redact_url, validate,
};

/// The in-memory backend.
#[cfg(feature = "memory")]
pub mod memory {
    pub use eventlog_memory::*;
}

/// The NATS JetStream backend.
#[cfg(feature = "nats")]
pub mod nats {
    pub use eventlog_nats::*;
}

/// The Kafka backend.
#[cfg(feature = "kafka")]
pub mod kafka {
    pub use eventlog_kafka::*;
}

/// The Redis Streams backend.
#[cfg(feature = "redis")]
pub mod redis {
    pub use eventlog_redis::*;
}
