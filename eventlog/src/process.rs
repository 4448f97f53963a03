//! Work inside one process: a handler run over a subscription with bounded
//! concurrency, in order per key, acknowledged only as far as everything is
//! finished, with retries and a parking place for what keeps failing.

use eventlog_core::driver::Backoff;
use eventlog_core::{
    EventEnvelope, EventLog, EventLogError, Member, SeekPosition, SeqNo, SubscribeOptions, WhenBusy,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The extension a parked event carries: its sequence number in the log it
/// came from.
pub const PARKED_SEQ_NO: &str = "deadletterseqno";
/// The extension a parked event carries: the handler's last error (at most
/// [`MAX_PARKED_ERROR`] bytes of it).
pub const PARKED_ERROR: &str = "deadlettererror";
/// How much of the handler's error a parked event keeps.
pub const MAX_PARKED_ERROR: usize = 1024;

/// Runs a handler over the events of one consumer. Build it with
/// [`Processor::new`], then [`run`](Processor::run) it.
///
/// * Up to `concurrency` events are in hand at once (running or waiting
///   behind an earlier event of their key). Events of one
///   [`partition_key`](EventEnvelope::partition_key) are handled one at a time, in log order.
/// * The consumer is acknowledged up to the highest number below which
///   every event is finished, never past an event still in hand, so a
///   crash redelivers only what was not finished (and, at least once, what
///   finished after the first unfinished one).
/// * Where the backend has exclusive subscriptions, the processor holds its
///   consumer alone: a second processor of it (a rolling deploy) waits as
///   a standby and takes over where this one acknowledged. Elsewhere, run
///   one processor per consumer: two would acknowledge over each other's
///   events in hand.
/// * A failing handler is retried `attempts` times in all, with backoff.
///   After the last attempt the event is appended to the dead-letter log,
///   if one is set ([`with_dead_letter`](Processor::with_dead_letter),
///   `<log>-dead` by convention), with [`PARKED_SEQ_NO`] and
///   [`PARKED_ERROR`], and counts as finished; without one, `run` stops
///   with the error and the event comes again on the next run.
#[derive(Clone)]
pub struct Processor {
    consumer: String,
    concurrency: usize,
    attempts: u32,
    backoff: (Duration, Duration),
    dead_letter: Option<Arc<dyn EventLog>>,
    member: Option<Member>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("consumer", &self.consumer)
            .field("concurrency", &self.concurrency)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("dead_letter", &self.dead_letter.is_some())
            .field("member", &self.member)
            .finish()
    }
}

/// What a [`Processor::run`] did before its subscription ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Processed {
    /// Events the handler finished.
    pub handled: u64,
    /// Events parked in the dead-letter log.
    pub parked: u64,
}

/// What one event's attempts came to.
enum Outcome {
    Handled,
    Failed(String),
}

type Task<'a> = Pin<Box<dyn Future<Output = (EventEnvelope, Outcome)> + Send + 'a>>;

impl Processor {
    /// A processor of `consumer`: 16 events in hand at most, 3 attempts
    /// with a backoff of 100 ms doubling up to 5 s, no dead-letter log.
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            concurrency: 16,
            attempts: 3,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            dead_letter: None,
            member: None,
        }
    }

    /// At most `concurrency` events in hand at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// `attempts` tries of each event in all (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Waits `first` after the first failure, doubling up to `max`.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max);
        self
    }

    /// Runs as `member` of the consumer: only the events of its keys, its
    /// position acknowledged under [`Member::consumer`]. Each member is a
    /// processor (usually a process) of its own.
    pub fn with_member(mut self, member: Member) -> Self {
        self.member = Some(member);
        self
    }

    /// Parks an event that failed every attempt in `log`.
    pub fn with_dead_letter(mut self, log: Arc<dyn EventLog>) -> Self {
        self.dead_letter = Some(log);
        self
    }

    /// Subscribes the consumer to `log` from its last acknowledgement and
    /// handles its events until the subscription ends (`Ok`), the log
    /// reports something it cannot go on from, or an event fails without a
    /// dead-letter log (`Err`). Dropping the future stops it; what was in
    /// hand comes again on the next run.
    pub async fn run<H, F, E>(&self, log: &dyn EventLog, handler: H) -> crate::Result<Processed>
    where
        H: Fn(EventEnvelope) -> F + Sync,
        F: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        // Two processors of one consumer would ack over each other's events
        // in hand: where the backend can, this one holds the consumer alone
        // and a second one waits as a standby.
        let mut options = match log.capabilities().exclusive_subscriptions {
            true => SubscribeOptions::exclusive(WhenBusy::Standby),
            false => SubscribeOptions::new(),
        };
        if let Some(member) = self.member {
            options = options.with_member(member);
        }
        let mut events = log
            .subscribe_with(&self.consumer, SeekPosition::LastAcknowledged, options)
            .await?;
        // Where the position is stored: a member's is its own.
        let acked_as = match self.member {
            Some(member) => member.consumer(&self.consumer),
            None => self.consumer.clone(),
        };
        let mut tasks: FuturesUnordered<Task<'_>> = FuturesUnordered::new();
        // Events waiting behind a running one of their key; a key is here
        // while one of its events runs.
        let mut keys: HashMap<String, VecDeque<EventEnvelope>> = HashMap::new();
        let mut in_hand = 0;
        let mut finished = Watermark::default();
        let mut processed = Processed::default();
        let mut open = true;
        loop {
            tokio::select! {
                Some((event, outcome)) = tasks.next(), if !tasks.is_empty() => {
                    in_hand -= 1;
                    match outcome {
                        Outcome::Handled => processed.handled += 1,
                        Outcome::Failed(error) => {
                            self.park(&event, error).await?;
                            processed.parked += 1;
                        }
                    }
                    let key = event.partition_key();
                    match keys.get_mut(key).and_then(VecDeque::pop_front) {
                        Some(next) => tasks.push(self.attempt(&handler, next)),
                        None => {
                            keys.remove(key);
                        }
                    }
                    if let Some(acked) = finished.finish(event.seq()) {
                        match log.ack(&acked_as, acked).await {
                            Ok(()) => {}
                            // The next ack covers this one; a crash before it
                            // only redelivers finished events.
                            Err(err) if EventLogError::is_retryable_anyhow(&err) => {
                                tracing::warn!(error = %err, consumer = %self.consumer, acked, "ack failed");
                            }
                            Err(err) => return Err(err),
                        }
                    }
                }
                item = events.next(), if open && in_hand < self.concurrency => match item {
                    Some(Ok(event)) => {
                        in_hand += 1;
                        finished.hand(event.seq());
                        match keys.get_mut(event.partition_key()) {
                            Some(waiting) => waiting.push_back(event),
                            None => {
                                keys.insert(event.partition_key().to_owned(), VecDeque::new());
                                tasks.push(self.attempt(&handler, event));
                            }
                        }
                    }
                    Some(Err(report)) if report.is_retryable() => {
                        tracing::warn!(%report, consumer = %self.consumer, "processing");
                    }
                    Some(Err(report)) => return Err(report.into()),
                    None => open = false,
                },
                else => return Ok(processed),
            }
        }
    }

    /// The attempts at `event`, with backoff between them.
    fn attempt<'a, H, F, E>(&self, handler: &'a H, event: EventEnvelope) -> Task<'a>
    where
        H: Fn(EventEnvelope) -> F + Sync,
        F: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let (attempts, (first, max)) = (self.attempts, self.backoff);
        Box::pin(async move {
            let mut backoff = Backoff::new(first, max);
            let mut tried = 0;
            loop {
                tried += 1;
                // The error as text at once: `E` need not be `Send`.
                let error = match handler(event.clone()).await {
                    Ok(()) => return (event, Outcome::Handled),
                    Err(err) => err.to_string(),
                };
                if tried >= attempts {
                    return (event, Outcome::Failed(error));
                }
                tracing::debug!(seq_no = event.seq(), attempt = tried, %error, "retrying");
                backoff.wait().await;
            }
        })
    }

    /// Appends `event` to the dead-letter log, or fails without one.
    async fn park(&self, event: &EventEnvelope, error: String) -> crate::Result<()> {
        let Some(dead) = &self.dead_letter else {
            return Err(anyhow::anyhow!(
                "consumer `{}`: event {} failed {} attempts and there is no dead-letter log: {error}",
                self.consumer,
                event.seq(),
                self.attempts
            ));
        };
        let mut parked = event.clone();
        let mut error = error;
        if error.len() > MAX_PARKED_ERROR {
            let mut cut = MAX_PARKED_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        parked
            .extensions
            .insert(PARKED_SEQ_NO.to_owned(), event.seq().to_string());
        parked.extensions.insert(PARKED_ERROR.to_owned(), error);
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut tried = 0;
        loop {
            tried += 1;
            match dead.append(parked.clone()).await {
                Ok(_) => return Ok(()),
                Err(err) if tried < self.attempts && EventLogError::is_retryable_anyhow(&err) => {
                    tracing::warn!(error = %err, seq_no = event.seq(), "parking failed; retrying");
                    backoff.wait().await;
                }
                Err(err) => {
                    return Err(err.context(format!(
                        "parking event {} of consumer `{}`",
                        event.seq(),
                        self.consumer
                    )));
                }
            }
        }
    }
}

/// The events in hand, and how far everything is finished.
#[derive(Default)]
struct Watermark {
    in_hand: BTreeSet<SeqNo>,
    /// The highest number handed in so far.
    highest: SeqNo,
}

impl Watermark {
    fn hand(&mut self, seq_no: SeqNo) {
        self.in_hand.insert(seq_no);
        self.highest = self.highest.max(seq_no);
    }

    /// Marks `seq_no` finished; the new acknowledgement, if it moved: the
    /// number before the oldest event still in hand, or the highest handed
    /// in when none is.
    fn finish(&mut self, seq_no: SeqNo) -> Option<SeqNo> {
        let oldest = *self.in_hand.first()?;
        self.in_hand.remove(&seq_no);
        if seq_no != oldest {
            return None;
        }
        Some(match self.in_hand.first() {
            Some(&next) => next - 1,
            None => self.highest,
        })
    }
}
