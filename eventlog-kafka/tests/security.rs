//! SASL/SCRAM and secret hygiene against a Kafka-protocol broker that
//! requires authentication (`KAFKA_SASL`: tansu with `--authentication` and
//! one SCRAM-SHA-512 user), in a container of its own.
//!
//! No TLS checks here: tansu 0.6 takes `--cert`/`--key` but never wraps a
//! connection in TLS (see `docs/kafka-test-broker.md`). The `tls` feature's
//! SSL settings are librdkafka's own and are not exercised by this suite.

use anyhow::{Context, Result};
use async_trait::async_trait;
use conformance::security::{Access, Secured};
use eventlog_core::EventLog;
use eventlog_kafka::{KafkaConfig, KafkaConfigBuilder, KafkaEventLog};
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{Container, KAFKA_SASL, PASSWORD, SharedBroker, USER};
use tokio::sync::OnceCell;

const MECHANISM: &str = "SCRAM-SHA-512";

struct SaslKafka(&'static Container);

impl SaslKafka {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        Ok(Self(SharedBroker::secured(&SHARED, &KAFKA_SASL).await?))
    }
}

#[async_trait]
impl Secured for SaslKafka {
    async fn open(
        &self,
        log: &str,
        access: Access,
        timeout: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        let builder = KafkaConfig::builder(self.0.address(), log).with_timeout(timeout);
        let config = match access {
            Access::Granted => builder.with_sasl(MECHANISM, USER, PASSWORD),
            Access::WrongPassword(password) => builder.with_sasl(MECHANISM, USER, password),
            Access::Anonymous => builder,
            other => anyhow::bail!("no such access here: {other:?}"),
        };
        Ok(Arc::new(KafkaEventLog::connect(config.build()?).await?))
    }

    fn rendered_configs(&self, canary: &str) -> Result<Vec<String>> {
        let builder = || KafkaConfig::builder("h:1", "log");
        let configs = [
            builder().with_sasl(MECHANISM, USER, canary),
            builder().with_property("ssl.key.password", canary),
            KafkaConfig::from_url(&format!(
                "kafka://{USER}:{canary}@h:1/log?sasl_mechanism={MECHANISM}"
            ))?,
        ];
        let refused = KafkaConfig::from_url(&format!("kafka://{USER}:{canary}@h:1/a/b"))
            .and_then(KafkaConfigBuilder::build)
            .err()
            .context("a URL with two path segments is refused")?;
        let mut rendered = vec![format!("{refused} {refused:?}")];
        for config in configs {
            rendered.push(format!("{config:?}"));
            rendered.push(format!("{:?}", config.build()?));
        }
        Ok(rendered)
    }

    fn names_missing_credentials(&self) -> bool {
        false
    }
}

conformance::security_tests!(no_tls: SaslKafka::shared().await?);
