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

use eventlog_core::{AttributeReader, EventEnvelope, EventLogError, SeqNo, attributes};

/// `XADD key 0-* …` of the entry for `event`: the attributes, then `data`,
/// written straight into the command (no intermediate copies).
pub(crate) fn xadd(key: &str, event: &EventEnvelope) -> redis::Cmd {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(key).arg("0-*");
    for (name, value) in attributes(event) {
        xadd.arg(name).arg(value.as_ref());
    }
    xadd.arg("data").arg(event.payload.as_ref());
    xadd
}

/// The fields of `event`'s entry, counted then listed, as arguments of
/// the append script.
pub(crate) fn push_fields(invocation: &mut redis::ScriptInvocation<'_>, event: &EventEnvelope) {
    let pairs = attributes(event);
    invocation.arg(2 * (pairs.len() + 1));
    for (name, value) in pairs {
        invocation.arg(name).arg(value.as_ref());
    }
    invocation.arg("data").arg(event.payload.as_ref());
}

/// The event stored in the entry `0-<seq_no>` with `fields` (name, value,
/// name, value…). Redis keeps no time of its own for our entries, so `time`
/// is required.
pub(crate) fn decode(seq_no: SeqNo, fields: Vec<Vec<u8>>) -> Result<EventEnvelope, EventLogError> {
    let bad = |reason: String| EventLogError::Decode { seq_no, reason };
    if !fields.len().is_multiple_of(2) {
        return Err(bad("an odd number of field names and values".into()));
    }
    let mut pairs = fields.chunks_exact(2);
    let payload = pairs
        .clone()
        .find(|pair| pair[0] == b"data")
        .map(|pair| pair[1].clone())
        .unwrap_or_default();
    let mut reader = AttributeReader::new(seq_no, payload, None);
    for pair in &mut pairs {
        let name =
            std::str::from_utf8(&pair[0]).map_err(|_| bad("a field name is not UTF-8".into()))?;
        if name != "data" {
            reader.set_bytes(name, pair[1].clone())?;
        }
    }
    reader.finish()
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
    use conformance::strategies::{TEXT, envelope, ok_or_decode};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    /// The field names and values of an `XADD key 0-* …`.
    fn fields(event: &EventEnvelope) -> Vec<Vec<u8>> {
        let cmd = xadd("k", event);
        let args = cmd.args_iter().filter_map(|arg| match arg {
            redis::Arg::Simple(bytes) => Some(bytes.to_vec()),
            _ => None,
        });
        args.skip(3).collect()
    }

    #[test]
    fn round_trip() {
        let e = EventEnvelope::new("/s", "t", &b"\0x"[..])
            .with_subject("sü")
            .with_content_type("a/b")
            .with_extension("ext1", "v");
        assert_eq!(decode(9, fields(&e)).unwrap(), e.with_seq_no(9));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let e = EventEnvelope::new("/s", "t", &b""[..]);
        let without_id: Vec<Vec<u8>> = fields(&e)
            .chunks(2)
            .filter(|pair| pair[0] != b"id")
            .flatten()
            .cloned()
            .collect();
        assert!(matches!(
            decode(1, without_id),
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

    /// Field names and values as an entry may hold them: the ones the codec
    /// writes, valid values, and any bytes.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        let names: &[&str] = &[
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "data",
            "ext1",
        ];
        prop_oneof![
            select(names).prop_map(|name| name.as_bytes().to_vec()),
            Just(b"1.0".to_vec()),
            Just(b"2024-02-29T12:00:00.000001Z".to_vec()),
            TEXT.prop_map(String::into_bytes),
            vec(any::<u8>(), 0..24),
        ]
    }

    proptest! {
        #[test]
        fn any_envelope_round_trips_through_an_entry(e in envelope(), seq_no in 1..SeqNo::MAX) {
            prop_assert_eq!(decode(seq_no, fields(&e)).unwrap(), e.with_seq_no(seq_no));
        }

        #[test]
        fn arbitrary_fields_are_an_event_or_a_decode_error(
            fields in vec(field(), 0..24),
            seq_no: SeqNo,
        ) {
            let decoded = decode(seq_no, fields);
            prop_assert!(ok_or_decode(&decoded, seq_no), "{decoded:?}");
        }

        #[test]
        fn a_mutated_entry_is_an_event_or_a_decode_error(
            e in envelope(),
            at: Index,
            mutation in 0..3u8,
            bytes in vec(any::<u8>(), 0..24),
        ) {
            let mut fields = fields(&e);
            let at = 2 * at.index(fields.len() / 2);
            match mutation {
                0 => drop(fields.drain(at..at + 2)),
                1 => fields[at + 1] = bytes,
                _ => fields[at] = bytes,
            }
            let decoded = decode(5, fields);
            prop_assert!(ok_or_decode(&decoded, 5), "{decoded:?}");
        }

        #[test]
        fn any_entry_id_is_a_sequence_number_or_a_decode_error(
            id in prop_oneof!["0-[0-9]{1,22}", "[0-9-]{0,8}", any::<String>()],
        ) {
            let seq = seq_of(&id);
            prop_assert!(ok_or_decode(&seq, 0), "{seq:?}");
            prop_assert_ne!(seq.ok(), Some(0));
        }

        #[test]
        fn any_sequence_number_round_trips_through_an_entry_id(seq_no in 1..=SeqNo::MAX) {
            prop_assert_eq!(seq_of(&format!("0-{seq_no}")).unwrap(), seq_no);
        }
    }
}
