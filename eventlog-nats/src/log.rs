//! `NatsEventLog`: the generic log over the NATS driver.

use crate::config::NatsConfig;
use crate::driver::NatsDriver;
use eventlog_core::Result;
use eventlog_core::driver::{AsDriverLog, DriverLog};

/// An [`EventLog`](eventlog_core::EventLog) on a JetStream stream. Cheap
/// to clone: clones share one connection, which reconnects by itself.
#[derive(Clone, Debug)]
pub struct NatsEventLog {
    log: DriverLog<NatsDriver>,
}

impl NatsEventLog {
    /// Connects to the log described by `config`, creating its stream if
    /// configured so, and checks that the server is 2.14 or newer.
    pub async fn connect(config: NatsConfig) -> Result<Self> {
        let settings = config.subscription;
        Ok(Self {
            log: DriverLog::with_settings(NatsDriver::connect(config).await?, settings),
        })
    }

    /// Connects to the log a URL names; see [`NatsConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(NatsConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &NatsConfig {
        &self.log.driver().config
    }

    /// The JetStream stream that holds the log.
    pub fn stream_name(&self) -> String {
        self.config().stream_name()
    }
}

impl AsDriverLog for NatsEventLog {
    type Driver = NatsDriver;

    fn driver_log(&self) -> &DriverLog<NatsDriver> {
        &self.log
    }
}
