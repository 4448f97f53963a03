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
