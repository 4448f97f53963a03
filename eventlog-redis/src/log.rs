//! `RedisEventLog`: the generic log over the Redis driver.

use crate::config::RedisConfig;
use crate::driver::RedisDriver;
use eventlog_core::Result;
use eventlog_core::driver::{AsDriverLog, DriverLog};

/// An [`EventLog`](eventlog_core::EventLog) on a Redis stream. Cheap to
/// clone: clones share one multiplexed connection, which reconnects by
/// itself; each subscription has a connection of its own for its blocking
/// reads.
#[derive(Clone, Debug)]
pub struct RedisEventLog {
    log: DriverLog<RedisDriver>,
}

impl RedisEventLog {
    /// Connects to the log described by `config`, checking that the server
    /// answers and is Redis 7 or newer.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let settings = config.subscription;
        Ok(Self {
            log: DriverLog::with_settings(RedisDriver::connect(config).await?, settings),
        })
    }

    /// Connects to the log a URL names; see [`RedisConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(RedisConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.log.driver().config
    }

    /// The Redis stream key that holds the log.
    pub fn stream_key(&self) -> &str {
        &self.log.driver().key
    }
}

impl AsDriverLog for RedisEventLog {
    type Driver = RedisDriver;

    fn driver_log(&self) -> &DriverLog<RedisDriver> {
        &self.log
    }
}
