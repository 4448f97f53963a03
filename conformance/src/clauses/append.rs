//! Append and sequence numbers: C01 to C06, and batches: C29.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{append_n, event, expect_seq_nos, take, unique};
use anyhow::{Result, ensure};
use bytes::Bytes;
use eventlog_core::{EventEnvelope, EventLogError, SeekPosition};
use std::collections::BTreeSet;
use std::sync::Arc;

/// C01 The first append to an empty log returns 1; each further append by one
/// writer returns the previous value plus one.
pub async fn c01_append_numbers_from_one(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c01");
    let log = fx.open(&name).await?;
    let seq_nos = append_n(&*log, 5).await?;
    ensure!(
        seq_nos == [1, 2, 3, 4, 5],
        "log {name}: appends returned {seq_nos:?}, expected 1..=5"
    );
    Ok(())
}

/// C02 Concurrent appends (at least 8 tasks, 50 events each) return distinct
/// values that together are exactly 1..=N; a read from `Beginning` yields the
/// events in that order, each carrying the `seq_no` that its append returned.
pub async fn c02_concurrent_appends_are_dense_and_ordered(fx: &dyn Fixture) -> Result<()> {
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let name = unique("c02");
    // Half the writers share one handle, half another: both one connection
    // used concurrently and two connections racing.
    let handles = [fx.open(&name).await?, fx.open(&name).await?];
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = Arc::clone(&handles[t % 2]);
        tasks.push(tokio::spawn(async move {
            let mut appended = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let e = event(t * EACH + i);
                appended.push((log.append(e.clone()).await?, e.id));
            }
            anyhow::Ok(appended)
        }));
    }
    let mut by_seq = std::collections::BTreeMap::new();
    for task in tasks {
        for (seq, id) in task.await?? {
            ensure!(
                by_seq.insert(seq, id).is_none(),
                "log {name}: seq_no {seq} returned twice"
            );
        }
    }
    let total = (TASKS * EACH) as u64;
    let keys: Vec<u64> = by_seq.keys().copied().collect();
    ensure!(
        keys == (1..=total).collect::<Vec<_>>(),
        "log {name}: append results are not 1..={total}: {keys:?}"
    );
    let mut stream = handles[0]
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    let events = take(&mut stream, TASKS * EACH).await?;
    expect_seq_nos(&events, 1..=total, &format!("log {name}: replay"))?;
    for e in &events {
        let seq = e.seq_no.unwrap_or_default();
        ensure!(
            by_seq[&seq] == e.id,
            "log {name}: event {seq} has id {}, its append returned it for {}",
            e.id,
            by_seq[&seq]
        );
    }
    Ok(())
}

/// C03 `last_seq_no` is `None` on an empty log and the highest assigned value
/// after appends, including appends made through another `EventLog` value
/// (another connection, as another process would have) on the same log.
pub async fn c03_last_seq_no_follows_every_handle(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c03");
    let first = fx.open(&name).await?;
    let second = fx.open(&name).await?;
    ensure!(
        first.last_seq_no().await.is_none(),
        "log {name}: empty log reports {:?}",
        first.last_seq_no().await
    );
    append_n(&*first, 3).await?;
    ensure!(
        first.last_seq_no().await == Some(3),
        "log {name}: after 3 appends: {:?}",
        first.last_seq_no().await
    );
    append_n(&*second, 2).await?;
    for (which, log) in [("first", &first), ("second", &second)] {
        let last = log.last_seq_no().await;
        ensure!(
            last == Some(5),
            "log {name}: {which} handle reports {last:?} after 5 appends on two handles"
        );
    }
    Ok(())
}

/// C04 Every envelope field survives the round trip unchanged: binary payloads
/// with zero bytes, an empty payload, non-ASCII text in attributes, many
/// extensions, a payload of 512 KiB.
pub async fn c04_every_field_round_trips(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c04");
    let log = fx.open(&name).await?;
    let mut many = EventEnvelope::new("/many", "ext", Bytes::from_static(b"m"));
    for i in 0..40 {
        many = many.with_extension(format!("ext{i:02}"), format!("value {i} ✓"));
    }
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = vec![
        EventEnvelope::new("/bin", "binary", Bytes::from_static(b"\0\x01\0\xff\xfe\0"))
            .with_content_type("application/octet-stream"),
        EventEnvelope::new("/empty", "empty", Bytes::new()),
        EventEnvelope::new("/ünïcødé/源", "typé.événement", Bytes::from("日本語 ✓"))
            .with_subject("sujet: ça va? ✓")
            .with_content_type("text/plain; charset=utf-8")
            .with_extension("tenant", "Zürich 東京")
            .with_id("id-ünï-🦀"),
        many,
        EventEnvelope::new("/big", "big", big),
    ];
    for e in &sent {
        log.append(e.clone()).await?;
    }
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    let got = take(&mut stream, sent.len()).await?;
    for (i, (sent, got)) in sent.iter().zip(&got).enumerate() {
        let expected = sent.clone().with_seq_no(i as u64 + 1);
        ensure!(
            *got == expected,
            "log {name}: event {} changed on the way:\n  sent {}\n  got  {}",
            i + 1,
            summary(&expected),
            summary(got)
        );
    }
    Ok(())
}

/// An envelope's attributes with the payload shortened, for messages.
fn summary(e: &EventEnvelope) -> String {
    let mut short = e.clone();
    short.payload = Bytes::new();
    format!("{short:?} with a payload of {} bytes", e.payload.len())
}

/// C05 A `seq_no` set by the caller on an envelope passed to `append` is
/// ignored: the log assigns its own.
pub async fn c05_caller_seq_no_is_ignored(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c05");
    let log = fx.open(&name).await?;
    let seq = log.append(event(0).with_seq_no(999)).await?;
    ensure!(
        seq == 1,
        "log {name}: append of an envelope carrying seq_no 999 returned {seq}"
    );
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    expect_seq_nos(&take(&mut stream, 1).await?, [1], &format!("log {name}"))
}

/// C06 An envelope that breaks the rules (empty `id`, `source` or
/// `event_type`, a bad extension name, a payload over the backend's documented
/// limit) is refused with a typed error, and nothing is stored: `last_seq_no`
/// is unchanged.
pub async fn c06_invalid_envelopes_are_refused_and_not_stored(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c06");
    let log = fx.open(&name).await?;
    log.append(event(0)).await?;
    for (what, bad) in invalid_envelopes() {
        expect_refused!(
            log.append(bad).await,
            EventLogError::InvalidEnvelope { .. },
            format!("log {name}: append of {what}")
        );
    }
    let limit = log.capabilities().max_payload;
    let too_big = EventEnvelope::new("/s", "t", vec![7u8; limit + 1]);
    expect_refused!(
        log.append(too_big).await,
        EventLogError::PayloadTooLarge { .. },
        format!(
            "log {name}: append of {} bytes over a limit of {limit}",
            limit + 1
        )
    );
    let last = log.last_seq_no().await;
    ensure!(
        last == Some(1),
        "log {name}: refused appends changed last_seq_no to {last:?}"
    );
    // Nothing half-written: the next good event is number 2 and directly
    // follows number 1.
    ensure!(
        log.append(event(1)).await? == 2,
        "log {name}: a refused append used up a sequence number"
    );
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    expect_seq_nos(&take(&mut stream, 2).await?, [1, 2], &format!("log {name}"))
}

/// Envelopes every backend refuses as `InvalidEnvelope`, with what is wrong.
pub(crate) fn invalid_envelopes() -> Vec<(&'static str, EventEnvelope)> {
    vec![
        ("an empty id", event(0).with_id("")),
        ("an empty source", EventEnvelope::new("", "t", Bytes::new())),
        ("an empty type", EventEnvelope::new("/s", "", Bytes::new())),
        (
            "an upper-case extension name",
            event(0).with_extension("Tenant", "x"),
        ),
        (
            "an extension name with a dash",
            event(0).with_extension("a-b", "x"),
        ),
        (
            "an extension name of 21 characters",
            event(0).with_extension("a".repeat(21), "x"),
        ),
        (
            "a reserved extension name",
            event(0).with_extension("specversion", "x"),
        ),
        ("a newline in the subject", event(0).with_subject("a\r\nb")),
    ]
}

/// C29 `append_batch(events)` returns one sequence number per event, strictly
/// increasing in the order given, and a read yields the events in that order.
/// An invalid envelope anywhere in the batch refuses the whole batch before
/// anything is stored.
pub async fn c29_append_batch_is_ordered_and_all_or_nothing(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c29");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    let batch: Vec<EventEnvelope> = (0..20).map(event).collect();
    let seq_nos = log.append_batch(batch.clone()).await?;
    ensure!(
        seq_nos.len() == batch.len(),
        "log {name}: {} numbers for a batch of {}",
        seq_nos.len(),
        batch.len()
    );
    ensure!(
        seq_nos.windows(2).all(|w| w[0] < w[1]),
        "log {name}: batch numbers not increasing: {seq_nos:?}"
    );
    ensure!(
        log.append_batch(Vec::new()).await?.is_empty(),
        "log {name}: an empty batch returned numbers"
    );

    let limit = log.capabilities().max_payload;
    let mut bad_at_end = batch.clone();
    bad_at_end.push(event(99).with_extension("Bad", "x"));
    expect_refused!(
        log.append_batch(bad_at_end).await,
        EventLogError::InvalidEnvelope { .. },
        format!("log {name}: batch ending in a bad extension")
    );
    let mut too_big_inside = batch.clone();
    too_big_inside.insert(3, EventEnvelope::new("/s", "t", vec![0u8; limit + 1]));
    expect_refused!(
        log.append_batch(too_big_inside).await,
        EventLogError::PayloadTooLarge { .. },
        format!("log {name}: batch with an oversized event")
    );
    let last = log.last_seq_no().await;
    ensure!(
        last == seq_nos.last().copied(),
        "log {name}: refused batches changed last_seq_no to {last:?}"
    );

    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Sequence(seq_nos[0]))
        .await?;
    let got = take(&mut stream, batch.len()).await?;
    let sent_ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
    let got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    ensure!(
        got_ids == sent_ids,
        "log {name}: batch read back in another order"
    );
    let got_seq: BTreeSet<u64> = got.iter().filter_map(|e| e.seq_no).collect();
    ensure!(
        got_seq == seq_nos.iter().copied().collect(),
        "log {name}: read numbers {got_seq:?} differ from returned {seq_nos:?}"
    );
    Ok(())
}
