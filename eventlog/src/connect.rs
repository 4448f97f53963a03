//! `connect(url)`: a backend chosen by the URL's scheme.

use eventlog_core::{EventLog, EventLogError, Result, redact_url};
use futures::future::BoxFuture;
use std::sync::Arc;

/// A backend [`connect`] can open: its URL schemes, the Cargo feature that
/// compiles it in, and its opener when it is.
#[derive(Clone, Copy)]
pub struct Backend {
    /// The URL schemes it serves, such as `redis` and `rediss`.
    pub schemes: &'static [&'static str],
    /// The feature of this crate that compiles it in.
    pub feature: &'static str,
    open: Option<Opener>,
}

impl Backend {
    /// Whether this build has it.
    pub fn compiled_in(&self) -> bool {
        self.open.is_some()
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("schemes", &self.schemes)
            .field("feature", &self.feature)
            .field("compiled_in", &self.compiled_in())
            .finish()
    }
}

type Opener = for<'a> fn(&'a str, &'a str) -> BoxFuture<'a, Result<Arc<dyn EventLog>>>;

/// The names of the credential variables, after their prefix: each is
/// read only for a URL that leaves that credential out.
pub const CREDENTIAL_VARIABLES: &[&str] = &["PASSWORD", "NATS_TOKEN", "NATS_NKEY", "NATS_CREDS"];

/// Every backend, by scheme: the one table [`connect`] dispatches through.
pub const BACKENDS: &[Backend] = &[
    Backend {
        schemes: &["memory"],
        feature: "memory",
        open: MEMORY,
    },
    Backend {
        schemes: &["nats", "tls"],
        feature: "nats",
        open: NATS,
    },
    Backend {
        schemes: &["kafka"],
        feature: "kafka",
        open: KAFKA,
    },
    Backend {
        schemes: &["redis", "rediss"],
        feature: "redis",
        open: REDIS,
    },
];

/// A ready log for `url`; the scheme picks the backend:
///
/// * `memory://<log>`: a log of this process; opening one name twice gives
///   two handles on the same log, as two connections to a broker would.
/// * `nats://[user:password@]host:port/<log>` (`tls://` for TLS).
/// * `kafka://[user:password@]host:port[,host:port]/<log>` (SASL with a user).
/// * `redis://[user:password@]host:port[/db]/<log>`, `rediss://` for TLS.
///
/// The broker URLs share one syntax and their common options
/// (`timeout_ms`, `block_ms`, `max_payload`, `ca_file`; see
/// [`eventlog_core::log_url`]); each backend's `from_url` lists its own.
/// Credentials may come from the environment instead of the URL, and those
/// in the URL win: `EVENTLOG_PASSWORD` for a URL with a user and no
/// password; for NATS with no user in the URL, `EVENTLOG_NATS_TOKEN`,
/// `EVENTLOG_NATS_NKEY` or `EVENTLOG_NATS_CREDS` (a creds file). A program
/// that opens logs on more than one broker gives each its own variables
/// with [`connect_with_env`], so no broker is sent another's password.
///
/// A scheme whose feature is not compiled in, or a malformed URL, is an
/// [`EventLogError::InvalidConfig`] that says what to do.
pub async fn connect(url: &str) -> Result<Arc<dyn EventLog>> {
    connect_with_env(url, "EVENTLOG_").await
}

/// [`connect`], reading the credential variables with `prefix` in place
/// of `EVENTLOG_` ([`CREDENTIAL_VARIABLES`] after it): `eventlog copy`
/// reads `EVENTLOG_FROM_PASSWORD` for its source and `EVENTLOG_TO_PASSWORD`
/// for its target.
pub async fn connect_with_env(url: &str, prefix: &str) -> Result<Arc<dyn EventLog>> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(invalid(format!(
            "`{}` is not a URL like memory://orders",
            redact_url(url)
        )));
    };
    let Some(backend) = BACKENDS.iter().find(|b| b.schemes.contains(&scheme)) else {
        let known: Vec<String> = BACKENDS
            .iter()
            .flat_map(|b| b.schemes)
            .map(|s| format!("{s}://"))
            .collect();
        return Err(invalid(format!(
            "unknown scheme `{scheme}://`; known: {}",
            known.join(", ")
        )));
    };
    match backend.open {
        Some(open) => open(url, prefix).await,
        None => Err(invalid(format!(
            "`{scheme}://` needs the `{}` feature of the eventlog crate",
            backend.feature
        ))),
    }
}

fn invalid(reason: String) -> anyhow::Error {
    EventLogError::InvalidConfig { reason }.into()
}

/// The credential variable `name` (one of [`CREDENTIAL_VARIABLES`]) after
/// `prefix`, if set.
#[allow(dead_code, reason = "only the broker backends take credentials")]
fn credential(prefix: &str, name: &str) -> Option<String> {
    std::env::var(format!("{prefix}{name}")).ok()
}

/// `url` with the password from `<prefix>PASSWORD` when it names a user and
/// no password.
#[allow(dead_code, reason = "only the broker backends take passwords")]
fn with_env_password(url: &str, prefix: &str) -> String {
    with_password(url, credential(prefix, "PASSWORD"))
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
const MEMORY: Option<Opener> = Some(|url, _| {
    let log = url.trim_start_matches("memory://");
    let log = eventlog_memory::InMemoryLogs::global()
        .open(log)
        .map(|log| Arc::new(log) as Arc<dyn EventLog>)
        .map_err(Into::into);
    Box::pin(std::future::ready(log))
});
#[cfg(not(feature = "memory"))]
const MEMORY: Option<Opener> = None;

#[cfg(feature = "nats")]
const NATS: Option<Opener> = Some(|url, prefix| Box::pin(nats(url, prefix)));
#[cfg(not(feature = "nats"))]
const NATS: Option<Opener> = None;

#[cfg(feature = "nats")]
async fn nats(url: &str, prefix: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_nats::{NatsConfig, NatsEventLog};
    let mut builder = NatsConfig::from_url(&with_env_password(url, prefix))?;
    let url_has_credentials = eventlog_core::log_url::LogUrl::parse(url)?.user().is_some();
    if url_has_credentials {
        // The URL's own credentials win over the environment.
    } else if let Some(token) = credential(prefix, "NATS_TOKEN") {
        builder = builder.with_token(token);
    } else if let Some(seed) = credential(prefix, "NATS_NKEY") {
        builder = builder.with_nkey(seed);
    } else if let Some(path) = credential(prefix, "NATS_CREDS") {
        builder = builder.with_creds_file(path);
    }
    Ok(Arc::new(NatsEventLog::connect(builder.build()?).await?))
}

#[cfg(feature = "kafka")]
const KAFKA: Option<Opener> = Some(|url, prefix| Box::pin(kafka(url, prefix)));
#[cfg(not(feature = "kafka"))]
const KAFKA: Option<Opener> = None;

#[cfg(feature = "kafka")]
async fn kafka(url: &str, prefix: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_kafka::{KafkaConfig, KafkaEventLog};
    let config = KafkaConfig::from_url(&with_env_password(url, prefix))?.build()?;
    Ok(Arc::new(KafkaEventLog::connect(config).await?))
}

#[cfg(feature = "redis")]
const REDIS: Option<Opener> = Some(|url, prefix| Box::pin(redis(url, prefix)));
#[cfg(not(feature = "redis"))]
const REDIS: Option<Opener> = None;

#[cfg(feature = "redis")]
async fn redis(url: &str, prefix: &str) -> Result<Arc<dyn EventLog>> {
    use eventlog_redis::{RedisConfig, RedisEventLog};
    let config = RedisConfig::from_url(&with_env_password(url, prefix))?.build()?;
    Ok(Arc::new(RedisEventLog::connect(config).await?))
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
