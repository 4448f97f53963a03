//! The workloads, the same for the EventLog API and for each raw client.

use crate::raw::{kafka::RawKafka, nats::RawNats, redis::RawRedis};
use crate::report::{BackendReport, Figure, Latency};
use crate::target::{Log, Target};
use crate::{Backend, Scale};
use anyhow::{Context, Result};
use eventlog::{AppendOptions, EventEnvelope, EventLog, ExpectedLast};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{KAFKA, NATS, REDIS, SharedBroker};
use testkit::wait::unique;
use tokio::time::Instant;

/// Bytes of payload per event.
const PAYLOAD: usize = 256;
/// Concurrent writers.
const WRITERS: usize = 8;
/// Events per batch.
const BATCH: usize = 100;

/// How many events each workload moves.
struct Counts {
    single: usize,
    concurrent: usize,
    batch: usize,
    replay: usize,
    ack_each: usize,
    ack_100: usize,
    latency: usize,
}

fn counts(backend: Backend, scale: Scale) -> Counts {
    match (scale, backend) {
        (Scale::Smoke, _) => Counts {
            single: 50,
            concurrent: 80,
            batch: 200,
            replay: 500,
            ack_each: 100,
            ack_100: 200,
            latency: 50,
        },
        (Scale::Full, Backend::Memory) => Counts {
            single: 1_000_000,
            concurrent: 1_000_000,
            batch: 1_000_000,
            replay: 1_000_000,
            ack_each: 200_000,
            ack_100: 1_000_000,
            latency: 10_000,
        },
        // On tansu, the Kafka-protocol test broker, the consume workloads
        // stalled past a few thousand events in this harness (tansu at 100%
        // of a core; see docs/benchmarks.md), so they stay at smoke size.
        // Against Apache Kafka, use the broker counts.
        (Scale::Full, Backend::Kafka) => Counts {
            single: 1_000,
            concurrent: 4_000,
            batch: 10_000,
            replay: 500,
            ack_each: 200,
            ack_100: 500,
            latency: 500,
        },
        (Scale::Full, _) => Counts {
            single: 2_000,
            concurrent: 10_000,
            batch: 20_000,
            replay: 100_000,
            ack_each: 5_000,
            ack_100: 20_000,
            latency: 2_000,
        },
    }
}

fn events(n: usize) -> Vec<EventEnvelope> {
    (0..n)
        .map(|i| EventEnvelope::new("/bench", "bench.event", vec![(i % 251) as u8; PAYLOAD]))
        .collect()
}

type Open = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Arc<dyn Target>>> + Send + Sync,
>;

/// Every workload on one backend, through the EventLog API and, for a
/// broker, through its raw client.
pub(crate) async fn run(
    backend: Backend,
    scale: Scale,
    resources_only: bool,
) -> Result<BackendReport> {
    let counts = counts(backend, scale);
    // The broker's container lives as long as this run (it is removed when
    // dropped).
    let mut broker: Option<SharedBroker> = None;
    let (ours, raw): (Open, Option<Open>) = match backend {
        // A log of its own per workload, dropped after it: the process-wide
        // `memory://` logs would keep every workload's events.
        Backend::Memory => (
            Arc::new(|_| {
                Box::pin(async {
                    Ok(
                        Arc::new(Log(Arc::new(eventlog::memory::InMemoryEventLog::new())))
                            as Arc<dyn Target>,
                    )
                })
            }),
            None,
        ),
        Backend::Redis => on_broker(
            broker
                .insert(SharedBroker::start(&REDIS).await?)
                .url("redis"),
            |url, log| {
                Box::pin(async move {
                    Ok(Arc::new(RawRedis::open(&url, &log).await?) as Arc<dyn Target>)
                })
            },
        ),
        Backend::Nats => on_broker(
            broker.insert(SharedBroker::start(&NATS).await?).url("nats"),
            |url, log| {
                Box::pin(async move {
                    Ok(Arc::new(RawNats::open(&url, &log).await?) as Arc<dyn Target>)
                })
            },
        ),
        Backend::Kafka => on_broker(
            broker
                .insert(SharedBroker::start(&KAFKA).await?)
                .url("kafka"),
            |url, log| {
                Box::pin(async move {
                    Ok(Arc::new(RawKafka::open(&url, &log).await?) as Arc<dyn Target>)
                })
            },
        ),
    };
    let mut figures = Vec::new();
    let mut latency = (Latency::default(), None);
    let workloads = if resources_only {
        &[][..]
    } else {
        &WORKLOADS[..]
    };
    for &(name, workload) in workloads {
        let ours_rate = workload(ours.clone(), &counts)
            .await
            .with_context(|| format!("{name} through EventLog"))?;
        let raw_rate = match &raw {
            Some(open) => Some(
                workload(open.clone(), &counts)
                    .await
                    .with_context(|| format!("{name} through the raw client"))?,
            ),
            None => None,
        };
        eprintln!("   {name}: {ours_rate:.0}/s (raw {raw_rate:?})");
        figures.push(Figure {
            workload: name.to_owned(),
            eventlog: ours_rate,
            raw: raw_rate,
        });
    }
    if backend != Backend::Kafka && !resources_only {
        let url = broker.as_ref().map(|b| b.url(scheme(backend)));
        figures.extend(append_modes(url, counts.single).await?);
    }
    if !resources_only {
        let base = match &broker {
            Some(broker) => broker.url(scheme(backend)),
            None => "memory:/".to_owned(),
        };
        figures.extend(crate::members::exclusive_acks(&base, counts.ack_each).await?);
        figures.extend(crate::members::members(&base, counts.ack_100).await?);
        latency.0 = measure_latency(ours.clone(), counts.latency).await?;
        if let Some(open) = &raw {
            latency.1 = Some(measure_latency(open.clone(), counts.latency).await?);
        }
    }
    let log = match &broker {
        Some(broker) => {
            let options = crate::resources::url_options(backend);
            let url = format!("{}/{}{options}", broker.url(scheme(backend)), unique("res"));
            eventlog::connect(&url).await?
        }
        None => own_log(None, true).await?,
    };
    let resources = crate::resources::measure(&*log, backend, scale).await?;
    let takeover = if resources_only {
        None
    } else {
        let url = match &broker {
            Some(broker) => format!("{}/{}", broker.url(scheme(backend)), unique("takeover")),
            None => format!("memory://{}", unique("takeover")),
        };
        crate::takeover::measure(&url).await?
    };
    Ok(BackendReport {
        backend: format!("{backend:?}").to_lowercase(),
        figures,
        latency,
        peak_rss_kib: peak_rss_kib(),
        resources,
        takeover,
    })
}

/// The URL scheme of `backend`'s broker.
fn scheme(backend: Backend) -> &'static str {
    match backend {
        Backend::Memory => "memory",
        Backend::Redis => "redis",
        Backend::Nats => "nats",
        Backend::Kafka => "kafka",
    }
}

/// Opens a log of the raw client on the broker at a URL.
type RawOpen = fn(String, String) -> futures::future::BoxFuture<'static, Result<Arc<dyn Target>>>;

/// The EventLog opener and the raw client's, for the broker at `url`.
fn on_broker(url: String, raw: RawOpen) -> (Open, Option<Open>) {
    let ours = url.clone();
    (
        Arc::new(move |log| {
            let url = format!("{ours}/{log}");
            Box::pin(async move { log_target(url).await })
        }),
        Some(Arc::new(move |log| raw(url.clone(), log))),
    )
}

async fn log_target(url: String) -> Result<Arc<dyn Target>> {
    Ok(Arc::new(Log(eventlog::connect(&url).await?)))
}

type Workload = for<'a> fn(Open, &'a Counts) -> futures::future::BoxFuture<'a, Result<f64>>;

/// The throughput workloads, by name; each returns events per second.
const WORKLOADS: [(&str, Workload); 6] = [
    ("append, one at a time", |open, c| {
        Box::pin(append_single(open, c.single))
    }),
    ("append, 8 concurrent writers", |open, c| {
        Box::pin(append_concurrent(open, c.concurrent))
    }),
    ("append_batch of 100", |open, c| {
        Box::pin(append_batches(open, c.batch))
    }),
    ("replay from the beginning", |open, c| {
        Box::pin(consume(open, c.replay, 0))
    }),
    ("consume, ack each", |open, c| {
        Box::pin(consume(open, c.ack_each, 1))
    }),
    ("consume, ack every 100th", |open, c| {
        Box::pin(consume(open, c.ack_100, 100))
    }),
];

/// A log of its own through EventLog: on the broker at `url` (the
/// in-memory log without one), deduplicating appends or not.
async fn own_log(url: Option<&str>, dedup: bool) -> Result<Arc<dyn EventLog>> {
    let log = unique("modes");
    Ok(match url {
        Some(url) => {
            let options = if dedup { "" } else { "?dedup_window_ms=0" };
            eventlog::connect(&format!("{url}/{log}{options}")).await?
        }
        None => {
            let window = if dedup {
                eventlog::DEFAULT_DEDUP_WINDOW
            } else {
                Duration::ZERO
            };
            Arc::new(
                eventlog::memory::InMemoryEventLog::builder()
                    .with_dedup_window(window)
                    .build(),
            )
        }
    })
}

/// The cost of idempotence and of conditions: `n` appends one at a time
/// through EventLog with deduplication off, on (the default), and on with
/// each append expecting the number the one before returned.
async fn append_modes(url: Option<String>, n: usize) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for (workload, dedup, conditional) in [
        ("append, deduplication off", false, false),
        ("append, deduplicated (default)", true, false),
        ("append, deduplicated, expecting the last", true, true),
    ] {
        let log = own_log(url.as_deref(), dedup).await?;
        let mut last = Some(log.append(events(1).remove(0)).await?);
        let started = Instant::now();
        for event in events(n) {
            let expected = if conditional {
                ExpectedLast::at(last)
            } else {
                ExpectedLast::Any
            };
            let appended = log
                .append_with(event, AppendOptions::new().expect(expected))
                .await?;
            last = Some(appended.seq_no());
        }
        let eventlog = rate(n, started);
        eprintln!("   {workload}: {eventlog:.0}/s");
        figures.push(Figure {
            workload: workload.to_owned(),
            eventlog,
            raw: None,
        });
    }
    Ok(figures)
}

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

/// A log whose client has connected and written once: connection set-up
/// (metadata, producer ids) is not what the append workloads measure.
async fn warm(open: Open, name: &str) -> Result<Arc<dyn Target>> {
    let target = open(unique(name)).await?;
    target.append(events(1).remove(0)).await?;
    Ok(target)
}

async fn append_single(open: Open, n: usize) -> Result<f64> {
    let target = warm(open, "single").await?;
    let events = events(n);
    let started = Instant::now();
    for event in events {
        target.append(event).await?;
    }
    Ok(rate(n, started))
}

async fn append_concurrent(open: Open, n: usize) -> Result<f64> {
    let target = warm(open, "concurrent").await?;
    let mut shares: Vec<Vec<EventEnvelope>> = (0..WRITERS)
        .map(|_| Vec::with_capacity(n / WRITERS + 1))
        .collect();
    for (i, event) in events(n).into_iter().enumerate() {
        shares[i % WRITERS].push(event);
    }
    let started = Instant::now();
    let writers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let target = target.clone();
            tokio::spawn(async move {
                for event in share {
                    target.append(event).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    Ok(rate(n, started))
}

async fn append_batches(open: Open, n: usize) -> Result<f64> {
    let target = warm(open, "batch").await?;
    // Owned batches made before the clock starts, as an application hands
    // its own vectors over.
    let batches: Vec<Vec<EventEnvelope>> = events(n).chunks(BATCH).map(<[_]>::to_vec).collect();
    let started = Instant::now();
    for batch in batches {
        target.append_batch(batch).await?;
    }
    Ok(rate(n, started))
}

/// Fills a log with `n` events, then reads them all as a new consumer.
async fn consume(open: Open, n: usize, ack_every: u64) -> Result<f64> {
    let target = open(unique("consume")).await?;
    for chunk in events(n).chunks(1000) {
        target.append_batch(chunk.to_vec()).await?;
    }
    let started = Instant::now();
    target.consume("bench", n as u64, ack_every).await?;
    Ok(rate(n, started))
}

/// From `append` to delivery to a subscriber that is already waiting.
async fn measure_latency(open: Open, samples: usize) -> Result<Latency> {
    let target = open(unique("latency")).await?;
    let mut arrivals = target.arrivals("bench").await?;
    let event = events(1).remove(0);
    // Until one event arrives, the reader may not be reading yet.
    loop {
        target.append(event.clone()).await?;
        if tokio::time::timeout(Duration::from_secs(2), arrivals.recv())
            .await
            .is_ok()
        {
            break;
        }
    }
    while arrivals.try_recv().is_ok() {}
    let mut histogram = Histogram::<u64>::new(3)?;
    for _ in 0..samples {
        let next = event.clone().with_id(unique("l"));
        let sent = Instant::now();
        target.append(next).await?;
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .context("no delivery within 10 s")?
            .context("the reader stopped")?;
        histogram.record(arrived.duration_since(sent).as_micros() as u64)?;
    }
    Ok(Latency {
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
    })
}

/// The process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
