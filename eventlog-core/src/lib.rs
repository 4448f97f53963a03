//! The core of `eventlog`: one persistent, ordered, replayable event log with
//! consumer groups, whatever broker stores it.
//!
//! Application code is written against [`EventLog`]; backends (the in-memory
//! log, NATS JetStream, Kafka, Redis Streams) live in crates of their own and
//! depend on this one only. This crate holds no broker types.
//!
//! * [`EventEnvelope`]: a CloudEvents 1.0 event plus the sequence number the
//!   log assigned to it.
//! * [`SeqNo`], [`SeekPosition`], [`ConsumerState`]: where events and
//!   consumers are.
//! * [`AppendOptions`], [`ExpectedLast`], [`Appended`]: conditional appends,
//!   and whether an append stored its event or found it already there.
//! * [`EventLogError`]: every refusal and failure, the same on every backend;
//!   reach it with `err.downcast_ref::<EventLogError>()`.
//! * [`attributes`] and [`AttributeReader`]: an envelope as CloudEvents
//!   attribute pairs and back, which every backend's wire format writes in
//!   its own way.
//! * [`Secret`] and [`redact_url`]: credentials kept out of `Debug`, logs
//!   and errors.
//! * [`validate`]: the checks every backend runs before it touches its broker,
//!   so every backend refuses the same inputs the same way.

mod append;
mod attributes;
mod backoff;
pub mod driver;
mod envelope;
mod error;
mod log;
pub mod log_url;
mod members;
mod position;
mod secret;
mod subscribe;
pub mod validate;

pub use append::{AppendOptions, Appended, DEFAULT_DEDUP_WINDOW, ExpectedLast};
pub use attributes::{AttributeReader, attributes};
pub use envelope::{EventEnvelope, PARTITION_KEY, SPEC_VERSION};
pub use error::{BoxError, EventLogError};
pub use log::{Capabilities, CheckedEventStream, EventLog, EventLogExt, EventStream};
pub use members::{MAX_MEMBERS, Member, partition_of};
pub use position::{ConsumerState, SeekPosition, SeqNo};
pub use secret::{Secret, redact_url};
pub use subscribe::{DEFAULT_LEASE, SubscribeOptions, WhenBusy};

/// `anyhow::Result`, the result type of every [`EventLog`] method.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
