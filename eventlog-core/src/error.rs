//! The one error type of every backend.

use crate::{ExpectedLast, SeqNo};
use std::time::Duration;

/// A boxed error from a broker client, kept as the `source` of an
/// [`EventLogError`] so the chain stays inspectable without naming the client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every refusal and failure of an [`EventLog`](crate::EventLog), the same on
/// every backend.
///
/// Methods return `anyhow::Error`; reach this type with
/// `err.downcast_ref::<EventLogError>()`. Messages never contain credentials.
/// A broker client's error is the `source` of `Unavailable`, `Unauthorized`
/// and `Backend`, not part of their message: print the chain (`{:#}` on `anyhow::Error`)
/// to see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// A consumer name outside the allowed alphabet or length.
    #[error("consumer name `{name}` {reason}; allowed: 1 to 64 of A-Z a-z 0-9 _ -")]
    InvalidConsumerName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A log name outside the allowed alphabet or length.
    #[error("log name `{name}` {reason}; allowed: 1 to 128 of A-Z a-z 0-9 _ -")]
    InvalidLogName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A seek position that names no event, such as `Sequence(0)`.
    #[error("invalid position `{position}`: {reason}")]
    InvalidPosition {
        /// The position as given.
        position: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An acknowledgement of 0 or of a sequence number past the end of the log.
    #[error("cannot ack {seq_no} for consumer `{consumer}`: {}", match .last {
        Some(last) => format!("the log holds 1..={last}"),
        None => "the log is empty".to_owned(),
    })]
    AckOutOfRange {
        /// The consumer.
        consumer: String,
        /// The refused sequence number.
        seq_no: SeqNo,
        /// The last sequence number of the log when the ack was refused.
        last: Option<SeqNo>,
    },
    /// An envelope that breaks the CloudEvents rules the log enforces.
    #[error("invalid event: {reason}")]
    InvalidEnvelope {
        /// What is wrong with it.
        reason: String,
    },
    /// A payload over the backend's limit.
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The backend's limit in bytes.
        limit: usize,
    },
    /// Configuration or a URL that cannot be used.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, without any secret.
        reason: String,
    },
    /// The broker could not be reached.
    #[error("{backend} broker unavailable")]
    Unavailable {
        /// The backend, such as `redis`.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The broker refused the credentials, or the user lacks a permission
    /// the log needs. Not retryable: the configuration must change.
    #[error(
        "{backend} broker refused access: wrong or missing credentials, or missing permissions"
    )]
    Unauthorized {
        /// The backend, such as `redis`.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// An operation did not finish within its configured bound.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being done, such as `append`.
        operation: &'static str,
        /// The configured bound.
        after: Duration,
    },
    /// An event read from the broker that is not in the documented wire format.
    #[error("cannot decode event at {seq_no}: {reason}")]
    Decode {
        /// Where the event was read.
        seq_no: SeqNo,
        /// What is wrong with it.
        reason: String,
    },
    /// A subscription found events missing: it expected `expected` next and
    /// the log's next event is `found` (retention removed events, or the
    /// broker lost them). The stream goes on from `found`.
    #[error("events {expected} to {} are missing from the log; going on at {found}", .found - 1)]
    Gap {
        /// The sequence number the subscription expected next.
        expected: SeqNo,
        /// The sequence number the log delivered instead.
        found: SeqNo,
    },
    /// A subscription found the log numbering events it had already
    /// delivered: the log's last event is `last`, below the `delivered` the
    /// subscription already handed out (the log was deleted and created
    /// again, or the broker lost its tail). The stream goes on with the
    /// log's next new event, `last + 1`.
    #[error(
        "the log's last event is {last}, but {delivered} was already delivered: sequence numbers are being reused"
    )]
    SequenceReused {
        /// The highest sequence number the subscription had handed out.
        delivered: SeqNo,
        /// The log's last sequence number now.
        last: SeqNo,
    },
    /// The log no longer exists: someone deleted it under a live
    /// subscription. The subscription ends after this item.
    #[error("the log was deleted")]
    LogDeleted,
    /// A subscription has not reached its broker for `after`; it keeps
    /// trying and goes on where it stopped once the broker is back.
    #[error("{backend} broker unreachable for {after:?}; still retrying")]
    Outage {
        /// The backend, such as `redis`.
        backend: &'static str,
        /// How long the subscription has been without its broker.
        after: Duration,
        /// The last failure.
        #[source]
        source: BoxError,
    },
    /// A conditional append found the log's last event other than it
    /// expected; nothing was stored.
    #[error("append expected {expected}, but the log's last event is {}", match .actual {
        Some(n) => n.to_string(),
        None => "none (the log is empty)".to_owned(),
    })]
    Conflict {
        /// What the append expected.
        expected: ExpectedLast,
        /// The log's last sequence number when the append was refused.
        actual: Option<SeqNo>,
    },
    /// The backend lacks a capability the call needs (see
    /// [`Capabilities`](crate::Capabilities)); nothing was done.
    #[error("{backend} does not support {feature}")]
    Unsupported {
        /// The backend, such as `kafka`.
        backend: &'static str,
        /// What it lacks, such as `conditional appends`.
        feature: &'static str,
    },
    /// An exclusive subscription asked to be refused while another reader
    /// holds its consumer, and one does
    /// ([`WhenBusy::Refuse`](crate::WhenBusy::Refuse)).
    #[error("consumer `{consumer}` is held by another exclusive subscription")]
    ConsumerBusy {
        /// The consumer.
        consumer: String,
    },
    /// This handle does not hold `consumer`, another exclusive
    /// subscription does (or took it over from this handle's own): the ack
    /// or seek changed nothing. As a subscription's last item: it lost its
    /// consumer to another reader, and ends.
    #[error("consumer `{consumer}` is held by another reader; nothing was changed")]
    Fenced {
        /// The consumer.
        consumer: String,
    },
    /// An append failed in a way that leaves its outcome unknown (its
    /// events may be stored), on a log that does not deduplicate: a retry
    /// could store them twice. Read the log to find out. Not retryable.
    #[error(
        "{operation} may or may not have stored its events; {backend} cannot recognise a retry"
    )]
    AppendUnconfirmed {
        /// The backend, such as `kafka`.
        backend: &'static str,
        /// `append` or `append_batch`.
        operation: &'static str,
        /// The failure, retryable had the log deduplicated.
        #[source]
        source: Box<EventLogError>,
    },
    /// Any other failure of the broker or its client.
    #[error("{backend} backend error")]
    Backend {
        /// The backend, such as `redis`.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl EventLogError {
    /// The [`Conflict`](Self::Conflict) of an append that expected
    /// `expected` on a log whose last sequence number is `last` (0 when
    /// empty).
    pub fn conflict(expected: ExpectedLast, last: SeqNo) -> Self {
        Self::Conflict {
            expected,
            actual: (last > 0).then_some(last),
        }
    }

    /// Whether trying the same call again later may succeed, and is safe:
    /// the broker was unreachable or slow. Refusals of bad input are never
    /// retryable, and neither is an append whose retry could store its
    /// events twice ([`AppendUnconfirmed`](Self::AppendUnconfirmed)): a
    /// retryable append error comes only from a log that deduplicates
    /// ([`Capabilities::dedup_window`](crate::Capabilities::dedup_window)).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::Outage { .. }
        )
    }

    /// Whether `err` holds an [`EventLogError`] that [`is_retryable`](Self::is_retryable).
    pub fn is_retryable_anyhow(err: &anyhow::Error) -> bool {
        err.downcast_ref::<Self>().is_some_and(Self::is_retryable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_value() {
        let e = EventLogError::PayloadTooLarge {
            size: 2_097_152,
            limit: 1_048_576,
        };
        assert_eq!(
            e.to_string(),
            "payload of 2097152 bytes exceeds the limit of 1048576"
        );
        let e = EventLogError::AckOutOfRange {
            consumer: "c".into(),
            seq_no: 9,
            last: Some(3),
        };
        assert_eq!(
            e.to_string(),
            "cannot ack 9 for consumer `c`: the log holds 1..=3"
        );
    }

    #[test]
    fn retryable_only_for_transient_failures() {
        let timeout = EventLogError::Timeout {
            operation: "append",
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable());
        assert!(EventLogError::is_retryable_anyhow(&timeout.into()));
        assert!(!EventLogError::InvalidEnvelope { reason: "x".into() }.is_retryable());
    }
}
