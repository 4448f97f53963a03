//! The consumer: one consumer group reads the log while it is written,
//! acknowledges every [`ACK_EVERY`]th event, restarts itself (a new
//! connection, `subscribe(LastAcknowledged)`) after each fault, and checks
//! every delivery against what came before.

use crate::run::{RECOVERY, STALL, connect, retry};
use crate::writers::Progress;
use anyhow::{Context, Result, bail};
use eventlog::{EventEnvelope, EventLog, EventStream, SeekPosition, SeqNo};
use futures::StreamExt;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The consumer acknowledges every event whose number is a multiple of this,
/// and the last one.
const ACK_EVERY: SeqNo = 50;
/// How long one wait for a delivery lasts before the consumer looks at the
/// faults and the target again.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// Violations described in full; the counts hold all of them.
const NOTES: usize = 10;

/// What the consumer saw.
#[derive(Debug, Default)]
pub(crate) struct Consumed {
    /// The id of the first delivery of each sequence number.
    pub(crate) delivered: HashMap<SeqNo, String>,
    pub(crate) deliveries: u64,
    pub(crate) subscriptions: usize,
    /// Deliveries out of order within one subscription, a subscription that
    /// started past the stored position, or one sequence number delivered
    /// with two ids.
    pub(crate) reorders: u64,
    /// Deliveries of an event whose acknowledgement had returned `Ok`.
    pub(crate) acked_redeliveries: u64,
    /// Deliveries again of an event never acknowledged (allowed).
    pub(crate) unacked_redeliveries: u64,
    pub(crate) acks_ok: u64,
    pub(crate) acks_failed: u64,
    /// The highest sequence number whose `ack` returned `Ok`.
    pub(crate) highest_acked: SeqNo,
    pub(crate) notes: Vec<String>,
}

impl Consumed {
    fn note(&mut self, note: String) {
        if self.notes.len() < NOTES {
            self.notes.push(note);
        }
    }
}

/// One subscription stream and what its next delivery must be.
struct Subscription {
    stream: EventStream,
    from: SeekPosition,
    prev: Option<SeqNo>,
    /// The highest acknowledged number when it was opened: anything at or
    /// below it is an acknowledged event coming again.
    acked_at_start: SeqNo,
    /// Its first event may come from no further than this: the stored
    /// position is at most the highest acknowledgement sent.
    first_at_most: SeqNo,
    /// Whether it delivered an acknowledged event again.
    acked_again: bool,
}

struct Consumer {
    url: String,
    name: String,
    log: Arc<dyn EventLog>,
    seen: Consumed,
    max_delivered: SeqNo,
    /// The highest acknowledgement sent, whatever `ack` returned.
    max_ack_sent: SeqNo,
}

/// Reads the log at `url` as consumer `name` on `log` until it has received
/// the event numbered `target` (known once the writers are done) and
/// acknowledged it.
pub(crate) async fn run(
    url: String,
    name: String,
    log: Arc<dyn EventLog>,
    progress: Arc<Progress>,
    target: watch::Receiver<Option<SeqNo>>,
) -> Result<Consumed> {
    let faults_ended = progress.faults_ended.subscribe();
    let mut consumer = Consumer {
        url,
        name,
        log,
        seen: Consumed::default(),
        max_delivered: 0,
        max_ack_sent: 0,
    };
    let mut sub = consumer.subscribe(SeekPosition::Beginning).await?;
    let mut restarts = 0;
    let mut last_delivery = Instant::now();
    loop {
        let target = *target.borrow();
        if let Some(last) = target
            && consumer.max_delivered >= last
        {
            consumer.finish(last).await?;
            return Ok(consumer.seen);
        }
        let ended = *faults_ended.borrow();
        if ended > restarts {
            // A consumer process restarting after the fault: only the
            // broker's stored position carries over.
            restarts = ended;
            drop(sub);
            consumer.log = connect(&consumer.url).await?;
            sub = consumer.subscribe(SeekPosition::LastAcknowledged).await?;
            continue;
        }
        match tokio::time::timeout(LOOK_EVERY, sub.stream.next()).await {
            Ok(Some(event)) => {
                last_delivery = Instant::now();
                progress.received.fetch_add(1, Ordering::Relaxed);
                consumer.record(&mut sub, event, target).await;
            }
            Ok(None) => {
                consumer.seen.note(format!(
                    "subscription {} (from {}) ended after {:?}",
                    consumer.seen.subscriptions, sub.from, sub.prev
                ));
                drop(sub);
                sub = consumer.subscribe(SeekPosition::LastAcknowledged).await?;
            }
            Err(_) if last_delivery.elapsed() > STALL => bail!(
                "the consumer is stuck: nothing delivered for {STALL:?}; it received up to {} \
                 (target {target:?}) over {} subscriptions, the last one at {:?}; highest \
                 acknowledged {}; {:?}",
                consumer.max_delivered,
                consumer.seen.subscriptions,
                sub.prev,
                consumer.seen.highest_acked,
                consumer.seen.notes,
            ),
            Err(_) => {}
        }
    }
}

impl Consumer {
    async fn subscribe(&mut self, from: SeekPosition) -> Result<Subscription> {
        let (log, name) = (&self.log, &self.name);
        let stream = retry(&format!("subscribe({name}, {from})"), RECOVERY, || {
            log.subscribe(name, from)
        })
        .await?;
        self.seen.subscriptions += 1;
        let fresh = from == SeekPosition::Beginning;
        Ok(Subscription {
            stream,
            from,
            prev: None,
            acked_at_start: if fresh { 0 } else { self.seen.highest_acked },
            first_at_most: if fresh { 1 } else { self.max_ack_sent + 1 },
            acked_again: false,
        })
    }

    async fn record(
        &mut self,
        sub: &mut Subscription,
        event: EventEnvelope,
        target: Option<SeqNo>,
    ) {
        self.seen.deliveries += 1;
        let n = self.seen.subscriptions;
        let Some(seq) = event.seq_no else {
            self.seen.reorders += 1;
            self.seen.note(format!(
                "subscription {n}: {} came without a sequence number",
                event.id
            ));
            return;
        };
        let in_order = match sub.prev {
            None => seq <= sub.first_at_most,
            Some(prev) => seq == prev + 1,
        };
        if !in_order {
            self.seen.reorders += 1;
            self.seen.note(match sub.prev {
                None => format!(
                    "subscription {n} (from {}) started at {seq}; the highest acknowledgement \
                     sent was {}",
                    sub.from, self.max_ack_sent
                ),
                Some(prev) => format!("subscription {n} (from {}): {seq} after {prev}", sub.from),
            });
        } else if seq <= self.max_delivered {
            if seq <= sub.acked_at_start {
                self.seen.acked_redeliveries += 1;
                if !sub.acked_again {
                    sub.acked_again = true;
                    self.seen.note(format!(
                        "subscription {n} (from {}) delivered {seq} again, ack({}) had \
                         returned Ok; only the first such delivery of a subscription is listed",
                        sub.from, sub.acked_at_start
                    ));
                }
            } else {
                self.seen.unacked_redeliveries += 1;
            }
        }
        match self.seen.delivered.entry(seq) {
            Entry::Occupied(first) if *first.get() != event.id => {
                let first = first.get().clone();
                self.seen.reorders += 1;
                self.seen.note(format!(
                    "{seq} delivered as {first}, then as {} (subscription {n})",
                    event.id
                ));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(event.id);
            }
        }
        sub.prev = Some(seq);
        self.max_delivered = self.max_delivered.max(seq);
        if seq % ACK_EVERY == 0 || Some(seq) == target {
            self.ack(seq).await;
        }
    }

    /// Acknowledges `seq`; an error leaves it indeterminate.
    async fn ack(&mut self, seq: SeqNo) {
        self.max_ack_sent = self.max_ack_sent.max(seq);
        match self.log.ack(&self.name, seq).await {
            Ok(()) => {
                self.seen.acks_ok += 1;
                self.seen.highest_acked = self.seen.highest_acked.max(seq);
            }
            Err(_) => self.seen.acks_failed += 1,
        }
    }

    /// Acknowledges the last event, and checks that the broker reports that
    /// position: one lower would deliver acknowledged events again.
    async fn finish(&mut self, last: SeqNo) -> Result<()> {
        if self.seen.highest_acked < last {
            let (log, name) = (&self.log, &self.name);
            retry(&format!("ack({name}, {last})"), RECOVERY, || {
                log.ack(name, last)
            })
            .await?;
            self.seen.acks_ok += 1;
            self.seen.highest_acked = last;
        }
        let state = retry("consumer_state", RECOVERY, || {
            self.log.consumer_state(&self.name)
        })
        .await
        .context("the consumer's final position")?;
        let stored = state.last_acknowledged.unwrap_or(0);
        if stored < last {
            self.seen.acked_redeliveries += last - stored;
            self.seen.note(format!(
                "after ack({last}) returned Ok, consumer_state reports {stored}"
            ));
        }
        Ok(())
    }
}
