//! Exclusive subscriptions: C47 to C50. A backend without
//! `Capabilities::exclusive_subscriptions` gets the same tests asserting
//! its documented refusal, `Unsupported`.

use super::checked::{checked_items, expect_events as checked_expect_events};
use crate::Fixture;
use crate::expect_refused;
use crate::support::{poll_until, unique};
use crate::timings;
use anyhow::{Context, Result, bail, ensure};
use eventlog_core::{
    CheckedEventStream, EventLog, EventLogError, SeekPosition, SeqNo, SubscribeOptions, WhenBusy,
};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The lease of the clauses' subscriptions: short, so a takeover the
/// clauses wait for never hides behind it.
const LEASE: Duration = Duration::from_secs(2);

fn exclusive(when_busy: WhenBusy) -> SubscribeOptions {
    SubscribeOptions::exclusive(when_busy).with_lease(LEASE)
}

/// Whether `log` has exclusive subscriptions; when it has not, checks its
/// documented refusal of one.
async fn supported(log: &dyn EventLog, clause: &str) -> Result<bool> {
    if log.capabilities().exclusive_subscriptions {
        return Ok(true);
    }
    let consumer = unique("exclusive");
    expect_refused!(
        log.subscribe_with(
            &consumer,
            SeekPosition::Beginning,
            exclusive(WhenBusy::Standby)
        )
        .await,
        EventLogError::Unsupported { .. },
        format!("{clause}: an exclusive subscribe on a backend without them")
    );
    Ok(false)
}

/// Two handles on a new log, as two processes would open it.
struct Pair {
    name: String,
    first: Arc<dyn EventLog>,
    second: Arc<dyn EventLog>,
    consumer: String,
}

impl Pair {
    /// A new log holding `events` events, two handles on it and a consumer
    /// no one used; `None` where the backend lacks exclusive subscriptions
    /// (its refusal checked).
    async fn open(fx: &dyn Fixture, clause: &str, events: usize) -> Result<Option<Self>> {
        let name = unique(&clause.to_lowercase());
        let (first, second) = (fx.open(&name).await?, fx.open(&name).await?);
        if !supported(&*first, clause).await? {
            return Ok(None);
        }
        first
            .append_batch((0..events).map(crate::support::event).collect())
            .await?;
        Ok(Some(Self {
            name,
            first,
            second,
            consumer: unique("worker"),
        }))
    }

    /// An exclusive subscription of the consumer through `log`, from the
    /// beginning.
    async fn hold(&self, log: &dyn EventLog, when_busy: WhenBusy) -> Result<CheckedEventStream> {
        log.subscribe_with(
            &self.consumer,
            SeekPosition::Beginning,
            exclusive(when_busy),
        )
        .await
    }
}

/// Checks that `stream` gives exactly the events `expected` next, each
/// within the suite's deadline (a takeover included: its lease is far
/// shorter), with the checked stream's own helpers.
async fn expect_events(
    stream: &mut CheckedEventStream,
    expected: std::ops::RangeInclusive<SeqNo>,
    context: &str,
) -> Result<()> {
    let expected: Vec<SeqNo> = expected.collect();
    let items = checked_items(stream, expected.len(), context).await?;
    checked_expect_events(&items, &expected, context)
}

/// Checks that a standby delivers nothing while the holder lives.
async fn expect_quiet(stream: &mut CheckedEventStream, context: &str) -> Result<()> {
    let window = timings().prompt;
    if let Ok(item) = tokio::time::timeout(window, stream.next()).await {
        bail!("{context}: a standby delivered {item:?} while the holder was alive");
    }
    Ok(())
}

/// How long a takeover may take: the holder's release, a standby's next
/// attempt, and opening its reader.
fn takeover() -> Duration {
    LEASE + timings().deadline
}

/// A refusing subscribe's stream, or its `ConsumerBusy`: what a poll sees.
struct Attempt(Option<CheckedEventStream>);

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "subscribed"
        } else {
            "busy"
        })
    }
}

/// A refusing exclusive subscribe of `consumer` through `log`: the stream,
/// `None` for `ConsumerBusy`, or any other error.
async fn try_hold(log: &dyn EventLog, consumer: &str) -> Result<Attempt> {
    match log
        .subscribe_with(
            consumer,
            SeekPosition::LastAcknowledged,
            exclusive(WhenBusy::Refuse),
        )
        .await
    {
        Ok(stream) => Ok(Attempt(Some(stream))),
        Err(err)
            if matches!(
                err.downcast_ref::<EventLogError>(),
                Some(EventLogError::ConsumerBusy { .. })
            ) =>
        {
            Ok(Attempt(None))
        }
        Err(err) => Err(err),
    }
}

/// C47 A second exclusive subscriber on a busy consumer (the standby mode,
/// the default) receives nothing while the first holds it; once the first
/// subscription is dropped it takes over within a bounded time and goes on
/// from the first one's acknowledgement, with no gap.
pub async fn c47_a_standby_takes_over_where_the_holder_acked(fx: &dyn Fixture) -> Result<()> {
    let Some(pair) = Pair::open(fx, "C47", 10).await? else {
        return Ok(());
    };
    let (name, consumer) = (&pair.name, &pair.consumer);
    let mut holder = pair.hold(&*pair.first, WhenBusy::Standby).await?;
    expect_events(&mut holder, 1..=5, &format!("log {name}: holder")).await?;
    pair.first.ack(consumer, 3).await?;

    let mut standby = pair
        .second
        .subscribe_with(
            consumer,
            SeekPosition::LastAcknowledged,
            exclusive(WhenBusy::Standby),
        )
        .await?;
    expect_quiet(&mut standby, &format!("log {name}")).await?;
    drop(holder);
    let context = format!("log {name}: standby after the holder was dropped");
    expect_events(&mut standby, 4..=10, &context).await
}

/// C48 An exclusive subscribe that asks to be refused while the consumer is
/// busy fails at once with `ConsumerBusy`, and succeeds once the holder's
/// subscription is dropped. Of several handles asking at once for a free
/// consumer, exactly one gets it.
pub async fn c48_the_refusing_mode_fails_at_once(fx: &dyn Fixture) -> Result<()> {
    const RIVALS: usize = 4;
    let Some(pair) = Pair::open(fx, "C48", 3).await? else {
        return Ok(());
    };
    let (name, consumer) = (&pair.name, &pair.consumer);
    let mut rivals = vec![pair.first.clone(), pair.second.clone()];
    while rivals.len() < RIVALS {
        rivals.push(fx.open(name).await?);
    }
    let attempts =
        futures::future::try_join_all(rivals.iter().map(|log| try_hold(&**log, consumer))).await?;
    let mut holders: Vec<CheckedEventStream> = attempts.into_iter().filter_map(|a| a.0).collect();
    ensure!(
        holders.len() == 1,
        "log {name}: {} of {RIVALS} handles asking at once got the consumer, expected exactly 1",
        holders.len()
    );
    let holder = holders.remove(0);

    let asked = tokio::time::Instant::now();
    for rival in &rivals {
        let busy = try_hold(&**rival, consumer).await?;
        ensure!(
            busy.0.is_none(),
            "log {name}: a refusing subscribe on a busy consumer got it"
        );
    }
    ensure!(
        asked.elapsed() <= timings().prompt * RIVALS as u32,
        "log {name}: {RIVALS} refusals took {:?}, not at once",
        asked.elapsed()
    );
    drop(holder);
    // The release follows the drop: poll until it has landed.
    let taken = poll_until(
        &format!("log {name}: a refusing subscribe after the holder was dropped"),
        takeover(),
        || try_hold(&*pair.second, consumer),
        |attempt| attempt.0.is_some(),
    )
    .await?;
    let mut taken = taken.0.context("polled until subscribed")?;
    let context = format!("log {name}: after the holder was dropped");
    expect_events(&mut taken, 1..=3, &context).await
}

/// C49 While an exclusive subscription holds a consumer, an `ack` or `seek`
/// of it through another handle, and a plain subscribe of it (which would
/// move it, or read beside the holder), fail with `Fenced` and change
/// nothing; the holder's own handle acks.
pub async fn c49_a_fenced_ack_or_seek_changes_nothing(fx: &dyn Fixture) -> Result<()> {
    let Some(pair) = Pair::open(fx, "C49", 5).await? else {
        return Ok(());
    };
    let (name, consumer) = (&pair.name, &pair.consumer);
    let (owner, other) = (&pair.first, &pair.second);
    let mut holder = pair.hold(&**owner, WhenBusy::Standby).await?;
    expect_events(&mut holder, 1..=5, &format!("log {name}")).await?;
    owner.ack(consumer, 2).await?;

    let context = format!("log {name}: through another handle");
    expect_refused!(
        other.ack(consumer, 5).await,
        EventLogError::Fenced { .. },
        format!("{context}, ack")
    );
    expect_refused!(
        other.seek(consumer, SeekPosition::Sequence(1)).await,
        EventLogError::Fenced { .. },
        format!("{context}, seek")
    );
    expect_refused!(
        other.subscribe(consumer, SeekPosition::Beginning).await,
        EventLogError::Fenced { .. },
        format!("{context}, subscribe from the beginning")
    );
    expect_refused!(
        other
            .subscribe(consumer, SeekPosition::LastAcknowledged)
            .await,
        EventLogError::Fenced { .. },
        format!("{context}, subscribe from the last acknowledged")
    );
    expect_refused!(
        other.seek(consumer, SeekPosition::LastAcknowledged).await,
        EventLogError::Fenced { .. },
        format!("{context}, seek to the last acknowledged")
    );
    let state = owner.consumer_state(consumer).await?;
    ensure!(
        state.last_acknowledged == Some(2),
        "{context}: refused moves changed the position to {:?}, expected 2",
        state.last_acknowledged
    );
    owner.ack(consumer, 4).await?;
    let state = other.consumer_state(consumer).await?;
    ensure!(
        state.last_acknowledged == Some(4),
        "log {name}: the holder's own ack left the position at {:?}, expected 4",
        state.last_acknowledged
    );
    drop(holder);
    Ok(())
}

/// C50 A rolling deploy loses nothing: the old reader holds events 480 to
/// 499 unacknowledged (it acked 479), the new one waits as a standby and
/// its ack of 500 is fenced, the old one is dropped, and the new one gets
/// 480 onwards.
pub async fn c50_a_rolling_deploy_loses_nothing(fx: &dyn Fixture) -> Result<()> {
    let Some(pair) = Pair::open(fx, "C50", 500).await? else {
        return Ok(());
    };
    let (name, consumer) = (&pair.name, &pair.consumer);
    let (old, new) = (&pair.first, &pair.second);
    let mut old_reader = pair.hold(&**old, WhenBusy::Standby).await?;
    expect_events(&mut old_reader, 1..=499, &format!("log {name}: old")).await?;
    old.ack(consumer, 479).await?;

    let mut new_reader = new
        .subscribe_with(
            consumer,
            SeekPosition::LastAcknowledged,
            exclusive(WhenBusy::Standby),
        )
        .await?;
    expect_quiet(&mut new_reader, &format!("log {name}: new")).await?;
    expect_refused!(
        new.ack(consumer, 500).await,
        EventLogError::Fenced { .. },
        format!("log {name}: the new process acks 500 while the old one holds 480-499")
    );
    drop(old_reader);
    let context = format!("log {name}: new, after the old reader was dropped");
    expect_events(&mut new_reader, 480..=500, &context).await
}
