//! A projection: a consumer group that builds a read model (account
//! balances) from the log, is killed half-way, restarts on a new
//! connection, and resumes from `LastAcknowledged` with no gap and without
//! applying any acknowledged event twice.
//!
//! The read model keeps the sequence number of the last event it applied,
//! next to the balances, as a real store would in the same transaction: an
//! event that was applied but whose ack was lost in the crash comes again
//! and is skipped, so the projection is exactly-once over an at-least-once
//! log.
//!
//! `cargo run --example projection`; set `EVENTLOG_URL` to run it on a broker.

use eventlog::{EventEnvelope, EventLog, SeekPosition, SeqNo};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const EVENTS: usize = 30;

/// The read model: what a database table would hold.
#[derive(Default, Debug)]
struct Balances {
    by_account: BTreeMap<String, i64>,
    last_applied: SeqNo,
    applied: usize,
}

/// Reads the consumer group `projector` and applies each event once,
/// acknowledging it after, and returns once it acknowledged `last`. With
/// `crash_after`, it stops dead right after applying that many events,
/// before acknowledging the last one: the worst moment to be killed.
async fn project(
    log: Arc<dyn EventLog>,
    model: Arc<Mutex<Balances>>,
    last: SeqNo,
    crash_after: Option<(usize, Arc<Notify>)>,
) -> anyhow::Result<()> {
    let mut events = log
        .subscribe("projector", SeekPosition::LastAcknowledged)
        .await?;
    while let Some(event) = events.next().await {
        let seq = event.seq();
        let amount: i64 = String::from_utf8_lossy(&event.payload).parse()?;
        let applied = {
            let mut model = model.lock().expect("model lock");
            if seq > model.last_applied {
                *model
                    .by_account
                    .entry(event.subject.clone().unwrap_or_default())
                    .or_default() += amount;
                model.last_applied = seq;
                model.applied += 1;
            }
            model.applied
        };
        if let Some((n, crashed)) = &crash_after
            && applied == *n
        {
            crashed.notify_one();
            std::future::pending::<()>().await;
        }
        log.ack("projector", seq).await?;
        if seq >= last {
            return Ok(());
        }
    }
    anyhow::bail!("the subscription ended before event {last}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EVENTLOG_URL").unwrap_or_else(|_| "memory://accounts".to_owned());
    let log = eventlog::connect(&url).await?;

    // Only this run's events count, even on a log that already holds some.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut batch = Vec::new();
    for i in 0..EVENTS {
        let account = ACCOUNTS[i % ACCOUNTS.len()];
        let amount = if i % 4 == 3 {
            -(i as i64)
        } else {
            10 * i as i64
        };
        *expected.entry(account.to_owned()).or_default() += amount;
        batch.push(
            EventEnvelope::new("/bank", "amount.booked", amount.to_string()).with_subject(account),
        );
    }
    let seq_nos = log.append_batch(batch).await?;
    let (first, last) = (seq_nos[0], *seq_nos.last().expect("a batch"));
    log.seek("projector", SeekPosition::Sequence(first)).await?;
    println!("appended events {first}..={last}");

    let model = Arc::new(Mutex::new(Balances::default()));
    let crashed = Arc::new(Notify::new());
    let worker = tokio::spawn(project(
        log.clone(),
        model.clone(),
        last,
        Some((EVENTS / 2, crashed.clone())),
    ));
    crashed.notified().await;
    worker.abort();
    let _ = worker.await;
    let acked = log.consumer_state("projector").await?.last_acknowledged;
    let applied = model.lock().expect("model lock").applied;
    println!("killed the projector after applying {applied} events; acknowledged up to {acked:?}");

    // A new process: a new connection, the same consumer group and store.
    let log = eventlog::connect(&url).await?;
    project(log, model.clone(), last, None).await?;

    let model = model.lock().expect("model lock");
    println!("balances: {:?}", model.by_account);
    anyhow::ensure!(
        model.applied == EVENTS,
        "applied {} events, expected {EVENTS}",
        model.applied
    );
    anyhow::ensure!(
        model.by_account == expected,
        "balances {:?}, expected {expected:?}",
        model.by_account
    );
    println!(
        "applied {} events exactly once across the restart",
        model.applied
    );
    Ok(())
}
