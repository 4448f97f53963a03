//! The subscription engine against a driver whose reads follow a script:
//! the reports no healthy broker gives on demand.

use super::*;
use crate::{EventLog, SeekPosition};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

type Read = Result<Vec<Record>, EventLogError>;

/// Reads come from `script` in order; once it is spent, reads wait forever.
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<Read>>,
    last: AtomicU64,
    deleted: AtomicBool,
    /// The consumer's stored position (0: none).
    acked: AtomicU64,
    /// The first stored number.
    first: AtomicU64,
    /// How many more asks for the first stored number fail, as on a flaky
    /// connection.
    unanswered: AtomicU64,
    /// Whether asks for the first stored number are refused for good, as by
    /// a broker that lacks the call.
    refused: AtomicBool,
    /// How many more lease requests are granted; the rest are refused, as
    /// when another holder took the consumer over.
    leases: AtomicU64,
}

struct ScriptedReader(Arc<Scripted>);

fn ok(seq_no: SeqNo) -> Record {
    let mut event = EventEnvelope::new("/test", "t", &b""[..]);
    event.seq_no = Some(seq_no);
    Ok(event)
}

fn unavailable() -> EventLogError {
    EventLogError::Unavailable {
        backend: "scripted",
        source: "connection refused".into(),
    }
}

use std::sync::Arc;

impl Driver for Arc<Scripted> {
    type Reader = ScriptedReader;

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("scripted", 1024, true).with_exclusive_subscriptions(true)
    }
    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }
    fn read_wait(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn append(&self, _: EventEnvelope, _: ExpectedLast) -> Result<Appended, EventLogError> {
        // A broker that never confirms.
        Err(unavailable())
    }
    async fn append_batch(
        &self,
        _: Vec<EventEnvelope>,
        _: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        Err(unavailable())
    }
    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        Ok(self.last.load(Ordering::SeqCst))
    }
    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        if self.refused.load(Ordering::SeqCst) {
            return Err(EventLogError::Unsupported {
                backend: "scripted",
                feature: "first sequence number",
            });
        }
        let unanswered = self
            .unanswered
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match unanswered {
            Ok(_) => Err(unavailable()),
            Err(_) => Ok(self.first.load(Ordering::SeqCst)),
        }
    }
    async fn acknowledged(&self, _: &str) -> Result<Option<SeqNo>, EventLogError> {
        Ok(Some(self.acked.load(Ordering::SeqCst)).filter(|&n| n > 0))
    }
    async fn move_consumer(&self, _: &str, _: SeqNo) -> Result<(), EventLogError> {
        Ok(())
    }
    async fn ack(&self, _: &str, _: SeqNo) -> Result<(), EventLogError> {
        Ok(())
    }
    async fn open_reader(&self, _: &str, _: SeqNo) -> Result<ScriptedReader, EventLogError> {
        Ok(ScriptedReader(self.clone()))
    }
    async fn log_exists(&self) -> Result<bool, EventLogError> {
        Ok(!self.deleted.load(Ordering::SeqCst))
    }
    async fn lease(&self, _: &str, _: &str, _: Duration) -> Result<bool, EventLogError> {
        let granted = self
            .leases
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(granted.is_ok())
    }
}

impl Reader for ScriptedReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        _: ReadLimits,
    ) -> Result<(), EventLogError> {
        let next = self.0.script.lock().unwrap().pop_front();
        match next {
            Some(read) => {
                records.extend(read?);
                Ok(())
            }
            None => std::future::pending().await,
        }
    }
}

fn log_of(script: Vec<Read>, last: SeqNo) -> (DriverLog<Arc<Scripted>>, Arc<Scripted>) {
    let driver = Arc::new(Scripted {
        script: Mutex::new(script.into()),
        last: AtomicU64::new(last),
        deleted: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        first: AtomicU64::new(1),
        unanswered: AtomicU64::new(0),
        refused: AtomicBool::new(false),
        leases: AtomicU64::new(0),
    });
    let settings = SubscriptionSettings::default().with_outage_report_after(Duration::ZERO);
    (DriverLog::with_settings(driver.clone(), settings), driver)
}

/// The first `n` items of a checked subscription from the beginning, as
/// sequence numbers for events and names for reports.
async fn items(log: &DriverLog<Arc<Scripted>>, n: usize) -> Vec<String> {
    let stream = log
        .subscribe_checked("c", SeekPosition::Beginning)
        .await
        .unwrap();
    let items = tokio::time::timeout(Duration::from_secs(10), stream.take(n).collect::<Vec<_>>())
        .await
        .expect("the items came");
    items
        .into_iter()
        .map(|item| match item {
            Ok(event) => event.seq_no.unwrap().to_string(),
            Err(EventLogError::Decode { seq_no, .. }) => format!("decode {seq_no}"),
            Err(EventLogError::Gap { expected, found }) => format!("gap {expected}..{found}"),
            Err(EventLogError::SequenceReused { delivered, last }) => {
                format!("reused {delivered}>{last}")
            }
            Err(EventLogError::Outage { .. }) => "outage".into(),
            Err(err) => err.to_string(),
        })
        .collect()
}

/// The sequence numbers of a plain subscription from the beginning, until
/// it ends.
async fn plain_seq_nos(log: &DriverLog<Arc<Scripted>>) -> Vec<SeqNo> {
    log.subscribe("c", SeekPosition::Beginning)
        .await
        .unwrap()
        .map(|e| e.seq_no.unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn an_undecodable_event_is_reported_and_skippable() {
    let script = || {
        let undecodable = Err(Undecodable {
            seq_no: 2,
            reason: "garbage".into(),
        });
        vec![Ok(vec![ok(1), undecodable, ok(3)])]
    };
    let (log, _) = log_of(script(), 3);
    assert_eq!(items(&log, 3).await, ["1", "decode 2", "3"]);
    // The plain stream ends there rather than skip it.
    let (log, _) = log_of(script(), 3);
    assert_eq!(plain_seq_nos(&log).await, [1]);
}

#[tokio::test]
async fn the_plain_stream_ends_at_a_report() {
    let (log, driver) = log_of(vec![Ok(vec![ok(1)]), Ok(vec![ok(3)]), Ok(vec![ok(4)])], 4);
    // Retention removed 2 while the subscription read.
    driver.first.store(3, Ordering::SeqCst);
    assert_eq!(plain_seq_nos(&log).await, [1]);
}

#[tokio::test]
async fn a_gap_is_reported_then_the_stream_goes_on() {
    let (log, driver) = log_of(vec![Ok(vec![ok(1), ok(2), ok(5)]), Ok(vec![ok(6)])], 6);
    driver.first.store(5, Ordering::SeqCst);
    assert_eq!(items(&log, 5).await, ["1", "2", "gap 3..5", "5", "6"]);
}

#[tokio::test]
async fn a_jump_the_consumer_was_moved_past_is_no_gap() {
    // Another process moved the consumer to 5; the broker's reader
    // followed.
    let (log, driver) = log_of(vec![Ok(vec![ok(1), ok(2), ok(5)]), Ok(vec![ok(6)])], 6);
    driver.acked.store(4, Ordering::SeqCst);
    assert_eq!(items(&log, 4).await, ["1", "2", "5", "6"]);
}

#[tokio::test]
async fn a_reader_that_skips_stored_events_is_replaced_once() {
    // 3 and 4 are stored and the consumer stands before them: a delivery
    // lost in flight. A fresh reader reads them; the same skip again is a
    // gap.
    let script = vec![
        Ok(vec![ok(1), ok(2), ok(5)]),
        Ok(vec![ok(3), ok(4), ok(5)]),
        Ok(vec![ok(7)]),
        Ok(vec![ok(7)]),
    ];
    let (log, _) = log_of(script, 7);
    assert_eq!(
        items(&log, 7).await,
        ["1", "2", "3", "4", "5", "gap 6..7", "7"]
    );
}

#[tokio::test]
async fn a_jump_the_broker_does_not_explain_is_read_again_not_reported() {
    // The check of the jump fails: 3 and 4 may well be stored, so a fresh
    // reader reads from 3 instead of a gap being reported.
    let script = vec![
        Ok(vec![ok(1), ok(2), ok(5)]),
        Ok(vec![ok(3), ok(4), ok(5)]),
        Ok(vec![ok(6)]),
    ];
    let (log, driver) = log_of(script, 6);
    driver.unanswered.store(1, Ordering::SeqCst);
    assert_eq!(items(&log, 6).await, ["1", "2", "3", "4", "5", "6"]);
}

#[tokio::test]
async fn a_jump_the_broker_refuses_to_explain_is_reported_once() {
    // A refusal will not change on asking again: reading again would loop
    // without end, so the jump is reported and the stream goes on.
    let (log, driver) = log_of(vec![Ok(vec![ok(1), ok(2), ok(5)]), Ok(vec![ok(6)])], 6);
    driver.refused.store(true, Ordering::SeqCst);
    assert_eq!(items(&log, 5).await, ["1", "2", "gap 3..5", "5", "6"]);
}

#[tokio::test]
async fn a_jump_over_removed_events_is_a_gap_even_past_the_position() {
    // Redis counts its position from the oldest entry it handed out, so a
    // reader that found 1 to 4 removed already stands past them.
    let (log, driver) = log_of(vec![Ok(vec![ok(1), ok(5)]), Ok(vec![ok(6)])], 6);
    driver.acked.store(4, Ordering::SeqCst);
    driver.first.store(5, Ordering::SeqCst);
    assert_eq!(items(&log, 4).await, ["1", "gap 2..5", "5", "6"]);
}

#[tokio::test]
async fn what_was_handed_out_is_skipped_after_a_reconnection() {
    let (log, _) = log_of(
        vec![
            Ok(vec![ok(1), ok(2)]),
            Err(unavailable()),
            Ok(vec![ok(1), ok(2), ok(3)]),
        ],
        3,
    );
    assert_eq!(items(&log, 4).await, ["1", "2", "outage", "3"]);
}

#[tokio::test]
async fn reused_numbers_are_reported() {
    let (log, driver) = log_of(
        vec![
            Ok(vec![ok(1), ok(2), ok(3)]),
            Err(unavailable()),
            Ok(vec![ok(2)]),
        ],
        3,
    );
    let stream = log
        .subscribe_checked("c", SeekPosition::Beginning)
        .await
        .unwrap();
    let mut stream = stream.take(6);
    for n in 1..=3 {
        assert_eq!(stream.next().await.unwrap().unwrap().seq_no, Some(n));
    }
    // The log was created again with one event while the broker was away.
    driver.last.store(1, Ordering::SeqCst);
    assert!(matches!(
        stream.next().await,
        Some(Err(EventLogError::Outage { .. }))
    ));
    assert!(matches!(
        stream.next().await,
        Some(Err(EventLogError::SequenceReused {
            delivered: 3,
            last: 1
        }))
    ));
    assert_eq!(stream.next().await.unwrap().unwrap().seq_no, Some(2));
}

#[tokio::test]
async fn a_deleted_log_ends_the_stream() {
    let (log, driver) = log_of(
        vec![
            Ok(vec![ok(1)]),
            Err(EventLogError::Backend {
                backend: "scripted",
                source: "no such stream".into(),
            }),
        ],
        1,
    );
    driver.deleted.store(true, Ordering::SeqCst);
    assert_eq!(items(&log, 3).await, ["1", "the log was deleted"]);
}

#[tokio::test]
async fn a_fault_that_is_not_transient_ends_the_stream() {
    let refused = || {
        Err(EventLogError::Backend {
            backend: "scripted",
            source: "refused".into(),
        })
    };
    // A fresh reader gets one chance; it fails too.
    let (log, _) = log_of(vec![refused(), refused()], 1);
    assert_eq!(items(&log, 2).await, ["scripted backend error"]);
    // A fresh reader that reads goes on.
    let (log, _) = log_of(vec![Ok(vec![ok(1)]), refused(), Ok(vec![ok(2)])], 2);
    assert_eq!(items(&log, 2).await, ["1", "2"]);
}

#[tokio::test]
async fn waiting_past_the_end_is_not_reused_numbers() {
    let (log, _) = log_of(vec![Err(unavailable()), Ok(vec![ok(100)])], 5);
    let stream = log
        .subscribe_checked("c", SeekPosition::Sequence(100))
        .await
        .unwrap();
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.take(2).collect())
        .await
        .expect("the items came");
    assert!(
        matches!(items[0], Err(EventLogError::Outage { .. })),
        "{items:?}"
    );
    assert_eq!(items[1].as_ref().unwrap().seq_no, Some(100));
}

#[tokio::test]
async fn an_unconfirmed_append_without_deduplication_is_not_retryable() {
    let log = DriverLog::new(Arc::new(Scripted::default()));
    let event = EventEnvelope::new("/test", "t", &b""[..]);
    for err in [
        log.append(event.clone()).await.unwrap_err(),
        log.append_batch(vec![event.clone()]).await.unwrap_err(),
    ] {
        let err = err.downcast_ref::<EventLogError>().expect("typed");
        assert!(
            matches!(err, EventLogError::AppendUnconfirmed { source, .. }
                if matches!(**source, EventLogError::Unavailable { .. })),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn conditions_are_refused_where_the_driver_cannot_check_them() {
    let log = DriverLog::new(Arc::new(Scripted::default()));
    let event = EventEnvelope::new("/test", "t", &b""[..]);
    let options = crate::AppendOptions::new().expect(ExpectedLast::Empty);
    for err in [
        log.append_with(event.clone(), options).await.unwrap_err(),
        log.append_batch_with(vec![event.clone()], options)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                err.downcast_ref::<EventLogError>(),
                Some(EventLogError::Unsupported { .. })
            ),
            "{err:?}"
        );
    }
    let zero = crate::AppendOptions::new().expect(ExpectedLast::SeqNo(0));
    let err = log.append_with(event, zero).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<EventLogError>(),
        Some(EventLogError::InvalidPosition { .. })
    ));
}

#[test]
fn dedup_keys_tell_every_pair_apart_and_never_change() {
    let pair =
        |source: &str, id: &str| dedup_key(&EventEnvelope::new(source, "t", &b""[..]).with_id(id));
    let key = pair("/orders", "42");
    assert_eq!(key.len(), 32);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // The same pair, whatever else the event holds.
    let other_payload = EventEnvelope::new("/orders", "other.type", &b"x"[..]).with_id("42");
    assert_eq!(dedup_key(&other_payload), key);
    // A source that ends where an id begins is another pair.
    assert_ne!(pair("/orders4", "2"), key);
    assert_ne!(pair("/payments", "42"), key);
    // Stored in brokers (NATS message ids, Redis keys): a new release must
    // recognise the pairs an older one stored.
    assert_eq!(key, "3d67f8bfa8faa1fefcbff672320f5e7a");
}

#[tokio::test]
async fn an_exclusive_subscription_that_loses_its_lease_ends_fenced() {
    let (log, driver) = log_of(vec![Ok(vec![ok(1), ok(2)])], 2);
    // The first request takes the consumer; the first renewal finds it
    // taken over.
    driver.leases.store(1, Ordering::SeqCst);
    let options = crate::SubscribeOptions::exclusive(crate::WhenBusy::Refuse)
        .with_lease(Duration::from_millis(300));
    let stream = log
        .subscribe_with("c", SeekPosition::Beginning, options)
        .await
        .expect("the consumer is free");
    let items: Vec<String> = tokio::time::timeout(
        Duration::from_secs(5),
        stream
            .map(|item| match item {
                Ok(event) => event.seq().to_string(),
                Err(EventLogError::Fenced { consumer }) => format!("fenced {consumer}"),
                Err(other) => format!("{other:?}"),
            })
            .collect(),
    )
    .await
    .expect("the stream ends once the lease is lost");
    assert_eq!(items, ["1", "2", "fenced c"]);
}

#[tokio::test]
async fn a_refusing_exclusive_subscribe_on_a_busy_consumer_fails_at_once() {
    let (log, _) = log_of(Vec::new(), 0);
    let options = crate::SubscribeOptions::exclusive(crate::WhenBusy::Refuse);
    let refused = log
        .subscribe_with("c", SeekPosition::Beginning, options)
        .await
        .err()
        .and_then(|err| err.downcast::<EventLogError>().ok());
    assert!(
        matches!(refused, Some(EventLogError::ConsumerBusy { ref consumer }) if consumer == "c"),
        "{refused:?}"
    );
}
