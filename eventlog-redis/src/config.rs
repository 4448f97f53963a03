//! Configuration: a builder, filled by hand or from a URL.

use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::log_url::{CommonOption, LogUrl};
use eventlog_core::{EventLogError, Secret, validate};
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
    /// How long the log remembers the (`source`, `id`) of each event it
    /// stored, so a retried append stores nothing; zero turns it off.
    pub dedup_window: Duration,
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
                dedup_window: eventlog_core::DEFAULT_DEDUP_WINDOW,
            },
        }
    }

    /// The configuration a URL describes:
    /// `redis://[user[:password]@]host[:port][/db]/<log>?timeout_ms=…&key_prefix=…&max_payload=…`
    /// (`rediss://` for TLS, `ca_file=<path>` to trust a private CA,
    /// `dedup_window_ms=…`). The last path segment is the log; a number
    /// before it selects the database.
    pub fn from_url(url: &str) -> Result<RedisConfigBuilder, EventLogError> {
        let url = LogUrl::parse(url)?;
        url.expect_scheme(&["redis", "rediss"])?;
        let mut server = format!("{}://{}", url.scheme(), url.server(6379)?);
        match url.path() {
            [] => {}
            [db] => {
                db.parse::<u32>()
                    .map_err(|_| EventLogError::InvalidConfig {
                        reason: format!("database `{db}` is not a number"),
                    })?;
                server.push('/');
                server.push_str(db);
            }
            _ => {
                return Err(EventLogError::InvalidConfig {
                    reason: "a redis:// URL ends in /<log> or /<db>/<log>".into(),
                });
            }
        }
        let mut builder = Self::builder(server, url.log());
        if let Some(user) = url.user() {
            builder = builder.with_username(user);
        }
        if let Some(password) = url.password() {
            builder = builder.with_password(password.expose());
        }
        for option in url.options() {
            builder = match option.common()? {
                Some(CommonOption::Timeout(timeout)) => builder.with_timeout(timeout),
                Some(CommonOption::Block(block)) => builder.with_block(block),
                Some(CommonOption::MaxPayload(max)) => builder.with_max_payload(max),
                Some(CommonOption::CaFile(path)) => builder.with_root_certificates(path),
                Some(CommonOption::DedupWindow(window)) => builder.with_dedup_window(window),
                Some(_) => return Err(option.unknown(crate::error::BACKEND)),
                None => match option.key() {
                    "key_prefix" => builder.with_key_prefix(option.value()),
                    _ => return Err(option.unknown(crate::error::BACKEND)),
                },
            };
        }
        Ok(builder)
    }

    /// The stream key of the log.
    pub fn stream_key(&self) -> String {
        format!("{}{}", self.key_prefix, self.log)
    }

    /// The key of `consumer`'s lease, held by its exclusive subscription
    /// (no stream key has `:`: log names cannot).
    pub(crate) fn lease_key(&self, consumer: &str) -> String {
        format!("{}{}:lease:{consumer}", self.key_prefix, self.log)
    }

    /// The key that marks the event of `dedup_key` as stored, for the
    /// window.
    pub(crate) fn dedup_key(&self, dedup_key: &str) -> String {
        format!("{}{}:dedup:{dedup_key}", self.key_prefix, self.log)
    }
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

    /// How long the log remembers the (`source`, `id`) of each stored event
    /// (default [`DEFAULT_DEDUP_WINDOW`](eventlog_core::DEFAULT_DEDUP_WINDOW));
    /// zero turns deduplication off. Each event of the window keeps a key
    /// of about 100 bytes on the server, expiring with the window.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.config.dedup_window = window;
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
                    eventlog_core::redact_url(&config.url)
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
