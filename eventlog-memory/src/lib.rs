//! The in-memory [`EventLog`]: the reference backend of the contract and the
//! embedded default.
//!
//! [`InMemoryEventLog`] is a cheap, cloneable handle on one shared log: clones
//! see the same events and the same consumer positions, as two connections to
//! a broker would. [`InMemoryLogs`] is a set of named logs, the in-memory
//! counterpart of a broker: opening one name twice gives two handles on the
//! same log. Nothing outlives the process.
//!
//! ```
//! use eventlog_core::{EventEnvelope, EventLog, SeekPosition};
//! use eventlog_memory::InMemoryEventLog;
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let log = InMemoryEventLog::new();
//! let seq = log.append(EventEnvelope::new("/doc", "created", &b"hi"[..])).await?;
//! assert_eq!(seq, 1);
//! let mut events = log.subscribe("reader", SeekPosition::Beginning).await?;
//! assert_eq!(events.next().await.unwrap().seq_no, Some(1));
//! # Ok(()) }
//! ```

mod dedup;
mod log;
mod logs;
mod store;

pub use log::{DEFAULT_MAX_PAYLOAD, InMemoryEventLog, InMemoryEventLogBuilder};
pub use logs::InMemoryLogs;
pub use store::{MemoryDriver, MemoryReader};

#[doc(no_inline)]
pub use eventlog_core::EventLog;
