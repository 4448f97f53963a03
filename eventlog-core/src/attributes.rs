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
}
