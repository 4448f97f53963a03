//! The wire format: the CloudEvents NATS protocol binding, binary content
//! mode. Each attribute is a header `ce-<name>` whose value is
//! percent-encoded as the binding prescribes (space, `"`, `%`, control
//! characters and all non-ASCII as UTF-8 `%XX`); `datacontenttype` is the
//! `content-type` header; the payload is the message body. The envelope id is
//! also the `Nats-Msg-Id`, so JetStream drops a re-sent append within the
//! stream's duplicate window.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventlog_core::{AttributeReader, EventEnvelope, EventLogError, SeqNo, attributes};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;

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
/// The payload is shared with the message, not copied.
pub(crate) fn decode(
    seq_no: SeqNo,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    published: DateTime<Utc>,
) -> Result<EventEnvelope, EventLogError> {
    let mut reader = AttributeReader::new(seq_no, payload, Some(published));
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let Some(value) = values.last().map(|v| v.as_str()) else {
            continue;
        };
        // Header names are case-insensitive; ours are written lower-case,
        // so the common case borrows.
        let name: &str = name.as_ref();
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if name == CONTENT_TYPE {
            reader.set("datacontenttype", value.to_owned())?;
        } else if let Some(attribute) = name.strip_prefix(PREFIX) {
            // One exact allocation per value (none to decode when nothing is
            // escaped); bytes that are not UTF-8 take the reader's error.
            match percent_decode_str(value).decode_utf8() {
                Ok(decoded) => reader.set(attribute, decoded.into_owned())?,
                Err(_) => reader.set_bytes(attribute, percent_decode_str(value).collect())?,
            }
        }
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance::strategies::{TEXT, envelope, mutate, ok_or_decode};
    use percent_encoding::{NON_ALPHANUMERIC, percent_encode};
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

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
        let back = decode(4, Some(&headers), e.payload.clone(), Utc::now()).unwrap();
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
            decode(1, Some(&headers), Bytes::new(), published)
                .unwrap()
                .time,
            published
        );
        headers.insert("ce-time", "yesterday");
        assert!(matches!(
            decode(1, Some(&headers), Bytes::new(), published),
            Err(EventLogError::Decode { .. })
        ));
        assert!(matches!(
            decode(1, None, Bytes::from_static(b"x"), published),
            Err(EventLogError::Decode { .. })
        ));
    }

    /// `headers` as async-nats's reader rebuilds them from the wire, which
    /// trims values (`connection.rs` of async-nats 0.51).
    fn received(headers: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name.as_str(), value.trim());
        }
        map
    }

    /// The names and values of `headers`.
    fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (name, values) in headers.iter() {
            for value in values {
                pairs.push((name.to_string(), value.as_str().to_owned()));
            }
        }
        pairs
    }

    /// Header values as a message may hold them: valid ones, any text,
    /// percent-encoded invalid UTF-8, broken percent-encoding.
    fn value() -> impl Strategy<Value = String> {
        let encoded = |bytes: Vec<u8>| percent_encode(&bytes, NON_ALPHANUMERIC).to_string();
        prop_oneof![
            Just("1.0".to_owned()),
            Just("2024-02-29T12:00:00.000001Z".to_owned()),
            TEXT.prop_map(|text| utf8_percent_encode(&text, ENCODED).to_string()),
            vec(any::<u8>(), 0..16).prop_map(encoded),
            "(%[0-9a-fA-F]{0,2}|%[^\r\n]|[^\r\n%]){0,12}",
        ]
    }

    /// Header names a message may carry: the codec's, any-case variants, others.
    fn name() -> impl Strategy<Value = String> {
        let names: &[&str] = &[
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-time",
            "CE-Subject",
            "content-type",
            "ce-",
        ];
        prop_oneof![
            select(names).prop_map(String::from),
            "[cC][eE]-[!-9;-~]{0,12}",
            "[!-9;-~]{1,16}",
        ]
    }

    proptest! {
        #[test]
        fn any_envelope_round_trips_through_headers(mut e in envelope(), seq_no in 1..SeqNo::MAX) {
            // `content-type` is written as is, as the binding says, and the
            // reader trims header values: a content type's edge whitespace
            // is lost (no media type has any; validation lets it through).
            e.content_type = e.content_type.map(|t| t.trim().to_owned());
            let headers = received(&pairs(&encode(&e)));
            let back = decode(seq_no, Some(&headers), e.payload.clone(), DateTime::UNIX_EPOCH).unwrap();
            prop_assert_eq!(back, e.with_seq_no(seq_no));
        }

        #[test]
        fn arbitrary_headers_are_an_event_or_a_decode_error(
            headers in option::of(vec((name(), value()), 0..12)),
            payload in vec(any::<u8>(), 0..32),
            seq_no: SeqNo,
        ) {
            let headers = headers.map(|h| received(&h));
            let decoded = decode(seq_no, headers.as_ref(), payload.into(), DateTime::UNIX_EPOCH);
            prop_assert!(ok_or_decode(&decoded, seq_no), "{decoded:?}");
        }

        #[test]
        fn mutated_headers_are_an_event_or_a_decode_error(
            e in envelope(),
            at: Index,
            replacement in option::of(value()),
        ) {
            let mut headers = pairs(&encode(&e));
            mutate(&mut headers, at, replacement);
            let decoded = decode(2, Some(&received(&headers)), e.payload.clone(), DateTime::UNIX_EPOCH);
            prop_assert!(ok_or_decode(&decoded, 2), "{decoded:?}");
        }
    }
}
