//! The CloudEvents attributes of an envelope as name and value pairs, and
//! back: what every backend's wire format is made of. Each codec only says
//! how a pair is written (a `ce-` header, a `ce_` header, a stream field).

use crate::{EventEnvelope, EventLogError, SPEC_VERSION, SeqNo};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use std::borrow::Cow;

/// `specversion`, `id`, `source`, `type`, `time`, then `subject`,
/// `datacontenttype` and the extensions when present, with their values as
/// written on every wire (`time` in RFC 3339, UTC, exact to the nanosecond).
pub fn attributes(event: &EventEnvelope) -> Vec<(&str, Cow<'_, str>)> {
    let mut pairs: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(7 + event.extensions.len());
    pairs.push(("specversion", Cow::Borrowed(SPEC_VERSION)));
    pairs.push(("id", Cow::Borrowed(&event.id)));
    pairs.push(("source", Cow::Borrowed(&event.source)));
    pairs.push(("type", Cow::Borrowed(&event.event_type)));
    pairs.push((
        "time",
        Cow::Owned(event.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    ));
    if let Some(subject) = &event.subject {
        pairs.push(("subject", Cow::Borrowed(subject)));
    }
    if let Some(content_type) = &event.content_type {
        pairs.push(("datacontenttype", Cow::Borrowed(content_type)));
    }
    for (name, value) in &event.extensions {
        pairs.push((name, Cow::Borrowed(value)));
    }
    pairs
}

/// Assembles the event stored at `seq_no` from attributes read off a wire,
/// in any order; [`finish`](Self::finish) checks that it is a CloudEvent.
#[derive(Debug)]
pub struct AttributeReader {
    seq_no: SeqNo,
    event: EventEnvelope,
    spec: Option<String>,
    time: Option<DateTime<Utc>>,
}

impl AttributeReader {
    /// A reader for the event `seq_no` carrying `payload`. `stored_at`, the
    /// broker's own timestamp where it keeps one, stands in for a missing
    /// `time` (CloudEvents makes it optional); without it `time` is required.
    pub fn new(seq_no: SeqNo, payload: impl Into<Bytes>, stored_at: Option<DateTime<Utc>>) -> Self {
        Self {
            seq_no,
            event: EventEnvelope::new("", "", payload).with_id(""),
            spec: None,
            time: stored_at,
        }
    }

    fn error(&self, reason: String) -> EventLogError {
        EventLogError::Decode {
            seq_no: self.seq_no,
            reason,
        }
    }

    /// Takes the attribute `name` (lowercase) with `value`.
    pub fn set(&mut self, name: &str, value: String) -> Result<(), EventLogError> {
        match name {
            "specversion" => self.spec = Some(value),
            "id" => self.event.id = value,
            "source" => self.event.source = value,
            "type" => self.event.event_type = value,
            "subject" => self.event.subject = Some(value),
            "datacontenttype" => self.event.content_type = Some(value),
            "time" => {
                let time = DateTime::parse_from_rfc3339(&value)
                    .map_err(|e| self.error(format!("time `{value}`: {e}")))?;
                self.time = Some(time.with_timezone(&Utc));
            }
            extension => {
                self.event.extensions.insert(extension.to_owned(), value);
            }
        }
        Ok(())
    }

    /// Takes the attribute `name` with `value` as bytes that must be UTF-8.
    pub fn set_bytes(&mut self, name: &str, value: Vec<u8>) -> Result<(), EventLogError> {
        let value = String::from_utf8(value)
            .map_err(|_| self.error(format!("attribute `{name}` is not UTF-8")))?;
        self.set(name, value)
    }

    /// The event, if the attributes make a CloudEvent 1.0: `specversion`
    /// 1.0, and non-empty `id`, `source` and `type`, and a `time`.
    pub fn finish(mut self) -> Result<EventEnvelope, EventLogError> {
        if self.spec.as_deref() != Some(SPEC_VERSION) {
            return Err(self.error(format!(
                "specversion is {:?}, not {SPEC_VERSION}",
                self.spec
            )));
        }
        for (name, value) in [
            ("id", &self.event.id),
            ("source", &self.event.source),
            ("type", &self.event.event_type),
        ] {
            if value.is_empty() {
                return Err(self.error(format!("no `{name}` attribute")));
            }
        }
        self.event.time = self
            .time
            .ok_or_else(|| self.error("no `time` attribute".into()))?;
        Ok(self.event.with_seq_no(self.seq_no))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;
    use proptest::collection::{btree_map, vec};
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    #[test]
    fn attributes_read_back_into_the_same_event() {
        let event = EventEnvelope::new("/s", "t", &b"\0"[..])
            .with_subject("sü")
            .with_content_type("a/b")
            .with_extension("ext1", "v");
        let mut reader = AttributeReader::new(7, event.payload.clone(), None);
        for (name, value) in attributes(&event) {
            reader.set(name, value.into_owned()).unwrap();
        }
        assert_eq!(reader.finish().unwrap(), event.with_seq_no(7));
    }

    /// Every required attribute but `time`.
    fn set_required(reader: &mut AttributeReader) {
        for (name, value) in [
            ("specversion", "1.0"),
            ("id", "i"),
            ("source", "s"),
            ("type", "t"),
        ] {
            reader.set(name, value.into()).unwrap();
        }
    }

    #[test]
    fn missing_or_broken_attributes_are_decode_errors() {
        let stored_at = Utc::now();
        let mut reader = AttributeReader::new(1, Bytes::new(), Some(stored_at));
        set_required(&mut reader);
        assert_eq!(
            reader.finish().unwrap().time,
            stored_at,
            "a missing time is the stored time"
        );

        let mut reader = AttributeReader::new(1, Bytes::new(), None);
        set_required(&mut reader);
        assert!(
            matches!(reader.finish(), Err(EventLogError::Decode { .. })),
            "no time and no stored time"
        );
        let mut reader = AttributeReader::new(1, Bytes::new(), None);
        assert!(reader.set("time", "yesterday".into()).is_err());
        assert!(reader.set_bytes("id", vec![0xff]).is_err());
        reader.set("specversion", "0.3".into()).unwrap();
        assert!(matches!(reader.finish(), Err(EventLogError::Decode { .. })));
    }

    /// Text a valid envelope may hold: anything but control characters, with
    /// spaces and printable ASCII (`%`, `"`) frequent so edge cases come up.
    const TEXT: &str = "( |[!-~]|[^\\p{Cc}]){0,16}";
    /// The attributes the reader knows, and an extension.
    const NAMES: &[&str] = &[
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "ext1",
    ];

    /// Times RFC 3339 can write (years 0000 to 9999), in whole seconds,
    /// milliseconds, microseconds or nanoseconds. `attributes` writes other
    /// years as `+10000-…` or `-0001-…`, which no reader takes back.
    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        let units: &[u32] = &[1_000_000_000, 1_000_000, 1_000, 1];
        (
            -62_167_219_200..=253_402_300_799i64,
            0..1_000_000_000u32,
            select(units),
        )
            .prop_map(|(secs, nanos, unit)| {
                DateTime::from_timestamp(secs, nanos - nanos % unit).expect("in range")
            })
    }

    /// Envelopes that `validate::envelope` accepts.
    fn envelope() -> impl Strategy<Value = EventEnvelope> {
        let required = "( |[!-~]|[^\\p{Cc}]){1,16}";
        let extensions = btree_map("[a-z0-9]{1,20}", TEXT, 0..4);
        let payload = vec(any::<u8>(), 0..64);
        let optional = (option::of(TEXT), option::of(TEXT));
        ([required; 3], optional, extensions, payload, time())
            .prop_map(
                |([id, source, ty], (subject, content_type), ext, payload, time)| {
                    let mut e = EventEnvelope::new(source, ty, payload)
                        .with_id(id)
                        .with_time(time);
                    (e.subject, e.content_type, e.extensions) = (subject, content_type, ext);
                    e
                },
            )
            .prop_filter("valid", |e| validate::envelope(e, usize::MAX).is_ok())
    }

    /// Values as a broker may hand them over: valid ones, and any bytes.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"1.0".to_vec()),
            time().prop_map(|t| t.to_rfc3339().into_bytes()),
            TEXT.prop_map(String::into_bytes),
            vec(any::<u8>(), 0..32),
        ]
    }

    /// `Ok`, or a `Decode` error for `seq_no`.
    fn ok_or_decode<T>(result: &Result<T, EventLogError>, seq_no: SeqNo) -> bool {
        match result {
            Ok(_) => true,
            Err(EventLogError::Decode { seq_no: at, .. }) => *at == seq_no,
            Err(_) => false,
        }
    }

    proptest! {
        #[test]
        fn any_envelope_reads_back_from_its_attributes_in_any_order(
            (event, order) in envelope().prop_flat_map(|e| {
                let order: Vec<usize> = (0..attributes(&e).len()).collect();
                (Just(e), Just(order).prop_shuffle())
            }),
            seq_no in 1..SeqNo::MAX,
            stored_at in option::of(time()),
        ) {
            let pairs = attributes(&event);
            let mut reader = AttributeReader::new(seq_no, event.payload.clone(), stored_at);
            for i in order {
                reader.set(pairs[i].0, pairs[i].1.clone().into_owned()).unwrap();
            }
            prop_assert_eq!(reader.finish().unwrap(), event.with_seq_no(seq_no));
        }

        #[test]
        fn arbitrary_attributes_are_read_or_a_decode_error(
            pairs in vec((prop_oneof![select(NAMES).prop_map(String::from), any::<String>()], value()), 0..12),
            seq_no: SeqNo,
            stored_at in option::of(time()),
        ) {
            let mut reader = AttributeReader::new(seq_no, Bytes::new(), stored_at);
            for (name, value) in pairs {
                let set = reader.set_bytes(&name, value);
                prop_assert!(ok_or_decode(&set, seq_no), "{name}: {set:?}");
            }
            let finished = reader.finish();
            prop_assert!(ok_or_decode(&finished, seq_no), "{finished:?}");
        }

        #[test]
        fn time_like_text_is_a_time_or_a_decode_error(
            text in "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?",
        ) {
            let mut reader = AttributeReader::new(1, Bytes::new(), None);
            let set = reader.set("time", text);
            prop_assert!(ok_or_decode(&set, 1), "{set:?}");
        }

        #[test]
        fn a_dropped_or_replaced_attribute_is_read_or_a_decode_error(
            event in envelope(),
            at: Index,
            replacement in option::of(value()),
            stored_at in option::of(time()),
        ) {
            let mut pairs: Vec<(&str, Vec<u8>)> = attributes(&event)
                .into_iter()
                .map(|(name, value)| (name, value.into_owned().into_bytes()))
                .collect();
            let at = at.index(pairs.len());
            let (name, dropped) = (pairs[at].0, replacement.is_none());
            match replacement {
                Some(value) => pairs[at].1 = value,
                None => drop(pairs.remove(at)),
            }
            let mut reader = AttributeReader::new(3, event.payload.clone(), stored_at);
            let read = pairs
                .into_iter()
                .try_for_each(|(name, value)| reader.set_bytes(name, value))
                .and_then(|()| reader.finish());
            prop_assert!(ok_or_decode(&read, 3), "{read:?}");
            let required = ["specversion", "id", "source", "type"].contains(&name)
                || (name == "time" && stored_at.is_none());
            if required && dropped {
                prop_assert!(read.is_err(), "without `{name}`: {read:?}");
            }
        }
    }
}
