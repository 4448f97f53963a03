//! Redis client errors as [`EventLogError`]s.

use eventlog_core::EventLogError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "redis";

/// Whether `err` means the server could not be reached or went away.
pub(crate) fn is_unavailable(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}

/// `err` as the matching [`EventLogError`].
pub(crate) fn from_redis(err: redis::RedisError) -> EventLogError {
    if is_unavailable(&err) {
        EventLogError::Unavailable {
            backend: BACKEND,
            source: Box::new(err),
        }
    } else {
        EventLogError::Backend {
            backend: BACKEND,
            source: Box::new(err),
        }
    }
}
