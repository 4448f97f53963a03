//! Configuration: a builder, filled by hand or from a URL.

use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::log_url::{CommonOption, LogUrl};
use eventlog_core::{EventLogError, Secret, validate};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The operation timeout by default, appends' delivery timeout included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Topic names are this prefix and the log name: `eventlog.orders`.
pub const DEFAULT_TOPIC_PREFIX: &str = "eventlog.";
/// The payload limit by default: 1 MiB, under Kafka's default
/// `message.max.bytes` with room for the headers.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024 - 16 * 1024;

/// SASL authentication.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user.
    pub username: String,
    /// The password, never printed.
    pub password: Secret,
}

/// How to reach one log on a Kafka cluster; build it with
/// [`KafkaConfig::builder`] or [`KafkaConfig::from_url`].
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// `host:port` of the bootstrap brokers, comma-separated.
    pub bootstrap_servers: String,
    /// The log.
    pub log: String,
    /// SASL authentication, if any.
    pub sasl: Option<Sasl>,
    /// Use TLS (`SSL` or `SASL_SSL`).
    pub tls: bool,
    /// Allow SASL `PLAIN` without TLS, which sends the password as it is
    /// over the network (off by default: `build` refuses that combination).
    pub cleartext_password: bool,
    /// A PEM file of CA certificates to trust.
    pub ca_location: Option<String>,
    /// The bound on every operation; appends' delivery timeout too.
    pub timeout: Duration,
    /// How subscriptions read ahead and report outages.
    pub subscription: SubscriptionSettings,
    /// The topic name is this prefix and the log name.
    pub topic_prefix: String,
    /// A consumer's group id is this prefix and the consumer name.
    pub group_prefix: String,
    /// Replication factor when the topic is created.
    pub replication_factor: i32,
    /// `retention.ms` when the topic is created: `None` keeps events
    /// forever, as a log should by default.
    pub retention: Option<Duration>,
    /// Create the topic on first use (`true`), or require it to exist.
    pub create_topic: bool,
    /// The largest payload `append` accepts.
    pub max_payload: usize,
    /// Further librdkafka properties, set on every client after ours.
    pub properties: BTreeMap<String, Secret>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("log", &self.log)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("cleartext_password", &self.cleartext_password)
            .field("ca_location", &self.ca_location)
            .field("timeout", &self.timeout)
            .field("topic_prefix", &self.topic_prefix)
            .field("group_prefix", &self.group_prefix)
            .field("replication_factor", &self.replication_factor)
            .field("retention", &self.retention)
            .field("create_topic", &self.create_topic)
            .field("max_payload", &self.max_payload)
            // Pass-through values may be credentials: names only.
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaConfig {
    /// A builder for the log `log` on the brokers `bootstrap_servers`.
    pub fn builder(
        bootstrap_servers: impl Into<String>,
        log: impl Into<String>,
    ) -> KafkaConfigBuilder {
        KafkaConfigBuilder {
            config: KafkaConfig {
                bootstrap_servers: bootstrap_servers.into(),
                log: log.into(),
                sasl: None,
                tls: false,
                cleartext_password: false,
                ca_location: None,
                timeout: DEFAULT_TIMEOUT,
                subscription: SubscriptionSettings::default(),
                topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
                group_prefix: String::new(),
                replication_factor: 1,
                retention: None,
                create_topic: true,
                max_payload: DEFAULT_MAX_PAYLOAD,
                properties: BTreeMap::new(),
            },
        }
    }

    /// The configuration a URL describes:
    /// `kafka://[user:password@]host:port[,host:port…]/<log>?sasl_mechanism=…&tls=true&timeout_ms=…&topic_prefix=…&group_prefix=…&replication_factor=…&retention_ms=…&create_topic=false&max_payload=…&cleartext_password=true`.
    /// A user and password mean SASL, `PLAIN` unless `sasl_mechanism` says
    /// otherwise; `PLAIN` needs `tls=true` or `cleartext_password=true`.
    pub fn from_url(url: &str) -> Result<KafkaConfigBuilder, EventLogError> {
        let url = LogUrl::parse(url)?;
        url.expect_scheme(&["kafka"])?;
        if !url.path().is_empty() {
            return Err(EventLogError::InvalidConfig {
                reason: "a kafka:// URL ends in /<log>".into(),
            });
        }
        let mut builder = Self::builder(url.servers(9092).join(","), url.log());
        let mut mechanism = "PLAIN".to_owned();
        for option in url.options() {
            builder = match option.common()? {
                Some(CommonOption::Timeout(timeout)) => builder.with_timeout(timeout),
                Some(CommonOption::MaxPayload(max)) => builder.with_max_payload(max),
                Some(CommonOption::CaFile(path)) => {
                    builder.with_ca_location(path.display().to_string())
                }
                // Off is what Kafka has; anything else cannot be honoured.
                Some(CommonOption::DedupWindow(window)) if window.is_zero() => builder,
                Some(CommonOption::DedupWindow(_)) => {
                    return Err(EventLogError::InvalidConfig {
                        reason: "kafka does not deduplicate appends (no dedup_window_ms but 0)"
                            .into(),
                    });
                }
                // librdkafka's fetches have no block time of ours.
                Some(_) => return Err(option.unknown(crate::error::BACKEND)),
                None => match option.key() {
                    "retention_ms" => builder.with_retention(Some(Duration::from_millis(
                        option.number(1, i64::MAX as u64)?,
                    ))),
                    "replication_factor" => {
                        builder.with_replication_factor(option.number(1, 32)? as i32)
                    }
                    "topic_prefix" => builder.with_topic_prefix(option.value()),
                    "group_prefix" => builder.with_group_prefix(option.value()),
                    "create_topic" => builder.with_create_topic(option.flag()?),
                    "tls" => builder.with_tls(option.flag()?),
                    "cleartext_password" => builder.with_cleartext_password(option.flag()?),
                    "sasl_mechanism" => {
                        mechanism = option.value().to_owned();
                        builder
                    }
                    _ => return Err(option.unknown(crate::error::BACKEND)),
                },
            };
        }
        if let Some(user) = url.user() {
            let password = url.password().map(Secret::expose).unwrap_or_default();
            builder = builder.with_sasl(mechanism, user, password);
        }
        Ok(builder)
    }

    /// Whether the clients use TLS: a `security.protocol` property
    /// decides (it is set after ours), else `tls`.
    fn uses_tls(&self) -> bool {
        match self.properties.get("security.protocol") {
            Some(protocol) => protocol.expose().to_ascii_lowercase().ends_with("ssl"),
            None => self.tls,
        }
    }

    /// The topic that holds the log.
    pub fn topic(&self) -> String {
        format!("{}{}", self.topic_prefix, self.log)
    }

    /// The consumer group that keeps `consumer`'s position.
    pub fn group(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.group_prefix)
    }
}

/// Builds a [`KafkaConfig`]; `build` checks it.
#[derive(Clone, Debug)]
pub struct KafkaConfigBuilder {
    config: KafkaConfig,
}

impl KafkaConfigBuilder {
    /// Authenticate with SASL (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn with_sasl(
        mut self,
        mechanism: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.sasl = Some(Sasl {
            mechanism: mechanism.into(),
            username: username.into(),
            password: Secret::new(password),
        });
        self
    }

    /// Use TLS.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.config.tls = tls;
        self
    }

    /// Allow SASL `PLAIN` without TLS (default: refused), for a network
    /// where a password sent as it is cannot be read by anyone else.
    pub fn with_cleartext_password(mut self, allow: bool) -> Self {
        self.config.cleartext_password = allow;
        self
    }

    /// Trust the CA certificates in this PEM file.
    pub fn with_ca_location(mut self, path: impl Into<String>) -> Self {
        self.config.ca_location = Some(path.into());
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

    /// The topic prefix (default `eventlog.`).
    pub fn with_topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.topic_prefix = prefix.into();
        self
    }

    /// The consumer group prefix (default none: groups are named as the consumers).
    pub fn with_group_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.group_prefix = prefix.into();
        self
    }

    /// Replication factor when the topic is created (default 1).
    pub fn with_replication_factor(mut self, factor: i32) -> Self {
        self.config.replication_factor = factor;
        self
    }

    /// Retention when the topic is created (default: forever).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.config.retention = retention;
        self
    }

    /// Create the topic on first use (default), or require it to exist.
    pub fn with_create_topic(mut self, create: bool) -> Self {
        self.config.create_topic = create;
        self
    }

    /// The payload limit in bytes.
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.config.max_payload = max_payload;
        self
    }

    /// Sets a librdkafka property on every client, after the backend's own.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .properties
            .insert(key.into(), Secret::new(value));
        self
    }

    /// The checked configuration.
    pub fn build(self) -> Result<KafkaConfig, EventLogError> {
        let config = self.config;
        validate::log_name(&config.log)?;
        let invalid = |reason: String| Err(EventLogError::InvalidConfig { reason });
        if config.timeout.is_zero() {
            return invalid("the timeout must be above zero".into());
        }
        if config.replication_factor < 1 {
            return invalid(format!(
                "replication factor {} is below 1",
                config.replication_factor
            ));
        }
        let topic = config.topic();
        if topic.len() > 249
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return invalid(format!(
                "topic name `{topic}`: at most 249 of A-Z a-z 0-9 . _ -"
            ));
        }
        if let Some(sasl) = &config.sasl
            && !matches!(
                sasl.mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            )
        {
            return invalid(format!(
                "SASL mechanism `{}`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                sasl.mechanism
            ));
        }
        if config.sasl.as_ref().is_some_and(|s| s.mechanism == "PLAIN")
            && !config.uses_tls()
            && !config.cleartext_password
        {
            return invalid(
                "SASL PLAIN without TLS sends the password as it is to the brokers: \
                 use TLS (tls=true, with_tls), a SCRAM mechanism (sasl_mechanism=SCRAM-SHA-512), \
                 or accept it with cleartext_password=true (with_cleartext_password)"
                    .into(),
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let c = KafkaConfig::from_url(
            "kafka://ann:s3cr%40t@b1:9092,b2:9092/orders?sasl_mechanism=SCRAM-SHA-256&tls=true&timeout_ms=1500&retention_ms=60000",
        )
        .unwrap()
        .with_property("sasl.oauthbearer.config", "hunter3")
        .build()
        .unwrap();
        assert_eq!(c.bootstrap_servers, "b1:9092,b2:9092");
        assert_eq!(c.topic(), "eventlog.orders");
        assert_eq!(c.group("billing"), "billing");
        let sasl = c.sasl.as_ref().unwrap();
        assert_eq!(
            (
                sasl.mechanism.as_str(),
                sasl.username.as_str(),
                sasl.password.expose()
            ),
            ("SCRAM-SHA-256", "ann", "s3cr@t")
        );
        assert!(c.tls);
        assert_eq!(c.retention, Some(Duration::from_secs(60)));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr") && !debug.contains("hunter3"),
            "{debug}"
        );
    }

    #[test]
    fn bad_urls_are_typed_errors_without_secrets() {
        for url in [
            "kafka://h:1",
            "kafka://h/a/b",
            "nats://h/log",
            "kafka://u:hunter2@h/bad.log",
            "kafka://h/log?x=1",
            "kafka://u:hunter2@/log",
            "kafka://u:hunter2@h/l?sasl_mechanism=GSSAPI",
        ] {
            let err = KafkaConfig::from_url(url)
                .and_then(KafkaConfigBuilder::build)
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

    #[test]
    fn sasl_plain_without_tls_needs_an_explicit_opt_in() {
        let plain = "kafka://u:hunter2@h/log";
        let err = KafkaConfig::from_url(plain)
            .and_then(KafkaConfigBuilder::build)
            .unwrap_err();
        let reason = err.to_string();
        assert!(
            matches!(err, EventLogError::InvalidConfig { .. })
                && reason.contains("cleartext_password=true")
                && !reason.contains("hunter2"),
            "{err:?}"
        );
        let by_hand = KafkaConfig::builder("h:1", "log").with_sasl("PLAIN", "u", "hunter2");
        assert!(by_hand.clone().build().is_err());
        for allowed in [
            KafkaConfig::from_url(&format!("{plain}?tls=true")).unwrap(),
            KafkaConfig::from_url(&format!("{plain}?cleartext_password=true")).unwrap(),
            KafkaConfig::from_url(&format!("{plain}?sasl_mechanism=SCRAM-SHA-256")).unwrap(),
            by_hand.clone().with_cleartext_password(true),
            by_hand
                .clone()
                .with_property("security.protocol", "SASL_SSL"),
        ] {
            let debug = format!("{allowed:?}");
            assert!(allowed.build().is_ok(), "{debug}");
        }
        // The property is set after `tls`, so it decides.
        let overridden = by_hand
            .with_tls(true)
            .with_property("security.protocol", "sasl_plaintext");
        assert!(overridden.build().is_err());
    }
}
