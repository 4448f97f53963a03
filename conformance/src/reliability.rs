//! Beyond the contract (issue 8): a frozen or stopped broker, a log deleted under a
//! live subscription, and every refusal at once. Generated for every
//! backend by [`contract_tests!`](crate::contract_tests) next to the clauses.

use crate::clauses::{bad_names, faulty, invalid_envelopes};
use crate::expect_refused;
use crate::support::{
    append_n, append_retrying, event, expect_each_once, expect_intact, poll_until, take, unique,
};
use crate::timings;
use crate::{FaultyBroker, Fixture};
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{AppendOptions, EventEnvelope, EventLog, EventLogError, SeekPosition};
use futures::StreamExt;
use std::future::Future;
use tokio::time::Instant;

/// Runs `call` against a frozen broker: it must fail with a retryable typed
/// error within `Timings::fault_timeout` plus a little: [`EventLogError::Timeout`], or
/// `Unavailable` from a client that gives up on the silent connection
/// itself at the same bound (librdkafka's socket timeout, after which it
/// reports all brokers down). An append of a log that does not deduplicate
/// (`append` true) fails with either inside `AppendUnconfirmed` instead
/// (C43).
async fn times_out<T: std::fmt::Debug>(
    what: &str,
    log: &dyn EventLog,
    append: bool,
    call: impl Future<Output = Result<T>>,
) -> Result<()> {
    let fault_timeout = timings().fault_timeout;
    let start = Instant::now();
    let outcome = tokio::time::timeout(timings().fault_timeout * 4, call).await;
    let took = start.elapsed();
    let Ok(result) = outcome else {
        bail!("{what} hung for {took:?} on an unreachable broker (timeout {fault_timeout:?})");
    };
    let err = match result {
        Ok(value) => bail!("{what} returned {value:?} while the broker was unreachable"),
        Err(err) => err,
    };
    let unreachable = |e: &EventLogError| {
        matches!(
            e,
            EventLogError::Timeout { .. } | EventLogError::Unavailable { .. }
        )
    };
    let typed = err.downcast_ref::<EventLogError>();
    let expected = if append && log.capabilities().dedup_window.is_none() {
        matches!(typed, Some(EventLogError::AppendUnconfirmed { source, .. }) if unreachable(source))
    } else {
        typed.is_some_and(unreachable)
    };
    ensure!(
        expected,
        "{what} on an unreachable broker: expected EventLogError::Timeout or Unavailable \
         (inside AppendUnconfirmed for a log that does not deduplicate), got {err:#}"
    );
    ensure!(
        took <= timings().fault_timeout + timings().slack,
        "{what} failed after {took:?}; the timeout is {fault_timeout:?}"
    );
    Ok(())
}

/// With the broker paused, every method (`append`, `append_with`,
/// `append_batch`, `append_batch_with`, `ack`, `seek`, `subscribe`,
/// `subscribe_checked`, `consumer_state`, `try_last_seq_no`) and opening a
/// new handle fail with a typed timeout (or `Unavailable`) within the
/// configured bound, and `last_seq_no` answers (`None`) within it; after
/// the broker is thawed everything works again and no acknowledged append
/// is lost.
pub async fn r01_a_paused_broker_gives_timeouts_then_recovers(fx: &dyn Fixture) -> Result<()> {
    let broker = faulty(fx, "R01").await?;
    let name = unique("r01");
    let log = broker
        .open(&name, timings().fault_timeout, Default::default())
        .await?;
    let before: Vec<EventEnvelope> = (0..3).map(event).collect();
    for e in &before {
        log.append(e.clone()).await?;
    }
    let consumer = unique("worker");
    log.ack(&consumer, 1).await?;

    broker.pause().await?;
    let checks = unreachable_checks(&*log, &consumer, &name, &broker).await;
    broker.unpause().await?;
    checks?;

    let retried = event(9);
    append_retrying(
        &*log,
        &retried,
        &format!("log {name}: appending after the pause"),
        timings().recovery,
    )
    .await?;
    // Each client of a handle comes back on its own (Kafka's offset client
    // may still be reconnecting when its producer is back): within the
    // recovery bound, every method works again.
    poll_until(
        &format!("log {name}: acking after the pause"),
        timings().recovery,
        || log.ack(&consumer, 3),
        |_| true,
    )
    .await?;
    poll_until(
        &format!("log {name}: seeking after the pause"),
        timings().recovery,
        || log.seek(&consumer, SeekPosition::Sequence(2)),
        |_| true,
    )
    .await?;
    expect_intact(&*log, &before, &format!("log {name}: after the pause")).await?;
    // What failed during the pause may have landed, once.
    expect_each_once(&*log, &retried.id, &format!("log {name}: after the pause")).await
}

/// Every method of `log`, whose broker cannot be reached, and opening
/// another handle on it fail with a typed, retryable error within the bound
/// (`last_seq_no` answers `None`).
async fn unreachable_checks(
    log: &dyn EventLog,
    consumer: &str,
    name: &str,
    broker: &FaultyBroker,
) -> Result<()> {
    let fault_timeout = timings().fault_timeout;
    let ctx = |call: &str| format!("log {name}: {call}");
    times_out(&ctx("append"), log, true, log.append(event(5))).await?;
    times_out(
        &ctx("append_with"),
        log,
        true,
        log.append_with(event(5), AppendOptions::new()),
    )
    .await?;
    times_out(
        &ctx("append_batch_with"),
        log,
        true,
        log.append_batch_with(vec![event(6)], AppendOptions::new()),
    )
    .await?;
    times_out(
        &ctx("append_batch"),
        log,
        true,
        log.append_batch(vec![event(6), event(7)]),
    )
    .await?;
    times_out(&ctx("ack"), log, false, log.ack(consumer, 2)).await?;
    times_out(
        &ctx("seek"),
        log,
        false,
        log.seek(consumer, SeekPosition::Beginning),
    )
    .await?;
    times_out(&ctx("subscribe"), log, false, async {
        log.subscribe(consumer, SeekPosition::LastAcknowledged)
            .await
            .map(drop)
    })
    .await?;
    times_out(&ctx("subscribe_checked"), log, false, async {
        log.subscribe_checked(consumer, SeekPosition::Beginning)
            .await
            .map(drop)
    })
    .await?;
    times_out(
        &ctx("consumer_state"),
        log,
        false,
        log.consumer_state(consumer),
    )
    .await?;
    times_out(&ctx("try_last_seq_no"), log, false, log.try_last_seq_no()).await?;
    times_out(&ctx("opening a handle"), log, false, async {
        broker
            .open(name, timings().fault_timeout, Default::default())
            .await
            .map(drop)
    })
    .await?;
    let start = Instant::now();
    let last = tokio::time::timeout(timings().fault_timeout * 4, log.last_seq_no()).await;
    let took = start.elapsed();
    ensure!(
        matches!(last, Ok(None)) && took <= timings().fault_timeout + timings().slack,
        "{}: expected None within {fault_timeout:?}, got {last:?} after {took:?}",
        ctx("last_seq_no")
    );
    Ok(())
}

/// With the broker stopped (connections refused, where R01's paused broker
/// keeps them open and silent), every method fails with a typed, retryable
/// [`EventLogError`] within the configured bound: no foreign or untyped
/// error escapes, and nothing hangs.
pub async fn r04_a_stopped_broker_gives_typed_errors(fx: &dyn Fixture) -> Result<()> {
    let broker = faulty(fx, "R04").await?;
    let name = unique("r04");
    let log = broker
        .open(&name, timings().fault_timeout, Default::default())
        .await?;
    append_n(&*log, 2).await?;
    let consumer = unique("worker");
    log.ack(&consumer, 1).await?;
    broker.stop().await?;
    let checks = unreachable_checks(&*log, &consumer, &name, &broker).await;
    broker.start().await?;
    checks
}

/// A log deleted with the broker's own client under a live subscription
/// ends that subscription (the stream yields `None`, the reason is logged)
/// instead of hanging or panicking.
pub async fn r02_a_deleted_log_ends_live_subscriptions(fx: &dyn Fixture) -> Result<()> {
    let deadline = timings().deadline;
    let broker = fx
        .broker()
        .context("R02 needs a broker, and this fixture has none")?;
    let name = unique("r02");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    take(&mut stream, 2).await?;
    broker.raw_delete(&name).await?;
    match tokio::time::timeout(timings().deadline, stream.next()).await {
        Ok(None) => Ok(()),
        Ok(Some(event)) => bail!(
            "log {name}: deleted, but its subscription yielded {:?} {:?}",
            event.seq_no,
            event.id
        ),
        Err(_) => bail!("log {name}: deleted, and its subscription hung for {deadline:?}"),
    }
}

/// Every refusal of the contract, one after the other on one log: each is
/// the typed error the contract names, and afterwards the log and the
/// consumer are exactly as before (`last_seq_no`, `consumer_state`, the
/// events themselves): nothing half-written.
pub async fn r03_every_refusal_leaves_the_log_as_it_was(fx: &dyn Fixture) -> Result<()> {
    let name = unique("r03");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    let c = unique("worker");
    log.ack(&c, 1).await?;
    let ctx = |call: String| format!("log {name}: {call}");

    for (what, bad) in invalid_envelopes() {
        expect_refused!(
            log.append(bad.clone()).await,
            EventLogError::InvalidEnvelope { .. },
            ctx(format!("append of {what}"))
        );
        expect_refused!(
            log.append_batch(vec![event(7), bad, event(8)]).await,
            EventLogError::InvalidEnvelope { .. },
            ctx(format!("append_batch holding {what}"))
        );
    }
    let limit = log.capabilities().max_payload;
    let too_big = || EventEnvelope::new("/s", "t", vec![0u8; limit + 1]);
    expect_refused!(
        log.append(too_big()).await,
        EventLogError::PayloadTooLarge { .. },
        ctx(format!("append of {} bytes", limit + 1))
    );
    expect_refused!(
        log.append_batch(vec![event(7), too_big()]).await,
        EventLogError::PayloadTooLarge { .. },
        ctx("append_batch holding a payload over the limit".into())
    );
    expect_refused!(
        log.subscribe(&c, SeekPosition::Sequence(0)).await,
        EventLogError::InvalidPosition { .. },
        ctx("subscribe at Sequence(0)".into())
    );
    expect_refused!(
        log.seek(&c, SeekPosition::Sequence(0)).await,
        EventLogError::InvalidPosition { .. },
        ctx("seek to Sequence(0)".into())
    );
    for n in [0, 3, u64::MAX] {
        expect_refused!(
            log.ack(&c, n).await,
            EventLogError::AckOutOfRange { .. },
            ctx(format!("ack({n})"))
        );
    }
    for bad in bad_names(64) {
        let call = |method: &str| ctx(format!("{method} with consumer {bad:?}"));
        expect_refused!(
            log.subscribe(&bad, SeekPosition::Beginning).await,
            EventLogError::InvalidConsumerName { .. },
            call("subscribe")
        );
        expect_refused!(
            log.ack(&bad, 1).await,
            EventLogError::InvalidConsumerName { .. },
            call("ack")
        );
        expect_refused!(
            log.seek(&bad, SeekPosition::Latest).await,
            EventLogError::InvalidConsumerName { .. },
            call("seek")
        );
        expect_refused!(
            log.consumer_state(&bad).await,
            EventLogError::InvalidConsumerName { .. },
            call("consumer_state")
        );
    }
    for bad in bad_names(128) {
        expect_refused!(
            fx.open(&bad).await,
            EventLogError::InvalidLogName { .. },
            format!("open log {bad:?}")
        );
    }

    let last = log.last_seq_no().await;
    ensure!(
        last == Some(2),
        "log {name}: after the refusals last_seq_no is {last:?}, expected Some(2)"
    );
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(1),
        "log {name}: after the refusals consumer {c} is at {state:?}, expected last acked 1"
    );
    let mut stream = log
        .subscribe(&unique("auditor"), SeekPosition::Beginning)
        .await?;
    let got = take(&mut stream, 2).await?;
    log.append(event(3)).await?;
    let next = take(&mut stream, 1).await?;
    ensure!(
        got.iter()
            .chain(&next)
            .map(|e| e.seq_no)
            .collect::<Vec<_>>()
            == [Some(1), Some(2), Some(3)]
            && next[0].payload.as_ref() == b"event-3",
        "log {name}: after the refusals the log reads {:?}, expected exactly 1, 2 and then the new 3",
        got.iter()
            .chain(&next)
            .map(|e| (e.seq_no, e.payload.clone()))
            .collect::<Vec<_>>()
    );
    Ok(())
}
