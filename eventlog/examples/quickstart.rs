//! The main job: append a few events, replay them as a consumer,
//! acknowledge part of them, stop, resume from the last acknowledgement in a
//! new connection, and print the consumer's lag.
//!
//! `cargo run --example quickstart` runs it on the in-memory log; with
//! `EVENTLOG_URL` (`redis://127.0.0.1:6379/orders`, `nats://…`, `kafka://…`)
//! the same code runs on a broker.

use eventlog::{EventEnvelope, EventLogExt, SeekPosition};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EVENTLOG_URL").unwrap_or_else(|_| "memory://orders".to_owned());
    let log = eventlog::connect(&url).await?;
    println!("log: {}", eventlog::redact_url(&url));

    let mut first = None;
    for (i, item) in ["coffee", "tea", "cake", "scone", "juice"]
        .into_iter()
        .enumerate()
    {
        let event = EventEnvelope::new("/shop", "order.placed", format!("{{\"item\":\"{item}\"}}"))
            .with_subject(format!("order-{}", i + 1))
            .with_content_type("application/json");
        let seq = log.append(event).await?;
        first.get_or_insert(seq);
        println!("appended order-{} as event {seq}", i + 1);
    }
    let first = first.expect("five appends");

    // A consumer reads this run's events and acknowledges three of them.
    let mut events = log
        .subscribe("billing", SeekPosition::Sequence(first))
        .await?;
    for _ in 0..3 {
        let event = events.next().await.expect("the log holds five new events");
        println!(
            "billing got {}: {}",
            event.seq(),
            String::from_utf8_lossy(&event.payload)
        );
        log.ack_event("billing", &event).await?;
    }
    drop(events);
    let state = log.consumer_state("billing").await?;
    println!(
        "billing stopped after {:?}, lag {}",
        state.last_acknowledged, state.lag
    );

    // Later, in another connection (another process, on a broker): resume
    // where the acknowledgements got to.
    let log = eventlog::connect(&url).await?;
    let mut events = log
        .subscribe("billing", SeekPosition::LastAcknowledged)
        .await?;
    let next = events.next().await.expect("two events are left");
    println!("billing resumed at {}", next.seq());
    log.ack_event("billing", &next).await?;

    let state = log.consumer_state("billing").await?;
    println!(
        "billing lag: {} event(s) after {:?}",
        state.lag, state.last_acknowledged
    );
    Ok(())
}
