//! `eventlog-bench`: every backend against its raw client, on the same broker
//! in the same run, release builds only.
//!
//! ```sh
//! scripts/bench                    # the full run: table, chart, results/
//! scripts/bench --scale smoke      # small counts (CI)
//! ```
//!
//! Each backend runs in a child process of its own (so its peak memory is
//! its own), on the broker the conformance harness provides: a running one
//! given by `EVENTLOG_TEST_<BROKER>_URL`, or a container.

mod members;
mod raw;
mod report;
mod resources;
mod takeover;
mod target;
mod workloads;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use report::BackendReport;
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "Benchmarks of every eventlog backend against its raw client")]
struct Args {
    /// The backends to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "memory,redis,nats,kafka")]
    backends: Vec<Backend>,
    /// smoke (seconds, for CI) or full (minutes, for the figures).
    #[arg(long, default_value = "full")]
    scale: Scale,
    /// Measure only what subscriptions cost (memory, threads), not
    /// throughput and latency.
    #[arg(long)]
    resources_only: bool,
    /// Where the table and the chart go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Run one backend in this process and print its figures as JSON (used
    /// by the parent run).
    #[arg(long, hide = true)]
    child: Option<Backend>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
enum Backend {
    Memory,
    Redis,
    Nats,
    Kafka,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scale {
    Smoke,
    Full,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if cfg!(debug_assertions) && matches!(args.scale, Scale::Full) {
        bail!("benchmark figures come from release builds: cargo run --release -p eventlog-bench");
    }
    if let Some(backend) = args.child {
        // The in-memory log is measured on one core, as its targets say.
        let runtime = match backend {
            Backend::Memory => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?,
        };
        let report = runtime.block_on(workloads::run(backend, args.scale, args.resources_only))?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let mut reports = Vec::new();
    for backend in &args.backends {
        eprintln!("== {backend:?}");
        let output = Command::new(std::env::current_exe()?)
            .args(["--child", &format!("{backend:?}").to_lowercase()])
            .args(["--scale", &format!("{:?}", args.scale).to_lowercase()])
            .args(args.resources_only.then_some("--resources-only"))
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !output.status.success() {
            bail!("the {backend:?} run failed");
        }
        let line = String::from_utf8(output.stdout)?;
        let report: BackendReport =
            serde_json::from_str(line.lines().last().context("no figures")?)
                .context("reading the figures")?;
        reports.push(report);
    }
    let table = report::table(&reports);
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("benchmarks.md"), &table)?;
    std::fs::write(args.out.join("benchmarks.svg"), report::chart(&reports))?;
    eprintln!(
        "wrote {}/benchmarks.md and benchmarks.svg",
        args.out.display()
    );
    Ok(())
}
