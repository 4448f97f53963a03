//! `RedisEventLog`: the `EventLog` methods over one stream key.

use crate::config::RedisConfig;
use crate::delivered::Delivered;
use crate::error::{BACKEND, from_redis};
use crate::{codec, scripts, subscription};
use async_trait::async_trait;
use eventlog_core::{
    Capabilities, ConsumerState, EventEnvelope, EventLog, EventLogError, EventStream, Result,
    SeekPosition, SeqNo, validate, with_timeout,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The oldest Redis whose `XADD key 0-*` numbers entries for us.
const MIN_REDIS_MAJOR: u32 = 7;

/// An [`EventLog`] on a Redis stream. Cheap to clone: clones share one
/// multiplexed connection, which reconnects by itself; each subscription
/// has a connection of its own for its blocking reads.
#[derive(Clone)]
pub struct RedisEventLog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: RedisConfig,
    pub(crate) key: String,
    pub(crate) client: redis::Client,
    conn: ConnectionManager,
    /// What the subscriptions of this handle read and did not acknowledge.
    pub(crate) delivered: Delivered,
}

impl fmt::Debug for RedisEventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventLog")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisEventLog {
    /// Connects to the log described by `config`, checking that the server
    /// answers and is Redis 7 or newer.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let client = client_for(&config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            // A backstop only: every call is bounded by `with_timeout`, which
            // must fire first to report the operation that timed out.
            .set_response_timeout(Some(config.timeout + Duration::from_secs(1)))
            .set_number_of_retries(2);
        let mut conn = with_timeout("connect", config.timeout, async {
            ConnectionManager::new_with_config(client.clone(), manager_config)
                .await
                .map_err(|e| from_redis(e).into())
        })
        .await?;
        check_version(&mut conn, config.timeout).await?;
        let key = config.stream_key();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                key,
                client,
                conn,
                delivered: Delivered::default(),
            }),
        })
    }

    /// Connects to the log a URL names; see [`RedisConfig::from_url`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(RedisConfig::from_url(url)?.build()?).await
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The Redis stream key that holds the log.
    pub fn stream_key(&self) -> &str {
        &self.inner.key
    }

    /// Runs `cmd` on the shared connection within the configured timeout.
    async fn query<T: redis::FromRedisValue + Send>(
        &self,
        operation: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.inner.conn.clone();
        with_timeout(operation, self.inner.config.timeout, async move {
            cmd.query_async(&mut conn)
                .await
                .map_err(|e| from_redis(e).into())
        })
        .await
    }

    /// Runs one of the [`scripts`] on the shared connection.
    async fn script<T: redis::FromRedisValue + Send>(
        &self,
        operation: &'static str,
        script: &redis::Script,
        args: &[&str],
    ) -> Result<T> {
        let mut conn = self.inner.conn.clone();
        let mut invocation = script.key(&self.inner.key);
        for arg in args {
            invocation.arg(*arg);
        }
        with_timeout(operation, self.inner.config.timeout, async move {
            invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| from_redis(e).into())
        })
        .await
    }

    /// Acknowledges exactly the entries `ids` with one `XACK`; `false` when
    /// the server had fewer of them pending.
    async fn xack(&self, consumer: &str, ids: std::ops::RangeInclusive<SeqNo>) -> Result<bool> {
        let expected = ids.clone().count();
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.inner.key).arg(consumer);
        for n in ids {
            cmd.arg(format!("0-{n}"));
        }
        let acked: usize = self.query("ack", cmd).await?;
        Ok(acked == expected)
    }

    /// Moves `consumer` to `position` (anything but `LastAcknowledged`).
    async fn move_to(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        self.inner.delivered.forget(consumer);
        let id = match position {
            SeekPosition::Beginning => "0-0".to_owned(),
            SeekPosition::Latest => "$".to_owned(),
            SeekPosition::Sequence(n) => format!("0-{}", n - 1),
            _ => return Ok(()),
        };
        self.script::<i64>("seek", &scripts::SEEK, &[consumer, &id])
            .await
            .map(drop)
    }
}

/// A `redis::Client` for the server of `config`, credentials included.
pub(crate) fn client_for(config: &RedisConfig) -> Result<redis::Client> {
    use redis::IntoConnectionInfo;
    let tls = config.url.starts_with("rediss://");
    if tls && !cfg!(feature = "tls") {
        return Err(EventLogError::InvalidConfig {
            reason: "rediss:// needs the `tls` feature of eventlog-redis".into(),
        }
        .into());
    }
    // rustls needs a process-wide crypto provider; the redis client picks
    // none. Ours is ring, unless the application installed one.
    #[cfg(feature = "tls")]
    if tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let info =
        config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| EventLogError::InvalidConfig {
                reason: format!(
                    "Redis URL `{}`: {e}",
                    eventlog_core::redact_url(&config.url)
                ),
            })?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    let info = info.set_redis_settings(settings);
    match &config.root_certificates {
        None => redis::Client::open(info).map_err(|e| from_redis(e).into()),
        Some(path) => tls_client(info, path),
    }
}

/// A client that trusts the root certificates in the PEM file at `path`.
#[cfg(feature = "tls")]
fn tls_client(info: redis::ConnectionInfo, path: &std::path::Path) -> Result<redis::Client> {
    let root_cert = std::fs::read(path).map_err(|e| EventLogError::InvalidConfig {
        reason: format!("root certificates {}: {e}", path.display()),
    })?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| {
        EventLogError::InvalidConfig {
            reason: format!("root certificates {}: {e}", path.display()),
        }
        .into()
    })
}

#[cfg(not(feature = "tls"))]
fn tls_client(_: redis::ConnectionInfo, _: &std::path::Path) -> Result<redis::Client> {
    Err(EventLogError::InvalidConfig {
        reason: "root certificates need the `tls` feature of eventlog-redis".into(),
    }
    .into())
}

async fn check_version(conn: &mut ConnectionManager, timeout: Duration) -> Result<()> {
    let info: String = with_timeout("connect", timeout, async {
        redis::cmd("INFO")
            .arg("server")
            .query_async(conn)
            .await
            .map_err(|e| from_redis(e).into())
    })
    .await?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < MIN_REDIS_MAJOR {
        return Err(EventLogError::InvalidConfig {
            reason: format!(
                "Redis {MIN_REDIS_MAJOR}.0 or newer is needed, the server is {version}"
            ),
        }
        .into());
    }
    Ok(())
}

#[async_trait]
impl EventLog for RedisEventLog {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        validate::envelope(&envelope, self.inner.config.max_payload)?;
        let id: String = self
            .query("append", codec::xadd(&self.inner.key, &envelope))
            .await?;
        Ok(codec::seq_of(&id)?)
    }

    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        validate::batch(&envelopes, self.inner.config.max_payload)?;
        if envelopes.is_empty() {
            return Ok(Vec::new());
        }
        // MULTI/EXEC: the batch is stored contiguously, or not at all.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for envelope in &envelopes {
            pipe.add_command(codec::xadd(&self.inner.key, envelope));
        }
        let mut conn = self.inner.conn.clone();
        let ids: Vec<String> =
            with_timeout("append_batch", self.inner.config.timeout, async move {
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|e| from_redis(e).into())
            })
            .await?;
        ids.iter()
            .map(|id| codec::seq_of(id).map_err(Into::into))
            .collect()
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        if position == SeekPosition::LastAcknowledged {
            self.inner.delivered.forget(consumer);
            self.script::<i64>("subscribe", &scripts::ENSURE_GROUP, &[consumer])
                .await?;
        } else {
            self.move_to(consumer, position).await?;
        }
        subscription::open(self.inner.clone(), consumer.to_owned()).await
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()> {
        validate::consumer_name(consumer)?;
        if seq_no == 0 {
            return Err(EventLogError::AckOutOfRange {
                consumer: consumer.to_owned(),
                seq_no,
                last: None,
            }
            .into());
        }
        if let Some(ids) = self.inner.delivered.pending_up_to(consumer, seq_no) {
            if self.xack(consumer, ids).await? {
                self.inner.delivered.acked(consumer, seq_no);
                return Ok(());
            }
            // Someone else moved the group: the script decides.
            self.inner.delivered.forget(consumer);
        }
        let (accepted, last): (i64, u64) = self
            .script("ack", &scripts::ACK, &[consumer, &seq_no.to_string()])
            .await?;
        if accepted == 0 {
            let last = (last > 0).then_some(last);
            return Err(EventLogError::AckOutOfRange {
                consumer: consumer.to_owned(),
                seq_no,
                last,
            }
            .into());
        }
        self.inner.delivered.acked(consumer, seq_no);
        Ok(())
    }

    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        self.move_to(consumer, position).await
    }

    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>> {
        let last: u64 = self.script("last_seq_no", &scripts::LAST, &[]).await?;
        Ok((last > 0).then_some(last))
    }

    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState> {
        validate::consumer_name(consumer)?;
        let (position, last): (i64, u64) = self
            .script("consumer_state", &scripts::STATE, &[consumer])
            .await?;
        let next = u64::try_from(position).map_or(1, |p| p + 1);
        Ok(ConsumerState::from_next(next, (last > 0).then_some(last)))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(BACKEND, self.inner.config.max_payload, true)
    }
}
