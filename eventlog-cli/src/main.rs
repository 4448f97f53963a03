//! `eventlog`: append, tail, acknowledge, seek, inspect and copy logs on any
//! backend, by URL. Errors are one line on standard error and a non-zero
//! exit code.

mod copy;
mod output;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use eventlog::{
    AppendOptions, Appended, EventEnvelope, EventLog, ExpectedLast, SeekPosition, SeqNo,
};
use futures::StreamExt;
use output::Format;
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;

/// One persistent, ordered, replayable event log, on any broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The log: memory://<log>, nats://host:4222/<log>, kafka://host:9092/<log>,
    /// redis://host:6379/<log>.
    #[arg(long, env = "EVENTLOG_URL", global = true, hide_env_values = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append one event from the arguments, or JSON lines (CloudEvents JSON)
    /// from standard input with `--stdin`. Prints the sequence numbers.
    Append(AppendArgs),
    /// Print events as a consumer receives them.
    Tail {
        /// The consumer whose position is used and kept.
        #[arg(long, default_value = "eventlog-cli")]
        consumer: String,
        /// Where to start: beginning, latest, last-acked or a sequence number.
        #[arg(long, default_value = "last-acked")]
        from: SeekPosition,
        /// Acknowledge each event once printed.
        #[arg(long)]
        ack: bool,
        /// Stop after this many events (default: run until interrupted).
        #[arg(long)]
        limit: Option<usize>,
        /// json (one CloudEvents JSON object a line) or table.
        #[arg(long, default_value = "table")]
        format: Format,
    },
    /// Acknowledge every event up to SEQ for a consumer.
    Ack {
        /// The consumer.
        #[arg(long)]
        consumer: String,
        /// The last sequence number to acknowledge.
        seq: SeqNo,
    },
    /// Move a consumer: beginning, latest or a sequence number.
    Seek {
        /// The consumer.
        #[arg(long)]
        consumer: String,
        /// Where its next subscription starts.
        position: SeekPosition,
    },
    /// The last sequence number, and each consumer given with its position and lag.
    Info {
        /// A consumer to report (repeatable).
        #[arg(long)]
        consumer: Vec<String>,
        /// json or table.
        #[arg(long, default_value = "table")]
        format: Format,
    },
    /// Copy a log to another, on any backends, keeping order, ids and
    /// attributes. Resumable: the source position is a consumer's.
    Copy(copy::CopyArgs),
}

#[derive(clap::Args)]
struct AppendArgs {
    /// Read JSON lines (CloudEvents JSON) from standard input.
    #[arg(long, conflicts_with_all = ["data", "event_type"])]
    stdin: bool,
    /// CloudEvents `source`.
    #[arg(long, default_value = "/eventlog-cli")]
    source: String,
    /// CloudEvents `type`.
    #[arg(long = "type", required_unless_present = "stdin")]
    event_type: Option<String>,
    /// CloudEvents `subject`.
    #[arg(long)]
    subject: Option<String>,
    /// CloudEvents `id` (default: a new UUID v7).
    #[arg(long)]
    id: Option<String>,
    /// CloudEvents `datacontenttype`.
    #[arg(long)]
    content_type: Option<String>,
    /// An extension attribute, name=value (repeatable).
    #[arg(long = "ext", value_parser = parse_extension)]
    extensions: Vec<(String, String)>,
    /// Store only if the log's last sequence number is this one (`empty`
    /// for an empty log); otherwise fail with a conflict naming the
    /// actual last number.
    #[arg(long, value_parser = parse_expected)]
    expect_last: Option<ExpectedLast>,
    /// The payload, as text.
    data: Option<String>,
}

fn parse_expected(text: &str) -> Result<ExpectedLast, String> {
    match text {
        "empty" => Ok(ExpectedLast::Empty),
        n => match n.parse() {
            Ok(0) | Err(_) => Err(format!(
                "`{text}` is not a sequence number (1 or more) or `empty`"
            )),
            Ok(n) => Ok(ExpectedLast::SeqNo(n)),
        },
    }
}

fn parse_extension(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not name=value"))
}

/// How many JSON lines go into one `append_batch`.
const STDIN_BATCH: usize = 500;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open(url: Option<&str>) -> Result<Arc<dyn EventLog>> {
    let url = url.context("no log given: pass --url or set EVENTLOG_URL")?;
    eventlog::connect(url)
        .await
        .with_context(|| format!("opening {}", eventlog::redact_url(url)))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Append(args) => append(&*open(cli.url.as_deref()).await?, args).await,
        Command::Tail {
            consumer,
            from,
            ack,
            limit,
            format,
        } => {
            let log = open(cli.url.as_deref()).await?;
            let mut events = log.subscribe(&consumer, from).await?;
            let mut printed = 0;
            while limit.is_none_or(|limit| printed < limit) {
                let event = tokio::select! {
                    event = events.next() => event.context("the subscription ended; see the log output")?,
                    _ = tokio::signal::ctrl_c() => break,
                };
                output::print_event(&event, format)?;
                if ack && let Some(seq) = event.seq_no {
                    log.ack(&consumer, seq).await?;
                }
                printed += 1;
            }
            Ok(())
        }
        Command::Ack { consumer, seq } => open(cli.url.as_deref()).await?.ack(&consumer, seq).await,
        Command::Seek { consumer, position } => {
            open(cli.url.as_deref())
                .await?
                .seek(&consumer, position)
                .await
        }
        Command::Info { consumer, format } => {
            let log = open(cli.url.as_deref()).await?;
            let last = log.try_last_seq_no().await?;
            let mut states = Vec::new();
            for name in consumer {
                let state = log.consumer_state(&name).await?;
                states.push((name, state));
            }
            output::print_info(last, &states, format)
        }
        Command::Copy(args) => copy::run(args).await,
    }
}

async fn append(log: &dyn EventLog, args: AppendArgs) -> Result<()> {
    if args.stdin {
        let mut batch = Vec::with_capacity(STDIN_BATCH);
        let (mut count, mut first, mut last) = (0, None, None);
        let stdin = std::io::stdin().lock();
        for (n, line) in stdin.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let event: EventEnvelope = serde_json::from_str(&line)
                .with_context(|| format!("line {}: not a CloudEvents JSON event", n + 1))?;
            batch.push(event);
            if batch.len() == STDIN_BATCH {
                let seq_nos = log.append_batch(std::mem::take(&mut batch)).await?;
                count += seq_nos.len();
                first = first.or(seq_nos.first().copied());
                last = seq_nos.last().copied();
            }
        }
        if !batch.is_empty() {
            let seq_nos = log.append_batch(batch).await?;
            count += seq_nos.len();
            first = first.or(seq_nos.first().copied());
            last = seq_nos.last().copied();
        }
        match (first, last) {
            (Some(first), Some(last)) => println!("appended {count} events: {first}..={last}"),
            _ => bail!("standard input held no event"),
        }
        return Ok(());
    }
    let event_type = args.event_type.context("--type is required")?;
    let mut event = EventEnvelope::new(
        args.source,
        event_type,
        args.data.unwrap_or_default().into_bytes(),
    );
    if let Some(id) = args.id {
        event = event.with_id(id);
    }
    if let Some(subject) = args.subject {
        event = event.with_subject(subject);
    }
    if let Some(content_type) = args.content_type {
        event = event.with_content_type(content_type);
    }
    for (name, value) in args.extensions {
        event = event.with_extension(name, value);
    }
    let options = AppendOptions::new().expect(args.expect_last.unwrap_or_default());
    match log.append_with(event, options).await? {
        Appended::Stored(n) => println!("{n}"),
        Appended::Duplicate(n) => {
            println!("{n}");
            eprintln!("already stored as {n} (same source and id): nothing appended");
        }
        other => println!("{}", other.seq_no()),
    }
    Ok(())
}
