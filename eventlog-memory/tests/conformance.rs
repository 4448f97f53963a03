//! The whole contract against the in-memory log (the clauses that need a
//! broker do not apply to it).

use anyhow::Result;
use async_trait::async_trait;
use conformance::Fixture;
use eventlog_core::EventLog;
use eventlog_memory::InMemoryLogs;
use std::sync::Arc;

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

    async fn subscription_resources(&self, log: &str) -> Result<usize> {
        Ok(self.logs.open(log)?.subscription_count())
    }
}

conformance::contract_tests!(embedded: Memory::default());
conformance::contract_tests!(driver: Memory::default());
