//! NATS client errors as [`EventLogError`]s.

use async_nats::connection::State;
use eventlog_core::EventLogError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "nats";

/// `err` as the matching [`EventLogError`]: `Unavailable` while the client
/// is not connected (the cause of most failures then), `Backend` otherwise.
pub(crate) fn classify(
    client: &async_nats::Client,
    err: impl std::error::Error + Send + Sync + 'static,
) -> EventLogError {
    if client.connection_state() == State::Connected {
        EventLogError::Backend {
            backend: BACKEND,
            source: Box::new(err),
        }
    } else {
        EventLogError::Unavailable {
            backend: BACKEND,
            source: Box::new(err),
        }
    }
}
