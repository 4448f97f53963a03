//! Checked subscriptions and the rules the generic log applies once: C30,
//! C36, C37 and C45; and what only a broker can show: C31 to C34.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{append_n, event, take, unique};
use crate::timings;
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{EventEnvelope, EventLogError, SeekPosition, SeqNo, validate};
use futures::StreamExt;

/// C30 `subscribe_checked` yields the same events as `subscribe`, as `Ok`
/// items, each carrying its sequence number, in order with no gap and no
/// duplicate.
pub async fn c30_checked_stream_yields_the_same_events(fx: &dyn Fixture) -> Result<()> {
    let deadline = timings().deadline;
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
        let item = tokio::time::timeout(timings().deadline, checked.next())
            .await
            .with_context(|| format!("log {name}: no checked item {n} within {deadline:?}"))?;
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

/// The next `n` items of `stream`, each within `Timings::deadline`, as sequence
/// numbers for events and debug strings for errors, for messages.
pub(super) async fn checked_items(
    stream: &mut eventlog_core::CheckedEventStream,
    n: usize,
    name: &str,
) -> Result<Vec<Result<EventEnvelope, EventLogError>>> {
    let deadline = timings().deadline;
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        match tokio::time::timeout(timings().deadline, stream.next()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => bail!(
                "log {name}: the checked stream ended after {} of {n} items: {}",
                items.len(),
                describe(&items)
            ),
            Err(_) => bail!(
                "log {name}: no item {} of {n} within {deadline:?}; got {}",
                items.len() + 1,
                describe(&items)
            ),
        }
    }
    Ok(items)
}

/// Fails unless `items` are exactly the events `expected`, in order.
pub(super) fn expect_events(
    items: &[Result<EventEnvelope, EventLogError>],
    expected: &[SeqNo],
    what: &str,
) -> Result<()> {
    let got: Vec<Option<SeqNo>> = items
        .iter()
        .map(|item| item.as_ref().ok().and_then(|e| e.seq_no))
        .collect();
    ensure!(
        items.iter().all(Result::is_ok)
            && got == expected.iter().map(|&n| Some(n)).collect::<Vec<_>>(),
        "{what}: expected events {expected:?}, got {}",
        describe(items)
    );
    Ok(())
}

/// C45 A live subscription follows its consumer forward: after
/// `seek(c, Sequence(n))` forward, or an `ack(c, n)` past what it
/// delivered, made through the handle it was opened on, its next event is
/// `n` (`n + 1` after the ack), with no `Gap` and without ending. After a
/// seek backwards it does not deliver again what it delivered (the next
/// `subscribe(c, LastAcknowledged)` starts there).
pub async fn c45_a_live_subscription_follows_its_consumer(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c45");
    let log = fx.open(&name).await?;
    append_n(&*log, 10).await?;
    let c = unique("follower");
    let mut stream = log.subscribe_checked(&c, SeekPosition::Beginning).await?;
    let ctx = |what: &str| format!("log {name}: {what}");
    expect_events(
        &checked_items(&mut stream, 3, &name).await?,
        &[1, 2, 3],
        &ctx("from the beginning"),
    )?;
    log.seek(&c, SeekPosition::Sequence(8)).await?;
    expect_events(
        &checked_items(&mut stream, 1, &name).await?,
        &[8],
        &ctx("after a seek forward to 8 at 3"),
    )?;
    log.seek(&c, SeekPosition::Sequence(2)).await?;
    append_n(&*log, 5).await?;
    expect_events(
        &checked_items(&mut stream, 3, &name).await?,
        &[9, 10, 11],
        &ctx("after a seek backwards to 2 at 8"),
    )?;
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(1),
        "{}: the seek backwards left {:?}",
        ctx("consumer state"),
        state.last_acknowledged
    );
    log.ack(&c, 13).await?;
    expect_events(
        &checked_items(&mut stream, 1, &name).await?,
        &[14],
        &ctx("after an ack of 13 at 11"),
    )
}

/// C46 A seek forward made through another handle (as another process
/// would) while a subscription is live never makes the subscription report
/// a gap or end: it goes on in order, from where it was or from the new
/// position (which of the two is the backend's, documented in
/// `docs/reliability.md`).
pub async fn c46_a_move_elsewhere_never_breaks_a_live_subscription(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c46");
    let (log, other) = (fx.open(&name).await?, fx.open(&name).await?);
    append_n(&*log, 3).await?;
    let c = unique("follower");
    let mut stream = log.subscribe_checked(&c, SeekPosition::Beginning).await?;
    expect_events(
        &checked_items(&mut stream, 3, &name).await?,
        &[1, 2, 3],
        &format!("log {name}: from the beginning"),
    )?;
    // Past the end, so the subscription has read nothing beyond it yet: a
    // reader that follows the broker's group jumps from 4 to 8.
    other.seek(&c, SeekPosition::Sequence(8)).await?;
    append_n(&*other, 9).await?;
    let mut seen = Vec::new();
    while seen.last() != Some(&12) {
        let item = checked_items(&mut stream, 1, &name).await?.remove(0);
        let seq_no = match item {
            Ok(event) => event.seq(),
            Err(err) => bail!(
                "log {name}: after a seek to 8 through another handle at 3, the \
                 subscription reported {err:?} (events so far {seen:?})"
            ),
        };
        seen.push(seq_no);
    }
    let from_where_it_was: Vec<SeqNo> = (4..=12).collect();
    let from_the_seek: Vec<SeqNo> = (8..=12).collect();
    ensure!(
        seen == from_where_it_was || seen == from_the_seek,
        "log {name}: after a seek to 8 through another handle at 3, the subscription \
         delivered {seen:?}; expected 4..=12 or 8..=12"
    );
    Ok(())
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
    match tokio::time::timeout(timings().deadline, plain.next()).await {
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
    match tokio::time::timeout(timings().deadline, checked.next()).await {
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
