//! Configuration: a builder, filled by hand or from a URL.

use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::{EventLogError, Secret, redact_url as redact, validate};
use std::path::PathBuf;
use std::time::Duration;

/// The payload limit by default: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// The operation timeout by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The key prefix by default: the log `orders` is the stream `eventlog:orders`.
pub const DEFAULT_KEY_PREFIX: &str = "eventlog:";

/// How to reach one log on a Redis server; build it with
/// [`RedisConfig::builder`] or [`RedisConfig::from_url`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server address as a URL without credentials: `redis://host:port/db`
    /// or `rediss://…` for TLS.
    pub url: String,
    /// The log: the stream key is `key_prefix` followed by it.
    pub log: String,
    /// The ACL user name.
    pub username: Option<String>,
    /// The password (of the ACL user, or `requirepass`).
    pub password: Option<Secret>,
    /// A PEM file of root certificates to trust for `rediss://` instead of
    /// the built-in web roots (a private CA).
    pub root_certificates: Option<PathBuf>,
    /// The bound on every operation, connecting included.
    pub timeout: Duration,
    /// How subscriptions read ahead and report outages.
    pub subscription: SubscriptionSettings,
    /// Prepended to the log name to make the stream key.
    pub key_prefix: String,
    /// The largest payload `append` accepts.
    pub max_payload: usize,
    /// How long one blocking read of a subscription waits on the server
    /// before it asks again.
    pub block: Duration,
}

impl RedisConfig {
    /// A builder for the log `log` on the server at `url`.
    pub fn builder(url: impl Into<String>, log: impl Into<String>) -> RedisConfigBuilder {
        RedisConfigBuilder {
            config: RedisConfig {
                url: url.into(),
                log: log.into(),
                username: None,
                password: None,
                root_certificates: None,
                timeout: DEFAULT_TIMEOUT,
                subscription: SubscriptionSettings::default(),
                key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
                max_payload: DEFAULT_MAX_PAYLOAD,
                block: Duration::from_secs(2),
            },
        }
    }

    /// The configuration a URL describes:
    /// `redis://[user[:password]@]host[:port][/db]/<log>?timeout_ms=…&key_prefix=…&max_payload=…`
    /// (`rediss://` for TLS, `ca_file=<path>` to trust a private CA). The last path segment is the log; a number
    /// before it selects the database.
    pub fn from_url(url: &str) -> Result<RedisConfigBuilder, EventLogError> {
        let invalid = |reason: String| EventLogError::InvalidConfig { reason };
        let parsed = url::Url::parse(url)
            .map_err(|e| invalid(format!("`{}` is not a URL: {e}", redact(url))))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(invalid(format!(
                "scheme `{}` is not redis or rediss",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("the URL names no host".into()))?;
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let (db, log) = match segments.as_slice() {
            [log] => (None, *log),
            [db, log] => (Some(*db), *log),
            _ => {
                return Err(invalid(format!(
                    "`{}` must end in /<log> or /<db>/<log>",
                    redact(url)
                )));
            }
        };
        let mut server = format!(
            "{}://{host}:{}",
            parsed.scheme(),
            parsed.port().unwrap_or(6379)
        );
        if let Some(db) = db {
            db.parse::<u32>()
                .map_err(|_| invalid(format!("database `{db}` is not a number")))?;
            server.push('/');
            server.push_str(db);
        }
        let mut builder = Self::builder(server, log);
        if !parsed.username().is_empty() {
            builder = builder.with_username(decode(parsed.username()));
        }
        if let Some(password) = parsed.password() {
            builder = builder.with_password(decode(password));
        }
        for (key, value) in parsed.query_pairs() {
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("`{key}` must be a whole number, not `{value}`")))
            };
            builder = match key.as_ref() {
                "timeout_ms" => builder.with_timeout(Duration::from_millis(number()?)),
                "block_ms" => builder.with_block(Duration::from_millis(number()?)),
                "max_payload" => builder.with_max_payload(number()? as usize),
                "key_prefix" => builder.with_key_prefix(value.as_ref()),
                "ca_file" => builder.with_root_certificates(value.as_ref()),
                other => return Err(invalid(format!("unknown option `{other}`"))),
            };
        }
        Ok(builder)
    }

    /// The stream key of the log.
    pub fn stream_key(&self) -> String {
        format!("{}{}", self.key_prefix, self.log)
    }
}

/// A percent-encoded part of a URL's user information, decoded.
fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// Builds a [`RedisConfig`]; `build` checks it.
#[derive(Clone, Debug)]
pub struct RedisConfigBuilder {
    config: RedisConfig,
}

impl RedisConfigBuilder {
    /// The ACL user name.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// The password (of the ACL user, or `requirepass`).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(Secret::new(password));
        self
    }

    /// Trust the root certificates in this PEM file (for `rediss://`)
    /// instead of the built-in web roots.
    pub fn with_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.root_certificates = Some(path.into());
        self
    }

    /// How subscriptions read ahead and report outages.
    pub fn with_subscription_settings(mut self, settings: SubscriptionSettings) -> Self {
        self.config.subscription = settings;
        self
    }

    /// The bound on every operation (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The stream key prefix (default `eventlog:`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The payload limit in bytes (default 1 MiB).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.config.max_payload = max_payload;
        self
    }

    /// How long one blocking read waits on the server (default 2 s).
    pub fn with_block(mut self, block: Duration) -> Self {
        self.config.block = block;
        self
    }

    /// The checked configuration.
    pub fn build(self) -> Result<RedisConfig, EventLogError> {
        let config = self.config;
        validate::log_name(&config.log)?;
        if config.timeout.is_zero() || config.block.is_zero() {
            return Err(EventLogError::InvalidConfig {
                reason: "timeouts must be above zero".into(),
            });
        }
        if config.root_certificates.is_some() && !config.url.starts_with("rediss://") {
            return Err(EventLogError::InvalidConfig {
                reason: "root certificates are for TLS: use a rediss:// URL".into(),
            });
        }
        if config.url.contains('@') {
            return Err(EventLogError::InvalidConfig {
                reason: format!(
                    "put credentials in with_username/with_password, not in the server URL `{}`",
                    redact(&config.url)
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let c = RedisConfig::from_url(
            "redis://ann:s3cr%40t@example.com:7000/2/orders?timeout_ms=1500&key_prefix=app:",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(c.url, "redis://example.com:7000/2");
        assert_eq!(c.log, "orders");
        assert_eq!(c.username.as_deref(), Some("ann"));
        assert_eq!(c.password, Some(Secret::new("s3cr@t")));
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.stream_key(), "app:orders");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
    }

    #[test]
    fn bad_urls_are_typed_errors_without_secrets() {
        for url in [
            "redis://h:1",
            "redis://h:1/a/b/c",
            "http://h/log",
            "redis://:hunter2@h/bad.log",
            "redis://h/log?nope=1",
            "redis://h/x/log",
            "not a url with hunter2@",
        ] {
            let err = RedisConfig::from_url(url)
                .and_then(RedisConfigBuilder::build)
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    EventLogError::InvalidConfig { .. } | EventLogError::InvalidLogName { .. }
                ),
                "{url}: {err:?}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
