//! The Redis Streams backend of [`eventlog`](https://docs.rs/eventlog).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use eventlog_core::{EventEnvelope, EventLog};
//! use eventlog_redis::{RedisConfig, RedisEventLog};
//!
//! let config = RedisConfig::builder("redis://127.0.0.1:6379", "orders")
//!     .with_username("app")
//!     .with_password("secret")
//!     .build()?;
//! let log = RedisEventLog::connect(config).await?;
//! log.append(EventEnvelope::new("/shop", "order.placed", &b"{}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! # How the contract maps onto Redis
//!
//! Redis 7.0 or newer is needed (`XADD key 0-*`); `connect` checks.
//!
//! | EventLog | Redis |
//! |---|---|
//! | a log | one stream, key `eventlog:<log>` (the prefix is configurable) |
//! | `append` | `XADD key 0-* field value…`: the entry id `0-n` is the sequence number `n`, so Redis itself numbers the entries 1, 2, 3… with no gap |
//! | `append_batch` | the `XADD`s in one `MULTI`/`EXEC`: stored contiguously, or not at all |
//! | a consumer | a consumer group named after it, with one member, `eventlog` |
//! | `subscribe` | on a connection of its own, named `eventlog-sub:<log>` (as `CLIENT LIST` shows it): `XREADGROUP … STREAMS key 0` for the group's pending entries (delivered, never acknowledged), then `XREADGROUP … BLOCK … STREAMS key >` |
//! | `ack(c, n)` | a Lua script: `XACK` of every pending entry up to `n`, then `XGROUP SETID` to `n` if the group had not delivered that far (the common case, the entries this handle delivered, is one `XACK` in a small script) |
//! | `seek(c, p)` | a Lua script: `XGROUP SETID` (or `CREATE`), then `XGROUP DELCONSUMER` of every member, so no stale pending entry comes again |
//! | an exclusive subscription's lease | key `eventlog:<log>:lease:<consumer>`, the holder's token, expiring on the server (`SET … PX`); every ack and seek script refuses, changing nothing, while another token holds it |
//! | `consumer_state` | the group's acknowledgement floor: the entry before its oldest pending entry (`XPENDING`), or its `last-delivered-id` (`XINFO GROUPS`) when nothing is pending |
//! | `last_seq_no` | `last-generated-id` of `XINFO STREAM` |
//!
//! The entry fields are the CloudEvents attributes; see the `codec` table
//! in the project's `docs/wire-format.md`.
//!
//! **One reader per consumer name.** A second plain subscription on the
//! same name joins the same group as the same member: the two share the new
//! entries (each gets some), and both re-read pending ones. Use one
//! consumer name per reader, or exclusive subscriptions
//! (`SubscribeOptions::exclusive`): one holds the name, the others wait as
//! standbys, and acks from anyone else are fenced.
//!
//! **Durability** is Redis's: an acknowledged append is in memory on the
//! primary and reaches disk per the server's `appendonly`/`appendfsync`
//! settings. Run Redis with `appendonly yes` for a log that survives a
//! restart.
//!
//! **Faults.** Every operation is bounded as a whole by the configured
//! timeout (default 5 s) and fails with `EventLogError::Timeout` or
//! `Unavailable` while the server is away; the shared connection reconnects by
//! itself. Subscriptions reconnect with backoff and resume from the group's
//! pending entries; the generic log skips what it already handed out, so they
//! see no gap and no duplicate. What `subscribe_checked` reports (undecodable
//! entries, gaps, a deleted stream, outages) is the same on every backend: see
//! `eventlog_core::CheckedEventStream`.
//!
//! The contract's rules live in `eventlog-core`'s generic log; this crate is
//! its driver ([`RedisDriver`], [`RedisReader`]): the broker calls only.

mod codec;
mod config;
mod delivered;
mod driver;
mod error;
mod log;
mod reader;
mod scripts;

pub use config::{
    DEFAULT_KEY_PREFIX, DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT, RedisConfig, RedisConfigBuilder,
};
pub use driver::RedisDriver;
pub use log::RedisEventLog;
pub use reader::RedisReader;
