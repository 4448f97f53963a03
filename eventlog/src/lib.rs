//! One persistent, ordered, replayable event log with consumer groups, over
//! the broker you already run.
//!
//! Write application code once against [`EventLog`]; pick the backend with a
//! Cargo feature. This crate re-exports the core API and, per feature, the
//! backend crates:
//!
//! | feature  | backend                        | module      |
//! |----------|--------------------------------|-------------|
//! | `memory` | in-memory, the default         | [`memory`]  |
//!
//! ```
//! use eventlog::{EventEnvelope, EventLog, SeekPosition};
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let log = eventlog::memory::InMemoryLogs::global().open("orders")?;
//! log.append(EventEnvelope::new("/shop", "order.placed", &b"{\"id\":1}"[..])).await?;
//! let mut events = log.subscribe("billing", SeekPosition::Beginning).await?;
//! let first = events.next().await.unwrap();
//! log.ack("billing", first.seq_no.unwrap()).await?;
//! # Ok(()) }
//! ```

pub use eventlog_core::{
    BoxError, Capabilities, ConsumerState, EventEnvelope, EventLog, EventLogError, EventStream,
    Result, SPEC_VERSION, SeekPosition, SeqNo, validate,
};

/// The in-memory backend.
#[cfg(feature = "memory")]
pub mod memory {
    pub use eventlog_memory::*;
}
