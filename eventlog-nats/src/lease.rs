//! Leases of exclusive subscriptions: one JetStream key-value bucket,
//! `eventlog_leases`, shared by every log of the account, with a key per
//! stream and consumer whose value is the holder's token.
//!
//! A lease is a message with a per-message TTL (server 2.11 and newer), so
//! the server forgets the lease of a holder that died; taking and renewing
//! are publishes that expect the key's last revision, so two takers never
//! both win. JetStream has no conditional ack: a fenced ack or seek reads
//! the key and then acks, so it is refused when another holder's lease is
//! seen, but a process paused between the two for longer than a lease can
//! still land one (`docs/reliability.md`).
//!
//! The holder's own acks skip the read: a lease this handle took at `t`
//! for `ttl` lives on the server until `t + ttl` at least, so while that is
//! more than a third of the lease away, no other holder can have it.

use crate::driver::NatsDriver;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, kv, message::PublishMessage};
use eventlog_core::EventLogError;
use std::time::Duration;
use tokio::time::Instant;

/// The bucket of every log's leases.
pub(crate) const BUCKET: &str = "eventlog_leases";

/// The shortest per-message TTL the server takes.
const MIN_TTL: Duration = Duration::from_secs(1);

/// A lease this handle took.
pub(crate) struct Held {
    holder: String,
    /// Until when an ack sent now surely lands while the lease lives: a
    /// third of the lease before the server may expire it.
    surely_until: Instant,
}

impl Held {
    fn new(holder: &str, asked: Instant, lease: Duration) -> Self {
        Self {
            holder: holder.to_owned(),
            surely_until: asked + lease - lease / 3,
        }
    }
}

/// What a lease key holds now.
enum Current {
    /// No live lease; the next one expects this revision (0: none yet).
    Free(u64),
    /// `holder`'s lease, at `revision`.
    Held { holder: String, revision: u64 },
}

impl NatsDriver {
    /// The lease bucket; `None` when it does not exist (no lease was ever
    /// taken on this account, so nothing is fenced).
    async fn leases(&self) -> Result<Option<&kv::Store>, EventLogError> {
        if let Some(store) = self.leases.get() {
            return Ok(Some(store));
        }
        match self.js.get_stream(format!("KV_{BUCKET}")).await {
            // Opened, not created: a user who may only read the bucket
            // gets it too.
            Ok(_) => self
                .leases
                .get_or_try_init(|| self.open_leases())
                .await
                .map(Some),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(self.classify(e)),
            },
        }
    }

    /// The existing lease bucket, opened without creating it.
    async fn open_leases(&self) -> Result<kv::Store, EventLogError> {
        self.js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| self.classify(e))
    }

    /// The lease bucket, created on first use.
    async fn leases_or_create(&self) -> Result<&kv::Store, EventLogError> {
        self.leases
            .get_or_try_init(|| async {
                let created = self
                    .js
                    .create_key_value(kv::Config {
                        bucket: BUCKET.to_owned(),
                        description: "eventlog: leases of exclusive subscriptions".to_owned(),
                        history: 1,
                        // Also turns per-message TTLs on.
                        limit_markers: Some(MIN_TTL),
                        storage: jetstream::stream::StorageType::File,
                        num_replicas: self.config.replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => Ok(store),
                    // It exists (another handle created it first).
                    Err(_) => self.open_leases().await,
                }
            })
            .await
    }

    fn forget_held(&self, consumer: &str, holder: &str) {
        let mut held = self.held.lock().expect("held leases lock poisoned");
        if held.get(consumer).is_some_and(|h| h.holder == holder) {
            held.remove(consumer);
        }
    }

    /// The key of `consumer`'s lease: the stream name, with characters a
    /// key cannot hold as `=` and two hex digits, and the consumer name
    /// (only `A-Z a-z 0-9 _ -`).
    fn lease_key(&self, consumer: &str) -> String {
        use std::fmt::Write;
        let mut key = String::new();
        for byte in self.config.stream_name().bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                key.push(byte as char);
            } else {
                let _ = write!(key, "={byte:02X}");
            }
        }
        key.push('.');
        key.push_str(consumer);
        key
    }

    async fn current(&self, store: &kv::Store, key: &str) -> Result<Current, EventLogError> {
        let entry = store.entry(key).await.map_err(|e| self.classify(e))?;
        Ok(match entry {
            None => Current::Free(0),
            Some(entry) if entry.operation != kv::Operation::Put => Current::Free(entry.revision),
            Some(entry) => Current::Held {
                holder: String::from_utf8_lossy(&entry.value).into_owned(),
                revision: entry.revision,
            },
        })
    }

    /// Takes or renews `consumer`'s lease for `holder`; `false` when
    /// another holder has it, or took it between our read and our write.
    pub(crate) async fn take_lease(
        &self,
        consumer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        let (asked, lease) = (Instant::now(), ttl);
        let store = self.leases_or_create().await?;
        let key = self.lease_key(consumer);
        let revision = match self.current(store, &key).await? {
            Current::Free(revision) => revision,
            Current::Held {
                holder: h,
                revision,
            } if h == holder => revision,
            Current::Held { .. } => {
                self.forget_held(consumer, holder);
                return Ok(false);
            }
        };
        // Whole seconds, rounded up: the server keeps a lease at least as
        // long as its holder believes it has it.
        let ttl =
            Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(MIN_TTL);
        let message = PublishMessage::build()
            .payload(holder.to_owned().into())
            .expected_last_subject_sequence(revision)
            .ttl(ttl);
        let ack = self
            .js
            .send_publish(format!("$KV.{BUCKET}.{key}"), message)
            .await
            .map_err(|e| self.classify(e))?;
        let taken = match ack.await {
            Ok(_) => true,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => false,
            Err(e) => return Err(self.classify(e)),
        };
        if taken {
            self.held
                .lock()
                .expect("held leases lock poisoned")
                .insert(consumer.to_owned(), Held::new(holder, asked, lease));
        } else {
            self.forget_held(consumer, holder);
        }
        Ok(taken)
    }

    /// Ends `holder`'s lease of `consumer`, if it holds one.
    pub(crate) async fn end_lease(
        &self,
        consumer: &str,
        holder: &str,
    ) -> Result<(), EventLogError> {
        self.forget_held(consumer, holder);
        let Some(store) = self.leases().await? else {
            return Ok(());
        };
        let key = self.lease_key(consumer);
        if let Current::Held {
            holder: h,
            revision,
        } = self.current(store, &key).await?
            && h == holder
        {
            // A purge marker that expires too, so ended leases leave
            // nothing behind in the bucket.
            store
                .purge_expect_revision_with_ttl(&key, revision, MIN_TTL)
                .await
                .map_err(|e| self.classify(e))?;
        }
        Ok(())
    }

    /// Refuses with `Fenced` when another holder than `holder` has a live
    /// lease of `consumer`.
    pub(crate) async fn check_lease(
        &self,
        consumer: &str,
        holder: &str,
    ) -> Result<(), EventLogError> {
        let surely_held = self
            .held
            .lock()
            .expect("held leases lock poisoned")
            .get(consumer)
            .is_some_and(|held| held.holder == holder && Instant::now() < held.surely_until);
        if surely_held {
            return Ok(());
        }
        let Some(store) = self.leases().await? else {
            return Ok(());
        };
        match self.current(store, &self.lease_key(consumer)).await? {
            Current::Held { holder: h, .. } if h != holder => Err(EventLogError::Fenced {
                consumer: consumer.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}
