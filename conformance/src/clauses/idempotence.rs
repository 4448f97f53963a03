//! Idempotent appends: C38 to C40; and conditional appends: C41, C42.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{event, poll_until, take, unique};
use crate::timings;
use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use eventlog_core::{
    AppendOptions, Appended, EventEnvelope, EventLog, EventLogError, ExpectedLast, SeekPosition,
    SeqNo,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The ids of the first `n` events of `log`, in order.
async fn stored_ids(log: &dyn EventLog, n: usize) -> Result<Vec<String>> {
    let mut stream = log
        .subscribe(&unique("auditor"), SeekPosition::Beginning)
        .await?;
    Ok(take(&mut stream, n)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect())
}

/// `event` with another payload: the same event for the log.
fn retried(event: &EventEnvelope) -> EventEnvelope {
    let mut again = event.clone();
    again.payload = Bytes::from_static(b"a retry with another payload");
    again
}

async fn expect_last(log: &dyn EventLog, expected: Option<SeqNo>, what: &str) -> Result<()> {
    let last = log.try_last_seq_no().await?;
    ensure!(
        last == expected,
        "{what}: last_seq_no is {last:?}, expected {expected:?}"
    );
    Ok(())
}

/// C38 The identity of an event is its CloudEvents pair (`source`, `id`). On
/// a log that deduplicates, an append of an envelope whose pair the log
/// stored within its deduplication window stores nothing and returns the
/// stored event's number (`Duplicate(n)`; the payload is not compared: the
/// first write wins). Inside one batch, a pair that came earlier in the batch
/// is a duplicate of that event. (Checked with sequential appends, and with
/// ten concurrent appends of one event through two handles.)
pub async fn c38_a_retried_append_is_stored_once(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c38");
    let log = fx.open(&name).await?;
    let first = event(0);
    let (x, y) = (event(1), event(2));
    let options = AppendOptions::new();
    let a = log.append_with(first.clone(), options).await?;
    let b = log.append_with(retried(&first), options).await?;
    let again = log.append(first.clone()).await?;
    let batch = log
        .append_batch_with(
            vec![x.clone(), retried(&first), x.clone(), y.clone()],
            options,
        )
        .await?;
    if log.capabilities().dedup_window.is_none() {
        // Documented: without deduplication every append stores.
        ensure!(
            (a, b, again) == (Appended::Stored(1), Appended::Stored(2), 3),
            "log {name} (no deduplication): {a:?}, {b:?}, {again}; expected every append stored"
        );
        ensure!(
            batch == (4..=7).map(Appended::Stored).collect::<Vec<_>>(),
            "log {name} (no deduplication): batch gave {batch:?}"
        );
        return concurrent_copies(fx, &name, false).await;
    }
    ensure!(
        (a, b, again) == (Appended::Stored(1), Appended::Duplicate(1), 1),
        "log {name}: the same pair appended three times gave {a:?}, {b:?}, {again}; \
         expected Stored(1), Duplicate(1), 1"
    );
    let expected = [
        Appended::Stored(2),
        Appended::Duplicate(1),
        Appended::Duplicate(2),
        Appended::Stored(3),
    ];
    ensure!(
        batch == expected,
        "log {name}: batch [x, first again, x again, y] gave {batch:?}, expected {expected:?}"
    );
    expect_last(&*log, Some(3), &format!("log {name}")).await?;
    ensure!(
        stored_ids(&*log, 3).await? == [first.id.clone(), x.id.clone(), y.id.clone()],
        "log {name}: stored events are not first, x, y"
    );
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    let stored = take(&mut stream, 1).await?;
    ensure!(
        stored[0].payload == first.payload,
        "log {name}: the retry's payload replaced the first write's"
    );
    concurrent_copies(fx, &name, true).await
}

/// One new event appended by ten tasks at once, through two handles:
/// stored once where the log deduplicates (every task gets its number),
/// ten times where it does not.
async fn concurrent_copies(fx: &dyn Fixture, name: &str, deduplicates: bool) -> Result<()> {
    const TASKS: usize = 10;
    let handles = [fx.open(name).await?, fx.open(name).await?];
    let before = handles[0].try_last_seq_no().await?.unwrap_or(0);
    let e = event(99);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (log, e) = (Arc::clone(&handles[t % 2]), e.clone());
        tasks.push(tokio::spawn(async move {
            log.append_with(e, AppendOptions::new()).await
        }));
    }
    let mut outcomes = Vec::with_capacity(TASKS);
    for task in tasks {
        outcomes.push(task.await??);
    }
    let stored: Vec<SeqNo> = outcomes
        .iter()
        .filter(|a| !a.is_duplicate())
        .map(|a| a.seq_no())
        .collect();
    let numbers: std::collections::BTreeSet<SeqNo> = outcomes.iter().map(|a| a.seq_no()).collect();
    let last = handles[1].try_last_seq_no().await?.unwrap_or(0);
    if deduplicates {
        ensure!(
            stored == [before + 1] && numbers.len() == 1 && last == before + 1,
            "log {name}: one event appended by {TASKS} tasks at once gave {outcomes:?}, \
             log ending at {last}; expected it stored once, as {}",
            before + 1
        );
    } else {
        ensure!(
            stored.len() == TASKS && numbers.len() == TASKS && last == before + TASKS as SeqNo,
            "log {name} (no deduplication): {TASKS} concurrent appends gave {outcomes:?}"
        );
    }
    Ok(())
}

/// C39 An event with the same `id` and another `source` is another event: it
/// is always stored, alone or in the same batch.
pub async fn c39_the_same_id_from_another_source_is_another_event(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c39");
    let log = fx.open(&name).await?;
    let id = unique("shared-id");
    let mine = EventEnvelope::new("/orders", "t", &b"1"[..]).with_id(&id);
    let theirs = EventEnvelope::new("/payments", "t", &b"2"[..]).with_id(&id);
    // A source that ends where the other's id begins: a key that joined
    // source and id without a separator would confuse them.
    let joined = EventEnvelope::new("/orders/", "t", &b"3"[..]).with_id(&id[1..]);
    let alone = [
        log.append_with(mine.clone(), AppendOptions::new()).await?,
        log.append_with(theirs.clone(), AppendOptions::new())
            .await?,
    ];
    ensure!(
        alone == [Appended::Stored(1), Appended::Stored(2)],
        "log {name}: one id from two sources gave {alone:?}; both must be stored"
    );
    let other_id = unique("batch-id");
    let batch = log
        .append_batch_with(
            vec![
                mine.clone().with_id(&other_id),
                theirs.clone().with_id(&other_id),
                joined,
            ],
            AppendOptions::new(),
        )
        .await?;
    ensure!(
        batch == [3, 4, 5].map(Appended::Stored),
        "log {name}: a batch of one id from three sources gave {batch:?}"
    );
    expect_last(&*log, Some(5), &format!("log {name}")).await
}

/// C40 Once the window has passed, the same pair is stored again. The window
/// is configurable per log (default 2 minutes, JetStream's default) and
/// reported as `Capabilities::dedup_window`.
pub async fn c40_the_window_expires(fx: &dyn Fixture) -> Result<()> {
    const WINDOW: Duration = Duration::from_secs(2);
    let name = unique("c40");
    let default = fx.open(&unique("c40-default")).await?;
    let log = fx.open_with_dedup_window(&name, WINDOW).await?;
    let windows = (
        default.capabilities().dedup_window,
        log.capabilities().dedup_window,
    );
    let e = event(0);
    let first = log.append_with(e.clone(), AppendOptions::new()).await?;
    match windows {
        (None, None) => {
            let second = log.append_with(e, AppendOptions::new()).await?;
            ensure!(
                (first, second) == (Appended::Stored(1), Appended::Stored(2)),
                "log {name} (no deduplication): {first:?}, {second:?}"
            );
            return Ok(());
        }
        (Some(default), Some(window)) => ensure!(
            default == eventlog_core::DEFAULT_DEDUP_WINDOW && window == WINDOW,
            "log {name}: windows reported {default:?} by default and {window:?} when \
             configured; expected {:?} and {WINDOW:?}",
            eventlog_core::DEFAULT_DEDUP_WINDOW
        ),
        other => bail!("log {name}: windows reported {other:?}; both or neither must be set"),
    }
    let soon = log.append_with(e.clone(), AppendOptions::new()).await?;
    ensure!(
        (first, soon) == (Appended::Stored(1), Appended::Duplicate(1)),
        "log {name}: within the window: {first:?}, {soon:?}"
    );
    let later = poll_until(
        &format!("log {name}: the pair stored again after the window"),
        WINDOW + timings().deadline,
        || log.append_with(e.clone(), AppendOptions::new()),
        |appended| !appended.is_duplicate(),
    )
    .await?;
    ensure!(
        later == Appended::Stored(2),
        "log {name}: after the window the pair gave {later:?}, expected Stored(2)"
    );
    Ok(())
}

/// Every condition refused with `Unsupported`, nothing stored: the
/// documented behaviour of a backend without conditional appends.
async fn expect_conditions_refused(log: &dyn EventLog, name: &str) -> Result<()> {
    for expected in [ExpectedLast::Empty, ExpectedLast::SeqNo(1)] {
        let options = AppendOptions::new().expect(expected);
        expect_refused!(
            log.append_with(event(0), options).await,
            EventLogError::Unsupported { .. },
            format!("log {name}: append expecting {expected}")
        );
        expect_refused!(
            log.append_batch_with(vec![event(1)], options).await,
            EventLogError::Unsupported { .. },
            format!("log {name}: batch expecting {expected}")
        );
    }
    expect_last(log, None, &format!("log {name}: after refused conditions")).await
}

/// C41 An append (or a batch) with `ExpectedLast::SeqNo(n)` or
/// `ExpectedLast::Empty` stores only if the log's last event is `n` (or the
/// log is empty). On a mismatch it stores nothing and fails with
/// `Conflict { expected, actual }`, `actual` being the log's last number.
/// A duplicate is recognised before the condition is checked, so the retry
/// of a conditional append that was stored reports `Duplicate`, not a
/// conflict. `ExpectedLast::SeqNo(0)` is refused as an invalid position.
pub async fn c41_conditional_appends_store_only_at_the_expected_end(
    fx: &dyn Fixture,
) -> Result<()> {
    let name = unique("c41");
    let log = fx.open(&name).await?;
    let capabilities = log.capabilities();
    if !capabilities.conditional_append {
        return expect_conditions_refused(&*log, &name).await;
    }
    let at = |expected| AppendOptions::new().expect(expected);
    let events: Vec<EventEnvelope> = (0..4).map(event).collect();
    let call = |what: &str| format!("log {name}: {what}");
    ensure!(
        log.append_with(events[0].clone(), at(ExpectedLast::Empty))
            .await?
            == Appended::Stored(1),
        "{}",
        call("the first append expecting an empty log was not stored as 1")
    );
    for expected in [
        ExpectedLast::Empty,
        ExpectedLast::SeqNo(5),
        ExpectedLast::SeqNo(2),
    ] {
        let err = crate::support::typed_error(
            log.append_with(events[1].clone(), at(expected)).await,
            &call(&format!("append expecting {expected}")),
        )?;
        ensure!(
            matches!(err, EventLogError::Conflict { expected: e, actual: Some(1) } if e == expected),
            "{}: got {err:?}, expected Conflict {{ expected: {expected:?}, actual: Some(1) }}",
            call(&format!("append expecting {expected} on a log ending at 1"))
        );
    }
    ensure!(
        log.append_with(events[1].clone(), at(ExpectedLast::SeqNo(1)))
            .await?
            == Appended::Stored(2),
        "{}",
        call("append expecting 1 was not stored as 2")
    );
    let retry = log
        .append_with(events[1].clone(), at(ExpectedLast::SeqNo(1)))
        .await;
    if capabilities.dedup_window.is_some() {
        let retry = retry?;
        ensure!(
            retry == Appended::Duplicate(2),
            "{}: got {retry:?}",
            call("the retry of a stored conditional append must be Duplicate(2)")
        );
    } else {
        expect_refused!(
            retry,
            EventLogError::Conflict {
                actual: Some(2),
                ..
            },
            call("the retry of a stored conditional append, without deduplication")
        );
    }
    let batch = || vec![events[2].clone(), events[3].clone()];
    expect_refused!(
        log.append_batch_with(batch(), at(ExpectedLast::SeqNo(1)))
            .await,
        EventLogError::Conflict {
            actual: Some(2),
            ..
        },
        call("batch expecting 1 on a log ending at 2")
    );
    expect_last(&*log, Some(2), &call("after the conflicting batch")).await?;
    let stored = log
        .append_batch_with(batch(), at(ExpectedLast::SeqNo(2)))
        .await?;
    ensure!(
        stored == [Appended::Stored(3), Appended::Stored(4)],
        "{}: got {stored:?}",
        call("batch expecting 2")
    );
    expect_refused!(
        log.append_with(event(9), at(ExpectedLast::SeqNo(0))).await,
        EventLogError::InvalidPosition { .. },
        call("append expecting SeqNo(0)")
    );
    expect_last(&*log, Some(4), &call("at the end")).await?;
    let ids: Vec<&String> = events.iter().map(|e| &e.id).collect();
    ensure!(
        stored_ids(&*log, 4).await?.iter().collect::<Vec<_>>() == ids,
        "{}",
        call("the stored events are not the four appended, in order")
    );
    Ok(())
}

/// C42 Writers appending concurrently, each expecting the last number it saw
/// and retrying on `Conflict`: in every round exactly one append succeeds,
/// and no number is lost or given twice.
pub async fn c42_concurrent_conditional_writers_never_lose_or_double(
    fx: &dyn Fixture,
) -> Result<()> {
    const WRITERS: usize = 20;
    const EACH: usize = 3;
    let name = unique("c42");
    // Half the writers share one handle, half another.
    let handles = [fx.open(&name).await?, fx.open(&name).await?];
    if !handles[0].capabilities().conditional_append {
        return expect_conditions_refused(&*handles[0], &name).await;
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let log = Arc::clone(&handles[w % 2]);
        tasks.push(tokio::spawn(async move {
            let mut last = log.try_last_seq_no().await?;
            let mut stored = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let e = event(w * EACH + i);
                loop {
                    let options = AppendOptions::new().expect(ExpectedLast::at(last));
                    match log.append_with(e.clone(), options).await {
                        Ok(Appended::Stored(n)) => {
                            ensure!(
                                n == last.unwrap_or(0) + 1,
                                "writer {w}: expected last {last:?}, stored as {n}"
                            );
                            stored.push((n, e.id.clone()));
                            last = Some(n);
                            break;
                        }
                        Ok(other) => bail!("writer {w}: a new event gave {other:?}"),
                        Err(err) => match err.downcast_ref::<EventLogError>() {
                            Some(EventLogError::Conflict { actual, .. }) => {
                                ensure!(
                                    actual.unwrap_or(0) > last.unwrap_or(0),
                                    "writer {w}: conflict with actual {actual:?} after seeing {last:?}"
                                );
                                last = *actual;
                            }
                            _ => return Err(err),
                        },
                    }
                }
            }
            anyhow::Ok(stored)
        }));
    }
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        for (n, id) in task.await?? {
            ensure!(
                by_seq.insert(n, id).is_none(),
                "log {name}: number {n} given to two writers"
            );
        }
    }
    let total = WRITERS * EACH;
    ensure!(
        by_seq.keys().copied().eq(1..=total as SeqNo),
        "log {name}: stored numbers are not 1..={total}: {:?}",
        by_seq.keys().collect::<Vec<_>>()
    );
    expect_last(&*handles[0], Some(total as SeqNo), &format!("log {name}")).await?;
    ensure!(
        stored_ids(&*handles[1], total).await? == by_seq.into_values().collect::<Vec<_>>(),
        "log {name}: the log holds other events than the writers stored"
    );
    Ok(())
}

/// C44 A log deleted and created again keeps nothing of the deleted one's
/// deduplication: an event the deleted log held is stored in the new log,
/// never answered with a number under which the new log holds another
/// event.
pub async fn c44_a_recreated_log_does_not_answer_for_the_deleted_one(
    fx: &dyn Fixture,
) -> Result<()> {
    let broker = fx
        .broker()
        .ok_or_else(|| anyhow::anyhow!("C44 needs a broker, and this fixture has none"))?;
    let name = unique("c44");
    let old = fx.open(&name).await?;
    crate::support::append_n(&*old, 2).await?;
    let e = event(7);
    let first = old.append_with(e.clone(), AppendOptions::new()).await?;
    ensure!(
        first == Appended::Stored(3),
        "log {name}: {first:?}, expected Stored(3)"
    );
    broker.raw_delete(&name).await?;
    let new = fx.open(&name).await?;
    crate::support::append_n(&*new, 3).await?;
    let again = new.append_with(e.clone(), AppendOptions::new()).await?;
    ensure!(
        again == Appended::Stored(4),
        "log {name}, deleted and created again: an event of the deleted log gave {again:?}; \
         expected Stored(4)"
    );
    Ok(())
}

/// Checks that `log` holds `stored` (id by number) and nothing else up to
/// its end, within `Timings::deadline`.
pub(crate) async fn expect_stored_exactly(
    log: &dyn EventLog,
    stored: &BTreeMap<SeqNo, String>,
    what: &str,
) -> Result<()> {
    let last = log.try_last_seq_no().await?.unwrap_or(0);
    let ids = stored_ids(log, last as usize).await?;
    let mut seen = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(earlier) = seen.insert(id.clone(), i + 1) {
            bail!(
                "{what}: event {id} stored twice, at {earlier} and {}",
                i + 1
            );
        }
    }
    for (n, id) in stored {
        ensure!(
            seen.get(id) == Some(&(*n as usize)),
            "{what}: event {id}, appended as {n}, is at {:?}",
            seen.get(id)
        );
    }
    Ok(())
}
