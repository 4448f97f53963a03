//! Partitioned consumers: C51 and C52. Members are exclusive where the
//! backend has exclusive subscriptions, plain elsewhere.

use super::checked::{checked_items, expect_events};
use crate::Fixture;
use crate::support::unique;
use crate::timings;
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{
    CheckedEventStream, EventEnvelope, EventLog, Member, PARTITION_KEY, SeekPosition, SeqNo,
    SubscribeOptions, WhenBusy, partition_of,
};
use futures::StreamExt;
use std::time::Duration;

/// The largest batch the clauses append at once.
const BATCH: usize = 500;

/// Event `i` of key `key`: every third one carries its key as the
/// `subject` only (the fallback), the others as the `partitionkey`
/// extension.
fn keyed(i: usize, key: &str) -> EventEnvelope {
    let event = crate::support::event(i);
    if i.is_multiple_of(3) {
        event.with_subject(key)
    } else {
        event.with_extension(PARTITION_KEY, key)
    }
}

/// Appends `n` events over `keys` keys, `run` events in a row of each
/// (`key-<(i / run) mod keys>`), and returns each one's key, by sequence
/// number from 1 (index 0 unused).
async fn append_keyed(
    log: &dyn EventLog,
    n: usize,
    keys: usize,
    run: usize,
) -> Result<Vec<String>> {
    let mut stored = vec![String::new()];
    for start in (0..n).step_by(BATCH) {
        let batch: Vec<EventEnvelope> = (start..n.min(start + BATCH))
            .map(|i| keyed(i, &format!("key-{}", (i / run) % keys)))
            .collect();
        stored.extend(batch.iter().map(|e| e.partition_key().to_owned()));
        log.append_batch(batch).await?;
    }
    Ok(stored)
}

/// The subscribe options of a member: exclusive where the log has them.
fn member_options(log: &dyn EventLog, member: Member) -> SubscribeOptions {
    let options = match log.capabilities().exclusive_subscriptions {
        true => SubscribeOptions::exclusive(WhenBusy::Standby).with_lease(Duration::from_secs(2)),
        false => SubscribeOptions::new(),
    };
    options.with_member(member)
}

async fn subscribe_member(
    log: &dyn EventLog,
    consumer: &str,
    member: Member,
) -> Result<CheckedEventStream> {
    log.subscribe_with(
        consumer,
        SeekPosition::LastAcknowledged,
        member_options(log, member),
    )
    .await
}

/// The sequence numbers, from `after` on, of the events whose key falls to
/// `member` of `count`.
fn share(keys: &[String], member: u32, count: u32, after: SeqNo) -> Vec<SeqNo> {
    (after as usize + 1..keys.len())
        .filter(|&n| partition_of(&keys[n], count) == member)
        .map(|n| n as SeqNo)
        .collect()
}

/// Reads exactly the events `expected` from `stream`, next.
async fn expect_next(
    stream: &mut CheckedEventStream,
    expected: &[SeqNo],
    context: &str,
) -> Result<()> {
    let items = checked_items(stream, expected.len(), context).await?;
    expect_events(&items, expected, context)
}

/// Checks that a member whose share of the stored events was read
/// receives nothing more: one that should not come would come at once.
async fn expect_nothing_more(stream: &mut CheckedEventStream, context: &str) -> Result<()> {
    if let Ok(item) = tokio::time::timeout(timings().prompt, stream.next()).await {
        bail!("{context}: after its share, the member received {item:?}");
    }
    Ok(())
}

/// C51 Member `i` of `N` of a consumer receives, in log order, exactly the
/// events whose partition key (the `partitionkey` extension, else the
/// `subject`, else the `id`) falls to it by the documented hash: with N = 3
/// over 3,000 events of 50 keys, every event goes to exactly one member,
/// each key's events to one member in order, and their union is the log. A
/// member restarted mid-way resumes after its own last acknowledgement.
pub async fn c51_members_split_the_log_by_key(fx: &dyn Fixture) -> Result<()> {
    const COUNT: u32 = 3;
    let name = unique("c51");
    let log = fx.open(&name).await?;
    let keys = append_keyed(&*log, 3_000, 50, 1).await?;
    let consumer = unique("members");
    let shares: Vec<Vec<SeqNo>> = (0..COUNT).map(|i| share(&keys, i, COUNT, 0)).collect();
    let total: usize = shares.iter().map(Vec::len).sum();
    ensure!(
        total == keys.len() - 1 && shares.iter().all(|s| s.len() > 500),
        "log {name}: the hash split 3,000 events as {:?}",
        shares.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // Member 1 reads its first half, acks its first quarter, and stops.
    let restarted = Member::new(1, COUNT);
    let (half, quarter) = (shares[1].len() / 2, shares[1].len() / 4);
    {
        let handle = fx.open(&name).await?;
        let mut stream = subscribe_member(&*handle, &consumer, restarted).await?;
        let context = format!("log {name}: member 1 before its restart");
        expect_next(&mut stream, &shares[1][..half], &context).await?;
        handle
            .ack(&restarted.consumer(&consumer), shares[1][quarter - 1])
            .await?;
    }

    // Each member on a handle of its own, as processes would run them. They
    // read one after the other (a test broker serving three long replays
    // at once can be slower than an operation's timeout), then all must
    // have nothing more.
    let mut readers = Vec::new();
    for index in 0..COUNT {
        let handle = fx.open(&name).await?;
        let context = format!("log {name}: member {index} of {COUNT}");
        let mut stream = subscribe_member(&*handle, &consumer, Member::new(index, COUNT))
            .await
            .with_context(|| format!("{context}: subscribe"))?;
        let expected = match index {
            1 => &shares[1][quarter..],
            _ => &shares[index as usize][..],
        };
        expect_next(&mut stream, expected, &context).await?;
        readers.push(async move {
            let _handle = handle;
            expect_nothing_more(&mut stream, &context).await
        });
    }
    futures::future::try_join_all(readers).await?;
    Ok(())
}

/// C52 After the members of a consumer are stopped and started again as
/// `N' = 2` members `resized_from(3)`, each new member starts from the
/// lowest position of the old ones and receives exactly the events of its
/// keys that the old member of their key had not acknowledged, in log
/// order. A standby of a new member (where the backend has exclusive
/// subscriptions) that takes over goes on from the holder's
/// acknowledgements, even when it asked while the member was new: whether
/// a member is new is decided when its subscription opens.
pub async fn c52_a_resized_consumer_resumes_what_was_not_acknowledged(
    fx: &dyn Fixture,
) -> Result<()> {
    const OLD: u32 = 3;
    const NEW: u32 = 2;
    let name = unique("c52");
    let log = fx.open(&name).await?;
    let keys = append_keyed(&*log, 600, 20, 2).await?;
    let consumer = unique("members");

    // Old member i reads its share and acks part of it.
    let mut acked = Vec::new();
    for index in 0..OLD {
        let member = Member::new(index, OLD);
        let expected = share(&keys, index, OLD, 0);
        let mut stream = subscribe_member(&*log, &consumer, member).await?;
        let context = format!("log {name}: old member {index} of {OLD}");
        expect_next(&mut stream, &expected, &context).await?;
        // Old member 0 acks lowest, just before another event of its own,
        // so a new member that started past the lowest ack would miss it.
        let last = match index {
            0 => expected
                .windows(2)
                .find(|pair| pair[1] == pair[0] + 1)
                .map(|pair| pair[0])
                .ok_or_else(|| {
                    anyhow::anyhow!("log {name}: member 0 has no two events in a row")
                })?,
            _ => expected[expected.len() * (index as usize + 1) / 5 - 1],
        };
        log.ack(&member.consumer(&consumer), last).await?;
        acked.push(last);
    }

    for index in 0..NEW {
        let member = Member::new(index, NEW).resized_from(OLD);
        let expected: Vec<SeqNo> = share(&keys, index, NEW, 0)
            .into_iter()
            .filter(|&n| n > acked[partition_of(&keys[n as usize], OLD) as usize])
            .collect();
        let mut stream = subscribe_member(&*log, &consumer, member).await?;
        let context = format!("log {name}: new member {index} of {NEW}, resized from {OLD}");
        if index == 0 && log.capabilities().exclusive_subscriptions {
            // A standby asks while the member is still new, then takes
            // over from a holder that acknowledged half.
            let standby_log = fx.open(&name).await?;
            let mut standby = subscribe_member(&*standby_log, &consumer, member).await?;
            let half = expected.len() / 2;
            expect_next(&mut stream, &expected[..half], &context).await?;
            log.ack(&member.consumer(&consumer), expected[half - 1])
                .await?;
            drop(stream);
            let context = format!("{context}, its standby");
            expect_next(&mut standby, &expected[half..], &context).await?;
            expect_nothing_more(&mut standby, &context).await?;
            continue;
        }
        expect_next(&mut stream, &expected, &context).await?;
        expect_nothing_more(&mut stream, &context).await?;
    }
    Ok(())
}
