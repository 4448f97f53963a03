//! Redis client errors as [`EventLogError`]s.

use eventlog_core::EventLogError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "redis";

/// Whether `err` means the server could not be reached or went away.
pub(crate) fn is_unavailable(err: &redis::RedisError) -> bool {
    !is_tls_failure(err) && err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        // A server still loading its data set, a replica without its
        // primary, a server busy with a script, or a former primary that a
        // failover made a replica: each answers (or is replaced) soon.
        || matches!(
            err.code(),
            Some("LOADING" | "MASTERDOWN" | "TRYAGAIN" | "BUSY" | "READONLY")
        )
}

/// Whether `err` is a failed TLS handshake (say, a certificate no trusted
/// CA signed): the client reports it as I/O, but retrying cannot fix it.
fn is_tls_failure(err: &redis::RedisError) -> bool {
    #[cfg(feature = "tls")]
    {
        use std::error::Error;
        type Shared = std::sync::Arc<dyn Error + Send + Sync>;
        // The client keeps its cause as a shared `io::Error` whose payload
        // is the rustls error; `source()` skips both wrappers.
        let io = err
            .source()
            .and_then(|e| e.downcast_ref::<Shared>())
            .and_then(|e| e.downcast_ref::<std::io::Error>());
        if let Some(inner) = io.and_then(std::io::Error::get_ref) {
            return inner.is::<rustls::Error>();
        }
    }
    let _ = err;
    false
}

/// Whether the server refused the credentials or a command to this user.
pub(crate) fn is_unauthorized(err: &redis::RedisError) -> bool {
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// `err` as the matching [`EventLogError`].
pub(crate) fn from_redis(err: redis::RedisError) -> EventLogError {
    if is_unauthorized(&err) {
        EventLogError::Unauthorized {
            backend: BACKEND,
            source: Box::new(err),
        }
    } else if is_unavailable(&err) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server reply `-<reply>` becomes.
    fn reply(reply: &str) -> redis::RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .and_then(redis::Value::extract_error)
            .expect_err("an error reply")
    }

    #[test]
    fn transient_server_states_are_retryable() {
        for transient in [
            "LOADING Redis is loading the dataset in memory",
            "MASTERDOWN Link with MASTER is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "BUSY Redis is busy running a script",
            "READONLY You can't write against a read only replica.",
        ] {
            let err = from_redis(reply(transient));
            assert!(err.is_retryable(), "{transient}: {err:?}");
        }
        let err = from_redis(reply("ERR unknown command"));
        assert!(!err.is_retryable(), "{err:?}");
        let err = from_redis(reply("WRONGPASS invalid username-password pair"));
        assert!(matches!(err, EventLogError::Unauthorized { .. }), "{err:?}");
    }
}
