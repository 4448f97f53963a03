//! The wire format: the CloudEvents NATS protocol binding, binary content
//! mode. Each attribute is a header `ce-<name>` whose value is
//! percent-encoded as the binding prescribes (space, `"`, `%`, control
//! characters and all non-ASCII as UTF-8 `%XX`); `datacontenttype` is the
//! `content-type` header; the payload is the message body. The envelope id is
//! also the `Nats-Msg-Id`, so JetStream drops a re-sent append within the
//! stream's duplicate window.

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use eventlog_core::{AttributeReader, EventEnvelope, EventLogError, SeqNo, attributes};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What the binding percent-encodes besides non-ASCII.
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');
const PREFIX: &str = "ce-";
const CONTENT_TYPE: &str = "content-type";

/// The headers of the message for `event`.
pub(crate) fn encode(event: &EventEnvelope) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in attributes(event) {
        if name == "datacontenttype" {
            headers.insert(CONTENT_TYPE, value.as_ref());
        } else {
            headers.insert(
                format!("{PREFIX}{name}"),
                utf8_percent_encode(&value, ENCODED).to_string(),
            );
        }
    }
    headers
}

/// The event in message `seq_no`; `published` (the server's receive time)
/// stands in for a missing `time`.
pub(crate) fn decode(
    seq_no: SeqNo,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    published: DateTime<Utc>,
) -> Result<EventEnvelope, EventLogError> {
    let mut reader = AttributeReader::new(seq_no, payload.to_vec(), Some(published));
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name = AsRef::<str>::as_ref(name).to_ascii_lowercase();
        let Some(value) = values.last().map(|v| v.as_str()) else {
            continue;
        };
        if name == CONTENT_TYPE {
            reader.set("datacontenttype", value.to_owned())?;
        } else if let Some(attribute) = name.strip_prefix(PREFIX) {
            let decoded: Vec<u8> = percent_decode_str(value).collect();
            reader.set_bytes(attribute, decoded)?;
        }
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_percent_encodes() {
        let e = EventEnvelope::new("/s ü", "t\"%", &b"\0x"[..])
            .with_subject("a b")
            .with_content_type("text/plain")
            .with_extension("ext1", "ßv");
        let headers = encode(&e);
        assert_eq!(headers.get("ce-source").unwrap().as_str(), "/s%20%C3%BC");
        assert_eq!(headers.get("ce-type").unwrap().as_str(), "t%22%25");
        assert_eq!(headers.get("content-type").unwrap().as_str(), "text/plain");
        let back = decode(4, Some(&headers), &e.payload, Utc::now()).unwrap();
        assert_eq!(back, e.with_seq_no(4));
    }

    #[test]
    fn missing_time_is_the_publish_time_and_garbage_is_typed() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ] {
            headers.insert(k, v);
        }
        let published = Utc::now();
        assert_eq!(
            decode(1, Some(&headers), b"", published).unwrap().time,
            published
        );
        headers.insert("ce-time", "yesterday");
        assert!(matches!(
            decode(1, Some(&headers), b"", published),
            Err(EventLogError::Decode { .. })
        ));
        assert!(matches!(
            decode(1, None, b"x", published),
            Err(EventLogError::Decode { .. })
        ));
    }
}
