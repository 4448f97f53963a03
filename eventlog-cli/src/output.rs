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
            format!("{}…", shown(&text.chars().take(MAX).collect::<String>()))
        }
        Ok(text) => shown(text),
        Err(_) => format!("<{} bytes>", event.payload.len()),
    }
}

/// `text` as it may reach an operator's terminal: control characters
/// (escape sequences that would recolour, move the cursor or retitle the
/// window, and line breaks that would fake rows) as Rust escapes. Whoever
/// appended the event chose the text.
fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

pub(crate) fn print_event(event: &EventEnvelope, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(event)?),
        Format::Table => println!(
            "{:>8}  {}  {:<24}  {:<16}  {}",
            event.seq_no.unwrap_or_default(),
            event.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            shown(&event.event_type),
            shown(event.subject.as_deref().unwrap_or("-")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let event = EventEnvelope::new("/s", "t\u{1b}]0;owned\u{7}", "\u{1b}[2Jwiped\r\nfake row")
            .with_subject("s\u{9b}31m");
        let row = [
            shown(&event.event_type),
            shown(event.subject.as_deref().unwrap_or_default()),
            payload_text(&event),
        ]
        .concat();
        assert!(!row.chars().any(char::is_control), "{row:?}");
        assert_eq!(payload_text(&event), "\\u{1b}[2Jwiped\\r\\nfake row");
    }
}
