//! What the commands print: JSON lines for programs, tables for people.

use anyhow::Result;
use eventlog::{ConsumerState, EventEnvelope, SeqNo};

/// An output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object a line.
    Json,
    /// Aligned columns.
    Table,
}

/// The payload as text for a table: UTF-8 shortened, or its size.
fn payload_text(event: &EventEnvelope) -> String {
    const MAX: usize = 60;
    match std::str::from_utf8(&event.payload) {
        Ok(text) if text.chars().count() > MAX => {
            format!("{}…", text.chars().take(MAX).collect::<String>())
        }
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes>", event.payload.len()),
    }
}

pub(crate) fn print_event(event: &EventEnvelope, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(event)?),
        Format::Table => println!(
            "{:>8}  {}  {:<24}  {:<16}  {}",
            event.seq_no.unwrap_or_default(),
            event.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            event.event_type,
            event.subject.as_deref().unwrap_or("-"),
            payload_text(event)
        ),
    }
    Ok(())
}

pub(crate) fn print_info(
    last: Option<SeqNo>,
    consumers: &[(String, ConsumerState)],
    format: Format,
) -> Result<()> {
    match format {
        Format::Json => {
            let consumers: Vec<_> = consumers
                .iter()
                .map(|(name, state)| {
                    serde_json::json!({"consumer": name, "last_acknowledged": state.last_acknowledged, "lag": state.lag})
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"last_seq_no": last, "consumers": consumers})
            );
        }
        Format::Table => {
            println!(
                "last sequence number: {}",
                last.map_or("none (empty)".to_owned(), |n| n.to_string())
            );
            for (name, state) in consumers {
                let acked = state
                    .last_acknowledged
                    .map_or("none".to_owned(), |n| n.to_string());
                println!(
                    "consumer {name}: acknowledged up to {acked}, lag {}",
                    state.lag
                );
            }
        }
    }
    Ok(())
}
