//! One backend's soak: its own broker container, the writers, the consumer
//! and the faults at once, then the audit and the checks.

use crate::faults::{self, Injected};
use crate::writers::{self, Progress};
use crate::{Backend, Plan, audit, consumer};
use anyhow::{Context, Result};
use eventlog::EventLog;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::Container;
use testkit::wait::{poll_until, unique};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a broker may take to serve again after a fault.
pub(crate) const RECOVERY: Duration = Duration::from_secs(90);
/// A writer or reader that makes no progress for this long fails the run.
pub(crate) const STALL: Duration = Duration::from_secs(120);

/// One backend's counts.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) appended: u64,
    pub(crate) indeterminate: u64,
    pub(crate) recovered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    /// Reorders and gaps: within a subscription, in the audit's read, and
    /// sequence numbers the consumer never received.
    pub(crate) reorders: u64,
    pub(crate) acked_redeliveries: u64,
    pub(crate) unacked_redeliveries: u64,
    /// Stored ids that no writer appended.
    pub(crate) unknown: u64,
    pub(crate) injected: Injected,
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// Whether any check found a violation.
    pub(crate) fn failed(&self) -> bool {
        self.lost + self.duplicates + self.reorders + self.acked_redeliveries + self.unknown > 0
    }
}

/// Starts `backend`'s broker in a container of its own and soaks it.
pub(crate) async fn soak(backend: Backend, plan: Plan) -> Result<Outcome> {
    let spec = backend.broker(plan.durability);
    // Removed when dropped, or by the harness's watcher if interrupted.
    let container = spec.start_container().await?;
    let result = drive(backend, plan, &container).await;
    if !result.as_ref().is_ok_and(|outcome| !outcome.failed()) {
        eprintln!(
            "   the broker's last log lines ({}):\n{}",
            container.id(),
            container.logs(Some(40)).await
        );
    }
    result
}

async fn drive(backend: Backend, plan: Plan, container: &Container) -> Result<Outcome> {
    let url = format!(
        "{}://{}/{}?timeout_ms={}",
        backend.name(),
        container.address(),
        unique("soak"),
        plan.timeout.as_millis()
    );
    let schedule = faults::schedule(plan.restarts, plan.pauses, plan.kills);
    eprintln!(
        "== {}: {url}: {} events, {} writers, faults {}",
        backend.name(),
        plan.events,
        plan.writers,
        schedule
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut logs = Vec::with_capacity(plan.writers);
    for _ in 0..plan.writers {
        logs.push(connect(&url).await?);
    }
    let progress = Arc::new(Progress::new(plan.events, schedule.len()));
    let (target, target_seen) = watch::channel(None);
    let consumer = tokio::spawn(consumer::run(
        url.clone(),
        unique("soak-consumer"),
        connect(&url).await?,
        progress.clone(),
        target_seen,
    ));
    let started = Instant::now();
    let written = tokio::try_join!(
        writers::run(logs, &progress, plan.timeout * 5),
        faults::run(
            backend.broker(plan.durability),
            container,
            &schedule,
            plan.timeout + faults::PAUSE_PAST_TIMEOUT,
            &progress
        ),
        progress.report(),
    );
    let (appends, injected, ()) = match written {
        Ok(written) => written,
        Err(err) => {
            consumer.abort();
            return Err(err);
        }
    };
    eprintln!(
        "   {} appends stored, {} indeterminate, in {:.1?}; auditing",
        appends.ok.len(),
        appends.indeterminate.len(),
        started.elapsed()
    );
    let stored = match audit::read(&url).await {
        Ok(stored) => stored,
        Err(err) => {
            consumer.abort();
            return Err(err);
        }
    };
    target.send_replace(Some(stored.last));
    let consumed = consumer.await.context("the consumer task")??;
    let elapsed = started.elapsed();
    let found = audit::check(&appends, &stored, &consumed);
    eprintln!(
        "   consumer: {} deliveries over {} subscriptions, {} acks ok, {} failed",
        consumed.deliveries, consumed.subscriptions, consumed.acks_ok, consumed.acks_failed
    );
    let notes = appends
        .notes
        .iter()
        .chain(&stored.notes)
        .chain(&consumed.notes)
        .chain(&found.notes);
    for note in notes {
        eprintln!("   {note}");
    }
    Ok(Outcome {
        appended: appends.ok.len() as u64,
        indeterminate: appends.indeterminate.len() as u64,
        recovered: found.recovered,
        lost: found.lost,
        duplicates: found.duplicates,
        reorders: consumed.reorders + stored.reorders + found.gaps,
        acked_redeliveries: consumed.acked_redeliveries,
        unacked_redeliveries: consumed.unacked_redeliveries,
        unknown: found.unknown,
        injected,
        elapsed,
    })
}

/// Opens the log at `url`, retrying while the broker recovers.
pub(crate) async fn connect(url: &str) -> Result<Arc<dyn EventLog>> {
    retry("connect", RECOVERY, || eventlog::connect(url)).await
}

/// Calls `op` until it returns `Ok`, or fails after `within` with its last
/// error.
pub(crate) async fn retry<T, F, Fut>(what: &str, within: Duration, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempt = || {
        let call = op();
        async move { call.await.map(Opaque) }
    };
    Ok(poll_until(what, within, attempt, |_| true).await?.0)
}

/// A value that `poll_until` may print while it waits: streams and logs
/// have no `Debug`.
struct Opaque<T>(T);

impl<T> fmt::Debug for Opaque<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ok")
    }
}
