//! The wire format: the CloudEvents Kafka protocol binding, binary content
//! mode. Each attribute is a header `ce_<name>` holding its value as UTF-8;
//! `datacontenttype` is the `content-type` header; the payload is the
//! record value. The record key is empty.

use chrono::{DateTime, SecondsFormat, Utc};
use eventlog_core::{EventEnvelope, EventLogError, SPEC_VERSION, SeqNo};
use rdkafka::message::{Header, Headers, OwnedHeaders};

const PREFIX: &str = "ce_";
const CONTENT_TYPE: &str = "content-type";

/// The headers of the record for `event`.
pub(crate) fn encode(event: &EventEnvelope) -> OwnedHeaders {
    let time = event.time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut attributes: Vec<(String, &str)> = vec![
        (format!("{PREFIX}specversion"), SPEC_VERSION),
        (format!("{PREFIX}id"), &event.id),
        (format!("{PREFIX}source"), &event.source),
        (format!("{PREFIX}type"), &event.event_type),
        (format!("{PREFIX}time"), &time),
    ];
    if let Some(subject) = &event.subject {
        attributes.push((format!("{PREFIX}subject"), subject));
    }
    for (name, value) in &event.extensions {
        attributes.push((format!("{PREFIX}{name}"), value));
    }
    if let Some(content_type) = &event.content_type {
        attributes.push((CONTENT_TYPE.to_owned(), content_type));
    }
    attributes.iter().fold(
        OwnedHeaders::new_with_capacity(attributes.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        },
    )
}

/// The event in the record at `seq_no - 1`; `timestamp` (the record's)
/// stands in for a missing `time`, which CloudEvents makes optional.
pub(crate) fn decode(
    seq_no: SeqNo,
    headers: Option<&impl Headers>,
    payload: &[u8],
    timestamp: DateTime<Utc>,
) -> Result<EventEnvelope, EventLogError> {
    let bad = |reason: String| EventLogError::Decode { seq_no, reason };
    let mut event = EventEnvelope::new("", "", payload.to_vec())
        .with_time(timestamp)
        .with_id("");
    let mut spec = None;
    for header in headers.into_iter().flat_map(|h| h.iter()) {
        let name = header.key.to_ascii_lowercase();
        let value = std::str::from_utf8(header.value.unwrap_or_default())
            .map_err(|_| bad(format!("header `{name}` is not UTF-8")))?
            .to_owned();
        if name == CONTENT_TYPE {
            event.content_type = Some(value);
            continue;
        }
        let Some(attribute) = name.strip_prefix(PREFIX) else {
            continue;
        };
        match attribute {
            "specversion" => spec = Some(value),
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.event_type = value,
            "subject" => event.subject = Some(value),
            "time" => {
                event.time = DateTime::parse_from_rfc3339(&value)
                    .map_err(|e| bad(format!("time `{value}`: {e}")))?
                    .with_timezone(&Utc)
            }
            _ => {
                event.extensions.insert(attribute.to_owned(), value);
            }
        }
    }
    if spec.as_deref() != Some(SPEC_VERSION) {
        return Err(bad(format!(
            "header ce_specversion is {spec:?}, not {SPEC_VERSION}"
        )));
    }
    for (attribute, value) in [
        ("id", &event.id),
        ("source", &event.source),
        ("type", &event.event_type),
    ] {
        if value.is_empty() {
            return Err(bad(format!("no ce_{attribute} header")));
        }
    }
    Ok(event.with_seq_no(seq_no))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = EventEnvelope::new("/s ü", "t", &b"\0x"[..])
            .with_subject("a b")
            .with_content_type("text/plain")
            .with_extension("ext1", "ßv");
        let headers = encode(&e);
        assert_eq!(
            decode(3, Some(&headers), &e.payload, Utc::now()).unwrap(),
            e.with_seq_no(3)
        );
    }

    #[test]
    fn missing_time_is_the_record_time_and_garbage_is_typed() {
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", "1"),
            ("ce_source", "s"),
            ("ce_type", "t"),
        ]
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(*value),
            })
        });
        let at = Utc::now();
        assert_eq!(decode(1, Some(&headers), b"", at).unwrap().time, at);
        let broken = headers.insert(Header {
            key: "ce_time",
            value: Some(&[0xffu8][..]),
        });
        assert!(matches!(
            decode(1, Some(&broken), b"", at),
            Err(EventLogError::Decode { .. })
        ));
        assert!(matches!(
            decode(1, None::<&OwnedHeaders>, b"x", at),
            Err(EventLogError::Decode { .. })
        ));
    }
}
