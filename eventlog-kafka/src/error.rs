//! librdkafka errors as [`EventLogError`]s.

use eventlog_core::EventLogError;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use std::sync::{Arc, Mutex};
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
    let code = match &err {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    match code {
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
            | Code::Resolve
            // An append a replaced producer dropped: it failed because the
            // broker did not answer in time.
            | Code::PurgeQueue
            | Code::PurgeInflight,
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

/// A client context that remembers a refused login. librdkafka reports
/// failed SASL authentication only through its error callback (served by
/// the producer's polling thread), and the call that met it then just times
/// out; with this the caller learns why.
#[derive(Clone, Default)]
pub(crate) struct AuthWatch {
    refused: Arc<Mutex<Option<String>>>,
}

impl AuthWatch {
    /// `err` as `Unauthorized` if the broker refused the login.
    pub(crate) fn explain(&self, err: EventLogError) -> EventLogError {
        match self.refused.lock().expect("auth watch poisoned").clone() {
            Some(reason) => EventLogError::Unauthorized {
                backend: BACKEND,
                source: reason.into(),
            },
            None => err,
        }
    }
}

impl ClientContext for AuthWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(Code::Authentication | Code::SaslAuthenticationFailed)
        ) {
            *self.refused.lock().expect("auth watch poisoned") = Some(reason.to_owned());
        }
        tracing::error!(%error, reason, "librdkafka");
    }
}
