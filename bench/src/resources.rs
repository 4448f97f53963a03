//! What subscriptions cost the process: resident memory and threads per
//! idle subscription, and whether a handle's memory stays flat while many
//! consumer names each subscribe and drop.

use crate::report::Resources;
use crate::{Backend, Scale};
use anyhow::{Context, Result, ensure};
use eventlog::{EventEnvelope, EventLog, SeekPosition};
use futures::StreamExt;
use std::time::Duration;
use testkit::wait::unique;

/// How long a subscription may take to hand out the log's one event.
const FIRST_EVENT: Duration = Duration::from_secs(30);

/// (idle subscriptions held at once, consumer names churned).
fn counts(backend: Backend, scale: Scale) -> (usize, usize) {
    match (scale, backend) {
        (Scale::Smoke, _) => (20, 50),
        // Each Kafka subscribe makes a librdkafka client (until it catches
        // up), which takes tansu a while: 1,000 names churn, not 10,000.
        (Scale::Full, Backend::Kafka) => (1_000, 1_000),
        (Scale::Full, _) => (1_000, 10_000),
    }
}

/// The URL options of the log measured: NATS caps a stream at 1,000
/// consumer names unless it is created with a higher limit.
pub(crate) fn url_options(backend: Backend) -> &'static str {
    match backend {
        Backend::Nats => "?max_consumers=20000",
        _ => "",
    }
}

/// Measures `log`, a fresh log of `backend`.
pub(crate) async fn measure(
    log: &dyn EventLog,
    backend: Backend,
    scale: Scale,
) -> Result<Resources> {
    let (idle, churned) = counts(backend, scale);
    log.append(EventEnvelope::new("/bench", "bench.event", &b"x"[..]))
        .await?;
    let prefix = unique("res");
    let before = Usage::now()?;
    // Idle as in an application: a task awaits each one's next event.
    let mut waiting = Vec::with_capacity(idle);
    for i in 0..idle {
        let mut stream = first_event(log, &format!("{prefix}-idle-{i}")).await?;
        waiting.push(tokio::spawn(async move { stream.next().await.map(drop) }));
    }
    let held = Usage::settled().await?;
    for task in &waiting {
        task.abort();
    }
    let mut halfway = None;
    for i in 0..churned {
        drop(first_event(log, &format!("{prefix}-churn-{i}")).await?);
        if i + 1 == churned / 2 {
            halfway = Some(Usage::now()?);
        }
    }
    let halfway = halfway.context("churned no name")?;
    let end = Usage::now()?;
    Ok(Resources {
        idle,
        rss_per_idle_kib: (held.rss_kib as f64 - before.rss_kib as f64) / idle as f64,
        threads_per_idle: (held.threads as f64 - before.threads as f64) / idle as f64,
        churned,
        churn_growth_kib: end.rss_kib as i64 - halfway.rss_kib as i64,
    })
}

/// A live subscription of `consumer` that has handed out the first event.
async fn first_event(log: &dyn EventLog, consumer: &str) -> Result<eventlog::EventStream> {
    let mut stream = log.subscribe(consumer, SeekPosition::Beginning).await?;
    let first = tokio::time::timeout(FIRST_EVENT, stream.next()).await;
    ensure!(
        matches!(first, Ok(Some(_))),
        "{consumer}: no first event within {FIRST_EVENT:?}"
    );
    Ok(stream)
}

/// The process's resident memory and thread count.
struct Usage {
    rss_kib: u64,
    threads: u64,
}

impl Usage {
    /// The usage once it stops changing: a backend may let go of what a
    /// subscription needs only while it catches up (Kafka closes a
    /// subscription's own client once it waits at the end of the log).
    /// The same thread count for 3 s (a Kafka reader is idle after 1 s
    /// without events), 60 s at most.
    async fn settled() -> Result<Self> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = Self::now()?;
        let mut same = 0;
        while same < 6 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = Self::now()?;
            same = if now.threads == last.threads {
                same + 1
            } else {
                0
            };
            last = now;
        }
        Ok(last)
    }

    fn now() -> Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .with_context(|| format!("{name} in /proc/self/status"))
        };
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
        })
    }
}
