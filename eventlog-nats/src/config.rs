//! Configuration: a builder, filled by hand or from a URL.

use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::log_url::{CommonOption, LogUrl};
use eventlog_core::{EventLogError, Secret, validate};
use std::path::PathBuf;
use std::time::Duration;

/// The operation timeout by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stream names are this prefix and the log name: `EVENTLOG_orders`.
pub const DEFAULT_STREAM_PREFIX: &str = "EVENTLOG_";
/// Subjects are this prefix and the log name: `eventlog.orders`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "eventlog.";

/// How the client proves who it is.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// No authentication.
    #[default]
    None,
    /// User and password.
    #[non_exhaustive]
    UserPassword {
        /// The user.
        user: String,
        /// The password, never printed.
        password: Secret,
    },
    /// A token, never printed.
    Token(Secret),
    /// An NKey seed, never printed.
    NKey(Secret),
    /// A `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
}

/// How to reach one log on a NATS server with JetStream; build it with
/// [`NatsConfig::builder`] or [`NatsConfig::from_url`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs, `nats://host:port` (`tls://` for TLS).
    pub servers: Vec<String>,
    /// The log.
    pub log: String,
    /// How the client authenticates.
    pub credentials: Credentials,
    /// Require TLS.
    pub require_tls: bool,
    /// Extra root certificates (PEM) to trust.
    pub root_certificates: Option<PathBuf>,
    /// The bound on every operation, connecting included.
    pub timeout: Duration,
    /// How subscriptions read ahead and report outages.
    pub subscription: SubscriptionSettings,
    /// The stream name is this prefix and the log name.
    pub stream_prefix: String,
    /// The subject is this prefix and the log name.
    pub subject_prefix: String,
    /// Stream replicas when the stream is created.
    pub replicas: usize,
    /// The most consumers (durables: one per consumer name) the stream
    /// takes, when it is created. `None` leaves it to the server, which
    /// caps a stream created without a limit at 1,000 (seen on 2.14 and
    /// 2.15).
    pub max_consumers: Option<u32>,
    /// Create the stream on first use (`true`), or require it to exist.
    pub create_stream: bool,
    /// How long one pull request of a subscription waits on the server.
    pub block: Duration,
    /// The stream's deduplication window when the stream is created
    /// (JetStream's `duplicate_window`); zero turns deduplication off for
    /// this handle (no `Nats-Msg-Id` is sent).
    pub dedup_window: Duration,
}

impl NatsConfig {
    /// A builder for the log `log` on the servers at `servers`
    /// (comma-separated URLs).
    pub fn builder(servers: impl AsRef<str>, log: impl Into<String>) -> NatsConfigBuilder {
        NatsConfigBuilder {
            config: NatsConfig {
                servers: servers
                    .as_ref()
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect(),
                log: log.into(),
                credentials: Credentials::None,
                require_tls: false,
                root_certificates: None,
                timeout: DEFAULT_TIMEOUT,
                subscription: SubscriptionSettings::default(),
                stream_prefix: DEFAULT_STREAM_PREFIX.to_owned(),
                subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
                replicas: 1,
                max_consumers: None,
                create_stream: true,
                block: Duration::from_secs(2),
                dedup_window: eventlog_core::DEFAULT_DEDUP_WINDOW,
            },
        }
    }

    /// The configuration a URL describes:
    /// `nats://[user:password@]host[:port]/<log>?timeout_ms=…&replicas=…&max_consumers=…&stream_prefix=…&subject_prefix=…&create_stream=false`
    /// (`tls://` requires TLS; `ca_file=<path>` trusts a private CA). Tokens, NKeys and creds files go through the
    /// builder or the facade's environment variables.
    pub fn from_url(url: &str) -> Result<NatsConfigBuilder, EventLogError> {
        let url = LogUrl::parse(url)?;
        url.expect_scheme(&["nats", "tls"])?;
        if !url.path().is_empty() {
            return Err(EventLogError::InvalidConfig {
                reason: "a nats:// URL ends in /<log>".into(),
            });
        }
        let server = format!("{}://{}", url.scheme(), url.server(4222)?);
        let mut builder = Self::builder(server, url.log()).with_require_tls(url.scheme() == "tls");
        if let Some(user) = url.user() {
            let password = url.password().map(Secret::expose).unwrap_or_default();
            builder = builder.with_user_password(user, password);
        }
        for option in url.options() {
            builder = match option.common()? {
                Some(CommonOption::Timeout(timeout)) => builder.with_timeout(timeout),
                Some(CommonOption::Block(block)) => builder.with_block(block),
                Some(CommonOption::CaFile(path)) => builder.with_root_certificates(path),
                Some(CommonOption::DedupWindow(window)) => builder.with_dedup_window(window),
                // The server's own `max_payload` is the limit.
                Some(_) => return Err(option.unknown(crate::error::BACKEND)),
                None => match option.key() {
                    "replicas" => builder.with_replicas(option.number(1, 5)? as usize),
                    "max_consumers" => {
                        builder.with_max_consumers(option.number(1, i32::MAX as u64)? as u32)
                    }
                    "stream_prefix" => builder.with_stream_prefix(option.value()),
                    "subject_prefix" => builder.with_subject_prefix(option.value()),
                    "create_stream" => builder.with_create_stream(option.flag()?),
                    _ => return Err(option.unknown(crate::error::BACKEND)),
                },
            };
        }
        Ok(builder)
    }

    /// The JetStream stream that holds the log.
    pub fn stream_name(&self) -> String {
        format!("{}{}", self.stream_prefix, self.log)
    }

    /// The subject events of the log are published on.
    pub fn subject(&self) -> String {
        format!("{}{}", self.subject_prefix, self.log)
    }
}

/// Builds a [`NatsConfig`]; `build` checks it.
#[derive(Clone, Debug)]
pub struct NatsConfigBuilder {
    config: NatsConfig,
}

impl NatsConfigBuilder {
    /// Authenticate with a user and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.credentials = Credentials::UserPassword {
            user: user.into(),
            password: Secret::new(password),
        };
        self
    }

    /// Authenticate with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.config.credentials = Credentials::Token(Secret::new(token));
        self
    }

    /// Authenticate with an NKey seed.
    pub fn with_nkey(mut self, seed: impl Into<String>) -> Self {
        self.config.credentials = Credentials::NKey(Secret::new(seed));
        self
    }

    /// Authenticate with a `.creds` file.
    pub fn with_creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.credentials = Credentials::CredsFile(path.into());
        self
    }

    /// Require TLS.
    pub fn with_require_tls(mut self, require: bool) -> Self {
        self.config.require_tls = require;
        self
    }

    /// Trust the root certificates in this PEM file too.
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

    /// The stream name prefix (default `EVENTLOG_`).
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.stream_prefix = prefix.into();
        self
    }

    /// The subject prefix (default `eventlog.`).
    pub fn with_subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.subject_prefix = prefix.into();
        self
    }

    /// The deduplication window of a stream this handle creates (default
    /// [`DEFAULT_DEDUP_WINDOW`](eventlog_core::DEFAULT_DEDUP_WINDOW), as
    /// JetStream's); an existing stream keeps its own, which
    /// `capabilities()` reports. Zero turns deduplication off.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.config.dedup_window = window;
        self
    }

    /// The most consumer names the stream takes, when it is created
    /// (default: the server's, 1,000).
    pub fn with_max_consumers(mut self, max: u32) -> Self {
        self.config.max_consumers = Some(max);
        self
    }

    /// Stream replicas when the stream is created (default 1).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.config.replicas = replicas;
        self
    }

    /// Create the stream on first use (default), or require it to exist.
    pub fn with_create_stream(mut self, create: bool) -> Self {
        self.config.create_stream = create;
        self
    }

    /// How long one pull request waits on the server (default 2 s).
    pub fn with_block(mut self, block: Duration) -> Self {
        self.config.block = block;
        self
    }

    /// The checked configuration.
    pub fn build(self) -> Result<NatsConfig, EventLogError> {
        let config = self.config;
        validate::log_name(&config.log)?;
        let invalid = |reason: String| Err(EventLogError::InvalidConfig { reason });
        if config.timeout.is_zero() || config.block.is_zero() {
            return invalid("timeouts must be above zero".into());
        }
        if config.servers.iter().any(|s| s.is_empty()) {
            return invalid("a server URL is empty".into());
        }
        if config.servers.iter().any(|s| s.contains('@')) {
            return invalid(
                "put credentials in with_user_password and friends, not in server URLs".into(),
            );
        }
        if !(1..=5).contains(&config.replicas) {
            return invalid(format!("replicas must be 1 to 5, not {}", config.replicas));
        }
        let bad_prefix = |p: &str| {
            p.chars()
                .any(|c| c.is_whitespace() || matches!(c, '*' | '>'))
        };
        if bad_prefix(&config.subject_prefix)
            || bad_prefix(&config.stream_prefix)
            || config.stream_prefix.contains('.')
        {
            return invalid("stream and subject prefixes may not hold spaces, `*` or `>`, nor a stream prefix `.`".into());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let c = NatsConfig::from_url(
            "nats://ann:s3cr%40t@example.com:4333/orders?timeout_ms=1500&replicas=3",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(c.servers, ["nats://example.com:4333"]);
        assert_eq!((c.log.as_str(), c.replicas), ("orders", 3));
        assert_eq!(c.stream_name(), "EVENTLOG_orders");
        assert_eq!(c.subject(), "eventlog.orders");
        assert!(
            matches!(&c.credentials, Credentials::UserPassword { user, password } if user == "ann" && password.expose() == "s3cr@t")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
    }

    #[test]
    fn bad_urls_are_typed_errors_without_secrets() {
        for url in [
            "nats://h:1",
            "nats://h/a/b",
            "redis://h/log",
            "nats://u:hunter2@h/bad.log",
            "nats://h/log?x=1",
            "hunter2@",
        ] {
            let err = NatsConfig::from_url(url)
                .and_then(NatsConfigBuilder::build)
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
