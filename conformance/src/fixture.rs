//! What a backend gives the suite.

use crate::Timings;
use anyhow::Result;
use async_trait::async_trait;
use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::{EventEnvelope, EventLog, SeqNo};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use testkit::Faults;

/// How the suite reaches one backend.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// A new handle, as a new process would open it, on the log named `log`.
    /// Opening the same name again gives another handle on the same log.
    async fn open(&self, log: &str) -> Result<Arc<dyn EventLog>>;

    /// A new handle on the log named `log`, as [`open`](Self::open), whose
    /// log deduplicates appends within `window` where the backend can
    /// (C40). By default, for a backend that never deduplicates, it opens
    /// the log as `open` does.
    async fn open_with_dedup_window(
        &self,
        log: &str,
        window: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        let _ = window;
        self.open(log).await
    }

    /// How many live resources (connections, broker-side consumers, tasks)
    /// the subscriptions on `log` hold, counted through the broker's own
    /// introspection where it has one (C14).
    async fn subscription_resources(&self, log: &str) -> Result<usize>;

    /// The broker behind the backend; `None` for the in-memory log, which
    /// has none.
    fn broker(&self) -> Option<&dyn Broker> {
        None
    }

    /// How long the suite waits on this backend; the defaults unless its
    /// broker needs longer.
    fn timings(&self) -> Timings {
        Timings::default()
    }
}

/// The broker's own view, through its plain client: the clauses that check
/// the backend against the broker (C23, C25, C26, C28).
#[async_trait]
pub trait Broker: Send + Sync {
    /// The acknowledged position of `consumer` on `log` as the broker's own
    /// consumer-group state shows it (C23).
    async fn raw_acked(&self, log: &str, consumer: &str) -> Result<Option<SeqNo>>;

    /// Event `seq_no` of `log`, read with the plain client and decoded as
    /// the wire format's documentation says (C28).
    async fn raw_read(&self, log: &str, seq_no: SeqNo) -> Result<EventEnvelope>;

    /// Publishes `event` to `log` with the plain client, encoded as the wire
    /// format's documentation says (C28).
    async fn raw_publish(&self, log: &str, event: &EventEnvelope) -> Result<()>;

    /// Deletes `log` (its stream, topic or key) with the plain client, under
    /// whatever subscriptions are live.
    async fn raw_delete(&self, log: &str) -> Result<()>;

    /// Appends to `log` with the plain client a message that is not in the
    /// wire format: a payload with no CloudEvents attributes at all, as a
    /// foreign producer might write (C31).
    async fn raw_publish_foreign(&self, log: &str) -> Result<()>;

    /// Removes the events of `log` before `seq_no` with the plain client, as
    /// the broker's retention would (C32).
    async fn raw_remove_before(&self, log: &str, seq_no: SeqNo) -> Result<()>;

    /// A broker of the test's own that it may stop, start and freeze (C25,
    /// C26, C35, C43, R01, R04).
    async fn faulty(&self) -> Result<FaultyBroker>;
}

/// Opens a log on the broker at `address` (`host:port`) with an operation
/// timeout and subscription settings.
pub type Opener = fn(
    address: String,
    log: String,
    timeout: Duration,
    settings: SubscriptionSettings,
) -> BoxFuture<'static, Result<Arc<dyn EventLog>>>;

/// A broker the test owns and may take down: its [`Faults`] (the Docker
/// provider is `eventlog_testkit::containers::OwnBroker`) and how the
/// backend opens a log on it.
pub struct FaultyBroker {
    faults: Box<dyn Faults>,
    open: Opener,
}

impl FaultyBroker {
    /// The broker `faults` controls, on which `open` opens logs.
    pub fn new(faults: impl Faults + 'static, open: Opener) -> Self {
        Self {
            faults: Box::new(faults),
            open,
        }
    }

    /// A handle on `log` whose operations time out after `timeout` and
    /// whose subscriptions follow `settings`.
    pub async fn open(
        &self,
        log: &str,
        timeout: Duration,
        settings: SubscriptionSettings,
    ) -> Result<Arc<dyn EventLog>> {
        (self.open)(self.faults.address(), log.to_owned(), timeout, settings).await
    }
}

impl std::ops::Deref for FaultyBroker {
    type Target = dyn Faults;

    fn deref(&self) -> &Self::Target {
        &*self.faults
    }
}
