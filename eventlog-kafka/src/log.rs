//! `KafkaEventLog`: the generic log over the Kafka driver.

use crate::config::KafkaConfig;
use crate::driver::KafkaDriver;
use eventlog_core::Result;
use eventlog_core::driver::{AsDriverLog, DriverLog};

/// An [`EventLog`](eventlog_core::EventLog) on a Kafka topic. Cheap to
/// clone: clones share one idempotent producer and one offset client per
/// consumer group.
#[derive(Clone, Debug)]
pub struct KafkaEventLog {
    log: DriverLog<KafkaDriver>,
}

impl KafkaEventLog {
    /// Connects to the log described by `config`, creating its topic (one
    /// partition) if configured so and checking that it has one partition.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        let settings = config.subscription;
        Ok(Self {
            log: DriverLog::with_settings(KafkaDriver::connect(config).await?, settings),
        })
    }

    /// Connects to the log a URL names; see [`KafkaConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(KafkaConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &KafkaConfig {
        &self.log.driver().config
    }

    /// The topic that holds the log.
    pub fn topic(&self) -> &str {
        &self.log.driver().topic
    }

    /// How many librdkafka clients of subscription readers on this log's
    /// topic exist in this process, counted until librdkafka has destroyed
    /// them (feature `probe`, for leak checks: Kafka lists no client
    /// connections).
    #[cfg(feature = "probe")]
    pub fn subscription_count(&self) -> usize {
        crate::reader::live(self.topic())
    }
}

impl AsDriverLog for KafkaEventLog {
    type Driver = KafkaDriver;

    fn driver_log(&self) -> &DriverLog<KafkaDriver> {
        &self.log
    }
}
