//! A subscription: XREADGROUP on a connection of its own.
//!
//! It first reads the group's pending entries (delivered before, never
//! acknowledged: a consumer that died gets them again, in order), then new
//! ones with `>` and a blocking read. After a lost connection it reconnects
//! with backoff and starts again from the pending entries, skipping those it
//! already handed out, so the caller sees no gap and no duplicate.

use crate::codec;
use crate::error::is_unavailable;
use crate::log::Inner;
use eventlog_core::{Backoff, EventEnvelope, EventSource, EventStream, Result, SeqNo, into_stream};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::collections::VecDeque;
use std::sync::Arc;

/// The one member of each consumer group: one consumer name is one reader,
/// and a restarted reader must find its predecessor's pending entries.
pub(crate) const MEMBER: &str = "eventlog";
/// Entries per read.
const BATCH: usize = 256;

/// The client name of subscription connections on `log`, so `CLIENT LIST`
/// shows what each holds.
pub fn client_name(log: &str) -> String {
    format!("eventlog-sub:{log}")
}

/// `XREADGROUP`'s reply: per stream, its entries (id, fields; no fields for
/// an entry deleted since it was delivered).
type ReadReply = Option<Vec<(String, Vec<(String, Option<Vec<Vec<u8>>>)>)>>;

enum Phase {
    /// Re-reading the group's pending entries after this id.
    Pending(String),
    /// Reading entries never delivered.
    New,
}

/// Why a read failed: a lost server is retried, anything else ends the
/// subscription.
enum Failure {
    Transient(String),
    Fatal(String),
}

struct Subscription {
    inner: Arc<Inner>,
    consumer: String,
    conn: Option<MultiplexedConnection>,
    phase: Phase,
    buffer: VecDeque<EventEnvelope>,
    /// The last sequence number handed out.
    last: SeqNo,
    /// Whether this subscription has read any entry yet.
    opened: bool,
}

/// Opens the subscription of `consumer`, whose group exists and is where it
/// should start.
pub(crate) async fn open(inner: Arc<Inner>, consumer: String) -> Result<EventStream> {
    let conn = connect(&inner).await.map_err(crate::error::from_redis)?;
    let subscription = Subscription {
        inner,
        consumer,
        conn: Some(conn),
        phase: Phase::Pending("0".into()),
        buffer: VecDeque::new(),
        last: 0,
        opened: false,
    };
    Ok(into_stream(subscription))
}

/// A connection of the subscription's own: its blocking reads would stall
/// every other command on a shared one, and must not hit a response timeout.
async fn connect(inner: &Inner) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.config.timeout))
        .set_response_timeout(None);
    let mut conn = inner
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(client_name(&inner.config.log))
        .query_async::<()>(&mut conn)
        .await?;
    Ok(conn)
}

impl EventSource for Subscription {
    async fn next_event(&mut self) -> Option<EventEnvelope> {
        let mut backoff = Backoff::default();
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(event);
            }
            match self.fill().await {
                Ok(()) => backoff.reset(),
                Err(Failure::Fatal(reason)) => {
                    tracing::error!(log = %self.inner.config.log, consumer = %self.consumer, %reason, "subscription ended");
                    return None;
                }
                Err(Failure::Transient(reason)) => {
                    tracing::warn!(log = %self.inner.config.log, consumer = %self.consumer, %reason, "reconnecting");
                    self.conn = None;
                    self.phase = Phase::Pending("0".into());
                    backoff.wait().await;
                }
            }
        }
    }
}

impl Subscription {
    /// One read into the buffer (which may stay empty: a blocking read that
    /// timed out, or the end of the pending entries).
    async fn fill(&mut self) -> Result<(), Failure> {
        let timeout = self.inner.config.timeout;
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = tokio::time::timeout(timeout, connect(&self.inner))
                    .await
                    .map_err(|_| Failure::Transient("connecting timed out".into()))?
                    .map_err(|e| classify(&e))?;
                self.conn.insert(conn)
            }
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.consumer)
            .arg(MEMBER)
            .arg("COUNT")
            .arg(BATCH);
        let mut wait = timeout;
        let from = match &self.phase {
            Phase::Pending(after) => after.clone(),
            Phase::New => {
                cmd.arg("BLOCK")
                    .arg(self.inner.config.block.as_millis() as u64);
                wait += self.inner.config.block;
                ">".to_owned()
            }
        };
        cmd.arg("STREAMS").arg(&self.inner.key).arg(from);
        let reply: ReadReply = tokio::time::timeout(wait, cmd.query_async(conn))
            .await
            .map_err(|_| Failure::Transient(format!("no answer to XREADGROUP within {wait:?}")))?
            .map_err(|e| classify(&e))?;
        let entries = reply
            .and_then(|streams| streams.into_iter().next())
            .map(|(_, e)| e)
            .unwrap_or_default();
        if entries.is_empty() {
            if let Phase::Pending(_) = self.phase {
                self.phase = Phase::New;
            }
            return Ok(());
        }
        let mut first_new = None;
        for (id, fields) in entries {
            let seq = codec::seq_of(&id).map_err(|e| Failure::Fatal(e.to_string()))?;
            if seq > self.last {
                first_new.get_or_insert(seq);
            }
            if let Phase::Pending(after) = &mut self.phase {
                after.clone_from(&id);
            }
            // Handed out before a reconnect, or deleted since delivery.
            let (true, Some(fields)) = (seq > self.last, fields) else {
                continue;
            };
            let event = codec::decode(seq, fields).map_err(|e| Failure::Fatal(e.to_string()))?;
            self.last = seq;
            self.buffer.push_back(event);
        }
        if let Some(first) = first_new {
            let opening = !std::mem::replace(&mut self.opened, true);
            self.inner
                .delivered
                .read(&self.consumer, first, self.last.max(first), opening);
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.delivered.forget(&self.consumer);
    }
}

fn classify(err: &redis::RedisError) -> Failure {
    if is_unavailable(err) || err.code() == Some("LOADING") {
        Failure::Transient(err.to_string())
    } else {
        Failure::Fatal(err.to_string())
    }
}
