//! The whole contract against the in-memory log (the clauses that need a
//! broker do not apply to it).

use anyhow::Result;
use async_trait::async_trait;
use conformance::Fixture;
use eventlog_core::EventLog;
use eventlog_memory::{InMemoryEventLog, InMemoryLogs};
use std::sync::Arc;
use std::time::Duration;

/// Every test gets a set of logs of its own; `open` on one name gives handles
/// on the same log, as a broker would.
#[derive(Default)]
struct Memory {
    logs: InMemoryLogs,
}

#[async_trait]
impl Fixture for Memory {
    async fn open(&self, log: &str) -> Result<Arc<dyn EventLog>> {
        Ok(Arc::new(self.logs.open(log)?))
    }

    async fn open_with_dedup_window(
        &self,
        _log: &str,
        window: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        // A log of its own: the window is set when a log is made.
        Ok(Arc::new(
            InMemoryEventLog::builder()
                .with_dedup_window(window)
                .build(),
        ))
    }

    async fn subscription_resources(&self, log: &str) -> Result<usize> {
        Ok(self.logs.open(log)?.subscription_count())
    }
}

// No broker: nothing to read raw, remove, delete or take down (the contract
// lists the clauses that do not apply to it).
conformance::contract_tests!(
    Memory::default(),
    lacks: [broker_positions, wire_format, foreign_events, retention, deletion, faults]
);
