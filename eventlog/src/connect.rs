//! `connect(url)`: a backend chosen by the URL's scheme.

use eventlog_core::{EventLog, EventLogError, Result, redact_url};
use std::sync::Arc;

/// The URL schemes [`connect`] knows, with the Cargo feature each needs.
pub const SCHEMES: &[(&str, &str)] = &[
    ("memory", "memory"),
    ("nats", "nats"),
    ("tls", "nats"),
    ("kafka", "kafka"),
    ("redis", "redis"),
    ("rediss", "redis"),
];

/// A ready log for `url`; the scheme picks the backend:
///
/// * `memory://<log>`: a log of this process; opening one name twice gives
///   two handles on the same log, as two connections to a broker would.
/// * `nats://[user:password@]host:port/<log>` (`tls://` for TLS).
/// * `kafka://[user:password@]host:port[,host:port]/<log>` (SASL with a user).
/// * `redis://[user:password@]host:port[/db]/<log>`, `rediss://` for TLS.
///
/// Each backend's `from_url` lists its query options (`?timeout_ms=…`).
/// A password may come from the environment instead of the URL:
/// `EVENTLOG_PASSWORD` for a URL with a user and no password; for NATS also
/// `EVENTLOG_NATS_TOKEN`, `EVENTLOG_NATS_NKEY` or `EVENTLOG_NATS_CREDS` (a
/// creds file).
///
/// A scheme whose feature is not compiled in, or a malformed URL, is an
/// [`EventLogError::InvalidConfig`] that says what to do.
pub async fn connect(url: &str) -> Result<Arc<dyn EventLog>> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(invalid(format!(
            "`{}` is not a URL like memory://orders",
            redact_url(url)
        )));
    };
    match scheme {
        "memory" => memory(url),
        "nats" | "tls" => nats(url).await,
        "kafka" => kafka(url).await,
        "redis" | "rediss" => redis(url).await,
        other => Err(invalid(format!(
            "unknown scheme `{other}://`; known: {}",
            SCHEMES
                .iter()
                .map(|(s, _)| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn invalid(reason: String) -> anyhow::Error {
    EventLogError::InvalidConfig { reason }.into()
}

/// The error for a scheme whose backend is not compiled in.
#[allow(dead_code, reason = "used by the backends that are not compiled in")]
fn missing(scheme: &str, feature: &str) -> anyhow::Error {
    invalid(format!(
        "`{scheme}://` needs the `{feature}` feature of the eventlog crate"
    ))
}

/// `url` with the password from `EVENTLOG_PASSWORD` when it names a user
/// and no password.
#[allow(dead_code, reason = "only the broker backends take passwords")]
fn with_env_password(url: &str) -> String {
    with_password(url, std::env::var("EVENTLOG_PASSWORD").ok())
}

/// `url` with `password` when it names a user and no password.
#[allow(dead_code, reason = "only the broker backends take passwords")]
fn with_password(url: &str, password: Option<String>) -> String {
    let Some(((scheme, rest), password)) = url.split_once("://").zip(password) else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, hosts)) if !user.contains(':') => {
            let password = percent_encoding::utf8_percent_encode(
                &password,
                percent_encoding::NON_ALPHANUMERIC,
            );
            format!(
                "{scheme}://{user}:{password}@{hosts}{}",
                &rest[authority_end..]
            )
        }
        _ => url.to_owned(),
    }
}

#[cfg(feature = "memory")]
fn memory(url: &str) -> Result<Arc<dyn EventLog>> {
    let log = url.trim_start_matches("memory://");
    Ok(Arc::new(eventlog_memory::InMemoryLogs::global().open(log)?))
}

#[cfg(not(feature = "memory"))]
fn memory(_: &str) -> Result<Arc<dyn EventLog>> {
    Err(missing("memory", "memory"))
}

#[cfg(feature = "nats")]
async fn nats(url: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_nats::{NatsConfig, NatsEventLog};
    let mut builder = NatsConfig::from_url(&with_env_password(url))?;
    if let Ok(token) = std::env::var("EVENTLOG_NATS_TOKEN") {
        builder = builder.with_token(token);
    } else if let Ok(seed) = std::env::var("EVENTLOG_NATS_NKEY") {
        builder = builder.with_nkey(seed);
    } else if let Ok(path) = std::env::var("EVENTLOG_NATS_CREDS") {
        builder = builder.with_creds_file(path);
    }
    Ok(Arc::new(NatsEventLog::connect(builder.build()?).await?))
}

#[cfg(not(feature = "nats"))]
async fn nats(url: &str) -> Result<Arc<dyn EventLog>> {
    Err(missing(url.split("://").next().unwrap_or("nats"), "nats"))
}

#[cfg(feature = "kafka")]
async fn kafka(url: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_kafka::{KafkaConfig, KafkaEventLog};
    let config = KafkaConfig::from_url(&with_env_password(url))?.build()?;
    Ok(Arc::new(KafkaEventLog::connect(config).await?))
}

#[cfg(not(feature = "kafka"))]
async fn kafka(_: &str) -> Result<Arc<dyn EventLog>> {
    Err(missing("kafka", "kafka"))
}

#[cfg(feature = "redis")]
async fn redis(url: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_redis::{RedisConfig, RedisEventLog};
    let config = RedisConfig::from_url(&with_env_password(url))?.build()?;
    Ok(Arc::new(RedisEventLog::connect(config).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis(url: &str) -> Result<Arc<dyn EventLog>> {
    Err(missing(url.split("://").next().unwrap_or("redis"), "redis"))
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;

    fn refusal(result: Result<Arc<dyn EventLog>>) -> String {
        match result {
            Ok(_) => panic!("expected a refusal"),
            Err(err) => match err.downcast_ref::<EventLogError>() {
                Some(EventLogError::InvalidConfig { reason }) => reason.clone(),
                other => panic!("expected InvalidConfig, got {other:?}"),
            },
        }
    }

    #[tokio::test]
    async fn memory_urls_share_a_log_per_name() {
        let a = connect("memory://facade-shared").await.unwrap();
        let b = connect("memory://facade-shared").await.unwrap();
        a.append(eventlog_core::EventEnvelope::new("/s", "t", &b"x"[..]))
            .await
            .unwrap();
        assert_eq!(b.last_seq_no().await, Some(1));
    }

    #[tokio::test]
    async fn malformed_urls_are_typed_errors_without_secrets() {
        assert!(refusal(connect("orders").await).contains("not a URL"));
        assert!(
            refusal(connect("ftp://u:hunter2@h/log").await).contains("unknown scheme `ftp://`")
        );
        let err = connect("memory://bad.name").await.err().unwrap();
        assert!(matches!(
            err.downcast_ref(),
            Some(EventLogError::InvalidLogName { .. })
        ));
        for url in [
            "nats://u:hunter2@h",
            "kafka://u:hunter2@h",
            "redis://u:hunter2@h:1/a/b/c",
        ] {
            let reason = connect(url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !reason.contains("hunter2") && !reason.is_empty(),
                "{url}: {reason}"
            );
        }
    }

    #[test]
    fn a_password_fills_a_user_without_one() {
        let password = || Some("p@ss word".to_owned());
        assert_eq!(
            with_password("redis://ann@h:1/log", password()),
            "redis://ann:p%40ss%20word@h:1/log"
        );
        assert_eq!(
            with_password("redis://ann:own@h:1/log", password()),
            "redis://ann:own@h:1/log"
        );
        assert_eq!(
            with_password("redis://h:1/log", password()),
            "redis://h:1/log"
        );
        assert_eq!(
            with_password("redis://ann@h:1/log", None),
            "redis://ann@h:1/log"
        );
    }
}
