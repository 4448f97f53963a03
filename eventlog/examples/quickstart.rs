//! The main job: append a few events, replay them from the beginning as a
//! consumer, acknowledge part of them, stop, resume from the last
//! acknowledgement, and print the consumer's lag.
//!
//! `cargo run --example quickstart` runs it on the in-memory log.

use eventlog::{EventEnvelope, EventLog, SeekPosition};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let log = eventlog::memory::InMemoryLogs::global().open("orders")?;

    for (i, item) in ["coffee", "tea", "cake", "scone", "juice"]
        .into_iter()
        .enumerate()
    {
        let event = EventEnvelope::new("/shop", "order.placed", format!("{{\"item\":\"{item}\"}}"))
            .with_subject(format!("order-{}", i + 1))
            .with_content_type("application/json");
        let seq = log.append(event).await?;
        println!("appended order-{} as event {seq}", i + 1);
    }

    // A consumer reads from the beginning and acknowledges three events.
    let mut events = log.subscribe("billing", SeekPosition::Beginning).await?;
    for _ in 0..3 {
        let event = events.next().await.expect("the log holds five events");
        let seq = event.seq_no.expect("stored events carry their number");
        println!(
            "billing got {seq}: {}",
            String::from_utf8_lossy(&event.payload)
        );
        log.ack("billing", seq).await?;
    }
    drop(events);
    let state = log.consumer_state("billing").await?;
    println!(
        "billing stopped at {:?}, lag {}",
        state.last_acknowledged, state.lag
    );

    // Later (another process, on a broker): resume where the acks got to.
    let log = eventlog::memory::InMemoryLogs::global().open("orders")?;
    let mut events = log
        .subscribe("billing", SeekPosition::LastAcknowledged)
        .await?;
    let next = events.next().await.expect("two events are left");
    println!("billing resumed at {}", next.seq_no.unwrap_or_default());
    log.ack("billing", next.seq_no.unwrap_or_default()).await?;

    let state = log.consumer_state("billing").await?;
    println!(
        "billing lag: {} event(s) after {:?}",
        state.lag, state.last_acknowledged
    );
    Ok(())
}
