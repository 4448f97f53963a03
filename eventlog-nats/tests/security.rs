//! TLS, a user with a password and secret hygiene against a NATS server
//! that requires both (`NATS_SECURE`), in a container of its own with
//! certificates made at test time.

use anyhow::{Context, Result};
use async_trait::async_trait;
use conformance::security::{Access, Secured};
use eventlog_core::EventLog;
use eventlog_nats::{NatsConfig, NatsConfigBuilder, NatsEventLog};
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{Container, NATS_SECURE, PASSWORD, SharedBroker, USER};
use tokio::sync::OnceCell;

struct SecureNats(&'static Container);

impl SecureNats {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        Ok(Self(SharedBroker::secured(&SHARED, &NATS_SECURE).await?))
    }
}

#[async_trait]
impl Secured for SecureNats {
    async fn open(
        &self,
        log: &str,
        access: Access,
        timeout: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        let files = self.0.tls().context("NATS_SECURE mounts certificates")?;
        let (address, ca, other_ca) = (self.0.address(), files.ca(), files.other_ca());
        let tls = format!("tls://{}", address);
        let builder = |url: &str| {
            NatsConfig::builder(url, log)
                .with_require_tls(url.starts_with("tls://"))
                .with_timeout(timeout)
        };
        let config = match access {
            Access::Granted => builder(&tls)
                .with_root_certificates(&ca)
                .with_user_password(USER, PASSWORD),
            Access::WrongPassword(password) => builder(&tls)
                .with_root_certificates(&ca)
                .with_user_password(USER, password),
            Access::Anonymous => builder(&tls).with_root_certificates(&ca),
            Access::PlainText => {
                builder(&format!("nats://{}", address)).with_user_password(USER, PASSWORD)
            }
            Access::UntrustedCa => builder(&tls)
                .with_root_certificates(&other_ca)
                .with_user_password(USER, PASSWORD),
            other => anyhow::bail!("no such access here: {other:?}"),
        };
        Ok(Arc::new(NatsEventLog::connect(config.build()?).await?))
    }

    fn rendered_configs(&self, canary: &str) -> Result<Vec<String>> {
        let builder = || NatsConfig::builder("tls://h:1", "log");
        let configs = [
            builder().with_user_password(USER, canary),
            builder().with_token(canary),
            builder().with_nkey(canary),
            NatsConfig::from_url(&format!("tls://{USER}:{canary}@h:1/log"))?,
        ];
        let refused = NatsConfig::from_url(&format!("nats://{USER}:{canary}@h:1/a/b"))
            .and_then(NatsConfigBuilder::build)
            .err()
            .context("a URL with two path segments is refused")?;
        let mut rendered = vec![format!("{refused} {refused:?}")];
        for config in configs {
            rendered.push(format!("{config:?}"));
            rendered.push(format!("{:?}", config.build()?));
        }
        Ok(rendered)
    }
}

conformance::security_tests!(tls: SecureNats::shared().await?);
