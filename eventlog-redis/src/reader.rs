//! A subscription's reader: XREADGROUP on a connection of its own.
//!
//! It first reads the group's pending entries (delivered before, never
//! acknowledged: a consumer that died gets them again, in order), then new
//! ones with `>` and a blocking read. The generic log opens a new reader
//! after a failure, which starts again from the pending entries; it drops
//! what it already handed out.

use crate::codec;
use crate::driver::RedisDriver;
use crate::error::from_redis;
use eventlog_core::driver::{ReadLimits, Reader, Record, Undecodable};
use eventlog_core::{EventLogError, SeqNo};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::collections::VecDeque;
use std::sync::Arc;

/// The one member of each consumer group: one consumer name is one reader,
/// and a restarted reader must find its predecessor's pending entries.
pub(crate) const MEMBER: &str = "eventlog";

/// `XREADGROUP`'s reply: per stream, its entries (id, fields; no fields for
/// an entry deleted since it was delivered).
type ReadReply = Option<Vec<(String, Vec<(String, Option<Vec<Vec<u8>>>)>)>>;

enum Phase {
    /// Re-reading the group's pending entries after this id.
    Pending(String),
    /// Reading entries never delivered.
    New,
}

/// The reader of one subscription.
pub struct RedisReader {
    /// What it reports its reads to, for fast acks.
    delivered: Arc<crate::delivered::Delivered>,
    key: String,
    consumer: String,
    block_ms: u64,
    conn: MultiplexedConnection,
    phase: Phase,
    /// Whether this reader has read any entry yet.
    opened: bool,
    /// The mean size of the entries of the last read, in bytes: `XREADGROUP`
    /// counts entries only, so the next read asks for as many as fit the
    /// byte limit at that size.
    entry_size: usize,
}

impl RedisReader {
    /// A reader of `consumer`'s group, whose stream and group exist.
    pub(crate) async fn open(driver: &RedisDriver, consumer: &str) -> Result<Self, EventLogError> {
        // Its blocking reads would stall every other command on a shared
        // connection, and must not hit a response timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(driver.config.timeout))
            .set_response_timeout(None);
        let mut conn = driver
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(from_redis)?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            // Documented (crate docs): `CLIENT LIST` shows what each holds.
            .arg(format!("eventlog-sub:{}", driver.config.log))
            .query_async::<()>(&mut conn)
            .await
            .map_err(from_redis)?;
        Ok(Self {
            delivered: driver.delivered.clone(),
            key: driver.key.clone(),
            consumer: consumer.to_owned(),
            block_ms: driver.config.block.as_millis() as u64,
            conn,
            phase: Phase::Pending("0".into()),
            opened: false,
            entry_size: 0,
        })
    }
}

impl Reader for RedisReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> Result<(), EventLogError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.consumer)
            .arg(MEMBER)
            .arg("COUNT")
            .arg(match limits.bytes.checked_div(self.entry_size) {
                Some(fit) => fit.clamp(1, limits.events),
                None => limits.events,
            });
        let from = match &self.phase {
            Phase::Pending(after) => after.clone(),
            Phase::New => {
                cmd.arg("BLOCK").arg(self.block_ms);
                ">".to_owned()
            }
        };
        cmd.arg("STREAMS").arg(&self.key).arg(from);
        let reply: ReadReply = cmd.query_async(&mut self.conn).await.map_err(from_redis)?;
        let entries = reply
            .and_then(|streams| streams.into_iter().next())
            .map(|(_, e)| e)
            .unwrap_or_default();
        if entries.is_empty() {
            self.phase = Phase::New;
            return Ok(());
        }
        let (mut first, mut last): (Option<SeqNo>, SeqNo) = (None, 0);
        let count = entries.len();
        let mut bytes = 0;
        for (id, fields) in entries {
            let seq_no = codec::seq_of(&id)?;
            first.get_or_insert(seq_no);
            last = seq_no;
            if let Phase::Pending(after) = &mut self.phase {
                after.clone_from(&id);
            }
            // Deleted since it was delivered.
            let Some(fields) = fields else { continue };
            bytes += fields.iter().map(Vec::len).sum::<usize>();
            records.push_back(
                codec::decode(seq_no, fields).map_err(|e| Undecodable::from_error(seq_no, e)),
            );
        }
        self.entry_size = bytes / count;
        if let Some(first) = first {
            let opening = !std::mem::replace(&mut self.opened, true);
            self.delivered.read(&self.consumer, first, last, opening);
        }
        Ok(())
    }
}

impl Drop for RedisReader {
    fn drop(&mut self) {
        self.delivered.forget(&self.consumer);
    }
}
