//! librdkafka errors as [`EventLogError`]s.

use eventlog_core::EventLogError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use std::time::Duration;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "kafka";

/// `err`, met while doing `operation` with the bound `after`, as the
/// matching [`EventLogError`].
pub(crate) fn from_kafka(
    operation: &'static str,
    after: Duration,
    err: KafkaError,
) -> EventLogError {
    match err.rdkafka_error_code() {
        Some(Code::MessageTimedOut | Code::OperationTimedOut | Code::RequestTimedOut) => {
            EventLogError::Timeout { operation, after }
        }
        Some(
            Code::AllBrokersDown
            | Code::BrokerTransportFailure
            | Code::NetworkException
            | Code::BrokerNotAvailable
            | Code::LeaderNotAvailable
            | Code::NotLeaderForPartition
            | Code::NotCoordinator
            | Code::CoordinatorNotAvailable
            | Code::CoordinatorLoadInProgress
            | Code::Resolve,
        ) => EventLogError::Unavailable {
            backend: BACKEND,
            source: Box::new(err),
        },
        _ => EventLogError::Backend {
            backend: BACKEND,
            source: Box::new(err),
        },
    }
}
