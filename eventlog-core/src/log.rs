//! The `EventLog` trait.

use crate::{
    AppendOptions, Appended, ConsumerState, EventEnvelope, EventLogError, ExpectedLast, Result,
    SeekPosition, SeqNo, validate,
};
use async_trait::async_trait;
use futures::Stream;
use std::pin::Pin;
use std::time::Duration;

/// The events of a subscription, in sequence order, with no gap and no
/// duplicate. It does not end on its own: it waits for new events, and
/// reconnects after a broker restart. It ends only when the log can no longer
/// serve it (the log was deleted, or a fault that is not transient); the
/// reason is logged with `tracing`.
pub type EventStream = Pin<Box<dyn Stream<Item = EventEnvelope> + Send>>;

/// The events of a subscription and the reasons it could not go on, as
/// items: [`subscribe_checked`](EventLog::subscribe_checked).
///
/// An `Ok` item is the next event, the previous one plus one. An `Err`
/// item is an [`EventLogError`](crate::EventLogError) and the stream goes on
/// after it, except after the last kind below:
///
/// * `Decode`: the event at that sequence number cannot be decoded (a
///   foreign producer wrote it); the next item is the event after it, so
///   the caller decides: ack past it, park it, or stop.
/// * `Gap`: events are missing (retention removed them, or the broker lost
///   them); the next item is the first event after the gap.
/// * `SequenceReused`: the log numbers anew events it had already
///   delivered (it was deleted and created again, or lost its tail); the
///   stream goes on with the log's next new event.
/// * `Outage`: the broker has been unreachable for a while (configurable);
///   the subscription keeps retrying and goes on where it stopped.
/// * `LogDeleted`, or any error that is not retryable: the last item.
pub type CheckedEventStream =
    Pin<Box<dyn Stream<Item = Result<EventEnvelope, crate::EventLogError>> + Send>>;

/// What a backend can do and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name: `memory`, `nats`, `kafka` or `redis`.
    pub backend: &'static str,
    /// The largest payload `append` accepts, in bytes.
    pub max_payload: usize,
    /// Whether events and consumer positions outlive the process (they are
    /// kept by a broker).
    pub durable: bool,
    /// How long the log remembers the (`source`, `id`) of each event it
    /// stored: an append of the same pair within this window stores
    /// nothing and reports [`Appended::Duplicate`], so an append whose
    /// outcome is unknown is safe to retry. `None`: the log does not
    /// deduplicate, and such an append fails with
    /// [`AppendUnconfirmed`](EventLogError::AppendUnconfirmed) instead of
    /// a retryable error.
    pub dedup_window: Option<Duration>,
    /// Whether appends may state an [`ExpectedLast`] other than `Any`;
    /// without it they are refused with
    /// [`Unsupported`](EventLogError::Unsupported).
    pub conditional_append: bool,
    /// Whether a subscription can hold its consumer alone, with standbys
    /// and fencing ([`SubscribeOptions::exclusive`](crate::SubscribeOptions::exclusive));
    /// without it such a subscribe is refused with
    /// [`Unsupported`](EventLogError::Unsupported).
    pub exclusive_subscriptions: bool,
}

impl Capabilities {
    /// The capabilities of `backend`: no deduplication, no conditional
    /// appends, no exclusive subscriptions.
    pub fn new(backend: &'static str, max_payload: usize, durable: bool) -> Self {
        Self {
            backend,
            max_payload,
            durable,
            dedup_window: None,
            conditional_append: false,
            exclusive_subscriptions: false,
        }
    }

    /// The same, with exclusive subscriptions or without.
    pub fn with_exclusive_subscriptions(mut self, exclusive: bool) -> Self {
        self.exclusive_subscriptions = exclusive;
        self
    }

    /// The same, deduplicating appends within `window` (`None`: not at
    /// all).
    pub fn with_dedup_window(mut self, window: Option<Duration>) -> Self {
        self.dedup_window = window;
        self
    }

    /// The same, with conditional appends or without.
    pub fn with_conditional_append(mut self, conditional: bool) -> Self {
        self.conditional_append = conditional;
        self
    }
}

/// A persistent, ordered, replayable log of events with named consumers.
///
/// Every backend honours the same contract (the `conformance` crate checks it
/// clause by clause): sequence numbers start at 1 and grow by one; a
/// consumer's position is kept by the broker; acknowledgements are
/// cumulative and never move a position backwards. Bad input is refused with
/// an [`EventLogError`](crate::EventLogError) before anything reaches the
/// broker.
///
/// One consumer name is one reader at a time: each backend's docs say what a
/// second live subscription on the same name does.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Stores `envelope` at the end of the log and returns its sequence
    /// number. A `seq_no` already set on the envelope is ignored.
    ///
    /// On a log that deduplicates
    /// ([`Capabilities::dedup_window`]), an envelope whose `source` and
    /// `id` the log stored within the window is not stored again, and its
    /// stored number is returned; [`append_with`](Self::append_with) tells
    /// the two apart.
    async fn append(&self, envelope: EventEnvelope) -> Result<SeqNo> {
        Ok(self
            .append_with(envelope, AppendOptions::default())
            .await?
            .seq_no())
    }

    /// [`append`](Self::append) under `options`, reporting whether the
    /// event was stored or was already there.
    ///
    /// With [`ExpectedLast`] other than `Any`, the event is stored only if
    /// the log's last event is as expected; otherwise nothing is stored and
    /// the call fails with [`Conflict`](EventLogError::Conflict). A
    /// duplicate is recognised before the condition is checked, so the
    /// retry of a conditional append that was stored reports
    /// [`Appended::Duplicate`], not a conflict. A backend without
    /// [`Capabilities::conditional_append`] refuses conditions with
    /// [`Unsupported`](EventLogError::Unsupported).
    async fn append_with(
        &self,
        envelope: EventEnvelope,
        options: AppendOptions,
    ) -> Result<Appended>;

    /// Stores `envelopes` in the order given and returns their sequence
    /// numbers, strictly increasing. An invalid envelope anywhere refuses the
    /// whole batch before anything is stored.
    ///
    /// An envelope whose `source` and `id` the log already holds (from
    /// within its deduplication window, or earlier in the batch) is not
    /// stored again and gets the stored one's number.
    async fn append_batch(&self, envelopes: Vec<EventEnvelope>) -> Result<Vec<SeqNo>> {
        let appended = self
            .append_batch_with(envelopes, AppendOptions::default())
            .await?;
        Ok(appended.into_iter().map(Appended::seq_no).collect())
    }

    /// [`append_batch`](Self::append_batch) under `options`, reporting for
    /// each envelope whether it was stored or was already there. A
    /// condition applies to the log's last event before the batch: on a
    /// mismatch nothing of the batch is stored (unless every envelope is a
    /// duplicate, which reports them as such).
    ///
    /// The default appends one at a time and refuses conditions; every
    /// backend of this workspace overrides it.
    async fn append_batch_with(
        &self,
        envelopes: Vec<EventEnvelope>,
        options: AppendOptions,
    ) -> Result<Vec<Appended>> {
        validate::batch(&envelopes, self.capabilities().max_payload)?;
        if options.expected != ExpectedLast::Any {
            return Err(EventLogError::Unsupported {
                backend: self.capabilities().backend,
                feature: "conditional batches",
            }
            .into());
        }
        let mut appended = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            appended.push(self.append_with(envelope, options).await?);
        }
        Ok(appended)
    }

    /// Streams events to `consumer` from `position`.
    ///
    /// Any position but [`SeekPosition::LastAcknowledged`] first sets the
    /// consumer's stored position, exactly as [`seek`](Self::seek) would;
    /// `LastAcknowledged` streams from the stored position and leaves it as it
    /// is. Events are not acknowledged by being delivered: call
    /// [`ack`](Self::ack).
    ///
    /// The stream is [`subscribe_checked`](Self::subscribe_checked)'s
    /// without its reports: it ends, with the reason logged, where that one
    /// reports an event it cannot decode, a gap, reused numbers or a deleted
    /// log, and goes on through outages.
    async fn subscribe(&self, consumer: &str, position: SeekPosition) -> Result<EventStream>;

    /// Like [`subscribe`](Self::subscribe), with the reasons the log could
    /// not go on as items; see [`CheckedEventStream`].
    async fn subscribe_checked(
        &self,
        consumer: &str,
        position: SeekPosition,
    ) -> Result<CheckedEventStream> {
        let events = self.subscribe(consumer, position).await?;
        Ok(Box::pin(futures::StreamExt::map(events, Ok)))
    }

    /// Like [`subscribe_checked`](Self::subscribe_checked), as `options`
    /// say. With [`SubscribeOptions::exclusive`](crate::SubscribeOptions::exclusive)
    /// the subscription holds its consumer alone:
    ///
    /// * while another exclusive subscription holds it, this one waits as a
    ///   standby and delivers nothing ([`WhenBusy::Standby`](crate::WhenBusy::Standby)),
    ///   or the call fails at once with
    ///   [`ConsumerBusy`](EventLogError::ConsumerBusy)
    ///   ([`WhenBusy::Refuse`](crate::WhenBusy::Refuse));
    /// * it takes the consumer at once when the holder's subscription is
    ///   dropped, within its lease when the holder stopped renewing, and
    ///   only then applies `position` (a standby's `LastAcknowledged` goes
    ///   on from the holder's last ack, with no gap);
    /// * while it holds the consumer, an [`ack`](Self::ack) or
    ///   [`seek`](Self::seek) of it through any other handle fails with
    ///   [`Fenced`](EventLogError::Fenced) and changes nothing, and so does a
    ///   plain [`subscribe`](Self::subscribe) of it (at any position,
    ///   `LastAcknowledged` included), which would read beside the holder;
    ///   so do this handle's once another reader has taken the consumer
    ///   over, and the subscription ends with a `Fenced` item.
    ///
    /// A backend without
    /// [`Capabilities::exclusive_subscriptions`] refuses an exclusive
    /// subscribe with [`Unsupported`](EventLogError::Unsupported).
    async fn subscribe_with(
        &self,
        consumer: &str,
        position: SeekPosition,
        options: crate::SubscribeOptions,
    ) -> Result<CheckedEventStream> {
        if let Some(member) = options.member {
            return crate::members::subscribe(self, consumer, position, options, member).await;
        }
        if options.exclusive.is_some() {
            return Err(EventLogError::Unsupported {
                backend: self.capabilities().backend,
                feature: "exclusive subscriptions",
            }
            .into());
        }
        let position = match (position, options.start_if_new) {
            (SeekPosition::LastAcknowledged, Some(start))
                if self
                    .consumer_state(consumer)
                    .await?
                    .last_acknowledged
                    .is_none() =>
            {
                SeekPosition::Sequence(start)
            }
            _ => position,
        };
        self.subscribe_checked(consumer, position).await
    }

    /// Acknowledges every event up to and including `seq_no` for `consumer`.
    /// An ack below the current position is accepted and changes nothing;
    /// 0 and numbers past the end of the log are refused.
    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<()>;

    /// Sets where the next `subscribe(consumer, LastAcknowledged)` starts.
    ///
    /// A live subscription of `consumer` opened on this handle follows a
    /// move forward (its next event is the new position) and ignores one
    /// backwards (it never delivers again what it delivered); so does one
    /// moved past by an [`ack`](Self::ack). See `docs/reliability.md` for
    /// moves made through other handles.
    async fn seek(&self, consumer: &str, position: SeekPosition) -> Result<()>;

    /// The highest sequence number stored, `None` for an empty log or when the
    /// broker cannot be asked; [`try_last_seq_no`](Self::try_last_seq_no) says
    /// why.
    async fn last_seq_no(&self) -> Option<SeqNo> {
        match self.try_last_seq_no().await {
            Ok(last) => last,
            Err(err) => {
                tracing::warn!(error = %err, "last_seq_no: broker not answering");
                None
            }
        }
    }

    /// The highest sequence number stored, or the error that prevented the
    /// answer.
    async fn try_last_seq_no(&self) -> Result<Option<SeqNo>>;

    /// The consumer's last acknowledged sequence number and its lag.
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState>;

    /// What this backend can do and accepts.
    fn capabilities(&self) -> Capabilities;
}

/// The plain stream of `checked`'s events: it goes on through outages and
/// ends, with the reason logged, at any other report.
pub(crate) fn plain<S>(checked: S) -> EventStream
where
    S: Stream<Item = Result<EventEnvelope, crate::EventLogError>> + Send + Unpin + 'static,
{
    Box::pin(Plain {
        checked: Some(checked),
    })
}

/// [`plain`]'s stream: no future per event, as the checked one has none.
struct Plain<S> {
    /// `None` once ended.
    checked: Option<S>,
}

impl<S> Stream for Plain<S>
where
    S: Stream<Item = Result<EventEnvelope, crate::EventLogError>> + Unpin,
{
    type Item = EventEnvelope;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<EventEnvelope>> {
        use std::task::Poll;
        loop {
            let Some(checked) = self.checked.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(checked).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(err)))
                    if matches!(err, crate::EventLogError::Outage { .. }) =>
                {
                    tracing::warn!(error = %err, "subscription waiting for its broker");
                }
                Poll::Ready(Some(Err(err))) => {
                    tracing::error!(error = %err, "subscription ended");
                    self.checked = None;
                }
                Poll::Ready(None) => self.checked = None,
            }
        }
    }
}

/// Conveniences over any [`EventLog`], the same for every backend.
#[async_trait]
pub trait EventLogExt: EventLog {
    /// Acknowledges `event` (and everything before it) for `consumer`: the
    /// event's own sequence number, without unwrapping it.
    async fn ack_event(&self, consumer: &str, event: &EventEnvelope) -> Result<()> {
        self.ack(consumer, event.seq()).await
    }
}

impl<T: EventLog + ?Sized> EventLogExt for T {}
