//! TLS, an ACL user and secret hygiene against a Redis that requires both
//! (`REDIS_SECURE`: TLS only, the default user off), in a container of its
//! own with certificates made at test time.

use anyhow::{Context, Result};
use async_trait::async_trait;
use conformance::security::{Access, Secured};
use eventlog_core::EventLog;
use eventlog_redis::{RedisConfig, RedisConfigBuilder, RedisEventLog};
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{Container, PASSWORD, REDIS_SECURE, SharedBroker, USER};
use tokio::sync::OnceCell;

struct SecureRedis(&'static Container);

impl SecureRedis {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        Ok(Self(SharedBroker::secured(&SHARED, &REDIS_SECURE).await?))
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
        let files = self.0.tls().context("REDIS_SECURE mounts certificates")?;
        let (address, ca, other_ca) = (self.0.address(), files.ca(), files.other_ca());
        let tls = format!("rediss://{}", address);
        let builder = |url: &str| RedisConfig::builder(url, log).with_timeout(timeout);
        let config = match access {
            Access::Granted => builder(&tls)
                .with_root_certificates(&ca)
                .with_username(USER)
                .with_password(PASSWORD),
            Access::WrongPassword(password) => builder(&tls)
                .with_root_certificates(&ca)
                .with_username(USER)
                .with_password(password),
            Access::Anonymous => builder(&tls).with_root_certificates(&ca),
            Access::PlainText => builder(&format!("redis://{}", address))
                .with_username(USER)
                .with_password(PASSWORD),
            Access::UntrustedCa => builder(&tls)
                .with_root_certificates(&other_ca)
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
