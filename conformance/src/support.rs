//! Helpers the clauses share: unique names, events, and waiting with a
//! deadline instead of sleeping.

use crate::timings;
use anyhow::{Context, Result, bail};
use eventlog_core::{EventEnvelope, EventLog, EventLogError, EventStream, SeqNo};
use std::time::Duration;
pub use testkit::wait::{next_within, poll_until, unique};

/// A small test event whose payload names `i`.
pub fn event(i: usize) -> EventEnvelope {
    EventEnvelope::new(
        "/conformance",
        "test.event",
        format!("event-{i}").into_bytes(),
    )
}

/// Appends `n` test events one after the other and returns their numbers.
pub async fn append_n(log: &dyn EventLog, n: usize) -> Result<Vec<SeqNo>> {
    let mut seq_nos = Vec::with_capacity(n);
    for i in 0..n {
        seq_nos.push(log.append(event(i)).await.context("append")?);
    }
    Ok(seq_nos)
}

/// The next `n` events of `stream`, each within `Timings::deadline`.
pub async fn take(stream: &mut EventStream, n: usize) -> Result<Vec<EventEnvelope>> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let event = next_within(stream, timings().deadline)
            .await
            .with_context(|| {
                format!(
                    "waiting for event {} of {n}; got {:?}",
                    events.len() + 1,
                    seq_nos(&events)
                )
            })?;
        events.push(event);
    }
    Ok(events)
}

/// The sequence numbers of `events` (for messages and comparisons).
pub fn seq_nos(events: &[EventEnvelope]) -> Vec<Option<SeqNo>> {
    events.iter().map(|e| e.seq_no).collect()
}

/// Checks that `events` carry exactly the sequence numbers `expected`, in order.
pub fn expect_seq_nos(
    events: &[EventEnvelope],
    expected: impl IntoIterator<Item = SeqNo>,
    context: &str,
) -> Result<()> {
    let expected: Vec<Option<SeqNo>> = expected.into_iter().map(Some).collect();
    let got = seq_nos(events);
    if got != expected {
        bail!("{context}: expected sequence numbers {expected:?}, got {got:?}");
    }
    Ok(())
}

/// The [`EventLogError`] inside `result`'s error, or an error saying what
/// came instead.
pub fn typed_error<T>(result: Result<T>, call: &str) -> Result<EventLogError> {
    match result {
        Ok(_) => bail!("{call}: expected a typed refusal, got Ok"),
        Err(err) => match err.downcast::<EventLogError>() {
            Ok(typed) => Ok(typed),
            Err(other) => bail!("{call}: expected an EventLogError, got {other:#}"),
        },
    }
}

/// Fails unless `result` is an error matching the pattern.
#[macro_export]
macro_rules! expect_refused {
    ($result:expr, $pattern:pat, $call:expr) => {{
        let err = $crate::support::typed_error($result, &$call)?;
        if !matches!(err, $pattern) {
            $crate::__anyhow::bail!(
                "{}: expected {}, got {:?}",
                $call,
                stringify!($pattern),
                err
            );
        }
    }};
}

/// Checks that `log` still holds `sent`, acknowledged by their appends as
/// 1, 2, …, each at its place: nothing an outage or a pause did lost or
/// moved them.
pub async fn expect_intact(
    log: &dyn EventLog,
    sent: &[EventEnvelope],
    context: &str,
) -> Result<()> {
    let mut stream = log
        .subscribe(&unique("auditor"), eventlog_core::SeekPosition::Beginning)
        .await?;
    let got = take(&mut stream, sent.len()).await?;
    for (i, (sent, got)) in sent.iter().zip(&got).enumerate() {
        if got.id != sent.id || got.seq_no != Some(i as u64 + 1) {
            bail!(
                "{context}: acknowledged event {} lost or moved: got {:?} at {:?}",
                i + 1,
                got.id,
                got.seq_no
            );
        }
    }
    Ok(())
}

/// Appends `event` until the log takes it, within `within`, retrying the
/// same envelope (safe where the log deduplicates, C43), and returns its
/// number.
pub async fn append_retrying(
    log: &dyn EventLog,
    event: &EventEnvelope,
    what: &str,
    within: Duration,
) -> Result<SeqNo> {
    poll_until(what, within, || log.append(event.clone()), |_| true).await
}

/// Checks that no event of `log` is stored twice: every id once, but for
/// `retried` (appended again after failures) on a log that does not
/// deduplicate, where a failed attempt may have landed.
pub async fn expect_each_once(log: &dyn EventLog, retried: &str, what: &str) -> Result<()> {
    let last = log.try_last_seq_no().await?.unwrap_or(0);
    let mut stream = log
        .subscribe(&unique("auditor"), eventlog_core::SeekPosition::Beginning)
        .await?;
    let events = take(&mut stream, last as usize).await?;
    let may_repeat = log.capabilities().dedup_window.is_none();
    let mut seen = std::collections::HashMap::new();
    for event in &events {
        if let Some(first) = seen.insert(event.id.as_str(), event.seq()) {
            if may_repeat && event.id == retried {
                continue;
            }
            bail!(
                "{what}: event {} stored twice, at {first} and {}",
                event.id,
                event.seq()
            );
        }
    }
    Ok(())
}

/// Checks that `holder`, an exclusive subscription of `consumer` through
/// `log` whose lease another token has taken, ends with `Fenced` (after any
/// events it still had) within the suite's deadline, and that an ack of
/// `consumer` through `log` is then refused with `Fenced`.
pub async fn expect_fenced_out(
    holder: &mut eventlog_core::CheckedEventStream,
    log: &dyn EventLog,
    consumer: &str,
    context: &str,
) -> Result<()> {
    use futures::StreamExt;
    let ended = tokio::time::timeout(timings().deadline, async {
        loop {
            match holder.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .with_context(|| format!("{context}: the holder went on after its lease was taken"))?;
    anyhow::ensure!(
        matches!(ended, Some(Err(EventLogError::Fenced { .. }))),
        "{context}: a holder whose lease was taken over yielded {ended:?}"
    );
    let ack = log.ack(consumer, 1).await;
    anyhow::ensure!(
        matches!(
            ack.as_ref()
                .map_err(|err| err.downcast_ref::<EventLogError>()),
            Err(Some(EventLogError::Fenced { .. }))
        ),
        "{context}: an ack of the fenced holder gave {ack:?}"
    );
    Ok(())
}

/// Subscribes `consumer` through `log` exclusively as a standby while a
/// dead holder's lease lives, and checks that it delivers event 1 only
/// once at least `lease_left` has passed (the lease ran out on the
/// broker), within the suite's deadline. Returns the subscription.
pub async fn expect_takeover_after(
    log: &dyn EventLog,
    consumer: &str,
    options: eventlog_core::SubscribeOptions,
    lease_left: Duration,
    context: &str,
) -> Result<eventlog_core::CheckedEventStream> {
    use futures::StreamExt;
    let asked = tokio::time::Instant::now();
    let mut standby = log
        .subscribe_with(consumer, eventlog_core::SeekPosition::Beginning, options)
        .await?;
    let first = tokio::time::timeout(timings().deadline, standby.next())
        .await
        .with_context(|| format!("{context}: no takeover of a dead holder's lease"))?;
    let took = asked.elapsed();
    anyhow::ensure!(
        matches!(&first, Some(Ok(event)) if event.seq_no == Some(1)),
        "{context}: the standby's first item after the dead lease expired: {first:?}"
    );
    anyhow::ensure!(
        took >= lease_left,
        "{context}: the standby took over after {took:?}, before the dead holder's lease ran out"
    );
    Ok(standby)
}
