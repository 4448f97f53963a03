//! Unique names and waiting with a deadline instead of sleeping.

use anyhow::{Result, anyhow, bail};
use eventlog_core::{EventEnvelope, EventStream};
use futures::StreamExt;
use rand::Rng;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// `prefix` plus a random suffix: a log or consumer name no other test uses.
pub fn unique(prefix: &str) -> String {
    let suffix: u64 = rand::rng().random();
    format!("{prefix}-{suffix:016x}")
}

/// The next event of `stream`, or an error after `within`.
pub async fn next_within(stream: &mut EventStream, within: Duration) -> Result<EventEnvelope> {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => bail!("the subscription ended; it must not end on its own"),
        Err(_) => bail!("no event within {within:?}"),
    }
}

/// Polls `probe` until `done` holds of its value, or fails after `within`
/// with the last value seen.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> Result<T>
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        let seen = probe().await;
        match &seen {
            Ok(value) if done(value) => return seen,
            _ if Instant::now() >= deadline => {
                return Err(anyhow!(
                    "{what}: not reached within {within:?}; last seen: {seen:?}"
                ));
            }
            _ => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
