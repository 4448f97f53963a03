//! NATS client errors as [`EventLogError`]s.

use async_nats::connection::State;
use async_nats::{ConnectError, ConnectErrorKind};
use eventlog_core::EventLogError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "nats";

/// `err` as the matching [`EventLogError`]: `Unavailable` while the client
/// is not connected (the cause of most failures then), `Backend` otherwise.
pub(crate) fn classify(
    client: &async_nats::Client,
    err: impl std::error::Error + Send + Sync + 'static,
) -> EventLogError {
    // Right after a restart the server is connected but JetStream does not
    // answer yet ("no responders"): as good as away.
    let starting = err.to_string().contains("no responders");
    if client.connection_state() == State::Connected && !starting {
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

/// A failed connect as the matching [`EventLogError`]: refused credentials
/// are `Unauthorized`, a TLS failure (an untrusted certificate, a server
/// without TLS) is `Backend` since retrying cannot fix it, the rest
/// `Unavailable`.
pub(crate) fn from_connect(err: ConnectError) -> EventLogError {
    let source = Box::new(err);
    match source.kind() {
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
            EventLogError::Unauthorized {
                backend: BACKEND,
                source,
            }
        }
        ConnectErrorKind::Tls => EventLogError::Backend {
            backend: BACKEND,
            source,
        },
        // A failed handshake (an untrusted certificate) comes as I/O.
        ConnectErrorKind::Io if is_tls_failure(&source) => EventLogError::Backend {
            backend: BACKEND,
            source,
        },
        _ => EventLogError::Unavailable {
            backend: BACKEND,
            source,
        },
    }
}

/// Whether `err` was caused by a rustls error, such as a certificate no
/// trusted CA signed.
fn is_tls_failure(err: &ConnectError) -> bool {
    use std::error::Error;
    err.source()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
}
