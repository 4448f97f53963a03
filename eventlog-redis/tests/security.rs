//! TLS, an ACL user and secret hygiene against a Redis that requires both
//! (`REDIS_SECURE`: TLS only, the default user off), in a container of its
//! own with certificates made at test time.

use anyhow::{Context, Result};
use async_trait::async_trait;
use conformance::harness::{PASSWORD, REDIS_SECURE, SharedBroker, USER};
use conformance::security::{Access, Secured};
use eventlog_core::EventLog;
use eventlog_redis::{RedisConfig, RedisConfigBuilder, RedisEventLog};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

struct SecureRedis {
    address: String,
    ca: PathBuf,
    other_ca: PathBuf,
}

impl SecureRedis {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        let broker = SHARED
            .get_or_try_init(|| SharedBroker::container(&REDIS_SECURE))
            .await?;
        let container = broker.as_container().context("a container")?;
        let tls = container
            .tls()
            .context("REDIS_SECURE mounts certificates")?;
        Ok(Self {
            address: container.address(),
            ca: tls.ca(),
            other_ca: tls.other_ca(),
        })
    }
}

#[async_trait]
impl Secured for SecureRedis {
    async fn open(
        &self,
        log: &str,
        access: Access,
        timeout: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        let tls = format!("rediss://{}", self.address);
        let builder = |url: &str| RedisConfig::builder(url, log).with_timeout(timeout);
        let config = match access {
            Access::Granted => builder(&tls)
                .with_root_certificates(&self.ca)
                .with_username(USER)
                .with_password(PASSWORD),
            Access::WrongPassword(password) => builder(&tls)
                .with_root_certificates(&self.ca)
                .with_username(USER)
                .with_password(password),
            Access::Anonymous => builder(&tls).with_root_certificates(&self.ca),
            Access::PlainText => builder(&format!("redis://{}", self.address))
                .with_username(USER)
                .with_password(PASSWORD),
            Access::UntrustedCa => builder(&tls)
                .with_root_certificates(&self.other_ca)
                .with_username(USER)
                .with_password(PASSWORD),
            other => anyhow::bail!("no such access here: {other:?}"),
        };
        Ok(Arc::new(RedisEventLog::connect(config.build()?).await?))
    }

    fn rendered_configs(&self, canary: &str) -> Result<Vec<String>> {
        let built = RedisConfig::builder("rediss://h:1", "log")
            .with_username(USER)
            .with_password(canary);
        let from_url = RedisConfig::from_url(&format!("rediss://{USER}:{canary}@h:1/log"))?;
        let refused = RedisConfig::from_url(&format!("redis://{USER}:{canary}@h:1/a/b/c"))
            .and_then(RedisConfigBuilder::build)
            .err()
            .context("a URL with three path segments is refused")?;
        Ok(vec![
            format!("{built:?}"),
            format!("{:?}", built.build()?),
            format!("{from_url:?}"),
            format!("{:?}", from_url.build()?),
            format!("{refused} {refused:?}"),
        ])
    }
}

conformance::security_tests!(tls: SecureRedis::shared().await?);
