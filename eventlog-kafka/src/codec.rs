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
    for (name, value) in read_headers(seq_no, headers)? {
        if name == CONTENT_TYPE {
            reader.set_bytes("datacontenttype", value)?;
        } else if let Some(attribute) = name.strip_prefix(PREFIX) {
            reader.set_bytes(attribute, value)?;
        }
    }
    reader.finish()
}

/// The record's headers as (lower-case name, value). rdkafka 0.39 panics on
/// a header name that is not UTF-8, which another producer may write; that
/// panic becomes a decode error instead of tearing down the subscriber.
fn read_headers(
    seq_no: SeqNo,
    headers: Option<&impl Headers>,
) -> Result<Vec<(String, Vec<u8>)>, EventLogError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        headers
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| {
                (
                    h.key.to_ascii_lowercase(),
                    h.value.unwrap_or_default().to_vec(),
                )
            })
            .collect()
    }))
    .map_err(|_| EventLogError::Decode {
        seq_no,
        reason: "a header name is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance::strategies::{TEXT, envelope, mutate, ok_or_decode};
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

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

    type Pairs = Vec<(String, Option<Vec<u8>>)>;

    /// Headers with these keys and values, as librdkafka hands them to a
    /// consumer.
    fn headers(pairs: &Pairs) -> OwnedHeaders {
        pairs
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            })
    }

    /// The keys and values of `headers`.
    fn pairs(headers: &OwnedHeaders) -> Pairs {
        let pair = |h: Header<'_, &[u8]>| (h.key.to_owned(), h.value.map(<[u8]>::to_vec));
        headers.iter().map(pair).collect()
    }

    /// Header values a record may hold: valid ones, any bytes, none.
    fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
        option::of(prop_oneof![
            Just(b"1.0".to_vec()),
            Just(b"2024-02-29T12:00:00.000001Z".to_vec()),
            TEXT.prop_map(String::into_bytes),
            vec(any::<u8>(), 0..24),
        ])
    }

    /// Header keys a record may carry: the codec's, any-case variants, others.
    fn key() -> impl Strategy<Value = String> {
        let keys: &[&str] = &[
            "ce_specversion",
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_time",
            "CE_Subject",
            "content-type",
            "ce_",
        ];
        prop_oneof![
            select(keys).prop_map(String::from),
            "[cC][eE]_.{0,12}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn any_envelope_round_trips_through_headers(e in envelope(), seq_no in 1..SeqNo::MAX) {
            let headers = headers(&pairs(&encode(&e)));
            let back = decode(seq_no, Some(headers.as_borrowed()), &e.payload, DateTime::UNIX_EPOCH);
            prop_assert_eq!(back.unwrap(), e.with_seq_no(seq_no));
        }

        #[test]
        fn arbitrary_headers_are_an_event_or_a_decode_error(
            pairs in option::of(vec((key(), value()), 0..12)),
            payload in vec(any::<u8>(), 0..32),
            seq_no: SeqNo,
        ) {
            let headers = pairs.map(|p| headers(&p));
            let headers = headers.as_ref().map(OwnedHeaders::as_borrowed);
            let decoded = decode(seq_no, headers, &payload, DateTime::UNIX_EPOCH);
            prop_assert!(ok_or_decode(&decoded, seq_no), "{decoded:?}");
        }

        #[test]
        fn mutated_headers_are_an_event_or_a_decode_error(
            e in envelope(),
            at: Index,
            replacement in option::of(value()),
        ) {
            let mut pairs = pairs(&encode(&e));
            mutate(&mut pairs, at, replacement);
            let headers = headers(&pairs);
            let decoded = decode(2, Some(headers.as_borrowed()), &e.payload, DateTime::UNIX_EPOCH);
            prop_assert!(ok_or_decode(&decoded, 2), "{decoded:?}");
        }
    }
}
