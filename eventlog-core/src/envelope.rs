//! The CloudEvents 1.0 envelope.

use crate::SeqNo;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The CloudEvents `specversion` every event is written with.
pub const SPEC_VERSION: &str = "1.0";

/// One event: the CloudEvents 1.0 attributes, the payload, and the sequence
/// number the log gave it.
///
/// Build one with [`EventEnvelope::new`], which fills `id` with a UUID v7 and
/// `time` with now, then the `with_*` methods. Fields are public to read and
/// change; [`validate::envelope`](crate::validate::envelope) says what a log
/// accepts.
///
/// Serialized with serde, it is a CloudEvents JSON event: attribute names as
/// in the spec (`type`, `datacontenttype`), extensions beside them, the
/// payload as `data` when `datacontenttype` is JSON (`application/json`,
/// `…+json`) and the payload is valid JSON, as `data_base64` otherwise, and
/// the sequence number as the extension-like member `seqno` when set. Read
/// back, `data` is the payload: a JSON string as its text for a content
/// type that is not JSON, any other value (or any value with a JSON or no
/// content type, which the format implies is JSON) as its compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "JsonEvent", try_from = "JsonEvent")]
#[non_exhaustive]
pub struct EventEnvelope {
    /// CloudEvents `id`: unique per `source`. A UUID v7 by default.
    pub id: String,
    /// CloudEvents `source`: where the event happened, a URI-reference.
    pub source: String,
    /// CloudEvents `type`.
    pub event_type: String,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// CloudEvents `time`, in UTC.
    pub time: DateTime<Utc>,
    /// CloudEvents `datacontenttype`: the media type of the payload.
    pub content_type: Option<String>,
    /// CloudEvents extension attributes: lowercase a-z and 0-9 names of at
    /// most 20 characters, string values.
    pub extensions: BTreeMap<String, String>,
    /// The event data.
    pub payload: Bytes,
    /// The sequence number the log assigned; `None` until it is stored.
    /// A value set before `append` is ignored.
    pub seq_no: Option<SeqNo>,
}

impl EventEnvelope {
    /// A new event of `event_type` from `source` carrying `payload`, with a
    /// fresh UUID v7 `id` and the current time.
    pub fn new(
        source: impl Into<String>,
        event_type: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            event_type: event_type.into(),
            subject: None,
            time: Utc::now(),
            content_type: None,
            extensions: BTreeMap::new(),
            payload: payload.into(),
            seq_no: None,
        }
    }

    /// Replaces the generated `id`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets `subject`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Replaces the generated `time`.
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    /// Sets `datacontenttype`.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds or replaces the extension attribute `name`.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.insert(name.into(), value.into());
        self
    }

    /// The same event with `seq_no` set, as a log hands it out.
    pub fn with_seq_no(mut self, seq_no: SeqNo) -> Self {
        self.seq_no = Some(seq_no);
        self
    }

    /// The sequence number of an event read from a log, which always
    /// carries one; 0 for an event that was not read from a log (0 never
    /// names an event, so an ack of it is refused).
    pub fn seq(&self) -> SeqNo {
        self.seq_no.unwrap_or(0)
    }

    /// The key that keeps events in order: the CloudEvents `partitionkey`
    /// extension (the Partitioning extension), else the `subject`, else the
    /// `id`. Events of one key go to one member of a partitioned consumer
    /// ([`Member`](crate::Member)) and are processed in log order.
    pub fn partition_key(&self) -> &str {
        self.extensions
            .get(PARTITION_KEY)
            .map(String::as_str)
            .or(self.subject.as_deref())
            .unwrap_or(&self.id)
    }
}

/// The CloudEvents Partitioning extension's attribute.
pub const PARTITION_KEY: &str = "partitionkey";

/// The CloudEvents JSON format of an [`EventEnvelope`].
#[derive(Serialize, Deserialize)]
struct JsonEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(
        with = "base64_bytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    data_base64: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seqno: Option<SeqNo>,
    #[serde(flatten)]
    extensions: BTreeMap<String, String>,
}

/// Whether `content_type` (parameters aside) is a JSON media type.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json")
            || media.eq_ignore_ascii_case("text/json")
            || media.to_ascii_lowercase().ends_with("+json")
    })
}

impl From<EventEnvelope> for JsonEvent {
    fn from(e: EventEnvelope) -> Self {
        let data = is_json(e.content_type.as_deref())
            .then(|| serde_json::from_slice(&e.payload).ok())
            .flatten();
        let data_base64 = data.is_none().then_some(e.payload);
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: e.id,
            source: e.source,
            event_type: e.event_type,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.content_type,
            data,
            data_base64,
            seqno: e.seq_no,
            extensions: e.extensions,
        }
    }
}

impl TryFrom<JsonEvent> for EventEnvelope {
    type Error = String;

    fn try_from(j: JsonEvent) -> Result<Self, String> {
        if j.specversion != SPEC_VERSION {
            return Err(format!(
                "specversion `{}` is not {SPEC_VERSION}",
                j.specversion
            ));
        }
        let payload = match (j.data, j.data_base64) {
            (Some(_), Some(_)) => return Err("both `data` and `data_base64`".to_owned()),
            (None, base64) => base64.unwrap_or_default(),
            (Some(serde_json::Value::String(text)), None)
                if j.datacontenttype.is_some() && !is_json(j.datacontenttype.as_deref()) =>
            {
                Bytes::from(text)
            }
            (Some(value), None) => {
                Bytes::from(serde_json::to_vec(&value).map_err(|e| format!("`data`: {e}"))?)
            }
        };
        Ok(Self {
            id: j.id,
            source: j.source,
            event_type: j.event_type,
            subject: j.subject,
            time: j.time,
            content_type: j.datacontenttype,
            extensions: j.extensions,
            payload,
            seq_no: j.seqno,
        })
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes.as_deref().unwrap_or_default()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map(|bytes| Some(Bytes::from(bytes)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_fills_id_and_time() {
        let before = Utc::now();
        let a = EventEnvelope::new("/orders", "order.placed", &b"{}"[..]);
        let b = EventEnvelope::new("/orders", "order.placed", &b"{}"[..]);
        assert_ne!(a.id, b.id);
        let id = uuid::Uuid::parse_str(&a.id).expect("id is a UUID");
        assert_eq!(id.get_version_num(), 7);
        assert!(a.time >= before && a.time <= Utc::now());
        assert_eq!(a.seq_no, None);
    }

    #[test]
    fn builder_sets_every_attribute() {
        let e = EventEnvelope::new("s", "t", Bytes::new())
            .with_id("i")
            .with_subject("sub")
            .with_content_type("application/json")
            .with_extension("traceparent", "00-1")
            .with_seq_no(7);
        assert_eq!(e.id, "i");
        assert_eq!(e.subject.as_deref(), Some("sub"));
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        assert_eq!(e.extensions["traceparent"], "00-1");
        assert_eq!(e.seq_no, Some(7));
    }

    #[test]
    fn serde_round_trip_is_cloudevents_json() {
        let e = EventEnvelope::new("/src", "com.example.t", &b"\0\xffbin"[..])
            .with_subject("ünïcødé")
            .with_content_type("application/octet-stream")
            .with_extension("tenant", "a1")
            .with_seq_no(3);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "com.example.t");
        assert_eq!(json["datacontenttype"], "application/octet-stream");
        assert_eq!(json["tenant"], "a1");
        assert_eq!(json["data_base64"], "AP9iaW4=");
        assert_eq!(json["seqno"], 3);
        assert_eq!(json["specversion"], "1.0");
        let back: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn json_payloads_are_json_data() {
        let e = EventEnvelope::new("/src", "t", &br#"{"id": 1}"#[..])
            .with_content_type("application/cloudevents+json; charset=utf-8");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["data"]["id"], 1);
        assert!(json.get("data_base64").is_none());
        let back: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.payload, br#"{"id":1}"#[..]);
        // Declared JSON but not JSON: kept exactly, as base64.
        let broken =
            EventEnvelope::new("/src", "t", &b"{oops"[..]).with_content_type("application/json");
        let json = serde_json::to_value(&broken).unwrap();
        assert!(json.get("data").is_none());
        assert_eq!(
            serde_json::from_value::<EventEnvelope>(json).unwrap(),
            broken
        );
    }

    #[test]
    fn data_reads_as_the_format_says() {
        let read = |json: serde_json::Value| serde_json::from_value::<EventEnvelope>(json);
        let base = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "time": "2026-01-01T00:00:00Z",
        });
        let with = |extra: serde_json::Value| {
            let mut json = base.clone();
            json.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json
        };
        let text = read(with(
            serde_json::json!({"datacontenttype": "text/plain", "data": "hi"}),
        ));
        assert_eq!(text.unwrap().payload, b"hi"[..]);
        let implied = read(with(serde_json::json!({"data": {"a": [1]}})));
        assert_eq!(implied.unwrap().payload, br#"{"a":[1]}"#[..]);
        let both = read(with(serde_json::json!({"data": 1, "data_base64": "AA=="})));
        assert!(both.is_err());
    }

    #[test]
    fn serde_refuses_other_spec_versions() {
        let mut json = serde_json::to_value(EventEnvelope::new("s", "t", Bytes::new())).unwrap();
        json["specversion"] = "0.3".into();
        assert!(serde_json::from_value::<EventEnvelope>(json).is_err());
    }
}
