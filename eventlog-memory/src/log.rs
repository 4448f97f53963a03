//! The in-memory log: a handle on a [`DriverLog`] over the shared store.

use crate::store::MemoryDriver;
use eventlog_core::DEFAULT_DEDUP_WINDOW;
use eventlog_core::driver::{AsDriverLog, DriverLog, SubscriptionSettings};
use std::time::Duration;

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
        Self::builder().with_max_payload(max_payload).build()
    }

    /// A builder of an empty log with other limits than the defaults.
    pub fn builder() -> InMemoryEventLogBuilder {
        InMemoryEventLogBuilder {
            max_payload: DEFAULT_MAX_PAYLOAD,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            settings: SubscriptionSettings::default(),
        }
    }

    /// Another handle on the same log whose subscriptions follow `settings`.
    pub fn with_subscription_settings(&self, settings: SubscriptionSettings) -> Self {
        Self {
            log: DriverLog::with_settings(self.log.driver().clone(), settings),
        }
    }

    /// A new handle on the same log, with the same settings.
    pub(crate) fn another_handle(&self) -> Self {
        self.with_subscription_settings(self.log.subscription_settings())
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

/// Builds an [`InMemoryEventLog`]: [`InMemoryEventLog::builder`].
///
/// ```
/// use eventlog_memory::InMemoryEventLog;
/// use std::time::Duration;
/// let log = InMemoryEventLog::builder()
///     .with_dedup_window(Duration::from_secs(10))
///     .build();
/// # let _ = log;
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryEventLogBuilder {
    max_payload: usize,
    dedup_window: Duration,
    settings: SubscriptionSettings,
}

impl InMemoryEventLogBuilder {
    /// Accepts payloads up to `max_payload` bytes (default
    /// [`DEFAULT_MAX_PAYLOAD`]).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload;
        self
    }

    /// Remembers the (`source`, `id`) of each stored event for `window`, so
    /// an append of the same pair within it stores nothing (default
    /// [`DEFAULT_DEDUP_WINDOW`]); zero turns deduplication off. The memory
    /// it takes grows with the appends of one window.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Subscriptions follow `settings`.
    pub fn with_subscription_settings(mut self, settings: SubscriptionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The empty log.
    pub fn build(self) -> InMemoryEventLog {
        InMemoryEventLog {
            log: DriverLog::with_settings(
                MemoryDriver::new(self.max_payload, self.dedup_window),
                self.settings,
            ),
        }
    }
}
