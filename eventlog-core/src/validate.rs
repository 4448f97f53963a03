//! The checks every backend runs before it sends anything to its broker.
//!
//! Keeping them here means every backend refuses exactly the same inputs with
//! exactly the same [`EventLogError`] variants.

use crate::{EventEnvelope, EventLogError, SeekPosition, SeqNo};
use chrono::Datelike;

/// The longest consumer name.
pub const MAX_CONSUMER_NAME: usize = 64;
/// The longest log name.
pub const MAX_LOG_NAME: usize = 128;
/// The longest extension attribute name (CloudEvents 1.0).
pub const MAX_EXTENSION_NAME: usize = 20;
/// The most bytes all attributes of an event take together (names and
/// values of `id`, `source`, `type`, `subject`, `datacontenttype` and the
/// extensions): the same on every backend, so an event one accepts fits
/// every other one's headers.
pub const MAX_ATTRIBUTES: usize = 8 * 1024;

/// Attribute names CloudEvents reserves; an extension may not take them.
const RESERVED_ATTRIBUTES: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
    "seqno",
];

/// Why `name` is not a valid name of at most `max` characters of
/// `A-Z a-z 0-9 _ -`, or `None` when it is.
fn name_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    let len = name.chars().count();
    if len > max {
        return Some(format!("has {len} characters, more than {max}"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|c| format!("contains `{}`", c.escape_debug()))
}

/// A consumer name: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn consumer_name(name: &str) -> Result<(), EventLogError> {
    match name_problem(name, MAX_CONSUMER_NAME) {
        None => Ok(()),
        Some(reason) => Err(EventLogError::InvalidConsumerName {
            name: shorten(name),
            reason,
        }),
    }
}

/// A log name: 1 to 128 characters of `A-Z a-z 0-9 _ -`.
pub fn log_name(name: &str) -> Result<(), EventLogError> {
    match name_problem(name, MAX_LOG_NAME) {
        None => Ok(()),
        Some(reason) => Err(EventLogError::InvalidLogName {
            name: shorten(name),
            reason,
        }),
    }
}

/// The first control character of `value`. Printable ASCII, the common
/// case, is checked byte by byte without decoding characters.
fn control_char(value: &str) -> Option<char> {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    value.chars().find(|c| c.is_control())
}

/// Keeps error messages readable when a caller passes a huge name.
fn shorten(name: &str) -> String {
    const KEEP: usize = 80;
    if name.chars().count() <= KEEP {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(KEEP).collect::<String>())
    }
}

/// A position a subscription or seek may use: anything but `Sequence(0)`.
pub fn position(position: SeekPosition) -> Result<(), EventLogError> {
    match position {
        SeekPosition::Sequence(0) => Err(EventLogError::InvalidPosition {
            position: "0".into(),
            reason: "sequence numbers start at 1".into(),
        }),
        SeekPosition::Beginning
        | SeekPosition::Latest
        | SeekPosition::LastAcknowledged
        | SeekPosition::Sequence(_) => Ok(()),
    }
}

/// A condition of an append: `ExpectedLast::SeqNo(0)` names no event (an
/// empty log is `ExpectedLast::Empty`).
pub fn expected(expected: crate::ExpectedLast) -> Result<(), EventLogError> {
    match expected {
        crate::ExpectedLast::SeqNo(0) => Err(EventLogError::InvalidPosition {
            position: "expected last 0".into(),
            reason: "sequence numbers start at 1; an empty log is `ExpectedLast::Empty`".into(),
        }),
        crate::ExpectedLast::Any | crate::ExpectedLast::Empty | crate::ExpectedLast::SeqNo(_) => {
            Ok(())
        }
    }
}

/// An acknowledgement of `seq_no` on a log whose last event is `last`: from 1
/// to `last`.
pub fn ack(consumer: &str, seq_no: SeqNo, last: Option<SeqNo>) -> Result<(), EventLogError> {
    if seq_no == 0 || seq_no > last.unwrap_or(0) {
        return Err(EventLogError::AckOutOfRange {
            consumer: consumer.to_owned(),
            seq_no,
            last,
        });
    }
    Ok(())
}

/// An envelope a log accepts with a payload limit of `max_payload` bytes:
/// non-empty `id`, `source` and `type`; no control characters in any string
/// attribute (CloudEvents forbids them, and they would break header-based wire
/// formats); a `datacontenttype` without leading or trailing whitespace; a
/// `time` in the years 0000 to 9999 (what RFC 3339 writes); extension names
/// of lowercase a-z and 0-9, at most 20 long, none of them a reserved
/// attribute name.
pub fn envelope(envelope: &EventEnvelope, max_payload: usize) -> Result<(), EventLogError> {
    let invalid = |reason: String| Err(EventLogError::InvalidEnvelope { reason });
    for (attribute, value) in [
        ("id", &envelope.id),
        ("source", &envelope.source),
        ("type", &envelope.event_type),
    ] {
        if value.is_empty() {
            return invalid(format!("`{attribute}` is empty"));
        }
    }
    let strings = [
        ("id", Some(&envelope.id)),
        ("source", Some(&envelope.source)),
        ("type", Some(&envelope.event_type)),
        ("subject", envelope.subject.as_ref()),
        ("datacontenttype", envelope.content_type.as_ref()),
    ];
    let extensions = envelope
        .extensions
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v)));
    for (attribute, value) in strings.into_iter().chain(extensions) {
        if let Some(c) = value.and_then(|v| control_char(v)) {
            return invalid(format!(
                "attribute `{}` contains the control character {:?}",
                shorten(attribute),
                c
            ));
        }
    }
    if let Some(content_type) = &envelope.content_type
        && content_type.trim() != content_type
    {
        // No media type has it, and header-based wire formats trim it.
        return invalid(format!(
            "`datacontenttype` {content_type:?} starts or ends with whitespace"
        ));
    }
    if !(0..=9999).contains(&envelope.time.year()) {
        return invalid(format!(
            "`time` {} is outside the years 0000 to 9999 that RFC 3339 can write",
            envelope.time
        ));
    }
    for name in envelope.extensions.keys() {
        if name.is_empty() {
            return invalid("an extension name is empty".into());
        }
        if name.len() > MAX_EXTENSION_NAME {
            return invalid(format!(
                "extension name `{}` is longer than {MAX_EXTENSION_NAME} characters",
                shorten(name)
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return invalid(format!(
                "extension name `{}` contains `{}`; allowed: a-z 0-9",
                shorten(name),
                c.escape_debug()
            ));
        }
        if RESERVED_ATTRIBUTES.contains(&name.as_str()) {
            return invalid(format!(
                "extension name `{name}` is a reserved attribute name"
            ));
        }
    }
    let attributes: usize = strings
        .iter()
        .filter_map(|(name, value)| Some(name.len() + (*value)?.len()))
        .chain(envelope.extensions.iter().map(|(k, v)| k.len() + v.len()))
        .sum();
    if attributes > MAX_ATTRIBUTES {
        return invalid(format!(
            "the attributes take {attributes} bytes, more than the {MAX_ATTRIBUTES} allowed"
        ));
    }
    if envelope.payload.len() > max_payload {
        return Err(EventLogError::PayloadTooLarge {
            size: envelope.payload.len(),
            limit: max_payload,
        });
    }
    Ok(())
}

/// Every envelope of a batch, so that one bad event refuses the whole batch
/// before anything is stored.
pub fn batch(envelopes: &[EventEnvelope], max_payload: usize) -> Result<(), EventLogError> {
    for (index, e) in envelopes.iter().enumerate() {
        envelope(e, max_payload).map_err(|err| match err {
            EventLogError::InvalidEnvelope { reason } => EventLogError::InvalidEnvelope {
                reason: format!("event {index} of the batch: {reason}"),
            },
            other => other,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_event() -> EventEnvelope {
        EventEnvelope::new("/s", "t", &b"x"[..])
    }

    #[test]
    fn consumer_names() {
        for good in ["a", "A-z_0", &"x".repeat(64)] {
            consumer_name(good).unwrap();
        }
        for bad in ["", "a.b", "a b", "*", ">", "a/b", "é", &"x".repeat(65)] {
            let err = consumer_name(bad).unwrap_err();
            assert!(
                matches!(err, EventLogError::InvalidConsumerName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            consumer_name("a.b").unwrap_err().to_string(),
            "consumer name `a.b` contains `.`; allowed: 1 to 64 of A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn log_names() {
        log_name(&"x".repeat(128)).unwrap();
        assert!(matches!(
            log_name(&"x".repeat(129)),
            Err(EventLogError::InvalidLogName { .. })
        ));
        assert!(matches!(
            log_name("a.b"),
            Err(EventLogError::InvalidLogName { .. })
        ));
    }

    #[test]
    fn positions() {
        position(SeekPosition::Sequence(1)).unwrap();
        position(SeekPosition::Beginning).unwrap();
        assert!(matches!(
            position(SeekPosition::Sequence(0)),
            Err(EventLogError::InvalidPosition { .. })
        ));
    }

    #[test]
    fn acks() {
        ack("c", 3, Some(3)).unwrap();
        for (seq, last) in [(0, Some(3)), (4, Some(3)), (1, None)] {
            assert!(matches!(
                ack("c", seq, last),
                Err(EventLogError::AckOutOfRange { .. })
            ));
        }
    }

    #[test]
    fn envelopes() {
        envelope(&ok_event(), 1).unwrap();
        envelope(
            &ok_event().with_extension("abc123", "v").with_subject("ünï"),
            1,
        )
        .unwrap();
        let cases = [
            ok_event().with_id(""),
            EventEnvelope::new("", "t", &b""[..]),
            EventEnvelope::new("s", "", &b""[..]),
            ok_event().with_extension("Upper", "v"),
            ok_event().with_extension("with-dash", "v"),
            ok_event().with_extension("", "v"),
            ok_event().with_extension("a".repeat(21), "v"),
            ok_event().with_extension("source", "v"),
            ok_event().with_subject("line\nbreak"),
            ok_event().with_extension("ext", "nul\0"),
            ok_event().with_subject("c1 control \u{85}"),
            ok_event().with_content_type(" text/plain"),
            ok_event().with_content_type("text/plain "),
            ok_event().with_time(chrono::DateTime::<chrono::Utc>::MAX_UTC),
            ok_event().with_time(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            ok_event().with_subject("s".repeat(MAX_ATTRIBUTES)),
        ];
        for e in cases {
            let err = envelope(&e, 1).unwrap_err();
            assert!(
                matches!(err, EventLogError::InvalidEnvelope { .. }),
                "{e:?}: {err}"
            );
        }
        assert!(matches!(
            envelope(&ok_event(), 0),
            Err(EventLogError::PayloadTooLarge { size: 1, limit: 0 })
        ));
    }

    #[test]
    fn batch_names_the_bad_event() {
        let err = batch(&[ok_event(), ok_event().with_id("")], 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid event: event 1 of the batch: `id` is empty"
        );
    }
}
