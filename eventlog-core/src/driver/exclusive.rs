//! Exclusive subscriptions: a lease per consumer, renewed in the
//! background, standbys that wait for it, and the stream that ends when it
//! is lost.

use super::log::{DriverLog, Shared};
use super::subscription::Subscription;
use super::{Backoff, Driver};
use crate::{CheckedEventStream, EventEnvelope, EventLogError, SeekPosition, SeqNo, WhenBusy};
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The shortest lease: renewals every third of it must fit round trips.
const MIN_LEASE: Duration = Duration::from_millis(100);
/// The longest lease: a holder that dies keeps its consumer this long.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// The longest a standby waits between two attempts to take the consumer:
/// the takeover time after a holder's subscription is dropped.
const STANDBY_POLL: Duration = Duration::from_millis(250);

/// This handle's hold on one consumer: a lease under a token of its own,
/// renewed by a task every third of the lease. Dropping it stops the
/// renewal and releases the lease.
pub(super) struct Claim<D: Driver> {
    shared: Arc<Shared<D>>,
    consumer: Arc<str>,
    token: Arc<str>,
    lost: Arc<Lost>,
    renewal: tokio::task::JoinHandle<()>,
}

/// Set once the lease is lost; wakes the subscription so it ends at once.
#[derive(Default)]
struct Lost {
    lost: AtomicBool,
    waker: AtomicWaker,
}

impl Lost {
    fn set(&self) {
        self.lost.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl<D: Driver> DriverLog<D> {
    /// Opens an exclusive subscription of `consumer`: as `when_busy` says
    /// while another reader holds it, then at `position` (with where a
    /// consumer with no stored position starts, decided under the lease).
    pub(super) async fn open_exclusive(
        &self,
        consumer: &str,
        position: (SeekPosition, Option<SeqNo>),
        lease: Duration,
        when_busy: WhenBusy,
    ) -> Result<CheckedEventStream, EventLogError> {
        crate::validate::consumer_name(consumer)?;
        crate::validate::position(position.0)?;
        let capabilities = self.shared.driver.capabilities();
        if !capabilities.exclusive_subscriptions {
            return Err(EventLogError::Unsupported {
                backend: capabilities.backend,
                feature: "exclusive subscriptions",
            });
        }
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(EventLogError::InvalidConfig {
                reason: format!(
                    "the lease of an exclusive subscription is {lease:?}; \
                     it must be between {MIN_LEASE:?} and {MAX_LEASE:?}"
                ),
            });
        }
        let consumer: Arc<str> = consumer.into();
        match when_busy {
            // One bound for the claim and the opening together.
            WhenBusy::Refuse => {
                self.within("subscribe", async {
                    let token = self.shared.new_token();
                    let claim = self.claim(&consumer, &token, lease).await?.ok_or_else(|| {
                        EventLogError::ConsumerBusy {
                            consumer: consumer.to_string(),
                        }
                    })?;
                    let subscription = self
                        .open_subscription(&consumer, position.0, position.1)
                        .await?;
                    Ok(Box::pin(Held {
                        subscription,
                        claim,
                        ended: false,
                    }) as CheckedEventStream)
                })
                .await
            }
            // `WhenBusy` is non-exhaustive for users only: a new mode must
            // be handled here.
            WhenBusy::Standby => {
                let log = self.clone();
                let standby = async move { log.take_over(consumer, position, lease).await };
                Ok(Box::pin(futures::stream::once(standby).flat_map(
                    |taken| match taken {
                        Ok(held) => held.boxed(),
                        Err(err) => futures::stream::iter([Err(err)]).boxed(),
                    },
                )))
            }
        }
    }

    /// Waits until this handle holds `consumer`, then opens its
    /// subscription at `position`. Retryable failures are waited out.
    async fn take_over(
        &self,
        consumer: Arc<str>,
        (position, start_if_new): (SeekPosition, Option<SeqNo>),
        lease: Duration,
    ) -> Result<Held<D>, EventLogError> {
        let mut backoff = Backoff::new(Duration::from_millis(10), STANDBY_POLL.min(lease / 4));
        // One token for the attempts until one holds the lease: a lease an
        // attempt took without hearing back (its call timed out) is then
        // this standby's, not a stranger's it must wait out. A claim that
        // was made and dropped releases its token, so the next one is new.
        let mut token = self.shared.new_token();
        loop {
            match self.claim(&consumer, &token, lease).await {
                Ok(Some(claim)) => match self
                    .open_subscription(&consumer, position, start_if_new)
                    .await
                {
                    Ok(subscription) => {
                        return Ok(Held {
                            subscription,
                            claim,
                            ended: false,
                        });
                    }
                    Err(err) => {
                        drop(claim);
                        token = self.shared.new_token();
                        if !err.is_retryable() {
                            return Err(err);
                        }
                    }
                },
                Ok(None) => {}
                Err(err) if err.is_retryable() => {}
                Err(err) => return Err(err),
            }
            backoff.wait().await;
        }
    }

    /// Takes the lease of `consumer` under `token`, a token of this
    /// handle's, and starts renewing it; `None` when another holder has it.
    async fn claim(
        &self,
        consumer: &Arc<str>,
        token: &Arc<str>,
        lease: Duration,
    ) -> Result<Option<Claim<D>>, EventLogError> {
        let shared = &self.shared;
        // The lease runs from before the request, at the latest.
        let asked = Instant::now();
        let took = self
            .within("subscribe", shared.driver.lease(consumer, token, lease))
            .await?;
        if !took {
            return Ok(None);
        }
        shared.hold(consumer, token);
        let lost = Arc::new(Lost::default());
        let renewal = tokio::spawn(renew(
            shared.clone(),
            consumer.clone(),
            token.clone(),
            (asked, lease),
            lost.clone(),
        ));
        let token = token.clone();
        Ok(Some(Claim {
            shared: shared.clone(),
            consumer: consumer.clone(),
            token,
            lost,
            renewal,
        }))
    }
}

/// Renews the lease (taken at `asked` for `lease`) every third of it,
/// without ever blocking delivery; marks it lost when another holder has
/// it, or the moment it may have run out on the broker with no renewal
/// heard back (each renewal is bounded by that moment).
async fn renew<D: Driver>(
    shared: Arc<Shared<D>>,
    consumer: Arc<str>,
    token: Arc<str>,
    (asked, lease): (Instant, Duration),
    lost: Arc<Lost>,
) {
    let mut held_until = asked + lease;
    loop {
        tokio::time::sleep_until((Instant::now() + lease / 3).min(held_until)).await;
        let asked = Instant::now();
        let renewed =
            tokio::time::timeout_at(held_until, shared.driver.lease(&consumer, &token, lease))
                .await;
        match renewed {
            Ok(Ok(true)) => held_until = asked + lease,
            Ok(Ok(false)) => break,
            Ok(Err(err)) => {
                tracing::warn!(consumer = %consumer, error = %err, "renewing the lease failed");
            }
            Err(_) => tracing::warn!(consumer = %consumer, "renewing the lease timed out"),
        }
        if Instant::now() >= held_until {
            break;
        }
    }
    lost.set();
}

impl<D: Driver> Drop for Claim<D> {
    fn drop(&mut self) {
        self.renewal.abort();
        self.shared.unhold(&self.consumer, &self.token);
        // Without a runtime (the process is ending) the lease runs out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (shared, consumer, token) = (
                self.shared.clone(),
                self.consumer.clone(),
                self.token.clone(),
            );
            runtime.spawn(async move {
                let release = shared.driver.release(&consumer, &token);
                let bound = shared.driver.timeout().unwrap_or(Duration::from_secs(5));
                if let Ok(Err(err)) = tokio::time::timeout(bound, release).await {
                    tracing::warn!(consumer = %consumer, error = %err, "releasing the lease failed");
                }
            });
        }
    }
}

/// An exclusive subscription that holds its consumer: the events, until
/// the lease is lost, then a last `Fenced` item.
struct Held<D: Driver> {
    subscription: Subscription<D>,
    claim: Claim<D>,
    ended: bool,
}

impl<D: Driver> Stream for Held<D> {
    type Item = Result<EventEnvelope, EventLogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        this.claim.lost.waker.register(cx.waker());
        if this.claim.lost.lost.load(Ordering::Acquire) {
            this.ended = true;
            return Poll::Ready(Some(Err(EventLogError::Fenced {
                consumer: this.claim.consumer.to_string(),
            })));
        }
        this.subscription.poll_next_unpin(cx)
    }
}
