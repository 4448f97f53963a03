//! Faults: broker restarts (C25), an unreachable broker (C26) and a consumer
//! that dies before acknowledging (C27).

use crate::support::{
    append_n, append_retrying, event, expect_each_once, expect_intact, expect_seq_nos, next_within,
    poll_until, take, unique,
};
use crate::timings;
use crate::{FaultyBroker, Fixture};
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{EventLogError, SeekPosition};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) async fn faulty(fx: &dyn Fixture, clause: &str) -> Result<FaultyBroker> {
    fx.broker()
        .with_context(|| format!("{clause} needs a broker, and this fixture has none"))?
        .faulty()
        .await
        .with_context(|| format!("{clause} needs a broker of its own to stop and start"))
}

/// C25 A subscription survives a restart of the broker: after the broker is
/// back it goes on from the next event, with no gap and no duplicate, without
/// the caller doing anything.
pub async fn c25_subscriptions_survive_a_broker_restart(fx: &dyn Fixture) -> Result<()> {
    let broker = faulty(fx, "C25").await?;
    let name = unique("c25");
    let log = broker
        .open(&name, timings().fault_timeout, Default::default())
        .await?;
    append_n(&*log, 3).await?;
    let mut stream = log
        .subscribe(&unique("survivor"), SeekPosition::Beginning)
        .await?;
    expect_seq_nos(
        &take(&mut stream, 3).await?,
        1..=3,
        &format!("log {name}: before the restart"),
    )?;

    broker.stop().await?;
    broker.start().await?;
    let retried = event(3);
    append_retrying(
        &*log,
        &retried,
        &format!("log {name}: appending after the restart"),
        timings().recovery,
    )
    .await?;
    let first = next_within(&mut stream, timings().recovery)
        .await
        .context("first event after the restart")?;
    ensure!(
        first.seq_no == Some(4),
        "log {name}: first event after the restart is {:?}, expected 4",
        first.seq_no
    );
    append_n(&*log, 2).await?;
    expect_seq_nos(
        &take(&mut stream, 2).await?,
        5..=6,
        &format!("log {name}: after the restart"),
    )?;
    expect_each_once(&*log, &retried.id, &format!("log {name}")).await
}

/// C26 While the broker is unreachable, `append` fails with a typed error
/// within the configured timeout (default at most 10 s) instead of hanging,
/// and works again once the broker is back. No event acknowledged by `append`
/// before the outage is lost.
pub async fn c26_append_fails_fast_while_the_broker_is_down(fx: &dyn Fixture) -> Result<()> {
    let fault_timeout = timings().fault_timeout;
    let broker = faulty(fx, "C26").await?;
    let name = unique("c26");
    let log = broker
        .open(&name, timings().fault_timeout, Default::default())
        .await?;
    let before: Vec<_> = (0..3).map(event).collect();
    for e in &before {
        log.append(e.clone()).await?;
    }

    broker.stop().await?;
    for attempt in 0..2 {
        let start = Instant::now();
        let result =
            tokio::time::timeout(timings().fault_timeout * 4, log.append(event(10 + attempt)))
                .await;
        let took = start.elapsed();
        let Ok(result) = result else {
            bail!(
                "log {name}: append hung for {took:?} with the broker down (timeout {fault_timeout:?})"
            );
        };
        let err = match result {
            Ok(seq) => bail!("log {name}: append returned {seq} with the broker down"),
            Err(err) => err,
        };
        // Retryable on a log that deduplicates; otherwise the append may
        // have landed (C43).
        let typed = err.downcast_ref::<EventLogError>();
        let expected = match typed {
            Some(EventLogError::AppendUnconfirmed { source, .. }) => {
                log.capabilities().dedup_window.is_none() && source.is_retryable()
            }
            other => other.is_some_and(EventLogError::is_retryable),
        };
        ensure!(
            expected,
            "log {name}: expected a retryable typed error (AppendUnconfirmed without \
             deduplication), got {err:#}"
        );
        ensure!(
            took <= timings().fault_timeout + Duration::from_secs(2),
            "log {name}: append failed after {took:?}, timeout is {fault_timeout:?}"
        );
    }

    broker.start().await?;
    let retried = event(20);
    append_retrying(
        &*log,
        &retried,
        &format!("log {name}: appending after the outage"),
        timings().recovery,
    )
    .await?;
    expect_intact(&*log, &before, &format!("log {name}")).await?;
    // The appends that failed during the outage may have landed, once.
    expect_each_once(&*log, &retried.id, &format!("log {name}")).await
}

/// C27 A consumer that dies after receiving events but before acknowledging
/// them gets them again, in order, from `subscribe(c, LastAcknowledged)` in a
/// new process.
pub async fn c27_unacknowledged_events_come_again(fx: &dyn Fixture) -> Result<()> {
    // Redelivery must not wait for a broker-side ack timeout.
    let name = unique("c27");
    let c = unique("worker");
    {
        let dying = fx.open(&name).await?;
        append_n(&*dying, 5).await?;
        let mut stream = dying.subscribe(&c, SeekPosition::Beginning).await?;
        take(&mut stream, 5).await?;
        dying.ack(&c, 2).await?;
    }
    let next = fx.open(&name).await?;
    let mut stream = next.subscribe(&c, SeekPosition::LastAcknowledged).await?;
    let mut again = Vec::new();
    for _ in 3..=5 {
        again.push(
            next_within(&mut stream, timings().redelivery)
                .await
                .with_context(|| format!("log {name}: redelivery after {:?}", again.len()))?,
        );
    }
    expect_seq_nos(&again, 3..=5, &format!("log {name}: redelivered"))?;
    next.append(event(5)).await?;
    expect_seq_nos(
        &take(&mut stream, 1).await?,
        [6],
        &format!("log {name}: after the redelivery"),
    )
}

/// C35 While the broker stays unreachable for longer than the subscription's
/// `outage_report_after` (default 30 s), the checked stream reports an
/// `Outage` item, keeps retrying, and goes on where it stopped once the
/// broker is back, with no gap and no duplicate.
pub async fn c35_an_outage_is_reported_while_retrying(fx: &dyn Fixture) -> Result<()> {
    use futures::StreamExt;
    let broker = faulty(fx, "C35").await?;
    let name = unique("c35");
    let settings = eventlog_core::driver::SubscriptionSettings::default()
        .with_outage_report_after(Duration::from_secs(1));
    let log = broker
        .open(&name, timings().fault_timeout, settings)
        .await?;
    append_n(&*log, 2).await?;
    let mut checked = log
        .subscribe_checked(&unique("patient"), SeekPosition::Beginning)
        .await?;
    for n in 1..=2 {
        match tokio::time::timeout(timings().recovery, checked.next()).await {
            Ok(Some(Ok(event))) if event.seq_no == Some(n) => {}
            other => bail!("log {name}: item {n} before the outage is {other:?}"),
        }
    }

    broker.stop().await?;
    let stopped = Instant::now();
    let report = tokio::time::timeout(timings().recovery, checked.next()).await;
    ensure!(
        matches!(report, Ok(Some(Err(EventLogError::Outage { .. })))),
        "log {name}: with the broker stopped for {:?}, the checked stream gave {report:?} instead of an Outage item",
        stopped.elapsed()
    );
    broker.start().await?;
    append_retrying(
        &*log,
        &event(2),
        &format!("log {name}: appending after the outage"),
        timings().recovery,
    )
    .await?;
    let deadline = Instant::now() + timings().recovery;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, checked.next()).await {
            // More reports while it reconnects are fine.
            Ok(Some(Err(EventLogError::Outage { .. }))) => continue,
            Ok(Some(Ok(event))) if event.seq_no == Some(3) => return Ok(()),
            other => bail!(
                "log {name}: after the outage, expected event 3 (no gap, no duplicate), got {other:?}"
            ),
        }
    }
}

/// C43 A retryable error of an append means the log deduplicates: appends
/// that failed while the broker was frozen, retried with the same envelope
/// once it is back, store each event exactly once. On a log that does not
/// deduplicate such an append fails with `AppendUnconfirmed` (not
/// retryable: the events may be stored).
pub async fn c43_a_retry_after_an_unknown_outcome_stores_once(fx: &dyn Fixture) -> Result<()> {
    let recovery = timings().recovery;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const WRITERS: usize = 4;
    let broker = faulty(fx, "C43").await?;
    let name = unique("c43");
    let log = broker
        .open(&name, timings().fault_timeout, Default::default())
        .await?;
    let deduplicates = log.capabilities().dedup_window.is_some();
    let stored = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    // Each writer appends until stopped, retrying a failed append with the
    // same envelope where the log deduplicates.
    for w in 0..WRITERS {
        let (log, stored, failed, stop) =
            (log.clone(), stored.clone(), failed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut appended = BTreeMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let e = event(w * 100_000 + i);
                i += 1;
                let deadline = Instant::now() + timings().recovery;
                loop {
                    let err = match log.append(e.clone()).await {
                        Ok(n) => {
                            appended.insert(n, e.id.clone());
                            stored.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(err) => err,
                    };
                    failed.fetch_add(1, Ordering::Relaxed);
                    let typed = err.downcast_ref::<EventLogError>();
                    if !deduplicates {
                        ensure!(
                            matches!(typed, Some(EventLogError::AppendUnconfirmed { .. })),
                            "writer {w}: an append with an unknown outcome failed with \
                             {err:#}; expected AppendUnconfirmed"
                        );
                        break;
                    }
                    ensure!(
                        typed.is_some_and(EventLogError::is_retryable),
                        "writer {w}: an append failed with {err:#}; a log that deduplicates \
                         fails retryably"
                    );
                    ensure!(
                        Instant::now() < deadline,
                        "writer {w}: an event not stored within {recovery:?}: {err:#}"
                    );
                }
            }
            anyhow::Ok(appended)
        }));
    }
    let progress = |counter: &Arc<AtomicUsize>| {
        let counter = counter.clone();
        move || {
            let seen = counter.load(Ordering::Relaxed);
            async move { anyhow::Ok(seen) }
        }
    };
    let at_least = |n: usize| move |&seen: &usize| seen >= n;
    poll_until(
        &format!("log {name}: appends before the pause"),
        timings().recovery,
        progress(&stored),
        at_least(WRITERS),
    )
    .await?;
    broker.pause().await?;
    let failures = poll_until(
        &format!("log {name}: appends failing during the pause"),
        timings().fault_timeout * 4,
        progress(&failed),
        at_least(WRITERS),
    )
    .await;
    broker.unpause().await?;
    let resumed = match failures {
        Ok(_) => {
            let before = stored.load(Ordering::Relaxed);
            poll_until(
                &format!("log {name}: appends after the pause"),
                timings().recovery,
                progress(&stored),
                at_least(before + 2 * WRITERS),
            )
            .await
        }
        Err(err) => Err(err),
    };
    stop.store(true, Ordering::Relaxed);
    let mut by_seq = BTreeMap::new();
    for writer in writers {
        by_seq.extend(writer.await??);
    }
    resumed?;
    super::idempotence::expect_stored_exactly(&*log, &by_seq, &format!("log {name}")).await
}
