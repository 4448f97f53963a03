//! Redis: `XADD`, `MULTI`/`XADD`…/`EXEC`, `XREADGROUP`, `XACK`.

use crate::target::Target;
use anyhow::Result;
use async_trait::async_trait;
use eventlog::{AttributeReader, EventEnvelope, attributes};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(crate) struct RawRedis {
    client: redis::Client,
    conn: MultiplexedConnection,
    key: String,
}

/// `XREADGROUP`'s reply: streams of (id, fields).
type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;

impl RawRedis {
    pub(crate) async fn open(url: &str, log: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            client,
            conn,
            key: format!("raw:{log}"),
        })
    }

    fn xadd(&self, event: &EventEnvelope) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key).arg("0-*");
        for (name, value) in attributes(event) {
            cmd.arg(name).arg(value.as_ref());
        }
        cmd.arg("data").arg(event.payload.as_ref());
        cmd
    }

    async fn group(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
        from: &str,
    ) -> Result<()> {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(consumer)
            .arg(from)
            .arg("MKSTREAM")
            .query_async::<()>(conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Target for RawRedis {
    async fn append(&self, event: EventEnvelope) -> Result<()> {
        self.xadd(&event)
            .query_async::<String>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn append_batch(&self, events: Vec<EventEnvelope>) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in &events {
            pipe.add_command(self.xadd(event));
        }
        pipe.query_async::<Vec<String>>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn consume(&self, consumer: &str, n: u64, ack_every: u64) -> Result<()> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        self.group(&mut conn, consumer, "0").await?;
        let (mut read, mut unacked) = (0, Vec::new());
        while read < n {
            let reply: Reply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(consumer)
                .arg("m")
                .arg("COUNT")
                .arg(512)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            for (id, fields) in reply.into_iter().flatten().flat_map(|(_, entries)| entries) {
                read += 1;
                decode(read, fields)?;
                unacked.push(id);
                if ack_every > 0 && read % ack_every == 0 {
                    redis::cmd("XACK")
                        .arg(&self.key)
                        .arg(consumer)
                        .arg(&unacked)
                        .query_async::<()>(&mut conn)
                        .await?;
                    unacked.clear();
                }
            }
        }
        Ok(())
    }

    async fn arrivals(&self, consumer: &str) -> Result<mpsc::UnboundedReceiver<Instant>> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await?;
        self.group(&mut conn, consumer, "$").await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (key, consumer) = (self.key.clone(), consumer.to_owned());
        tokio::spawn(async move {
            loop {
                let reply: redis::RedisResult<Reply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&consumer)
                    .arg("m")
                    .arg("COUNT")
                    .arg(512)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">")
                    .query_async(&mut conn)
                    .await;
                let Ok(reply) = reply else { break };
                for _ in reply.into_iter().flatten().flat_map(|(_, entries)| entries) {
                    if tx.send(Instant::now()).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// What a reader of the documented entry fields does with each entry.
fn decode(seq_no: u64, fields: Vec<Vec<u8>>) -> Result<EventEnvelope> {
    let mut pairs = fields.chunks_exact(2);
    let payload = pairs
        .clone()
        .find(|p| p[0] == b"data")
        .map(|p| p[1].clone())
        .unwrap_or_default();
    let mut reader = AttributeReader::new(seq_no, payload, None);
    for pair in &mut pairs {
        if pair[0] != b"data" {
            reader.set_bytes(std::str::from_utf8(&pair[0])?, pair[1].clone())?;
        }
    }
    Ok(reader.finish()?)
}
