//! The whole contract against NATS JetStream: a server given by
//! `EVENTLOG_TEST_NATS_URL` (`nats://host:port`, with its monitoring
//! endpoint at `EVENTLOG_TEST_NATS_MONITOR` or `host:8222`), or a container
//! from `EVENTLOG_TEST_NATS_IMAGE` (default: the official image).

use anyhow::{Context, Result};
use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use conformance::{Broker, FaultyBroker, Fixture};
use eventlog_core::driver::SubscriptionSettings;
use eventlog_core::{EventEnvelope, EventLog, SeqNo};
use eventlog_nats::{NatsConfig, NatsConfigBuilder, NatsEventLog};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use testkit::containers::{NATS, OwnBroker, SharedBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// Streams and subjects of the suite carry these prefixes, so they are easy
/// to find on a server used for other things too.
const STREAM_PREFIX: &str = "EVENTLOG_TEST_";
const SUBJECT_PREFIX: &str = "eventlog-test.";

async fn raw(url: &str) -> Result<jetstream::Context> {
    let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url)).await??;
    Ok(jetstream::new(client))
}

/// The configuration of `log` on the suite's server, in the suite's own
/// namespace.
fn config(url: &str, log: &str) -> NatsConfigBuilder {
    NatsConfig::builder(url, log)
        .with_stream_prefix(STREAM_PREFIX)
        .with_subject_prefix(SUBJECT_PREFIX)
}

async fn connect(config: NatsConfigBuilder) -> Result<Arc<dyn EventLog>> {
    Ok(Arc::new(NatsEventLog::connect(config.build()?).await?))
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

fn stream_name(log: &str) -> String {
    format!("{STREAM_PREFIX}{log}")
}

struct Nats {
    url: String,
    monitor: String,
}

impl Nats {
    async fn shared() -> Result<Self> {
        static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();
        let broker = SHARED
            .get_or_try_init(|| SharedBroker::start(&NATS))
            .await?;
        let url = broker.url("nats");
        let monitor = match broker.monitor_address() {
            Some(address) => address,
            None => match std::env::var("EVENTLOG_TEST_NATS_MONITOR") {
                Ok(address) => address,
                Err(_) => format!(
                    "{}:8222",
                    url::Url::parse(&url)?.host_str().unwrap_or("127.0.0.1")
                ),
            },
        };
        Ok(Self { url, monitor })
    }

    /// `GET path` on the monitoring endpoint, as JSON.
    async fn monitor(&self, path: &str) -> Result<serde_json::Value> {
        let mut socket = tokio::net::TcpStream::connect(&self.monitor)
            .await
            .with_context(|| format!("monitoring endpoint {}", self.monitor))?;
        socket
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.monitor).as_bytes())
            .await?;
        let mut response = String::new();
        socket.read_to_string(&mut response).await?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .context("no HTTP body")?;
        Ok(serde_json::from_str(body)?)
    }
}

#[async_trait]
impl Fixture for Nats {
    async fn open(&self, log: &str) -> Result<Arc<dyn EventLog>> {
        open(
            &self.url,
            log,
            eventlog_nats::DEFAULT_TIMEOUT,
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

    /// Subscriptions (pull request inboxes) on the connections of the log's
    /// handles, from the server's `/connz`, and pull requests the server
    /// still holds for its consumers.
    async fn subscription_resources(&self, log: &str) -> Result<usize> {
        let connz = self
            .monitor(&format!("/connz?subs=1&limit=100000&name=eventlog:{log}"))
            .await?;
        let name = format!("eventlog:{log}");
        let mut count = 0;
        for conn in connz["connections"]
            .as_array()
            .context("connz has no connections")?
        {
            if conn["name"].as_str() != Some(name.as_str()) {
                continue;
            }
            let subs = conn["subscriptions_list"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            // The client's one wildcard inbox for requests is not a subscription's.
            count += subs
                .iter()
                .filter(|s| !s.as_str().unwrap_or_default().ends_with(".*"))
                .count();
        }
        let js = raw(&self.url).await?;
        let stream = js.get_stream(stream_name(log)).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            count += info?.num_waiting;
        }
        Ok(count)
    }

    fn broker(&self) -> Option<&dyn Broker> {
        Some(self)
    }
}

#[async_trait]
impl Broker for Nats {
    /// `nats consumer info`: the durable's ack floor.
    async fn raw_acked(&self, log: &str, consumer: &str) -> Result<Option<SeqNo>> {
        let info = raw(&self.url)
            .await?
            .get_stream(stream_name(log))
            .await?
            .consumer_info(consumer)
            .await?;
        let floor = info.ack_floor.stream_sequence;
        Ok((floor > 0).then_some(floor))
    }

    /// A direct get of the message, read as the CloudEvents NATS binding's
    /// binary mode says: `ce-` headers, percent-encoded.
    async fn raw_read(&self, log: &str, seq_no: SeqNo) -> Result<EventEnvelope> {
        let message = raw(&self.url)
            .await?
            .get_stream(stream_name(log))
            .await?
            .direct_get(seq_no)
            .await?;
        let headers = &message.headers;
        let header = |name: &str| -> Result<Option<String>> {
            headers
                .get(name)
                .map(|v| {
                    Ok(percent_encoding::percent_decode_str(v.as_str())
                        .decode_utf8()?
                        .into_owned())
                })
                .transpose()
        };
        anyhow::ensure!(
            header("ce-specversion")?.as_deref() == Some("1.0"),
            "ce-specversion is not 1.0"
        );
        let time =
            chrono::DateTime::parse_from_rfc3339(&header("ce-time")?.context("no ce-time")?)?
                .to_utc();
        let mut event = EventEnvelope::new(
            header("ce-source")?.context("no ce-source")?,
            header("ce-type")?.context("no ce-type")?,
            message.payload.clone(),
        )
        .with_id(header("ce-id")?.context("no ce-id")?)
        .with_time(time)
        .with_seq_no(seq_no);
        event.subject = header("ce-subject")?;
        event.content_type = headers.get("content-type").map(|v| v.as_str().to_owned());
        for (name, _) in headers.iter() {
            let name: &str = name.as_ref();
            if let Some(ext) = name.strip_prefix("ce-")
                && !["specversion", "id", "source", "type", "time", "subject"].contains(&ext)
            {
                event
                    .extensions
                    .insert(ext.to_owned(), header(name)?.unwrap_or_default());
            }
        }
        Ok(event)
    }

    /// A plain JetStream publish in binary content mode.
    async fn raw_publish(&self, log: &str, event: &EventEnvelope) -> Result<()> {
        let encode = |v: &str| {
            const SET: &percent_encoding::AsciiSet =
                &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');
            percent_encoding::utf8_percent_encode(v, SET).to_string()
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("ce-specversion", "1.0");
        headers.insert("ce-id", encode(&event.id));
        headers.insert("ce-source", encode(&event.source));
        headers.insert("ce-type", encode(&event.event_type));
        headers.insert("ce-time", event.time.to_rfc3339());
        if let Some(subject) = &event.subject {
            headers.insert("ce-subject", encode(subject));
        }
        if let Some(content_type) = &event.content_type {
            headers.insert("content-type", content_type.as_str());
        }
        for (name, value) in &event.extensions {
            headers.insert(format!("ce-{name}"), encode(value));
        }
        let subject = format!("{SUBJECT_PREFIX}{log}");
        // The context owns the connection: keep it until the ack is in.
        let js = raw(&self.url).await?;
        js.publish_with_headers(subject, headers, Bytes::clone(&event.payload))
            .await?
            .await?;
        Ok(())
    }

    /// `$JS.API.STREAM.DELETE`: the stream and its durable consumers.
    async fn raw_delete(&self, log: &str) -> Result<()> {
        raw(&self.url)
            .await?
            .delete_stream(stream_name(log))
            .await?;
        Ok(())
    }

    /// A JetStream publish of a bare payload, with no `ce-` headers.
    async fn raw_publish_foreign(&self, log: &str) -> Result<()> {
        let js = raw(&self.url).await?;
        js.publish(format!("{SUBJECT_PREFIX}{log}"), "not a CloudEvent".into())
            .await?
            .await?;
        Ok(())
    }

    /// A stream purge up to (not including) `seq_no`, as retention would.
    async fn raw_remove_before(&self, log: &str, seq_no: SeqNo) -> Result<()> {
        let js = raw(&self.url).await?;
        js.get_stream(stream_name(log))
            .await?
            .purge()
            .sequence(seq_no)
            .await?;
        Ok(())
    }

    async fn faulty(&self) -> Result<FaultyBroker> {
        let open: conformance::Opener = |address, log, timeout, settings| {
            Box::pin(
                async move { open(&format!("nats://{address}"), &log, timeout, settings).await },
            )
        };
        Ok(FaultyBroker::new(OwnBroker::start(&NATS).await?, open))
    }
}
conformance::contract_tests!(Nats::shared().await?);

/// Leases live in the `eventlog_leases` bucket with a per-message TTL: a
/// holder whose process died (its lease left behind, never renewed nor
/// released) is taken over by a standby once the server expires it, from
/// the consumer's acknowledgement; a holder that finds its lease taken by
/// another token ends with `Fenced`, and its acks are refused; a released
/// lease leaves nothing in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_the_server_and_a_taken_lease_fences_its_holder() -> Result<()> {
    use conformance::support::{append_n, unique};
    use eventlog_core::{SeekPosition, SubscribeOptions, WhenBusy};
    use jetstream::message::PublishMessage;
    let fx = Nats::shared().await?;
    let name = unique("lease");
    let log = fx.open(&name).await?;
    append_n(&*log, 3).await?;
    let c = unique("worker");
    let options = SubscribeOptions::exclusive(WhenBusy::Standby).with_lease(Duration::from_secs(1));
    // The bucket exists once a lease was taken.
    drop(
        log.subscribe_with(&unique("bucket"), SeekPosition::Beginning, options)
            .await?
            .next()
            .await,
    );
    let js = raw(&fx.url).await?;
    let lease_subject = format!("$KV.eventlog_leases.{}.{c}", stream_name(&name));
    let put = |holder: &'static str, ttl: u64| {
        let js = js.clone();
        let subject = lease_subject.clone();
        async move {
            let message = PublishMessage::build()
                .payload(holder.into())
                .ttl(Duration::from_secs(ttl));
            js.send_publish(subject, message).await?.await?;
            anyhow::Ok(())
        }
    };

    // A dead holder's lease, for 2 s.
    put("a-dead-process", 2).await?;
    let mut standby = conformance::support::expect_takeover_after(
        &*log,
        &c,
        options,
        Duration::from_millis(1500),
        &format!("log {name}"),
    )
    .await?;

    // Another token takes the lease over: the next renewal finds it.
    put("another-process", 60).await?;
    conformance::support::expect_fenced_out(&mut standby, &*log, &c, &format!("log {name}"))
        .await?;

    // A lease that ends leaves nothing behind: its purge marker expires.
    let released = unique("released");
    drop(
        log.subscribe_with(&released, SeekPosition::Beginning, options)
            .await?
            .next()
            .await,
    );
    let bucket = js.get_stream("KV_eventlog_leases").await?;
    let subject = format!("$KV.eventlog_leases.{}.{released}", stream_name(&name));
    testkit::wait::poll_until(
        &format!("log {name}: the lease of a dropped subscription"),
        Duration::from_secs(10),
        || async {
            Ok(match bucket.direct_get_last_for_subject(&subject).await {
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => None,
                other => Some(format!("{other:?}")),
            })
        },
        Option::is_none,
    )
    .await?;
    Ok(())
}
