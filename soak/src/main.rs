//! `eventlog-soak`: each broker backend under load while its broker is
//! restarted, paused and killed, then checked for lost, duplicated, reordered and
//! wrongly redelivered events (docs/soak.md).
//!
//! ```sh
//! scripts/soak                     # full: 100,000 events per backend
//! scripts/soak --scale smoke       # small counts (CI)
//! ```
//!
//! Each backend gets a broker container of its own, started the way the
//! conformance harness starts them (`EVENTLOG_TEST_<BROKER>_IMAGE`,
//! `EVENTLOG_TEST_DOCKER_NETWORK`), since the soak stops, starts, pauses and
//! kills it.

mod audit;
mod consumer;
mod faults;
mod report;
mod run;
mod writers;

use anyhow::{Result, ensure};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;
use testkit::containers::{BrokerSpec, KAFKA, NATS, NATS_DEFAULTS, REDIS, REDIS_DEFAULTS};

#[derive(Parser)]
#[command(about = "Soak every broker backend under broker restarts, pauses and kills")]
struct Args {
    /// The backends to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "redis,nats,kafka")]
    backends: Vec<Backend>,
    /// smoke: 2,000 events, 2 writers, 2 restarts, 1 pause (CI); full:
    /// 100,000 events, 4 writers, 5 restarts, 2 pauses (Kafka: 5,000
    /// events, 2 writers).
    #[arg(long, default_value = "full")]
    scale: Scale,
    /// Events to append, at least: writers go on until the faults are over
    /// [default: the scale's].
    #[arg(long)]
    events: Option<u64>,
    /// Concurrent writers, each with a connection of its own [default: the
    /// scale's].
    #[arg(long)]
    writers: Option<usize>,
    /// Broker restarts (stop, start) during the run.
    #[arg(long)]
    restarts: Option<usize>,
    /// Broker pauses (`docker pause`, longer than the operation timeout).
    #[arg(long)]
    pauses: Option<usize>,
    /// Broker kills (SIGKILL, then start) during the run [default: none: a
    /// killed NATS hands out acknowledged events again, docs/reliability.md].
    #[arg(long)]
    kills: Option<usize>,
    /// The brokers' persistence settings: `durable` (what the suites run:
    /// Redis `appendfsync always`, NATS `sync_interval: always`) or the
    /// brokers' `defaults`; tansu has one.
    #[arg(long, default_value = "durable")]
    durability: Durability,
    /// The operation timeout of every handle (`?timeout_ms=`), in
    /// milliseconds [default: 2000; Kafka: 10000 smoke, 30000 full].
    #[arg(long)]
    timeout_ms: Option<u64>,
}

/// A broker backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Redis,
    Nats,
    Kafka,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Nats => "nats",
            Self::Kafka => "kafka",
        }
    }

    /// How the conformance harness starts this backend's broker, with
    /// `durability`.
    fn broker(self, durability: Durability) -> &'static BrokerSpec {
        match (self, durability) {
            (Self::Redis, Durability::Durable) => &REDIS,
            (Self::Redis, Durability::Defaults) => &REDIS_DEFAULTS,
            (Self::Nats, Durability::Durable) => &NATS,
            (Self::Nats, Durability::Defaults) => &NATS_DEFAULTS,
            (Self::Kafka, _) => &KAFKA,
        }
    }
}

/// The brokers' persistence settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Durability {
    /// Each acknowledged write on disk first (`docs/reliability.md`).
    Durable,
    /// The brokers' own defaults.
    Defaults,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scale {
    Smoke,
    Full,
}

/// What one backend's run does.
#[derive(Clone, Copy, Debug)]
struct Plan {
    events: u64,
    writers: usize,
    restarts: usize,
    pauses: usize,
    kills: usize,
    timeout: Duration,
    durability: Durability,
}

impl Plan {
    /// The plan for `backend` at the scale asked for, with the counts given
    /// on the command line in place of the scale's.
    fn new(args: &Args, backend: Backend) -> Result<Self> {
        let base = match (args.scale, backend) {
            // Tansu, the Kafka-protocol test broker, answers a fetch from the
            // start of a log with the whole log, in time that grows faster
            // than the log (2,000 events: about 2 s; 10,000: 43 s), and its
            // appends slow down with it (docs/soak.md): a longer timeout,
            // and in full scale a log that tansu can still read back.
            (Scale::Smoke, Backend::Kafka) => Self {
                events: 2_000,
                writers: 2,
                restarts: 2,
                pauses: 1,
                kills: 0,
                timeout: Duration::from_secs(10),
                durability: args.durability,
            },
            (Scale::Full, Backend::Kafka) => Self {
                events: 5_000,
                writers: 2,
                restarts: 5,
                pauses: 2,
                kills: 0,
                timeout: Duration::from_secs(30),
                durability: args.durability,
            },
            (Scale::Smoke, _) => Self {
                events: 2_000,
                writers: 2,
                restarts: 2,
                pauses: 1,
                kills: 0,
                timeout: Duration::from_secs(2),
                durability: args.durability,
            },
            (Scale::Full, _) => Self {
                events: 100_000,
                writers: 4,
                restarts: 5,
                pauses: 2,
                kills: 0,
                timeout: Duration::from_secs(2),
                durability: args.durability,
            },
        };
        let plan = Self {
            events: args.events.unwrap_or(base.events),
            writers: args.writers.unwrap_or(base.writers),
            restarts: args.restarts.unwrap_or(base.restarts),
            pauses: args.pauses.unwrap_or(base.pauses),
            kills: args.kills.unwrap_or(base.kills),
            timeout: args.timeout_ms.map_or(base.timeout, Duration::from_millis),
            durability: args.durability,
        };
        ensure!(plan.events > 0, "--events must be at least 1");
        ensure!(plan.writers > 0, "--writers must be at least 1");
        ensure!(!plan.timeout.is_zero(), "--timeout-ms must be at least 1");
        Ok(plan)
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for &backend in &args.backends {
        let result = run::soak(backend, Plan::new(&args, backend)?).await;
        if let Err(err) = &result {
            eprintln!("== {}: could not run: {err:#}", backend.name());
        }
        rows.push((backend, result));
    }
    println!("{}", report::table(&rows));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|(_, result)| result.as_ref().map_or(true, run::Outcome::failed))
        .map(|(backend, _)| backend.name())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("soak failed on: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
