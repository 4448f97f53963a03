//! The Redis driver: the broker calls behind [`RedisEventLog`](crate::RedisEventLog).

use crate::config::RedisConfig;
use crate::delivered::Delivered;
use crate::error::{BACKEND, from_redis};
use crate::reader::RedisReader;
use crate::{codec, scripts};
use eventlog_core::driver::{Driver, bounded, dedup_key};
use eventlog_core::{Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::time::Duration;

/// The oldest Redis whose `XADD key 0-*` numbers entries for us.
const MIN_REDIS_MAJOR: u32 = 7;

/// The broker calls of one Redis stream.
pub struct RedisDriver {
    pub(crate) config: RedisConfig,
    pub(crate) key: String,
    pub(crate) client: redis::Client,
    conn: ConnectionManager,
    /// What the subscriptions of this handle read and did not acknowledge.
    pub(crate) delivered: std::sync::Arc<Delivered>,
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDriver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisDriver {
    /// Connects to the server of `config` and checks its version.
    pub(crate) async fn connect(config: RedisConfig) -> Result<Self, EventLogError> {
        let client = client_for(&config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            // A backstop only: every operation is bounded by the generic
            // log, whose timeout must fire first to name the operation.
            .set_response_timeout(Some(config.timeout + Duration::from_secs(1)))
            .set_number_of_retries(2);
        let mut conn = bounded("connect", config.timeout, async {
            ConnectionManager::new_with_config(client.clone(), manager_config)
                .await
                .map_err(from_redis)
        })
        .await?;
        bounded("connect", config.timeout, check_version(&mut conn)).await?;
        let key = config.stream_key();
        Ok(Self {
            config,
            key,
            client,
            conn,
            delivered: Default::default(),
        })
    }

    async fn query<T: redis::FromRedisValue + Send>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, EventLogError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(from_redis)
    }

    /// Runs one of the [`scripts`] on the shared connection.
    async fn script<T: redis::FromRedisValue + Send>(
        &self,
        script: &redis::Script,
        args: &[&str],
    ) -> Result<T, EventLogError> {
        let mut conn = self.conn.clone();
        let mut invocation = script.key(&self.key);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.invoke_async(&mut conn).await.map_err(from_redis)
    }

    /// Stores `events` with the [`scripts::APPEND`] script: deduplicated
    /// and under `expected`, all or none.
    async fn append_checked(
        &self,
        events: &[EventEnvelope],
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        let window = self.config.dedup_window.as_millis();
        let mut invocation = scripts::APPEND.key(&self.key);
        if window > 0 {
            for event in events {
                invocation.key(self.config.dedup_key(&dedup_key(event)));
            }
        }
        invocation
            .arg(window.to_string())
            .arg(expected.as_last().map_or(-1, |n| n as i64))
            .arg(events.len());
        for event in events {
            codec::push_fields(&mut invocation, event);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(from_redis)?;
        match reply.split_first() {
            Some((1, numbers)) if numbers.len() == events.len() => Ok(numbers
                .iter()
                .map(|&n| match n {
                    n if n < 0 => Appended::Duplicate(n.unsigned_abs()),
                    n => Appended::Stored(n as SeqNo),
                })
                .collect()),
            Some((0, [last])) => Err(EventLogError::conflict(
                expected,
                u64::try_from(*last).unwrap_or(0),
            )),
            _ => Err(EventLogError::Backend {
                backend: BACKEND,
                source: format!("unexpected reply of the append script: {reply:?}").into(),
            }),
        }
    }

    /// Whether appends need the script: a plain `XADD` neither
    /// deduplicates nor checks a condition.
    fn plain(&self, expected: ExpectedLast) -> bool {
        self.config.dedup_window.is_zero() && expected == ExpectedLast::Any
    }

    /// Acknowledges exactly the entries `ids` with one `XACK`, fenced for
    /// `holder` (empty: not fenced); `false` when the server had fewer of
    /// them pending.
    async fn xack(
        &self,
        consumer: &str,
        ids: std::ops::RangeInclusive<SeqNo>,
        holder: &str,
    ) -> Result<bool, EventLogError> {
        let expected = ids.clone().count();
        let mut invocation = scripts::XACK.key(&self.key);
        invocation
            .key(self.config.lease_key(consumer))
            .arg(consumer)
            .arg(holder);
        for n in ids {
            invocation.arg(format!("0-{n}"));
        }
        let mut conn = self.conn.clone();
        let acked: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(from_redis)?;
        if acked < 0 {
            return Err(fenced(consumer));
        }
        Ok(acked as usize == expected)
    }

    /// Runs the ack or seek `script` on the stream and `consumer`'s lease.
    async fn fenced_script<T: redis::FromRedisValue + Send>(
        &self,
        script: &redis::Script,
        consumer: &str,
        args: &[&str],
    ) -> Result<T, EventLogError> {
        let mut conn = self.conn.clone();
        let mut invocation = script.key(&self.key);
        invocation
            .key(self.config.lease_key(consumer))
            .arg(consumer);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.invoke_async(&mut conn).await.map_err(from_redis)
    }

    /// Moves `consumer` so that its next event is `next`, fenced for
    /// `holder` (empty: not fenced).
    async fn seek_as(
        &self,
        consumer: &str,
        next: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.delivered.forget(consumer);
        let id = format!("0-{}", next - 1);
        match self
            .fenced_script::<i64>(&scripts::SEEK, consumer, &[&id, holder])
            .await?
        {
            3 => Err(fenced(consumer)),
            _ => Ok(()),
        }
    }

    /// Acknowledges up to `seq_no` for `consumer`, fenced for `holder`
    /// (empty: not fenced).
    async fn ack_as(
        &self,
        consumer: &str,
        seq_no: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        if let Some(ids) = self.delivered.pending_up_to(consumer, seq_no) {
            if self.xack(consumer, ids, holder).await? {
                self.delivered.acked(consumer, seq_no);
                return Ok(());
            }
            // Someone else moved the group: the script decides.
            self.delivered.forget(consumer);
        }
        let n = seq_no.to_string();
        let (accepted, last) = loop {
            // Each call acknowledges at most `scripts::STEP` entries, and
            // checks the lease again.
            match self
                .fenced_script::<(i64, u64)>(&scripts::ACK, consumer, &[&n, holder])
                .await?
            {
                (2, _) => continue,
                (3, _) => return Err(fenced(consumer)),
                reply => break reply,
            }
        };
        if accepted == 0 {
            // The log holds less than the handle had seen: it was deleted
            // and created again.
            return Err(EventLogError::AckOutOfRange {
                consumer: consumer.to_owned(),
                seq_no,
                last: (last > 0).then_some(last),
            });
        }
        self.delivered.acked(consumer, seq_no);
        Ok(())
    }
}

fn fenced(consumer: &str) -> EventLogError {
    EventLogError::Fenced {
        consumer: consumer.to_owned(),
    }
}

impl Driver for RedisDriver {
    type Reader = RedisReader;

    fn capabilities(&self) -> Capabilities {
        let window = self.config.dedup_window;
        Capabilities::new(BACKEND, self.config.max_payload, true)
            .with_dedup_window((!window.is_zero()).then_some(window))
            .with_conditional_append(true)
            .with_exclusive_subscriptions(true)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.config.timeout)
    }

    fn read_wait(&self) -> Duration {
        self.config.block
    }

    async fn append(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        if self.plain(expected) {
            let id: String = self.query(codec::xadd(&self.key, &event)).await?;
            return codec::seq_of(&id).map(Appended::Stored);
        }
        let appended = self
            .append_checked(std::slice::from_ref(&event), expected)
            .await?;
        Ok(appended[0])
    }

    async fn append_batch(
        &self,
        events: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        if !self.plain(expected) {
            // One script: the batch is stored contiguously, or not at all.
            return self.append_checked(&events, expected).await;
        }
        // MULTI/EXEC: the batch is stored contiguously, or not at all.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in &events {
            pipe.add_command(codec::xadd(&self.key, event));
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = pipe.query_async(&mut conn).await.map_err(from_redis)?;
        ids.iter()
            .map(|id| codec::seq_of(id).map(Appended::Stored))
            .collect()
    }

    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        self.script(&scripts::LAST, &[]).await
    }

    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        self.script(&scripts::FIRST, &[]).await
    }

    async fn acknowledged(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        let (position, _last): (i64, u64) = self.script(&scripts::STATE, &[consumer]).await?;
        Ok(u64::try_from(position).ok().filter(|&p| p > 0))
    }

    async fn move_consumer(&self, consumer: &str, next: SeqNo) -> Result<(), EventLogError> {
        self.seek_as(consumer, next, "").await
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<(), EventLogError> {
        self.ack_as(consumer, seq_no, "").await
    }

    async fn ack_fenced(
        &self,
        consumer: &str,
        seq_no: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.ack_as(consumer, seq_no, holder).await
    }

    async fn move_consumer_fenced(
        &self,
        consumer: &str,
        next: SeqNo,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.seek_as(consumer, next, holder).await
    }

    async fn check_fenced(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        // The key expires on the server: a value is a live lease.
        let held: Option<String> = redis::cmd("GET")
            .arg(self.config.lease_key(consumer))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)?;
        match held {
            Some(other) if other != holder => Err(EventLogError::Fenced {
                consumer: consumer.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    async fn lease(
        &self,
        consumer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        let mut conn = self.conn.clone();
        let took: i64 = scripts::LEASE
            .key(self.config.lease_key(consumer))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(from_redis)?;
        Ok(took == 1)
    }

    async fn release(&self, consumer: &str, holder: &str) -> Result<(), EventLogError> {
        let mut conn = self.conn.clone();
        scripts::RELEASE
            .key(self.config.lease_key(consumer))
            .arg(holder)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(from_redis)
    }

    async fn open_reader(
        &self,
        consumer: &str,
        _from: SeqNo,
    ) -> Result<RedisReader, EventLogError> {
        self.delivered.forget(consumer);
        self.script::<i64>(&scripts::ENSURE_GROUP, &[consumer])
            .await?;
        RedisReader::open(self, consumer).await
    }

    async fn log_exists(&self) -> Result<bool, EventLogError> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&self.key);
        let exists: i64 = self.query(cmd).await?;
        Ok(exists == 1)
    }
}

/// A `redis::Client` for the server of `config`, credentials included.
pub(crate) fn client_for(config: &RedisConfig) -> Result<redis::Client, EventLogError> {
    use redis::IntoConnectionInfo;
    let tls = config.url.starts_with("rediss://");
    if tls && !cfg!(feature = "tls") {
        return Err(EventLogError::InvalidConfig {
            reason: "rediss:// needs the `tls` feature of eventlog-redis".into(),
        });
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
        None => redis::Client::open(info).map_err(from_redis),
        Some(path) => tls_client(info, path),
    }
}

/// A client that trusts the root certificates in the PEM file at `path`.
#[cfg(feature = "tls")]
fn tls_client(
    info: redis::ConnectionInfo,
    path: &std::path::Path,
) -> Result<redis::Client, EventLogError> {
    let root_cert = std::fs::read(path).map_err(|e| EventLogError::InvalidConfig {
        reason: format!("root certificates {}: {e}", path.display()),
    })?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| EventLogError::InvalidConfig {
        reason: format!("root certificates {}: {e}", path.display()),
    })
}

#[cfg(not(feature = "tls"))]
fn tls_client(
    _: redis::ConnectionInfo,
    _: &std::path::Path,
) -> Result<redis::Client, EventLogError> {
    Err(EventLogError::InvalidConfig {
        reason: "root certificates need the `tls` feature of eventlog-redis".into(),
    })
}

async fn check_version(conn: &mut ConnectionManager) -> Result<(), EventLogError> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(from_redis)?;
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
        });
    }
    Ok(())
}
