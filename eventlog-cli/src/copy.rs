//! `copy`: one log into another, any backends, resumable.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub(crate) struct CopyArgs {
    /// The log to read.
    #[arg(long)]
    from: String,
    /// The log to append to.
    #[arg(long)]
    to: String,
    /// The consumer on the source that remembers how far the copy got.
    #[arg(long, default_value = "eventlog-copy")]
    consumer: String,
    /// Events per `append_batch` on the target (1 to 10,000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    batch: u16,
}

pub(crate) async fn run(args: CopyArgs) -> Result<()> {
    // One set of variables for both sides would send the source's
    // password to the target: each side reads its own.
    if let Some(name) = eventlog::CREDENTIAL_VARIABLES
        .iter()
        .find(|name| std::env::var_os(format!("EVENTLOG_{name}")).is_some())
    {
        bail!(
            "EVENTLOG_{name} is set, and copy would send it to both brokers: \
             set EVENTLOG_FROM_{name} for --from and EVENTLOG_TO_{name} for --to"
        );
    }
    let open = |url: String, prefix: &'static str| async move {
        eventlog::connect_with_env(&url, prefix)
            .await
            .with_context(|| format!("opening {}", eventlog::redact_url(&url)))
    };
    let source = open(args.from, "EVENTLOG_FROM_").await?;
    let target = open(args.to, "EVENTLOG_TO_").await?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    let report = eventlog::copy(
        &*source,
        &*target,
        &args.consumer,
        usize::from(args.batch),
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await?;
    bar.finish_and_clear();
    match report.range {
        Some((first, last)) => println!("copied {} events: {first}..={last}", report.copied),
        None => println!(
            "copied 0 events: nothing after the position of `{}`",
            args.consumer
        ),
    }
    Ok(())
}
