//! Subscribe: C07 to C14.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{append_n, event, expect_seq_nos, next_within, poll_until, take, unique};
use crate::timings;
use anyhow::{Result, ensure};
use eventlog_core::{EventLogError, SeekPosition};
use tokio::time::Instant;

/// C07 `subscribe(c, Beginning)` yields every stored event in order, then keeps
/// yielding events appended later; the stream does not end on its own.
pub async fn c07_beginning_replays_then_follows(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c07");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Beginning)
        .await?;
    expect_seq_nos(
        &take(&mut stream, 3).await?,
        1..=3,
        &format!("log {name}: stored events"),
    )?;
    append_n(&*log, 2).await?;
    expect_seq_nos(
        &take(&mut stream, 2).await?,
        4..=5,
        &format!("log {name}: later events"),
    )
}

/// C08 `subscribe(c, Latest)` yields only events appended after `subscribe`
/// returned, in order.
pub async fn c08_latest_sees_only_new_events(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c08");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Latest)
        .await?;
    append_n(&*log, 2).await?;
    expect_seq_nos(
        &take(&mut stream, 2).await?,
        4..=5,
        &format!("log {name}: from Latest after 3 stored"),
    )
}

/// C09 `subscribe(c, Sequence(n))` starts at the event numbered `n`; with `n`
/// past the end it waits and starts when `n` is appended. `Sequence(0)` is
/// refused with a typed error.
pub async fn c09_sequence_starts_at_n(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c09");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Sequence(3))
        .await?;
    expect_seq_nos(
        &take(&mut stream, 3).await?,
        3..=5,
        &format!("log {name}: from Sequence(3)"),
    )?;

    let mut ahead = log
        .subscribe(&unique("ahead"), SeekPosition::Sequence(8))
        .await?;
    append_n(&*log, 4).await?;
    expect_seq_nos(
        &take(&mut ahead, 2).await?,
        8..=9,
        &format!("log {name}: from Sequence(8) with 5 stored"),
    )?;

    let consumer = unique("zero");
    expect_refused!(
        log.subscribe(&consumer, SeekPosition::Sequence(0)).await,
        EventLogError::InvalidPosition { .. },
        format!("log {name}: subscribe from Sequence(0)")
    );
    expect_refused!(
        log.seek(&consumer, SeekPosition::Sequence(0)).await,
        EventLogError::InvalidPosition { .. },
        format!("log {name}: seek to Sequence(0)")
    );
    Ok(())
}

/// C10 `subscribe(c, LastAcknowledged)` for a consumer that has never
/// acknowledged nor sought starts at the beginning.
pub async fn c10_new_consumer_starts_at_beginning(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c10");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let mut stream = log
        .subscribe(&unique("fresh"), SeekPosition::LastAcknowledged)
        .await?;
    expect_seq_nos(
        &take(&mut stream, 3).await?,
        1..=3,
        &format!("log {name}: new consumer"),
    )
}

/// C11 `subscribe(c, p)` with `p` other than `LastAcknowledged` first sets the
/// stored position of `c` to `p`, exactly as `seek(c, p)` would, then streams
/// from there; `subscribe(c, LastAcknowledged)` streams from the stored
/// position and leaves it as it is. (So a replay from `Beginning` that crashes
/// half-way resumes where its acks got to.)
pub async fn c11_subscribe_sets_the_position_like_seek(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c11");
    let log = fx.open(&name).await?;
    append_n(&*log, 6).await?;
    let c = unique("reader");

    let mut stream = log.subscribe(&c, SeekPosition::Sequence(3)).await?;
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(2),
        "log {name}: subscribe from Sequence(3) left position {state:?}"
    );
    expect_seq_nos(
        &take(&mut stream, 1).await?,
        [3],
        &format!("log {name}: from Sequence(3)"),
    )?;
    drop(stream);

    // A replay from Beginning that acks 1..=4 and crashes resumes at 5.
    let mut stream = log.subscribe(&c, SeekPosition::Beginning).await?;
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged.is_none(),
        "log {name}: subscribe from Beginning left position {state:?}"
    );
    let events = take(&mut stream, 4).await?;
    expect_seq_nos(&events, 1..=4, &format!("log {name}: replay"))?;
    log.ack(&c, 4).await?;
    drop(stream);

    let before = log.consumer_state(&c).await?;
    let mut stream = log.subscribe(&c, SeekPosition::LastAcknowledged).await?;
    let after = log.consumer_state(&c).await?;
    ensure!(
        before == after,
        "log {name}: subscribe from LastAcknowledged moved {before:?} to {after:?}"
    );
    expect_seq_nos(
        &take(&mut stream, 1).await?,
        [5],
        &format!("log {name}: resumed replay"),
    )?;
    drop(stream);

    let _stream = log.subscribe(&c, SeekPosition::Latest).await?;
    let state = log.consumer_state(&c).await?;
    ensure!(
        state.last_acknowledged == Some(6),
        "log {name}: subscribe from Latest left position {state:?}"
    );
    Ok(())
}

/// C12 At least 10 subscribers of one log, on different consumers, each
/// receive every event, in order, with no gap and no duplicate.
pub async fn c12_many_subscribers_each_see_everything(fx: &dyn Fixture) -> Result<()> {
    const SUBSCRIBERS: usize = 10;
    const STORED: usize = 20;
    const LIVE: usize = 30;
    let name = unique("c12");
    let log = fx.open(&name).await?;
    append_n(&*log, STORED).await?;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut stream = log
            .subscribe(&unique("reader"), SeekPosition::Beginning)
            .await?;
        readers.push(tokio::spawn(async move {
            take(&mut stream, STORED + LIVE).await
        }));
    }
    append_n(&*log, LIVE).await?;
    for (i, reader) in readers.into_iter().enumerate() {
        let events = reader.await??;
        expect_seq_nos(
            &events,
            1..=(STORED + LIVE) as u64,
            &format!("log {name}: subscriber {i}"),
        )?;
    }
    Ok(())
}

/// C13 An event appended while subscribers wait reaches them promptly (the
/// test allows at most 2 s; the benchmark measures the real latency).
pub async fn c13_new_events_arrive_promptly(fx: &dyn Fixture) -> Result<()> {
    let prompt = timings().prompt;
    let name = unique("c13");
    let log = fx.open(&name).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Latest)
        .await?;
    // The first event may wait for the subscription to be set up; the ones
    // after it are appended while the subscriber is already waiting.
    log.append(event(0)).await?;
    next_within(&mut stream, timings().deadline).await?;
    for i in 1..=3 {
        let waiting = {
            let log = log.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let seq = log.append(event(i)).await?;
                anyhow::Ok((start, seq))
            })
        };
        let got = next_within(&mut stream, timings().deadline).await?;
        let arrived = Instant::now();
        let (start, seq) = waiting.await??;
        let took = arrived.duration_since(start);
        ensure!(
            got.seq_no == Some(seq),
            "log {name}: expected event {seq}, got {:?}",
            got.seq_no
        );
        ensure!(
            took <= timings().prompt,
            "log {name}: event {seq} took {took:?} to arrive, more than {prompt:?}"
        );
    }
    Ok(())
}

/// C14 Dropping a subscription stream releases what it held: after many
/// subscribe-and-drop cycles no connection, task or temporary broker object
/// (an ephemeral consumer, a Redis client, a Kafka consumer) is left behind,
/// checked through the broker's own introspection where it has one. The
/// consumer-group state of C23 is meant to stay.
pub async fn c14_dropped_subscriptions_release_everything(fx: &dyn Fixture) -> Result<()> {
    const CYCLES: usize = 20;
    let name = unique("c14");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let consumer = unique("cycler");
    for i in 0..CYCLES {
        let mut stream = log.subscribe(&consumer, SeekPosition::Beginning).await?;
        // Every other stream is dropped before its first read, the rest
        // after reading.
        if i % 2 == 0 {
            take(&mut stream, 1).await?;
        }
    }
    // The probe must see a live subscription, or it proves nothing.
    let mut live = log
        .subscribe(&unique("live"), SeekPosition::Beginning)
        .await?;
    take(&mut live, 1).await?;
    let held = fx.subscription_resources(&name).await?;
    ensure!(
        held >= 1,
        "log {name}: the resource probe sees nothing while a subscription is live"
    );
    drop(live);
    poll_until(
        &format!("log {name}: resources held after {CYCLES} dropped subscriptions"),
        timings().deadline,
        || fx.subscription_resources(&name),
        |n| *n == 0,
    )
    .await?;
    Ok(())
}
