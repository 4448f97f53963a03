//! proptest strategies the backends' codec tests share: valid envelopes,
//! and the one outcome a decoder of broker data may have besides success.

use chrono::DateTime;
use eventlog_core::{EventEnvelope, EventLogError, SeqNo, validate};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

/// Text a valid envelope may hold: anything but control characters, with
/// spaces and printable ASCII (`%`, `"`) frequent so edge cases come up.
pub const TEXT: &str = "( |[!-~]|[^\\p{Cc}]){0,12}";

/// Envelopes `validate::envelope` accepts, `time` to the nanosecond in the
/// years 0000 to 9999 (the codecs write it exactly).
pub fn envelope() -> impl Strategy<Value = EventEnvelope> {
    let strings = ([TEXT; 3], option::of(TEXT), option::of(TEXT));
    let more = (
        btree_map("[a-z0-9]{1,20}", TEXT, 0..4),
        vec(any::<u8>(), 0..64),
    );
    (strings, more, 0..253_402_300_799i64, 0..1_000_000_000u32)
        .prop_map(|(([id, src, ty], subject, ctype), (ext, data), secs, ns)| {
            let mut e = EventEnvelope::new(src, ty, data).with_id(id);
            e.time = DateTime::from_timestamp(secs, ns).expect("in range");
            (e.subject, e.content_type, e.extensions) = (subject, ctype, ext);
            e
        })
        .prop_filter("valid", |e| validate::envelope(e, usize::MAX).is_ok())
}

/// `Ok`, or a `Decode` error for `seq_no`: what decoding broker data may
/// give, never another error.
pub fn ok_or_decode<T>(result: &Result<T, EventLogError>, seq_no: SeqNo) -> bool {
    let decode = |e: &_| matches!(e, &EventLogError::Decode { seq_no: at, .. } if at == seq_no);
    result.as_ref().err().is_none_or(decode)
}

/// `pairs` with the value at `at` replaced by `replacement`, or the pair
/// removed when there is none: one mutation of a valid encoding.
pub fn mutate<T>(pairs: &mut Vec<(String, T)>, at: Index, replacement: Option<T>) {
    let at = at.index(pairs.len());
    match replacement {
        Some(value) => pairs[at].1 = value,
        None => drop(pairs.remove(at)),
    }
}
