//! A worker: a handler run over a consumer group with bounded concurrency,
//! in order per customer, retried with backoff, and parked in a
//! dead-letter log (`<log>-dead`) once it has failed every attempt, so the
//! next events flow (`eventlog::process::Processor`).
//!
//! `cargo run --example worker`; set `EVENTLOG_URL` to run it on a broker.

use eventlog::process::{PARKED_ERROR, PARKED_SEQ_NO, Processor};
use eventlog::{EventEnvelope, SeekPosition, SeqNo};
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const ORDERS: usize = 40;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EVENTLOG_URL").unwrap_or_else(|_| "memory://orders".to_owned());
    let log = eventlog::connect(&url).await?;
    let dead = eventlog::connect(&format!("{url}-dead")).await?;
    let first = log.try_last_seq_no().await?.unwrap_or(0) + 1;
    let orders = (0..ORDERS)
        .map(|i| {
            // Each customer's orders are handled in order, one at a time.
            EventEnvelope::new("/shop", "order.placed", format!(r#"{{"order":{i}}}"#))
                .with_subject(format!("customer-{}", i % 5))
        })
        .collect();
    log.append_batch(orders).await?;
    let last = first + ORDERS as SeqNo - 1;
    // One order the payment service always refuses.
    let poisoned = first + 7;

    let shipped = AtomicUsize::new(0);
    let worker = Processor::new("shipping")
        .with_concurrency(8)
        .with_attempts(3)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .with_dead_letter(dead.clone());
    let ship = |order: EventEnvelope| {
        let shipped = &shipped;
        async move {
            if order.seq() == poisoned {
                return Err(format!("payment refused for order {}", order.seq()));
            }
            shipped.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    };
    // The worker runs for good; this example stops it once every order is
    // acknowledged, checking the position until then, and fails if that
    // takes more than 30 s (a stalled worker).
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        while log.consumer_state("shipping").await?.last_acknowledged < Some(last) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    });
    tokio::select! {
        ended = worker.run(&*log, ship) => anyhow::bail!("the worker stopped: {ended:?}"),
        done = done => done.map_err(|_| anyhow::anyhow!("not every order was acknowledged within 30 s"))??,
    }

    let mut parked = dead.subscribe("ops", SeekPosition::Beginning).await?;
    let event = parked.next().await.expect("the parked order");
    println!(
        "shipped {} orders; parked order {} in the dead-letter log: {}",
        shipped.load(Ordering::SeqCst),
        event.extensions[PARKED_SEQ_NO],
        event.extensions[PARKED_ERROR]
    );
    Ok(())
}
