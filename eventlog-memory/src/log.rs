//! The in-memory log: a handle on a [`DriverLog`] over the shared store.

use crate::store::MemoryDriver;
use eventlog_core::driver::{AsDriverLog, DriverLog, SubscriptionSettings};

/// The payload limit of a log made with [`InMemoryEventLog::new`]: 1 MiB, the
/// same as the broker backends' defaults, so code tested here fits there.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// A handle on one in-memory log. Clones share the log.
#[derive(Clone, Debug)]
pub struct InMemoryEventLog {
    log: DriverLog<MemoryDriver>,
}

impl Default for InMemoryEventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEventLog {
    /// An empty log accepting payloads up to [`DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// An empty log accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            log: DriverLog::new(MemoryDriver::new(max_payload)),
        }
    }

    /// Another handle on the same log whose subscriptions follow `settings`.
    pub fn with_subscription_settings(&self, settings: SubscriptionSettings) -> Self {
        Self {
            log: DriverLog::with_settings(self.log.driver().clone(), settings),
        }
    }

    /// How many subscription streams on this log are alive.
    pub fn subscription_count(&self) -> usize {
        self.log.driver().readers()
    }
}

impl AsDriverLog for InMemoryEventLog {
    type Driver = MemoryDriver;

    fn driver_log(&self) -> &DriverLog<MemoryDriver> {
        &self.log
    }
}
