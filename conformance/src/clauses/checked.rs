//! Checked subscriptions and the rules the generic log applies once: C30,
//! C36 and C37.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{DEADLINE, append_n, event, take, unique};
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{EventEnvelope, EventLogError, SeekPosition, SeqNo, validate};
use futures::StreamExt;

/// C30 `subscribe_checked` yields the same events as `subscribe`, as `Ok`
/// items, each carrying its sequence number, in order with no gap and no
/// duplicate.
pub async fn c30_checked_stream_yields_the_same_events(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c30");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let mut plain = log
        .subscribe(&unique("plain"), SeekPosition::Beginning)
        .await?;
    let mut checked = log
        .subscribe_checked(&unique("checked"), SeekPosition::Beginning)
        .await?;
    let expected = take(&mut plain, 5).await?;
    // And one appended while both wait.
    log.append(event(5)).await?;
    let mut expected_ids: Vec<String> = expected.into_iter().map(|e| e.id).collect();
    expected_ids.push(take(&mut plain, 1).await?.remove(0).id);
    for (n, id) in (1..).zip(&expected_ids) {
        let item = tokio::time::timeout(DEADLINE, checked.next())
            .await
            .with_context(|| format!("log {name}: no checked item {n} within {DEADLINE:?}"))?;
        let event = match item {
            Some(Ok(event)) => event,
            Some(Err(err)) => bail!("log {name}: checked item {n} is an error: {err}"),
            None => bail!("log {name}: the checked stream ended before item {n}"),
        };
        ensure!(
            event.seq_no == Some(n) && &event.id == id,
            "log {name}: checked item {n} is {:?} ({}), the plain stream had {id}",
            event.seq_no,
            event.id
        );
    }
    Ok(())
}

/// C36 A batch with an attribute too large for the log (all attributes of an
/// event together take at most 8 KiB on every backend) is refused whole with a
/// typed error, and nothing of it is stored.
pub async fn c36_a_batch_with_an_oversized_attribute_stores_nothing(
    fx: &dyn Fixture,
) -> Result<()> {
    let name = unique("c36");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    let mut batch: Vec<EventEnvelope> = (0..5).map(event).collect();
    batch.push(event(5).with_subject("s".repeat(validate::MAX_ATTRIBUTES + 1)));
    batch.push(event(6));
    expect_refused!(
        log.append_batch(batch).await,
        EventLogError::InvalidEnvelope { .. },
        format!("log {name}: a batch whose sixth event has a subject over the attribute limit")
    );
    expect_refused!(
        log.append(event(7).with_extension("big", "x".repeat(validate::MAX_ATTRIBUTES)))
            .await,
        EventLogError::InvalidEnvelope { .. },
        format!("log {name}: an event with an extension over the attribute limit")
    );
    let last = log.try_last_seq_no().await?;
    ensure!(
        last == Some(2),
        "log {name}: refused appends changed the last sequence number to {last:?}, expected Some(2)"
    );
    // The largest attributes allowed still go through.
    let fits = event(8).with_subject("s".repeat(validate::MAX_ATTRIBUTES / 2));
    let seq = log.append(fits).await?;
    ensure!(
        seq == 3,
        "log {name}: the next append got {seq}, expected 3"
    );
    Ok(())
}

/// C37 Acks of one consumer issued concurrently in scrambled order leave the
/// position at the highest of them, on every backend.
pub async fn c37_concurrent_acks_end_at_the_highest(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c37");
    let log = fx.open(&name).await?;
    for chunk in 0..10 {
        let batch: Vec<EventEnvelope> = (0..100).map(|i| event(chunk * 100 + i)).collect();
        log.append_batch(batch).await?;
    }
    let c = unique("reader");
    let acks: [SeqNo; 10] = [300, 1, 901, 37, 640, 5, 899, 12, 900, 77];
    let results = futures::future::join_all(acks.iter().map(|&n| log.ack(&c, n))).await;
    for (n, result) in acks.iter().zip(results) {
        result.with_context(|| format!("log {name}: ack {n}"))?;
    }
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(901),
        "log {name}: after concurrent acks {acks:?} the position is {:?}, expected Some(901)",
        state.last_acknowledged
    );
    let reopened = fx.open(&name).await?;
    let state = reopened.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(901),
        "log {name}: a new handle sees {:?} after concurrent acks, expected Some(901)",
        state.last_acknowledged
    );
    Ok(())
}

/// The broker behind `fx`, which `clause` needs.
fn broker_of<'a>(fx: &'a dyn Fixture, clause: &str) -> Result<&'a dyn crate::Broker> {
    fx.broker()
        .with_context(|| format!("{clause} needs a broker, and this fixture has none"))
}

/// The next `n` items of `stream`, each within [`DEADLINE`], as sequence
/// numbers for events and debug strings for errors, for messages.
async fn checked_items(
    stream: &mut eventlog_core::CheckedEventStream,
    n: usize,
    name: &str,
) -> Result<Vec<Result<EventEnvelope, EventLogError>>> {
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => bail!(
                "log {name}: the checked stream ended after {} of {n} items: {}",
                items.len(),
                describe(&items)
            ),
            Err(_) => bail!(
                "log {name}: no item {} of {n} within {DEADLINE:?}; got {}",
                items.len() + 1,
                describe(&items)
            ),
        }
    }
    Ok(items)
}

fn describe(items: &[Result<EventEnvelope, EventLogError>]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| match item {
            Ok(event) => format!("{:?}", event.seq_no),
            Err(err) => format!("{err:?}"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// C31 An event stored in the log that cannot be decoded (a foreign producer
/// wrote it) is a `Decode` error item carrying its sequence number, and the
/// checked stream goes on with the next event: no good event before or after
/// it is dropped. The plain stream ends there, with the reason logged,
/// instead of skipping it.
pub async fn c31_an_undecodable_event_is_reported_and_skippable(fx: &dyn Fixture) -> Result<()> {
    let broker = broker_of(fx, "C31")?;
    let name = unique("c31");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    broker.raw_publish_foreign(&name).await?;
    append_n(&*log, 2).await?;
    let mut checked = log
        .subscribe_checked(&unique("checked"), SeekPosition::Beginning)
        .await?;
    let items = checked_items(&mut checked, 5, &name).await?;
    let fits = matches!(&items[..], [
        Ok(a), Ok(b), Err(EventLogError::Decode { seq_no: 3, .. }), Ok(d), Ok(e)
    ] if a.seq_no == Some(1) && b.seq_no == Some(2) && d.seq_no == Some(4) && e.seq_no == Some(5));
    ensure!(
        fits,
        "log {name}: expected events 1 and 2, a Decode error at 3, events 4 and 5; got {}",
        describe(&items)
    );
    let mut plain = log
        .subscribe(&unique("plain"), SeekPosition::Beginning)
        .await?;
    take(&mut plain, 2).await?;
    match tokio::time::timeout(DEADLINE, plain.next()).await {
        Ok(None) => Ok(()),
        Ok(Some(event)) => bail!(
            "log {name}: the plain stream went past the undecodable event 3 to {:?}",
            event.seq_no
        ),
        Err(_) => bail!("log {name}: the plain stream hung at the undecodable event 3"),
    }
}

/// C32 When the log no longer holds the events a subscription expects next
/// (retention removed them, or the broker lost them), the checked stream
/// reports a `Gap { expected, found }` item, then goes on from `found`.
pub async fn c32_a_gap_is_reported(fx: &dyn Fixture) -> Result<()> {
    let broker = broker_of(fx, "C32")?;
    let name = unique("c32");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    broker.raw_remove_before(&name, 4).await?;
    let mut checked = log
        .subscribe_checked(&unique("checked"), SeekPosition::Beginning)
        .await?;
    let items = checked_items(&mut checked, 3, &name).await?;
    let fits = matches!(&items[..], [
        Err(EventLogError::Gap { expected: 1, found: 4 }), Ok(d), Ok(e)
    ] if d.seq_no == Some(4) && e.seq_no == Some(5));
    ensure!(
        fits,
        "log {name}: events 1 to 3 removed: expected Gap {{ expected: 1, found: 4 }}, events 4 and 5; got {}",
        describe(&items)
    );
    Ok(())
}

/// C34 A log deleted under a live subscription ends the checked stream with
/// a final `LogDeleted` item.
pub async fn c34_a_deleted_log_is_reported(fx: &dyn Fixture) -> Result<()> {
    let broker = broker_of(fx, "C34")?;
    let name = unique("c34");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    let mut checked = log
        .subscribe_checked(&unique("checked"), SeekPosition::Beginning)
        .await?;
    checked_items(&mut checked, 2, &name).await?;
    broker.raw_delete(&name).await?;
    let last = checked_items(&mut checked, 1, &name).await?;
    ensure!(
        matches!(last[..], [Err(EventLogError::LogDeleted)]),
        "log {name}: deleted under a subscription, which reported {} instead of LogDeleted",
        describe(&last)
    );
    match tokio::time::timeout(DEADLINE, checked.next()).await {
        Ok(None) => Ok(()),
        Ok(Some(item)) => bail!(
            "log {name}: the checked stream went on after LogDeleted with {}",
            describe(&[item])
        ),
        Err(_) => bail!("log {name}: the checked stream did not end after LogDeleted"),
    }
}

/// C33 When a log numbers anew events a subscription had already received
/// (it was deleted and created again, or lost its tail), the checked stream
/// reports a `SequenceReused` item once it notices, then goes on with the
/// log's next new event; it never silently drops or skips events.
pub async fn c33_reused_numbers_are_reported(fx: &dyn Fixture) -> Result<()> {
    let broker = broker_of(fx, "C33")?;
    let name = unique("c33");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let mut checked = log
        .subscribe_checked(&unique("checked"), SeekPosition::Beginning)
        .await?;
    checked_items(&mut checked, 5, &name).await?;
    // Not read while the log is deleted and created again: the
    // subscription notices at its next read.
    broker.raw_delete(&name).await?;
    let again = fx.open(&name).await?;
    append_n(&*again, 2).await?;
    let report = checked_items(&mut checked, 1, &name).await?;
    ensure!(
        matches!(
            report[..],
            [Err(EventLogError::SequenceReused {
                delivered: 5,
                last: 2
            })]
        ),
        "log {name}: created again with 2 events after 5 were delivered; expected SequenceReused {{ delivered: 5, last: 2 }}, got {}",
        describe(&report)
    );
    again.append(event(2)).await?;
    let next = checked_items(&mut checked, 1, &name).await?;
    ensure!(
        matches!(&next[..], [Ok(event)] if event.seq_no == Some(3)),
        "log {name}: after the report, expected the new log's event 3, got {}",
        describe(&next)
    );
    Ok(())
}
