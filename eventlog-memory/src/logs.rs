//! Named in-memory logs.

use crate::InMemoryEventLog;
use eventlog_core::{EventLogError, validate};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A set of named in-memory logs: the in-memory counterpart of a broker.
///
/// [`open`](Self::open) with the same name gives handles on the same log, so
/// code that reopens a log (a restarted consumer, a second process) behaves
/// as it would on a broker. Clones share the set.
#[derive(Clone, Debug, Default)]
pub struct InMemoryLogs {
    logs: Arc<Mutex<HashMap<String, InMemoryEventLog>>>,
    max_payload: Option<usize>,
    dedup_window: Option<Duration>,
}

impl InMemoryLogs {
    /// An empty set whose logs accept payloads up to
    /// [`DEFAULT_MAX_PAYLOAD`](crate::DEFAULT_MAX_PAYLOAD).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same set, with logs opened from now on accepting payloads up to
    /// `max_payload` bytes.
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = Some(max_payload);
        self
    }

    /// The same set, with logs opened from now on deduplicating appends
    /// within `window` ([`InMemoryEventLogBuilder::with_dedup_window`](crate::InMemoryEventLogBuilder::with_dedup_window)).
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = Some(window);
        self
    }

    /// The set shared by the whole process, behind `memory://` URLs.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<InMemoryLogs> = OnceLock::new();
        GLOBAL.get_or_init(Self::new)
    }

    /// A new handle on the log named `name`, created empty on first use:
    /// as a new handle on a broker's log, it shares the events and the
    /// positions, and not its own acks' fencing tokens or live
    /// subscriptions (a clone of a handle is the same handle).
    pub fn open(&self, name: &str) -> Result<InMemoryEventLog, EventLogError> {
        validate::log_name(name)?;
        let mut logs = self.logs.lock().expect("log set lock poisoned");
        let log = logs.entry(name.to_owned()).or_insert_with(|| {
            let mut builder = InMemoryEventLog::builder();
            if let Some(max) = self.max_payload {
                builder = builder.with_max_payload(max);
            }
            if let Some(window) = self.dedup_window {
                builder = builder.with_dedup_window(window);
            }
            builder.build()
        });
        Ok(log.another_handle())
    }
}
