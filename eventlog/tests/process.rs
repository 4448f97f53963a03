//! The processing helper on the in-memory log: bounded concurrency, order
//! per key, acknowledgements that never pass unfinished work, retries and
//! the dead-letter log.

use eventlog::memory::InMemoryEventLog;
use eventlog::process::{PARKED_ERROR, PARKED_SEQ_NO, Processor};
use eventlog::{EventEnvelope, EventLog, Member, SeekPosition, SeqNo, partition_of};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

/// `n` events over `keys` subjects.
async fn log_with(n: usize, keys: usize) -> anyhow::Result<InMemoryEventLog> {
    let log = InMemoryEventLog::new();
    let events = (0..n)
        .map(|i| {
            EventEnvelope::new("/test", "work", format!("{i}").into_bytes())
                .with_subject(format!("key-{}", i % keys))
        })
        .collect();
    log.append_batch(events).await?;
    Ok(log)
}

/// Waits until `consumer` has acknowledged `n`.
async fn acked(log: &dyn EventLog, consumer: &str, n: SeqNo) -> anyhow::Result<()> {
    testkit::wait::poll_until(
        "the processor's acknowledgement",
        DEADLINE,
        || async { Ok(log.consumer_state(consumer).await?.last_acknowledged) },
        |acked| *acked == Some(n),
    )
    .await
    .map(drop)
}

/// What the handler saw, across runs.
#[derive(Default)]
struct Seen {
    finished: Mutex<HashSet<SeqNo>>,
    /// Per run, per key: the events in the order their handling started.
    started: Mutex<Vec<HashMap<String, Vec<SeqNo>>>>,
    busy_keys: Mutex<HashSet<String>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
    /// An event whose handler never finishes (0: none), so a run dropped
    /// later is surely dropped mid-way.
    stuck: AtomicU64,
}

impl Seen {
    async fn handle(&self, event: EventEnvelope) -> Result<(), String> {
        let key = event.partition_key().to_owned();
        assert!(
            self.busy_keys.lock().unwrap().insert(key.clone()),
            "two events of {key} in hand at once"
        );
        self.started
            .lock()
            .unwrap()
            .last_mut()
            .expect("a run")
            .entry(key.clone())
            .or_default()
            .push(event.seq());
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        if event.seq() == self.stuck.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        // Work of uneven length, so handlers finish out of order: each
        // yields a few times, without waiting on the clock.
        for _ in 0..(event.seq() * 7919) % 5 {
            tokio::task::yield_now().await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.busy_keys.lock().unwrap().remove(&key);
        self.finished.lock().unwrap().insert(event.seq());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_redelivers_only_what_was_not_finished() -> anyhow::Result<()> {
    const EVENTS: usize = 3000;
    let log = log_with(EVENTS, 50).await?;
    let processor = Processor::new("worker").with_concurrency(16);
    let seen = Seen::default();

    // The first run is dropped mid-way, as a crash would stop it: event
    // 2000 never finishes in it.
    seen.started.lock().unwrap().push(HashMap::new());
    seen.stuck.store(2000, Ordering::SeqCst);
    let crashed = tokio::time::timeout(
        Duration::from_millis(1500),
        processor.run(&log, |event| seen.handle(event)),
    )
    .await;
    assert!(
        crashed.is_err(),
        "the first run ended by itself: {crashed:?}"
    );
    // The handlers of the dropped run were dropped with it.
    seen.busy_keys.lock().unwrap().clear();
    seen.running.store(0, Ordering::SeqCst);
    let at_crash = log
        .consumer_state("worker")
        .await?
        .last_acknowledged
        .unwrap_or(0);
    let finished = seen.finished.lock().unwrap().clone();
    assert!(at_crash > 0, "nothing was acknowledged before the crash");
    assert!(
        at_crash < 2000,
        "acknowledged {at_crash}, past the unfinished 2000"
    );
    seen.stuck.store(0, Ordering::SeqCst);
    let unfinished: Vec<SeqNo> = (1..=at_crash).filter(|n| !finished.contains(n)).collect();
    assert!(
        unfinished.is_empty(),
        "acknowledged up to {at_crash} with {unfinished:?} not finished"
    );

    seen.started.lock().unwrap().push(HashMap::new());
    tokio::select! {
        ended = processor.run(&log, |event| seen.handle(event)) => {
            panic!("the processor ended on a live log: {ended:?}")
        }
        done = acked(&log, "worker", EVENTS as SeqNo) => done?,
    }

    let finished = seen.finished.lock().unwrap();
    let missing: Vec<SeqNo> = (1..=EVENTS as SeqNo)
        .filter(|n| !finished.contains(n))
        .collect();
    assert!(missing.is_empty(), "never handled: {missing:?}");
    for (run, keys) in seen.started.lock().unwrap().iter().enumerate() {
        for (key, order) in keys {
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "run {run}: {key} handled out of order: {order:?}"
            );
        }
    }
    let most = seen.most_running.load(Ordering::SeqCst);
    assert!(most <= 16, "{most} handlers ran at once, more than 16");
    assert!(most > 1, "the handlers never ran concurrently");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_always_fails_is_parked_and_the_rest_flow() -> anyhow::Result<()> {
    let log = log_with(20, 20).await?;
    let dead = Arc::new(InMemoryEventLog::new());
    let processor = Processor::new("worker")
        .with_attempts(3)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .with_dead_letter(dead.clone());
    let attempts_at_5 = AtomicUsize::new(0);
    let handler = |event: EventEnvelope| {
        let fails = event.seq() == 5;
        if fails {
            attempts_at_5.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if fails {
                Err("the payment service refused it")
            } else {
                Ok(())
            }
        }
    };
    tokio::select! {
        ended = processor.run(&log, handler) => panic!("the processor ended: {ended:?}"),
        done = acked(&log, "worker", 20) => done?,
    }
    assert_eq!(attempts_at_5.load(Ordering::SeqCst), 3);
    let mut parked = dead.subscribe("audit", SeekPosition::Beginning).await?;
    let event = tokio::time::timeout(DEADLINE, parked.next())
        .await?
        .expect("a parked event");
    assert_eq!(event.extensions[PARKED_SEQ_NO], "5");
    assert_eq!(
        event.extensions[PARKED_ERROR],
        "the payment service refused it"
    );
    assert_eq!(dead.try_last_seq_no().await?, Some(1), "parked once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_log_a_failure_stops_the_run_before_the_event() -> anyhow::Result<()>
{
    let log = log_with(10, 10).await?;
    let processor = Processor::new("worker")
        .with_attempts(2)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(1));
    let handler = |event: EventEnvelope| async move {
        if event.seq() == 4 {
            Err("broken")
        } else {
            Ok(())
        }
    };
    let ended = tokio::time::timeout(DEADLINE, processor.run(&log, handler)).await?;
    let err = ended.expect_err("the run stops on the failure");
    assert!(err.to_string().contains("event 4"), "{err:#}");
    let acked = log.consumer_state("worker").await?.last_acknowledged;
    assert!(
        acked.unwrap_or(0) < 4,
        "acknowledged {acked:?}, past the failed event 4"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_processor_waits_until_the_first_is_gone() -> anyhow::Result<()> {
    let log = log_with(50, 50).await?;
    let processor = Processor::new("worker");
    let first_handled = AtomicUsize::new(0);
    let second_handled = AtomicUsize::new(0);
    // The first processor never finishes event 5.
    let mut first = Box::pin(processor.run(&log, |event: EventEnvelope| {
        first_handled.fetch_add(1, Ordering::SeqCst);
        async move {
            if event.seq() == 5 {
                std::future::pending::<()>().await;
            }
            Ok::<(), String>(())
        }
    }));
    // It holds the consumer before the second one starts.
    tokio::select! {
        ended = &mut first => panic!("the first processor ended: {ended:?}"),
        held = acked(&log, "worker", 4) => held?,
    }
    let second = processor.run(&log, |_: EventEnvelope| {
        second_handled.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), String>(()) }
    });
    tokio::pin!(second);
    // Both run; the second, a standby, handles nothing while the first lives.
    let both = tokio::time::timeout(Duration::from_secs(1), async {
        tokio::select! {
            ended = &mut first => panic!("the first processor ended: {ended:?}"),
            ended = &mut second => panic!("the second processor ended: {ended:?}"),
        }
    })
    .await;
    assert!(both.is_err());
    assert_eq!(
        second_handled.load(Ordering::SeqCst),
        0,
        "the standby handled events"
    );
    assert_eq!(
        log.consumer_state("worker").await?.last_acknowledged,
        Some(4)
    );
    drop(first);
    // The first one is gone: the second takes over from 5.
    tokio::select! {
        ended = &mut second => panic!("the second processor ended: {ended:?}"),
        done = acked(&log, "worker", 50) => done?,
    }
    assert_eq!(second_handled.load(Ordering::SeqCst), 46, "events 5 to 50");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_the_work_by_key() -> anyhow::Result<()> {
    const EVENTS: usize = 600;
    let log = log_with(EVENTS, 40).await?;
    let handled: [Mutex<Vec<(String, SeqNo)>>; 2] = Default::default();
    let members = (0..2u32).map(|index| {
        let member = Member::new(index, 2);
        let processor = Processor::new("worker").with_member(member);
        let (log, handled) = (&log, &handled[index as usize]);
        async move {
            // `log_with` gives event `i` (number `i + 1`) the key `key-<i % 40>`.
            let last = (0..EVENTS)
                .rev()
                .find(|i| partition_of(&format!("key-{}", i % 40), 2) == index)
                .expect("every member has events");
            let expected = last as SeqNo + 1;
            let acked_as = member.consumer("worker");
            tokio::select! {
                ended = processor.run(log, |event: EventEnvelope| async move {
                    handled.lock().unwrap().push((event.partition_key().to_owned(), event.seq()));
                    Ok::<(), String>(())
                }) => panic!("member {index} ended on a live log: {ended:?}"),
                done = acked(log, &acked_as, expected) => done,
            }
        }
    });
    futures::future::try_join_all(members).await?;
    let mut all: Vec<SeqNo> = Vec::new();
    for (index, handled) in handled.iter().enumerate() {
        for (key, seq) in handled.lock().unwrap().iter() {
            assert_eq!(
                partition_of(key, 2),
                index as u32,
                "{key} at {seq} went to member {index}"
            );
            all.push(*seq);
        }
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=EVENTS as SeqNo).collect::<Vec<_>>(),
        "each event handled once"
    );
    Ok(())
}
