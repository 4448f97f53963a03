//! The whole contract against Redis: a server given by
//! `EVENTLOG_TEST_REDIS_URL` (`redis://host:port`), or a container from
//! `EVENTLOG_TEST_REDIS_IMAGE` (default: the official image).

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use conformance::{Broker, FaultyBroker, Fixture};
use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::{EventEnvelope, EventLog, SeqNo};
use eventlog_redis::{RedisConfig, RedisConfigBuilder, RedisEventLog};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{OwnBroker, REDIS, SharedBroker};
use tokio::sync::OnceCell;

/// Keys of the suite start with this, so they are easy to find and drop on
/// a server that is also used for other things.
const PREFIX: &str = "eventlog-test:";

async fn raw(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    // The client's default response timeout is short for a broker that
    // every test of the binary loads at once.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await??)
}

/// The configuration of `log` on the suite's server, in the suite's own
/// namespace.
fn config(url: &str, log: &str) -> RedisConfigBuilder {
    RedisConfig::builder(url, log).with_key_prefix(PREFIX)
}

async fn connect(config: RedisConfigBuilder) -> Result<Arc<dyn EventLog>> {
    Ok(Arc::new(RedisEventLog::connect(config.build()?).await?))
}

async fn open(
    url: &str,
    log: &str,
    timeout: Duration,
    settings: SubscriptionSettings,
) -> Result<Arc<dyn EventLog>> {
    connect(
        config(url, log)
            .with_timeout(timeout)
            .with_subscription_settings(settings),
    )
    .await
}

struct Redis {
    url: String,
}

impl Redis {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        let broker = SHARED
            .get_or_try_init(|| SharedBroker::start(&REDIS))
            .await?;
        Ok(Self {
            url: broker.url("redis"),
        })
    }

    fn key(log: &str) -> String {
        format!("{PREFIX}{log}")
    }
}

#[async_trait]
impl Fixture for Redis {
    async fn open(&self, log: &str) -> Result<Arc<dyn EventLog>> {
        open(
            &self.url,
            log,
            eventlog_redis::DEFAULT_TIMEOUT,
            Default::default(),
        )
        .await
    }

    async fn open_with_dedup_window(
        &self,
        log: &str,
        window: Duration,
    ) -> Result<Arc<dyn EventLog>> {
        connect(config(&self.url, log).with_dedup_window(window)).await
    }

    /// Connections named for the log's subscriptions, from `CLIENT LIST`.
    async fn subscription_resources(&self, log: &str) -> Result<usize> {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw(&self.url).await?)
            .await?;
        // The client name the crate docs give subscription connections.
        let name = format!("name=eventlog-sub:{log} ");
        Ok(clients.lines().filter(|line| line.contains(&name)).count())
    }

    fn broker(&self) -> Option<&dyn Broker> {
        Some(self)
    }
}

#[async_trait]
impl Broker for Redis {
    /// `XINFO GROUPS` and `XPENDING`: the entry before the oldest pending
    /// one, or `last-delivered-id` when nothing is pending.
    async fn raw_acked(&self, log: &str, consumer: &str) -> Result<Option<SeqNo>> {
        let mut conn = raw(&self.url).await?;
        let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(Self::key(log))
            .query_async(&mut conn)
            .await?;
        let group = groups
            .iter()
            .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == consumer.as_bytes()))
            .with_context(|| format!("XINFO GROUPS shows no group `{consumer}`"))?;
        let delivered: String = redis::from_redis_value(group["last-delivered-id"].clone())?;
        let (pending, oldest, _, _): (u64, Option<String>, Option<String>, redis::Value) =
            redis::cmd("XPENDING")
                .arg(Self::key(log))
                .arg(consumer)
                .query_async(&mut conn)
                .await?;
        let floor = match (pending, oldest) {
            (0, _) => entry_seq(&delivered)?,
            (_, Some(oldest)) => entry_seq(&oldest)? - 1,
            (_, None) => bail!("XPENDING counts {pending} without an oldest id"),
        };
        Ok((floor > 0).then_some(floor))
    }

    /// `XRANGE` of the entry, read as `docs/wire-format.md` describes it.
    async fn raw_read(&self, log: &str, seq_no: SeqNo) -> Result<EventEnvelope> {
        let id = format!("0-{seq_no}");
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(Self::key(log))
            .arg(&id)
            .arg(&id)
            .query_async(&mut raw(&self.url).await?)
            .await?;
        let (_, mut fields) = entries
            .into_iter()
            .next()
            .with_context(|| format!("no entry {id}"))?;
        let mut text = |name: &str| fields.remove(name).map(String::from_utf8).transpose();
        anyhow::ensure!(
            text("specversion")?.as_deref() == Some("1.0"),
            "specversion is not 1.0"
        );
        let time =
            chrono::DateTime::parse_from_rfc3339(&text("time")?.context("no time")?)?.to_utc();
        let mut event = EventEnvelope::new(
            text("source")?.context("no source")?,
            text("type")?.context("no type")?,
            Vec::new(),
        )
        .with_id(text("id")?.context("no id")?)
        .with_time(time)
        .with_seq_no(seq_no);
        event.subject = text("subject")?;
        event.content_type = text("datacontenttype")?;
        event.payload = fields.remove("data").context("no data")?.into();
        for (name, value) in fields {
            event.extensions.insert(name, String::from_utf8(value)?);
        }
        Ok(event)
    }

    /// `XADD key 0-* …` with the documented fields.
    async fn raw_publish(&self, log: &str, event: &EventEnvelope) -> Result<()> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(Self::key(log)).arg("0-*");
        cmd.arg("specversion")
            .arg("1.0")
            .arg("id")
            .arg(&event.id)
            .arg("source")
            .arg(&event.source);
        cmd.arg("type")
            .arg(&event.event_type)
            .arg("time")
            .arg(event.time.to_rfc3339());
        if let Some(subject) = &event.subject {
            cmd.arg("subject").arg(subject);
        }
        if let Some(content_type) = &event.content_type {
            cmd.arg("datacontenttype").arg(content_type);
        }
        for (name, value) in &event.extensions {
            cmd.arg(name).arg(value);
        }
        cmd.arg("data").arg(event.payload.as_ref());
        cmd.query_async::<String>(&mut raw(&self.url).await?)
            .await?;
        Ok(())
    }

    /// `DEL` of the stream key, its consumer groups with it.
    async fn raw_delete(&self, log: &str) -> Result<()> {
        redis::cmd("DEL")
            .arg(Self::key(log))
            .query_async::<u64>(&mut raw(&self.url).await?)
            .await?;
        Ok(())
    }

    /// `XADD key 0-* payload …`: an entry with none of the documented fields.
    async fn raw_publish_foreign(&self, log: &str) -> Result<()> {
        redis::cmd("XADD")
            .arg(Self::key(log))
            .arg("0-*")
            .arg("payload")
            .arg("not a CloudEvent")
            .query_async::<String>(&mut raw(&self.url).await?)
            .await?;
        Ok(())
    }

    /// `XTRIM key MINID 0-n`, as a retention policy would.
    async fn raw_remove_before(&self, log: &str, seq_no: SeqNo) -> Result<()> {
        redis::cmd("XTRIM")
            .arg(Self::key(log))
            .arg("MINID")
            .arg(format!("0-{seq_no}"))
            .query_async::<u64>(&mut raw(&self.url).await?)
            .await?;
        Ok(())
    }

    async fn faulty(&self) -> Result<FaultyBroker> {
        let open: conformance::Opener = |address, log, timeout, settings| {
            Box::pin(
                async move { open(&format!("redis://{address}"), &log, timeout, settings).await },
            )
        };
        Ok(FaultyBroker::new(OwnBroker::start(&REDIS).await?, open))
    }
}

fn entry_seq(id: &str) -> Result<SeqNo> {
    id.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("entry id {id}"))
}

/// Acks of entries this handle read are plain `XACK`s (`delivered.rs`).
/// An ack applied meanwhile through another handle (or one that timed out
/// and was applied after all) must not stop later acks from counting: the
/// soak found `ack` returning Ok while the group's position stayed put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_keep_counting_after_an_ack_through_another_handle() -> Result<()> {
    use conformance::support::{append_n, take, unique};
    use eventlog_core::SeekPosition;
    let fx = Redis::shared().await?;
    let name = unique("fast-ack");
    let (reader, other) = (fx.open(&name).await?, fx.open(&name).await?);
    let c = unique("worker");
    append_n(&*reader, 10).await?;
    let mut stream = reader.subscribe(&c, SeekPosition::Beginning).await?;
    take(&mut stream, 10).await?;
    other.ack(&c, 5).await?;
    reader.ack(&c, 6).await?;
    append_n(&*reader, 10).await?;
    take(&mut stream, 10).await?;
    reader.ack(&c, 20).await?;
    let state = reader.consumer_state(&c).await?;
    anyhow::ensure!(
        state.last_acknowledged == Some(20),
        "log {name}: after ack(20) the position is {state:?}"
    );
    let raw = fx.raw_acked(&name, &c).await?;
    anyhow::ensure!(raw == Some(20), "log {name}: XPENDING/XINFO show {raw:?}");
    Ok(())
}

/// An ack over more pending entries than one script call may walk
/// (`STEP`, 10,000: a script blocks the server while it runs) takes several
/// calls and lands exactly where one call would have; a seek back over them
/// (one call, dropping them in C) leaves nothing pending behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_seeks_over_many_pending_entries_land_exactly() -> Result<()> {
    use conformance::support::{event, next_within, unique};
    use eventlog_core::SeekPosition;
    const PENDING: usize = 25_000;
    let fx = Redis::shared().await?;
    let name = unique("many-pending");
    let log = fx.open(&name).await?;
    for chunk in (0..PENDING).collect::<Vec<_>>().chunks(1000) {
        log.append_batch(chunk.iter().map(|&i| event(i)).collect())
            .await?;
    }
    let c = unique("worker");
    log.seek(&c, SeekPosition::Beginning).await?;
    // Another process's reader that took everything and acknowledged nothing.
    let mut conn = raw(&fx.url).await?;
    for _ in 0..PENDING / 5000 {
        let read: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&c)
            .arg("eventlog")
            .arg("COUNT")
            .arg(5000)
            .arg("STREAMS")
            .arg(Redis::key(&name))
            .arg(">")
            .query_async(&mut conn)
            .await?;
        anyhow::ensure!(
            read != redis::Value::Nil,
            "log {name}: XREADGROUP read nothing"
        );
    }
    log.ack(&c, 22_222).await?;
    let raw_acked = fx.raw_acked(&name, &c).await?;
    anyhow::ensure!(
        raw_acked == Some(22_222),
        "log {name}: after ack(22222) over {PENDING} pending entries XPENDING/XINFO show {raw_acked:?}"
    );
    log.seek(&c, SeekPosition::Sequence(3)).await?;
    let raw_acked = fx.raw_acked(&name, &c).await?;
    anyhow::ensure!(
        raw_acked == Some(2),
        "log {name}: after a seek to 3 XPENDING/XINFO show {raw_acked:?}"
    );
    let mut stream = log.subscribe(&c, SeekPosition::LastAcknowledged).await?;
    let first = next_within(&mut stream, Duration::from_secs(10)).await?;
    anyhow::ensure!(
        first.seq_no == Some(3),
        "log {name}: after a seek to 3 the subscription starts at {:?}",
        first.seq_no
    );
    Ok(())
}
conformance::contract_tests!(Redis::shared().await?);

/// An exclusive subscription's lease is a key that expires on the server:
/// a holder whose process died (its key left behind, never renewed nor
/// released) is taken over by a standby once the key expires, from the
/// consumer's acknowledgement; and a holder that finds its key taken by
/// another token ends with `Fenced`, its acks refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_the_server_and_a_taken_lease_fences_its_holder() -> Result<()> {
    use conformance::support::{append_n, unique};
    use eventlog_core::{SubscribeOptions, WhenBusy};
    let fx = Redis::shared().await?;
    let name = unique("lease");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let c = unique("worker");
    let lease_key = format!("{PREFIX}{name}:lease:{c}");
    let mut conn = raw(&fx.url).await?;
    let options = SubscribeOptions::exclusive(WhenBusy::Standby).with_lease(Duration::from_secs(1));

    // A dead holder's lease, with 1.5 s left.
    let _: () = redis::cmd("SET")
        .arg(&lease_key)
        .arg("a-dead-process")
        .arg("PX")
        .arg(1500)
        .query_async(&mut conn)
        .await?;
    let mut standby = conformance::support::expect_takeover_after(
        &*log,
        &c,
        options,
        Duration::from_millis(1000),
        &format!("log {name}"),
    )
    .await?;

    // Another token takes the key over: the next renewal finds it.
    let _: () = redis::cmd("SET")
        .arg(&lease_key)
        .arg("another-process")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await?;
    conformance::support::expect_fenced_out(&mut standby, &*log, &c, &format!("log {name}"))
        .await?;
    Ok(())
}
