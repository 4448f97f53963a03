//! The wire format: the CloudEvents Kafka protocol binding, binary content
//! mode. Each attribute is a header `ce_<name>` holding its value as UTF-8;
//! `datacontenttype` is the `content-type` header; the payload is the
//! record value. The record key is empty.

use chrono::{DateTime, Utc};
use eventlog_core::{AttributeReader, EventEnvelope, EventLogError, SeqNo, attributes};
use rdkafka::message::{Header, Headers, OwnedHeaders};

const PREFIX: &str = "ce_";
const CONTENT_TYPE: &str = "content-type";

/// The headers of the record for `event`.
pub(crate) fn encode(event: &EventEnvelope) -> OwnedHeaders {
    let pairs = attributes(event);
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |headers, (name, value)| {
            let key = match *name {
                "datacontenttype" => CONTENT_TYPE.to_owned(),
                name => format!("{PREFIX}{name}"),
            };
            headers.insert(Header {
                key: &key,
                value: Some(value.as_bytes()),
            })
        },
    )
}

/// The event in the record at `seq_no - 1`; `timestamp` (the record's)
/// stands in for a missing `time`.
pub(crate) fn decode(
    seq_no: SeqNo,
    headers: Option<&impl Headers>,
    payload: &[u8],
    timestamp: DateTime<Utc>,
) -> Result<EventEnvelope, EventLogError> {
    let mut reader = AttributeReader::new(seq_no, payload.to_vec(), Some(timestamp));
    for header in headers.into_iter().flat_map(|h| h.iter()) {
        let name = header.key.to_ascii_lowercase();
        let value = header.value.unwrap_or_default().to_vec();
        if name == CONTENT_TYPE {
            reader.set_bytes("datacontenttype", value)?;
        } else if let Some(attribute) = name.strip_prefix(PREFIX) {
            reader.set_bytes(attribute, value)?;
        }
    }
    reader.finish()
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
