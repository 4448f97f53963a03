//! What sharing a consumer costs: acks of an exclusive subscription, and
//! one log read by 1, 2 or 4 members of a partitioned consumer against one
//! plain reader. EventLog only: the raw clients have neither.

use crate::report::Figure;
use anyhow::{Result, bail};
use eventlog::{
    EventEnvelope, EventLog, Member, PARTITION_KEY, SeekPosition, SubscribeOptions, WhenBusy,
    partition_of,
};
use futures::StreamExt;
use std::sync::Arc;
use testkit::wait::unique;
use tokio::time::Instant;

/// How many partition keys the member workloads spread events over.
const KEYS: usize = 1_000;

/// `n` events over [`KEYS`] keys.
fn keyed_events(n: usize) -> Vec<EventEnvelope> {
    (0..n)
        .map(|i| {
            EventEnvelope::new("/bench", "member", vec![0u8; 64])
                .with_extension(PARTITION_KEY, format!("key-{}", i % KEYS))
        })
        .collect()
}

/// A new log at `base` (`memory:`, or a broker URL without a log) holding
/// `n` keyed events. Operations may take 15 s: tansu, the Kafka test
/// broker, has been seen to answer a commit after more than 5.
async fn filled(base: &str, n: usize) -> Result<(String, Arc<dyn EventLog>)> {
    let options = if base.starts_with("kafka") {
        "?timeout_ms=15000"
    } else {
        ""
    };
    let url = format!("{base}/{}{options}", unique("members"));
    let log = eventlog::connect(&url).await?;
    for chunk in keyed_events(n).chunks(1_000) {
        log.append_batch(chunk.to_vec()).await?;
    }
    Ok((url, log))
}

/// Reads `events` events as `consumer` through `options`, acking every
/// 100th of them and the last.
async fn read(
    log: &dyn EventLog,
    consumer: &str,
    options: SubscribeOptions,
    events: usize,
    ack_as: &str,
) -> Result<()> {
    let mut stream = log
        .subscribe_with(consumer, SeekPosition::Beginning, options)
        .await?;
    for i in 1..=events {
        match stream.next().await {
            Some(Ok(event)) if i % 100 == 0 || i == events => log.ack(ack_as, event.seq()).await?,
            Some(Ok(_)) => {}
            other => bail!("member read {i} of {events}: {other:?}"),
        }
    }
    Ok(())
}

/// The rate of one exclusive subscription acking each of `n` events;
/// `None` where the backend has no exclusive subscriptions.
pub(crate) async fn exclusive_acks(base: &str, n: usize) -> Result<Option<Figure>> {
    let (_, log) = filled(base, n).await?;
    if !log.capabilities().exclusive_subscriptions {
        return Ok(None);
    }
    let started = Instant::now();
    let mut stream = log
        .subscribe_with(
            "bench",
            SeekPosition::Beginning,
            SubscribeOptions::exclusive(WhenBusy::Refuse),
        )
        .await?;
    for i in 1..=n {
        match stream.next().await {
            Some(Ok(event)) => log.ack("bench", event.seq()).await?,
            other => bail!("exclusive read {i} of {n}: {other:?}"),
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("   consume, ack each, exclusive: {rate:.0}/s");
    Ok(Some(Figure {
        workload: "consume, ack each, exclusive".to_owned(),
        eventlog: rate,
        raw: None,
    }))
}

/// Events of the log per second, read by one plain reader and by 1, 2
/// and 4 members (each on a handle of its own, as processes would run
/// them, all at once), every one acking every 100th of its events.
pub(crate) async fn members(base: &str, n: usize) -> Result<Vec<Figure>> {
    let (url, log) = filled(base, n).await?;
    let started = Instant::now();
    read(&*log, "reader", SubscribeOptions::new(), n, "reader").await?;
    let mut figures = vec![figure("one plain reader", n, started)];
    let keys: Vec<String> = keyed_events(n)
        .iter()
        .map(|e| e.partition_key().to_owned())
        .collect();
    for count in [1u32, 2, 4] {
        let consumer = unique("members");
        let mut handles = Vec::new();
        for _ in 0..count {
            handles.push(eventlog::connect(&url).await?);
        }
        let started = Instant::now();
        let runs = handles.iter().zip(0..count).map(|(handle, index)| {
            let member = Member::new(index, count);
            let share = keys
                .iter()
                .filter(|key| partition_of(key, count) == index)
                .count();
            let options = match handle.capabilities().exclusive_subscriptions {
                true => SubscribeOptions::exclusive(WhenBusy::Refuse),
                false => SubscribeOptions::new(),
            }
            .with_member(member);
            let (consumer, handle) = (consumer.clone(), handle.clone());
            async move {
                let ack_as = member.consumer(&consumer);
                read(&*handle, &consumer, options, share, &ack_as).await
            }
        });
        futures::future::try_join_all(runs).await?;
        figures.push(figure(&format!("{count} of {count} members"), n, started));
    }
    Ok(figures)
}

fn figure(what: &str, n: usize, started: Instant) -> Figure {
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("   log read by {what}: {rate:.0}/s");
    Figure {
        workload: format!("log read by {what}, acking every 100th"),
        eventlog: rate,
        raw: None,
    }
}
