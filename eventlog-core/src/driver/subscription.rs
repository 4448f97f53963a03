//! The subscription engine: a bounded read-ahead over a driver's
//! [`Reader`], reconnection with backoff, and the sequence check of every
//! event handed out.

use super::Backoff;
use super::log::Shared;
use super::{Driver, Reader, Record};
use crate::{EventEnvelope, EventLogError, SeqNo};
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::time::Instant;

/// A subscription of one consumer: a [`Stream`] of events, each the
/// previous one plus one, and of the reasons it could not go on.
///
/// Events are handed out of the read-ahead buffer without a future per
/// event; a future exists only while the buffer is refilled.
pub(super) struct Subscription<D: Driver> {
    shared: Arc<Shared<D>>,
    consumer: Arc<str>,
    /// What the last read gave and is not handed out yet. Reused from read
    /// to read (a fresh allocation per read made glibc consolidate its free
    /// lists each time, a quarter of a replay), and shrunk when reads come
    /// back small, so an idle subscription holds little; `None` while a
    /// read fills it.
    buffered: Option<VecDeque<Record>>,
    /// The sequence number to hand out next.
    expected: SeqNo,
    /// The highest sequence number handed out; 0 before the first.
    delivered: SeqNo,
    state: State<D::Reader>,
    retry: Retry,
    /// Where an ack or seek of this handle last moved the consumer (0:
    /// nowhere yet): the subscription follows a move forward.
    moved_to: Arc<AtomicU64>,
    /// A move forward left the reader behind: open a new one at `expected`
    /// instead of reading through the skipped events.
    reopen: bool,
    /// A jump in the numbering (`expected`, `found`) waiting to be told
    /// apart from a move of the consumer made elsewhere.
    jump: Option<(SeqNo, SeqNo)>,
}

type FillFuture<R> = Pin<Box<dyn Future<Output = Fill<R>> + Send>>;

enum State<R> {
    /// Waiting for the caller; `None` when the reader failed and a new one
    /// must be opened.
    Idle(Option<R>),
    Filling(FillFuture<R>),
    /// The log can no longer be read; the stream has ended.
    Ended,
}

/// What a refill came back with.
struct Fill<R> {
    reader: Option<R>,
    buffer: VecDeque<Record>,
    /// The next sequence number, lowered when the log was found reusing
    /// numbers.
    expected: SeqNo,
    retry: Retry,
    outcome: Outcome,
}

enum Outcome {
    /// The buffer holds records.
    Records,
    /// A report as an item; the subscription goes on.
    Report(EventLogError),
    /// A last item; the subscription ends.
    End(EventLogError),
}

/// The state of reconnection attempts.
#[derive(Default)]
struct Retry {
    backoff: Backoff,
    /// When the broker was first missed, while it is.
    down_since: Option<Instant>,
    /// When the outage was last reported.
    reported_at: Option<Instant>,
    /// A reader failed since the last successful read: check the log's
    /// numbering before reading again.
    reopened: bool,
    /// A reader failed for a reason that is not transient, and a fresh one
    /// was opened; if that one fails too before it reads an event, the
    /// subscription ends.
    second_chance: bool,
    /// The number at which a fresh reader was opened because the last one
    /// skipped stored events; the same skip again is a gap.
    reread_at: Option<SeqNo>,
}

impl Retry {
    /// A read that reached the broker.
    fn reached(&mut self) {
        self.backoff.reset();
        self.down_since = None;
        self.reported_at = None;
        self.reopened = false;
    }

    /// A read that gave events.
    fn succeeded(&mut self) {
        self.reached();
        self.second_chance = false;
    }
}

impl<D: Driver> Subscription<D> {
    pub(super) fn new(
        shared: Arc<Shared<D>>,
        consumer: Arc<str>,
        opened: (D::Reader, SeqNo),
        moved_to: Arc<AtomicU64>,
    ) -> Self {
        let (reader, next) = opened;
        Self {
            shared,
            consumer,
            buffered: Some(VecDeque::new()),
            expected: next,
            delivered: 0,
            state: State::Idle(Some(reader)),
            retry: Retry::default(),
            moved_to,
            reopen: false,
            jump: None,
        }
    }

    /// Goes on from where an ack or seek moved the consumer, if that is
    /// ahead: what lies between is acknowledged, not lost.
    fn follow_moves(&mut self) {
        let next = self.moved_to.load(Ordering::Acquire);
        if next > self.expected {
            self.expected = next;
            // Buffered events before `next` are dropped as they come up;
            // a reader that has not reached it is replaced.
            let buffered_past = self
                .buffered
                .as_ref()
                .and_then(|buffer| buffer.back())
                .is_some_and(|last| record_seq_no(last) >= next);
            self.reopen = !buffered_past;
            // A jump waiting to be told apart now starts at the move.
            if let Some((_, found)) = self.jump {
                self.jump = (found > next).then_some((next, found));
            }
        }
    }

    /// The next record to hand out, checked against the one before: an
    /// item for the caller, or `None` when the buffer is spent.
    fn next_buffered(&mut self) -> Option<Result<EventEnvelope, EventLogError>> {
        loop {
            if self.jump.is_some() {
                return None;
            }
            let record = self.buffered.as_mut()?.pop_front()?;
            if let Some(item) = self.check(record) {
                return Some(item);
            }
        }
    }

    /// `record` as the next item, checked against the one before: `None`
    /// for one handed out before (a reconnection reads it again); a gap
    /// report, with `record` kept for the next call, for one further on.
    fn check(&mut self, record: Record) -> Option<Result<EventEnvelope, EventLogError>> {
        let seq_no = record_seq_no(&record);
        if seq_no < self.expected {
            return None;
        }
        if seq_no > self.expected {
            // A gap, or a move of the consumer made elsewhere (another
            // process) that the broker's reader followed: asked before
            // anything is reported.
            self.jump = Some((self.expected, seq_no));
            self.buffered.get_or_insert_default().push_front(record);
            return None;
        }
        self.expected += 1;
        self.delivered = seq_no;
        Some(record.map_err(Into::into))
    }
}

impl<D: Driver> Stream for Subscription<D> {
    type Item = Result<EventEnvelope, EventLogError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            this.follow_moves();
            if let Some(item) = this.next_buffered() {
                return Poll::Ready(Some(item));
            }
            match &mut this.state {
                State::Ended => return Poll::Ready(None),
                State::Idle(reader) => {
                    if let Some(jump) = this.jump.take() {
                        let buffer = this.buffered.take().unwrap_or_default();
                        this.state = State::Filling(Box::pin(tell_jump(
                            this.shared.clone(),
                            this.consumer.clone(),
                            reader.take(),
                            buffer,
                            jump,
                            std::mem::take(&mut this.retry),
                        )));
                        continue;
                    }
                    if std::mem::take(&mut this.reopen) {
                        *reader = None;
                    }
                    if let Some(record) = reader.as_mut().and_then(Reader::next_ready) {
                        match this.check(record) {
                            Some(item) => return Poll::Ready(Some(item)),
                            None => continue,
                        }
                    }
                    let reader = reader.take();
                    let buffer = this.buffered.take().unwrap_or_default();
                    this.state = State::Filling(Box::pin(fill(
                        this.shared.clone(),
                        this.consumer.clone(),
                        reader,
                        buffer,
                        (this.expected, this.delivered),
                        std::mem::take(&mut this.retry),
                    )));
                }
                State::Filling(future) => {
                    let Poll::Ready(fill) = future.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    this.expected = fill.expected;
                    this.retry = fill.retry;
                    this.buffered = Some(fill.buffer);
                    match fill.outcome {
                        Outcome::Records => this.state = State::Idle(fill.reader),
                        Outcome::Report(err) => {
                            this.state = State::Idle(fill.reader);
                            return Poll::Ready(Some(Err(err)));
                        }
                        Outcome::End(err) => {
                            tracing::error!(consumer = %this.consumer, error = %err, "subscription ended");
                            this.state = State::Ended;
                            return Poll::Ready(Some(Err(err)));
                        }
                    }
                }
            }
        }
    }
}

impl<D: Driver> Drop for Subscription<D> {
    fn drop(&mut self) {
        self.shared.unfollow(&self.consumer, &self.moved_to);
    }
}

impl<R> Fill<R> {
    /// Nothing read: a fresh reader reads from `expected` next.
    fn read_again(expected: SeqNo, retry: Retry) -> Self {
        Self {
            reader: None,
            buffer: VecDeque::new(),
            expected,
            retry,
            outcome: Outcome::Records,
        }
    }
}

/// Whether the numbering jumped from `expected` to `found` because the
/// consumer was moved past the events between (through another handle or
/// process, which the broker's reader follows), because they are gone
/// (retention removed them), or because the reader skipped events that are
/// still stored (a delivery lost in flight: JetStream hands messages to a
/// pull request that a dropped reader left behind). A move keeps the buffer,
/// which starts at `found`; a skip opens a fresh reader at `expected`, once
/// per number; anything else is a `Gap`. A check the broker does not
/// answer for now (a retryable error) reports nothing: a fresh reader reads
/// from `expected` again. A check it refuses for good reports the `Gap`, so
/// a jump is never read again without end.
async fn tell_jump<D: Driver>(
    shared: Arc<Shared<D>>,
    consumer: Arc<str>,
    reader: Option<D::Reader>,
    buffer: VecDeque<Record>,
    (expected, found): (SeqNo, SeqNo),
    mut retry: Retry,
) -> Fill<D::Reader> {
    let driver = &shared.driver;
    let timeout = driver.timeout();
    // Moved: the events between are still stored, and the consumer's
    // position is past them. Skipped: still stored, and the position is
    // before them.
    let answer = async {
        let first = bounded(timeout, driver.first_seq_no()).await?;
        let acked = bounded(timeout, driver.acknowledged(&consumer)).await?;
        let moved = first <= expected && acked.is_some_and(|n| n + 1 >= found);
        Ok::<_, EventLogError>((moved, first <= expected && !moved))
    }
    .await;
    let (moved, skipped) = match answer {
        Ok(answer) => answer,
        // No answer says nothing: the events between may still be stored.
        // A fresh reader reads from `expected` again after a backoff, and
        // the jump, if it comes again, is asked again.
        Err(err) if err.is_retryable() => {
            tracing::warn!(%consumer, error = %err, expected, found, "could not tell a jump in the numbering; reading again");
            retry.backoff.wait().await;
            return Fill::read_again(expected, retry);
        }
        Err(err) => {
            tracing::warn!(%consumer, error = %err, expected, found, "could not tell a jump in the numbering; reporting it");
            (false, false)
        }
    };
    if skipped && retry.reread_at != Some(expected) {
        retry.reread_at = Some(expected);
        return Fill::read_again(expected, retry);
    }
    // The reader stays: what it read after `found` is still good.
    Fill {
        reader,
        buffer,
        expected: found,
        retry,
        outcome: if moved {
            Outcome::Records
        } else {
            Outcome::Report(EventLogError::Gap { expected, found })
        },
    }
}

/// Reads until there are records or something to report, opening a new
/// reader (with backoff) whenever the last one failed.
async fn fill<D: Driver>(
    shared: Arc<Shared<D>>,
    consumer: Arc<str>,
    mut reader: Option<D::Reader>,
    mut buffer: VecDeque<Record>,
    (mut expected, delivered): (SeqNo, SeqNo),
    mut retry: Retry,
) -> Fill<D::Reader> {
    buffer.clear();
    let driver = &shared.driver;
    let timeout = driver.timeout();
    let limits = shared.limits();
    loop {
        let attempt = async {
            let reader = match &mut reader {
                Some(reader) => reader,
                None => {
                    let mut report = None;
                    if retry.reopened {
                        let last = bounded(timeout, driver.last_seq_no()).await?;
                        // Only what was handed out counts: a subscription
                        // may wait past the end for a number not stored yet.
                        if last < delivered {
                            report = Some(EventLogError::SequenceReused { delivered, last });
                            expected = last + 1;
                            shared.saw_reused(last);
                        }
                    }
                    let opened = bounded(timeout, driver.open_reader(&consumer, expected)).await?;
                    let reader = reader.insert(opened);
                    if let Some(report) = report {
                        return Ok(Outcome::Report(report));
                    }
                    reader
                }
            };
            let wait = timeout.map(|timeout| timeout + driver.read_wait());
            bounded(wait, reader.read(&mut buffer, limits))
                .await
                .map(|()| Outcome::Records)
        };
        let err = match attempt.await {
            Ok(Outcome::Records) if buffer.is_empty() => {
                retry.reached();
                continue;
            }
            Ok(outcome) => {
                if let Some(last) = buffer.back() {
                    shared.saw(record_seq_no(last));
                    retry.succeeded();
                }
                // A read that used little of a large buffer (a quiet log
                // after a busy one) gives the memory back.
                if buffer.capacity() > 4 * buffer.len().max(MIN_BUFFER) {
                    buffer.shrink_to(buffer.len().max(MIN_BUFFER));
                }
                return Fill {
                    reader,
                    buffer,
                    expected,
                    retry,
                    outcome,
                };
            }
            Err(err) => err,
        };
        // What a failed read gave before it failed is read again by the
        // next reader (or is from a log that is gone).
        buffer.clear();
        let recovers = err.is_retryable()
            && reader
                .as_ref()
                .is_some_and(|reader| reader.recovers_from(&err));
        if !recovers {
            reader = None;
            retry.reopened = true;
        }
        let end = |err, buffer| Fill {
            reader: None,
            buffer,
            expected,
            retry: Retry::default(),
            outcome: Outcome::End(err),
        };
        if let Ok(false) = bounded(timeout, driver.log_exists()).await {
            return end(EventLogError::LogDeleted, buffer);
        }
        if !err.is_retryable() {
            // One fresh reader: the broker may have lost the reader's state
            // (a consumer group gone with a log deleted and created again).
            if std::mem::replace(&mut retry.second_chance, true) {
                return end(err, buffer);
            }
            tracing::warn!(%consumer, error = %err, "subscription reader failed; opening a fresh one");
            retry.backoff.wait().await;
            continue;
        }
        tracing::warn!(%consumer, error = %err, "subscription lost its broker; retrying");
        let now = Instant::now();
        let down_since = *retry.down_since.get_or_insert(now);
        let quiet_since = retry.reported_at.unwrap_or(down_since);
        if now.duration_since(quiet_since) >= shared.settings.outage_report_after {
            retry.reported_at = Some(now);
            return Fill {
                reader,
                buffer,
                expected,
                outcome: Outcome::Report(EventLogError::Outage {
                    backend: driver.capabilities().backend,
                    after: now.duration_since(down_since),
                    source: Box::new(err),
                }),
                retry,
            };
        }
        retry.backoff.wait().await;
    }
}

/// The smallest capacity a buffer is shrunk to.
const MIN_BUFFER: usize = 16;

/// Where `record` is stored.
fn record_seq_no(record: &Record) -> SeqNo {
    match record {
        Ok(event) => event.seq_no.unwrap_or(0),
        Err(undecodable) => undecodable.seq_no,
    }
}

/// `fut` within `after` if given, a timeout being a retryable error.
async fn bounded<T>(
    after: Option<std::time::Duration>,
    fut: impl Future<Output = Result<T, EventLogError>>,
) -> Result<T, EventLogError> {
    match after {
        Some(after) => super::bounded("subscription", after, fut).await,
        None => fut.await,
    }
}
