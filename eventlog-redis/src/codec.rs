//! The wire format: one stream entry per event, the CloudEvents attributes
//! as fields named as in the spec, the payload as the field `data`.
//!
//! | field             | holds                                            |
//! |-------------------|--------------------------------------------------|
//! | `specversion`     | `1.0`                                            |
//! | `id`              | CloudEvents `id`                                 |
//! | `source`          | CloudEvents `source`                             |
//! | `type`            | CloudEvents `type`                               |
//! | `time`            | RFC 3339, UTC, with the nanoseconds kept         |
//! | `subject`         | when set                                         |
//! | `datacontenttype` | when set                                         |
//! | each extension    | its name and value                               |
//! | `data`            | the payload bytes, last                          |
//!
//! The entry id is `0-<seq_no>`. Extension names cannot clash with these
//! fields: validation refuses the reserved names.

use chrono::{DateTime, SecondsFormat, Utc};
use eventlog_core::{EventEnvelope, EventLogError, SPEC_VERSION, SeqNo};

/// The fields of the entry for `event`, in order.
pub(crate) fn encode(event: &EventEnvelope) -> Vec<(&str, Vec<u8>)> {
    let mut fields: Vec<(&str, Vec<u8>)> = Vec::with_capacity(7 + event.extensions.len());
    fields.push(("specversion", SPEC_VERSION.into()));
    fields.push(("id", event.id.as_bytes().to_vec()));
    fields.push(("source", event.source.as_bytes().to_vec()));
    fields.push(("type", event.event_type.as_bytes().to_vec()));
    fields.push(("time", format_time(event.time).into_bytes()));
    if let Some(subject) = &event.subject {
        fields.push(("subject", subject.as_bytes().to_vec()));
    }
    if let Some(content_type) = &event.content_type {
        fields.push(("datacontenttype", content_type.as_bytes().to_vec()));
    }
    for (name, value) in &event.extensions {
        fields.push((name, value.as_bytes().to_vec()));
    }
    fields.push(("data", event.payload.to_vec()));
    fields
}

/// CloudEvents `time` as written on every wire: RFC 3339 in UTC, with as
/// many fraction digits as needed to keep the value exact.
pub(crate) fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The event stored in the entry `0-<seq_no>` with `fields` (name, value,
/// name, value…).
pub(crate) fn decode(seq_no: SeqNo, fields: Vec<Vec<u8>>) -> Result<EventEnvelope, EventLogError> {
    let bad = |reason: String| EventLogError::Decode { seq_no, reason };
    if !fields.len().is_multiple_of(2) {
        return Err(bad("an odd number of field names and values".into()));
    }
    let text = |name: &str, value: Vec<u8>| {
        String::from_utf8(value).map_err(|_| bad(format!("field `{name}` is not UTF-8")))
    };
    let (mut id, mut source, mut event_type, mut time, mut spec) = (None, None, None, None, None);
    let mut event = EventEnvelope::new("", "", Vec::new());
    let mut pairs = fields.into_iter();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        let name = String::from_utf8(name).map_err(|_| bad("a field name is not UTF-8".into()))?;
        match name.as_str() {
            "data" => event.payload = value.into(),
            "specversion" => spec = Some(text(&name, value)?),
            "id" => id = Some(text(&name, value)?),
            "source" => source = Some(text(&name, value)?),
            "type" => event_type = Some(text(&name, value)?),
            "time" => time = Some(text(&name, value)?),
            "subject" => event.subject = Some(text(&name, value)?),
            "datacontenttype" => event.content_type = Some(text(&name, value)?),
            _ => {
                let value = text(&name, value)?;
                event.extensions.insert(name, value);
            }
        }
    }
    match spec.as_deref() {
        Some(SPEC_VERSION) => {}
        Some(other) => return Err(bad(format!("specversion `{other}` is not {SPEC_VERSION}"))),
        None => return Err(bad("no `specversion` field".into())),
    }
    let missing = |field: &str| bad(format!("no `{field}` field"));
    event.id = id.ok_or_else(|| missing("id"))?;
    event.source = source.ok_or_else(|| missing("source"))?;
    event.event_type = event_type.ok_or_else(|| missing("type"))?;
    let time = time.ok_or_else(|| missing("time"))?;
    event.time = DateTime::parse_from_rfc3339(&time)
        .map_err(|e| bad(format!("time `{time}`: {e}")))?
        .with_timezone(&Utc);
    Ok(event.with_seq_no(seq_no))
}

/// The sequence number of the entry id `0-<n>`.
pub(crate) fn seq_of(entry_id: &str) -> Result<SeqNo, EventLogError> {
    entry_id
        .strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| EventLogError::Decode {
            seq_no: 0,
            reason: format!("entry id `{entry_id}` is not 0-<sequence number>; was it written by another program?"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(fields: Vec<(&str, Vec<u8>)>) -> Vec<Vec<u8>> {
        fields
            .into_iter()
            .flat_map(|(k, v)| [k.as_bytes().to_vec(), v])
            .collect()
    }

    #[test]
    fn round_trip() {
        let e = EventEnvelope::new("/s", "t", &b"\0x"[..])
            .with_subject("sü")
            .with_content_type("a/b")
            .with_extension("ext1", "v");
        assert_eq!(decode(9, flat(encode(&e))).unwrap(), e.with_seq_no(9));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let e = EventEnvelope::new("/s", "t", &b""[..]);
        let mut fields = encode(&e);
        fields.retain(|(k, _)| *k != "id");
        assert!(matches!(
            decode(1, flat(fields)),
            Err(EventLogError::Decode { .. })
        ));
        for fields in [
            vec![b"x".to_vec()],
            vec![vec![0xff], vec![]],
            vec![b"time".to_vec(), b"yesterday".to_vec()],
        ] {
            assert!(matches!(
                decode(1, fields),
                Err(EventLogError::Decode { .. })
            ));
        }
        assert!(seq_of("5-1").is_err() && seq_of("0-0").is_err() && seq_of("0-x").is_err());
        assert_eq!(seq_of("0-42").unwrap(), 42);
    }
}
