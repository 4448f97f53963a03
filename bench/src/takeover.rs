//! How long an exclusive subscription's standby takes to deliver once the
//! holder is gone: dropped (it releases its lease), or gone without a word
//! (its process died: the lease runs out).

use crate::report::Takeover;
use anyhow::{Context, Result, bail};
use eventlog::{EventEnvelope, EventLog, SeekPosition, SubscribeOptions, WhenBusy};
use futures::StreamExt;
use std::time::Duration;
use testkit::wait::unique;
use tokio::time::Instant;

/// The lease of the measured subscriptions.
const LEASE: Duration = Duration::from_secs(1);
/// Takeovers measured per way of going.
const TRIALS: usize = 5;

fn options() -> SubscribeOptions {
    SubscribeOptions::exclusive(WhenBusy::Standby).with_lease(LEASE)
}

/// Takeover times on the log at `url` (`memory://…`, `redis://…/log`);
/// `None` for a backend without exclusive subscriptions.
pub(crate) async fn measure(url: &str) -> Result<Option<Takeover>> {
    let standby_log = eventlog::connect(url).await?;
    if !standby_log.capabilities().exclusive_subscriptions {
        return Ok(None);
    }
    let (mut dropped, mut died) = (Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        dropped.push(after_drop(url, &*standby_log).await?);
        died.push(after_death(url, &*standby_log).await?);
    }
    let summary = |mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() - 1])
    };
    let takeover = Takeover {
        lease_ms: LEASE.as_millis() as u64,
        after_drop_ms: summary(dropped),
        after_death_ms: summary(died),
    };
    eprintln!("   takeover: {takeover:?}");
    Ok(Some(takeover))
}

/// Appends two events and returns a consumer no one has used.
async fn prepare(log: &dyn EventLog) -> Result<String> {
    for i in 0..2 {
        log.append(EventEnvelope::new("/bench", "takeover", vec![i]))
            .await?;
    }
    Ok(unique("takeover"))
}

/// Milliseconds from the moment `gone` resolves until the standby of
/// `consumer` delivers its first event.
async fn first_after(
    standby_log: &dyn EventLog,
    consumer: &str,
    gone: impl Future<Output = Result<()>>,
) -> Result<f64> {
    let mut standby = standby_log
        .subscribe_with(consumer, SeekPosition::LastAcknowledged, options())
        .await?;
    gone.await?;
    let from = Instant::now();
    match tokio::time::timeout(LEASE * 30, standby.next()).await {
        Ok(Some(Ok(_))) => Ok(from.elapsed().as_secs_f64() * 1e3),
        Ok(other) => bail!("the standby gave {other:?}"),
        Err(_) => bail!("the standby did not take over within {:?}", LEASE * 30),
    }
}

/// The holder's subscription is dropped.
async fn after_drop(url: &str, standby_log: &dyn EventLog) -> Result<f64> {
    let holder_log = eventlog::connect(url).await?;
    let consumer = prepare(&*holder_log).await?;
    let mut holder = holder_log
        .subscribe_with(&consumer, SeekPosition::Beginning, options())
        .await?;
    holder.next().await.context("the holder's first event")??;
    first_after(standby_log, &consumer, async move {
        drop(holder);
        Ok(())
    })
    .await
}

/// The holder's process dies: it runs on a runtime of its own, which is
/// shut down with the subscription never dropped, so its lease is neither
/// renewed nor released.
async fn after_death(url: &str, standby_log: &dyn EventLog) -> Result<f64> {
    let consumer = prepare(standby_log).await?;
    let (url, held_consumer) = (url.to_owned(), consumer.clone());
    let (held, holding) = tokio::sync::oneshot::channel::<Result<()>>();
    let (die, dying) = std::sync::mpsc::channel::<()>();
    let process = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the holder");
        runtime.block_on(async move {
            let hold = async {
                let log = eventlog::connect(&url).await?;
                let mut holder = log
                    .subscribe_with(&held_consumer, SeekPosition::Beginning, options())
                    .await?;
                holder.next().await.context("the holder's first event")??;
                Ok((log, holder))
            };
            match hold.await {
                Ok(alive) => {
                    let _ = held.send(Ok(()));
                    let _ = dying.recv();
                    // Never dropped: a dead process releases nothing.
                    std::mem::forget(alive);
                }
                Err(err) => {
                    let _ = held.send(Err(err));
                }
            }
        });
        // Dropping the runtime cancels the lease's renewal.
    });
    let gone = async move {
        holding.await??;
        die.send(())?;
        tokio::task::spawn_blocking(move || process.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the holder's thread panicked"))
    };
    first_after(standby_log, &consumer, gone).await
}
