//! The generic log: the contract applied once, over any [`Driver`].

use super::Driver;
use super::subscription::Subscription;
use crate::{
    AppendOptions, Appended, Capabilities, CheckedEventStream, ConsumerState, EventEnvelope,
    EventLog, EventLogError, EventStream, ExpectedLast, Result, SeekPosition, SeqNo,
    SubscribeOptions, validate,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// How many locks serialise the acks and seeks of a handle: consumers share
/// them by the hash of their name, so memory stays flat however many
/// consumer names a handle meets.
const CONSUMER_LOCKS: usize = 64;

/// How a [`DriverLog`]'s subscriptions read and report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionSettings {
    /// Events read ahead of the caller, at most (default 256).
    pub read_ahead_events: usize,
    /// Payload bytes read ahead of the caller, at most about (default
    /// 1 MiB); one event is read even if it alone is larger.
    pub read_ahead_bytes: usize,
    /// How long a subscription goes without its broker before it reports
    /// an [`Outage`](EventLogError::Outage) item (default 30 s); it reports
    /// again after each further such period, and keeps retrying.
    pub outage_report_after: Duration,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            read_ahead_events: 256,
            read_ahead_bytes: 1024 * 1024,
            outage_report_after: Duration::from_secs(30),
        }
    }
}

impl SubscriptionSettings {
    /// Reads at most `events` events ahead (at least 1).
    pub fn with_read_ahead_events(mut self, events: usize) -> Self {
        self.read_ahead_events = events.max(1);
        self
    }

    /// Reads at most about `bytes` payload bytes ahead.
    pub fn with_read_ahead_bytes(mut self, bytes: usize) -> Self {
        self.read_ahead_bytes = bytes;
        self
    }

    /// Reports an outage after `after` without the broker.
    pub fn with_outage_report_after(mut self, after: Duration) -> Self {
        self.outage_report_after = after;
        self
    }
}

/// The [`EventLog`] of every backend: the contract's rules over a
/// [`Driver`]'s broker calls. Cheap to clone: clones share the driver.
///
/// Each public method runs within the driver's
/// [`timeout`](Driver::timeout) as a whole, however many broker calls it
/// makes, and fails with [`EventLogError::Timeout`] naming the method
/// otherwise. Every error it returns is an [`EventLogError`].
pub struct DriverLog<D> {
    pub(super) shared: Arc<Shared<D>>,
}

impl<D> Clone for DriverLog<D> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<D: std::fmt::Debug> std::fmt::Debug for DriverLog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverLog")
            .field("driver", &self.shared.driver)
            .finish_non_exhaustive()
    }
}

pub(super) struct Shared<D> {
    pub(super) driver: D,
    pub(super) settings: SubscriptionSettings,
    /// The highest sequence number this handle has read or been told is
    /// the last: an ack up to it is in range without asking the broker.
    seen_last: AtomicU64,
    locks: Box<[Mutex<()>]>,
    /// The live subscriptions of this handle, in the stripes of `locks`:
    /// an ack or seek tells them where their consumer was moved.
    follows: Box<[std::sync::Mutex<Vec<Follow>>]>,
    /// This handle's name in lease tokens (`<handle>-<n>`): an ack or seek
    /// of a consumer this handle holds none of carries it, and is fenced
    /// wherever another holder has a lease.
    handle: Arc<str>,
    /// How many lease tokens this handle has made.
    tokens: AtomicU64,
    /// The token of the lease this handle's exclusive subscription holds,
    /// by consumer: its acks and seeks carry it.
    claims: std::sync::Mutex<HashMap<Arc<str>, Arc<str>>>,
}

/// A live subscription's mailbox for moves of its consumer.
pub(super) struct Follow {
    consumer: Arc<str>,
    /// The next sequence number the consumer was last moved to (0: none).
    pub(super) moved_to: Arc<AtomicU64>,
}

/// How a move changes a live subscription's mailbox.
#[derive(Clone, Copy)]
enum Move {
    /// A seek: the consumer's next number is this one.
    To(SeqNo),
    /// An ack: the consumer's next number is at least this one.
    AtLeast(SeqNo),
}

impl<D> Shared<D> {
    /// A lease token no other claim of any handle has.
    pub(super) fn new_token(&self) -> Arc<str> {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.handle).into()
    }

    /// Acks and seeks of `consumer` through this handle carry `token`.
    pub(super) fn hold(&self, consumer: &Arc<str>, token: &Arc<str>) {
        self.claims
            .lock()
            .expect("claims lock poisoned")
            .insert(consumer.clone(), token.clone());
    }

    /// Forgets `token` as this handle's hold on `consumer`, if it still is.
    pub(super) fn unhold(&self, consumer: &str, token: &Arc<str>) {
        let mut claims = self.claims.lock().expect("claims lock poisoned");
        if claims
            .get(consumer)
            .is_some_and(|held| Arc::ptr_eq(held, token))
        {
            claims.remove(consumer);
        }
    }

    /// The token an ack or seek of `consumer` through this handle carries:
    /// its claim's, or the handle's own, which holds nothing.
    fn token_of(&self, consumer: &str) -> Arc<str> {
        self.claims
            .lock()
            .expect("claims lock poisoned")
            .get(consumer)
            .cloned()
            .unwrap_or_else(|| self.handle.clone())
    }

    pub(super) fn limits(&self) -> super::ReadLimits {
        super::ReadLimits {
            events: self.settings.read_ahead_events,
            bytes: self.settings.read_ahead_bytes,
        }
    }

    pub(super) fn saw(&self, seq_no: SeqNo) {
        self.seen_last.fetch_max(seq_no, Ordering::Relaxed);
    }

    /// The log was found numbering anew from `last`: what was seen before
    /// no longer vouches for an ack.
    pub(super) fn saw_reused(&self, last: SeqNo) {
        self.seen_last.store(last, Ordering::Relaxed);
    }

    fn stripe_of(&self, consumer: &str) -> usize {
        // FNV-1a: names are short and chosen by the application, and a
        // shared stripe only serialises two consumers' acks.
        let hash = consumer
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        (hash % self.locks.len() as u64) as usize
    }

    fn lock_of(&self, consumer: &str) -> &Mutex<()> {
        &self.locks[self.stripe_of(consumer)]
    }

    fn follows_of(&self, consumer: &str) -> std::sync::MutexGuard<'_, Vec<Follow>> {
        self.follows[self.stripe_of(consumer)]
            .lock()
            .expect("follow lock poisoned")
    }

    /// A mailbox for a new live subscription of `consumer`.
    pub(super) fn follow(&self, consumer: &Arc<str>) -> Arc<AtomicU64> {
        let moved_to = Arc::new(AtomicU64::new(0));
        self.follows_of(consumer).push(Follow {
            consumer: consumer.clone(),
            moved_to: moved_to.clone(),
        });
        moved_to
    }

    /// Forgets the mailbox of a dropped subscription.
    pub(super) fn unfollow(&self, consumer: &str, moved_to: &Arc<AtomicU64>) {
        self.follows_of(consumer)
            .retain(|follow| !Arc::ptr_eq(&follow.moved_to, moved_to));
    }

    /// Tells the live subscriptions of `consumer` where it was moved.
    fn moved(&self, consumer: &str, to: Move) {
        for follow in self.follows_of(consumer).iter() {
            if *follow.consumer == *consumer {
                match to {
                    Move::To(next) => follow.moved_to.store(next, Ordering::Release),
                    Move::AtLeast(next) => {
                        follow.moved_to.fetch_max(next, Ordering::AcqRel);
                    }
                }
            }
        }
    }
}

impl<D: Driver> DriverLog<D> {
    /// The log over `driver`, with the default [`SubscriptionSettings`].
    pub fn new(driver: D) -> Self {
        Self::with_settings(driver, SubscriptionSettings::default())
    }

    /// The log over `driver` whose subscriptions follow `settings`.
    pub fn with_settings(driver: D, settings: SubscriptionSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                driver,
                settings,
                seen_last: AtomicU64::new(0),
                locks: (0..CONSUMER_LOCKS).map(|_| Mutex::new(())).collect(),
                follows: (0..CONSUMER_LOCKS).map(|_| Default::default()).collect(),
                handle: uuid::Uuid::now_v7().simple().to_string().into(),
                tokens: AtomicU64::new(0),
                claims: Default::default(),
            }),
        }
    }

    /// The driver underneath.
    pub fn driver(&self) -> &D {
        &self.shared.driver
    }

    /// How this log's subscriptions read and report.
    pub fn subscription_settings(&self) -> SubscriptionSettings {
        self.shared.settings
    }

    fn max_payload(&self) -> usize {
        self.shared.driver.capabilities().max_payload
    }

    /// Runs `fut` within the driver's timeout, as `operation`.
    pub(super) async fn within<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, EventLogError>>,
    ) -> Result<T, EventLogError> {
        let Some(after) = self.shared.driver.timeout() else {
            return fut.await;
        };
        match tokio::time::timeout(after, fut).await {
            Ok(result) => result,
            Err(_) => Err(EventLogError::Timeout { operation, after }),
        }
    }

    async fn last(&self) -> Result<SeqNo, EventLogError> {
        let last = self.shared.driver.last_seq_no().await?;
        self.shared.saw(last);
        Ok(last)
    }

    /// Moves `consumer` to `position` and returns its next sequence
    /// number; the caller holds the consumer's lock. With
    /// `LastAcknowledged`, a consumer with no stored position is moved to
    /// `start_if_new` if given, else starts at the beginning.
    async fn move_to(
        &self,
        consumer: &str,
        position: SeekPosition,
        start_if_new: Option<SeqNo>,
    ) -> Result<SeqNo, EventLogError> {
        let driver = &self.shared.driver;
        let next = match position {
            SeekPosition::Beginning => 1,
            SeekPosition::Latest => self.last().await? + 1,
            SeekPosition::Sequence(n) => n,
            SeekPosition::LastAcknowledged => {
                // Moving nothing, it still must not read beside another
                // holder: on a broker that delivers a consumer's events once
                // (Redis, NATS) it would take them from the holder.
                let token = self.shared.token_of(consumer);
                driver.check_fenced(consumer, &token).await?;
                match driver.acknowledged(consumer).await? {
                    Some(acked) => return Ok(acked + 1),
                    None => match start_if_new {
                        Some(start) => start,
                        None => return Ok(1),
                    },
                }
            }
        };
        let token = self.shared.token_of(consumer);
        driver.move_consumer_fenced(consumer, next, &token).await?;
        self.shared.moved(consumer, Move::To(next));
        Ok(next)
    }

    /// Moves `consumer` to `position` (as `seek` would, but for
    /// `LastAcknowledged`, see [`move_to`](Self::move_to)) and opens its
    /// subscription there.
    pub(super) async fn open_subscription(
        &self,
        consumer: &str,
        position: SeekPosition,
        start_if_new: Option<SeqNo>,
    ) -> Result<Subscription<D>, EventLogError> {
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        let consumer: Arc<str> = consumer.into();
        let (reader, next, moved_to) = self
            .within("subscribe", async {
                let _held = self.shared.lock_of(&consumer).lock().await;
                let next = self.move_to(&consumer, position, start_if_new).await?;
                let reader = self.shared.driver.open_reader(&consumer, next).await?;
                // Under the lock and after the last await: no move is
                // missed, and a timed-out subscribe leaves no mailbox.
                let moved_to = self.shared.follow(&consumer);
                Ok((reader, next, moved_to))
            })
            .await?;
        Ok(Subscription::new(
            self.shared.clone(),
            consumer,
            (reader, next),
            moved_to,
        ))
    }

    /// The common rules, then the broker's own limits.
    fn check_event(&self, event: &EventEnvelope) -> Result<(), EventLogError> {
        validate::envelope(event, self.max_payload())?;
        self.shared.driver.check_event(event)
    }

    /// [`check_event`](Self::check_event) for every event of a batch, the
    /// refusal naming the event, before anything is stored.
    fn check_events(&self, events: &[EventEnvelope]) -> Result<(), EventLogError> {
        validate::batch(events, self.max_payload())?;
        events
            .iter()
            .try_for_each(|event| self.shared.driver.check_event(event))
    }

    /// A condition the backend can check.
    fn check_expected(&self, expected: ExpectedLast) -> Result<(), EventLogError> {
        if expected == ExpectedLast::Any {
            return Ok(());
        }
        validate::expected(expected)?;
        let capabilities = self.shared.driver.capabilities();
        if !capabilities.conditional_append {
            return Err(EventLogError::Unsupported {
                backend: capabilities.backend,
                feature: "conditional appends",
            });
        }
        Ok(())
    }

    /// `err` of an append, as a caller may act on it: a retryable failure
    /// of a log that cannot recognise a retry is not safe to retry.
    fn append_error(&self, operation: &'static str, err: EventLogError) -> EventLogError {
        let capabilities = self.shared.driver.capabilities();
        if err.is_retryable() && capabilities.dedup_window.is_none() {
            return EventLogError::AppendUnconfirmed {
                backend: capabilities.backend,
                operation,
                source: Box::new(err),
            };
        }
        err
    }

    async fn append_event(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        self.check_event(&event)?;
        self.check_expected(expected)?;
        // Not noted as seen: a shared write on every append would cost
        // concurrent writers more than the rare ack of an unread event
        // that asks the broker for its last number.
        self.within("append", self.shared.driver.append(event, expected))
            .await
            .map_err(|err| self.append_error("append", err))
    }

    async fn append_events(
        &self,
        events: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        self.check_events(&events)?;
        self.check_expected(expected)?;
        if events.is_empty() {
            // Nothing to store; a condition is still answered.
            if expected != ExpectedLast::Any {
                let last = self.within("append_batch", self.last()).await?;
                expected.check(last)?;
            }
            return Ok(Vec::new());
        }
        self.within(
            "append_batch",
            self.shared.driver.append_batch(events, expected),
        )
        .await
        .map_err(|err| self.append_error("append_batch", err))
    }
}

/// A backend's own log type that is a [`DriverLog`] underneath: it gets
/// [`EventLog`] from it.
pub trait AsDriverLog: Send + Sync {
    /// The backend's driver.
    type Driver: Driver;

    /// The generic log underneath.
    fn driver_log(&self) -> &DriverLog<Self::Driver>;
}

impl<D: Driver> AsDriverLog for DriverLog<D> {
    type Driver = D;

    fn driver_log(&self) -> &DriverLog<D> {
        self
    }
}

#[async_trait]
impl<T: AsDriverLog> EventLog for T {
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        // The generic log's own future, not `append_with`'s boxed one: one
        // allocation per append, not two.
        let log = self.driver_log();
        Ok(log
            .append_event(envelope, ExpectedLast::Any)
            .await?
            .seq_no())
    }

    async fn append_with(
        &self,
        envelope: EventEnvelope,
        options: AppendOptions,
    ) -> Result<Appended> {
        Ok(self
            .driver_log()
            .append_event(envelope, options.expected)
            .await?)
    }

    async fn append_batch_with(
        &self,
        envelopes: Vec<EventEnvelope>,
        options: AppendOptions,
    ) -> Result<Vec<Appended>> {
        Ok(self
            .driver_log()
            .append_events(envelopes, options.expected)
            .await?)
    }

    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream> {
        // The plain stream over the engine itself, not over its boxed
        // checked stream: one dynamic call per event, not two.
        Ok(crate::log::plain(
            self.driver_log()
                .open_subscription(consumer, position, None)
                .await?,
        ))
    }

    async fn subscribe_checked(
        &self,
        consumer: &str,
        position: SeekPosition,
    ) -> Result<CheckedEventStream> {
        Ok(Box::pin(
            self.driver_log()
                .open_subscription(consumer, position, None)
                .await?,
        ))
    }

    async fn subscribe_with(
        &self,
        consumer: &str,
        position: SeekPosition,
        options: SubscribeOptions,
    ) -> Result<CheckedEventStream> {
        if let Some(member) = options.member {
            return crate::members::subscribe(self, consumer, position, options, member).await;
        }
        let log = self.driver_log();
        Ok(match options.exclusive {
            None => Box::pin(
                log.open_subscription(consumer, position, options.start_if_new)
                    .await?,
            ),
            Some(when_busy) => {
                log.open_exclusive(
                    consumer,
                    (position, options.start_if_new),
                    options.lease,
                    when_busy,
                )
                .await?
            }
        })
    }
    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()> {
        let log = self.driver_log();
        validate::consumer_name(consumer)?;
        log.within("ack", async {
            // Acks of one consumer run one at a time, so two in flight
            // cannot leave the lower one stored.
            let _held = log.shared.lock_of(consumer).lock().await;
            if seq_no == 0 || seq_no > log.shared.seen_last.load(Ordering::Relaxed) {
                let last = log.last().await?;
                validate::ack(consumer, seq_no, (last > 0).then_some(last))?;
            }
            let token = log.shared.token_of(consumer);
            log.shared
                .driver
                .ack_fenced(consumer, seq_no, &token)
                .await?;
            log.shared.moved(consumer, Move::AtLeast(seq_no + 1));
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()> {
        let log = self.driver_log();
        validate::consumer_name(consumer)?;
        validate::position(position)?;
        log.within("seek", async {
            let _held = log.shared.lock_of(consumer).lock().await;
            log.move_to(consumer, position, None).await.map(drop)
        })
        .await?;
        Ok(())
    }

    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>> {
        let log = self.driver_log();
        let last = log.within("last_seq_no", log.last()).await?;
        Ok((last > 0).then_some(last))
    }

    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState> {
        let log = self.driver_log();
        validate::consumer_name(consumer)?;
        let (acked, last) = log
            .within("consumer_state", async {
                let acked = log.shared.driver.acknowledged(consumer).await?;
                Ok((acked, log.last().await?))
            })
            .await?;
        Ok(ConsumerState::from_next(
            acked.unwrap_or(0) + 1,
            (last > 0).then_some(last),
        ))
    }

    fn capabilities(&self) -> Capabilities {
        self.driver_log().shared.driver.capabilities()
    }
}
