//! The writers: each appends events with ids of its own until the target
//! count is stored and the fault schedule is over, never retrying an id.

use crate::run::STALL;
use anyhow::{Result, bail};
use eventlog::{EventEnvelope, EventLog, SeqNo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The pause after a failed append, so a writer facing a stopped broker
/// (connection refused at once) does not spin.
const BACKOFF: Duration = Duration::from_millis(50);
/// How often a run reports its progress.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What the writers and the fault task tell one another.
pub(crate) struct Progress {
    /// The events to store before the writers may stop.
    pub(crate) total: u64,
    /// Appends that returned `Ok`, over all writers; a channel, so the
    /// fault task and the progress report wait for counts instead of
    /// polling.
    appended: watch::Sender<u64>,
    failed: AtomicU64,
    /// Events the consumer received, redeliveries included.
    pub(crate) received: AtomicU64,
    faults: usize,
    /// How many faults of the schedule are over.
    pub(crate) faults_ended: watch::Sender<usize>,
}

impl Progress {
    pub(crate) fn new(total: u64, faults: usize) -> Self {
        Self {
            total,
            appended: watch::Sender::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            faults,
            faults_ended: watch::Sender::new(0),
        }
    }

    /// Appends that returned `Ok` so far, over all writers.
    pub(crate) fn appended(&self) -> u64 {
        *self.appended.borrow()
    }

    /// Returns once `count` appends have returned `Ok`.
    pub(crate) async fn until_appended(&self, count: u64) {
        // The sender lives in `self`, so the channel cannot close.
        let _ = self.appended.subscribe().wait_for(|n| *n >= count).await;
    }

    /// Returns once the writers are done: the count stored and the fault
    /// schedule over.
    async fn until_done(&self) {
        self.until_appended(self.total).await;
        let _ = self
            .faults_ended
            .subscribe()
            .wait_for(|ended| *ended >= self.faults)
            .await;
    }

    fn done(&self) -> bool {
        self.appended() >= self.total && *self.faults_ended.borrow() >= self.faults
    }

    /// Prints the counts every [`REPORT_EVERY`] until the writers are done.
    pub(crate) async fn report(&self) -> Result<()> {
        let started = Instant::now();
        let mut ticks = tokio::time::interval_at(started + REPORT_EVERY, REPORT_EVERY);
        let done = self.until_done();
        tokio::pin!(done);
        loop {
            tokio::select! {
                () = &mut done => return Ok(()),
                _ = ticks.tick() => eprintln!(
                    "   {:>4.0?}: {} appends stored, {} failed; {} received",
                    started.elapsed(),
                    self.appended(),
                    self.failed.load(Ordering::SeqCst),
                    self.received.load(Ordering::SeqCst)
                ),
            }
        }
    }
}

/// Every append of every writer, by outcome.
#[derive(Default)]
pub(crate) struct Appends {
    /// Ids whose append returned `Ok`, with the sequence number it returned.
    pub(crate) ok: HashMap<String, SeqNo>,
    /// Ids whose append failed or hung: they may or may not be stored.
    pub(crate) indeterminate: HashSet<String>,
    /// What went wrong, for the report.
    pub(crate) notes: Vec<String>,
}

/// Runs one writer per handle until `progress` says the run is over. An
/// append still pending after `hung` is abandoned and reported: the
/// backends promise an error within their operation timeout.
pub(crate) async fn run(
    logs: Vec<Arc<dyn EventLog>>,
    progress: &Progress,
    hung: Duration,
) -> Result<Appends> {
    let writers = logs
        .into_iter()
        .enumerate()
        .map(|(w, log)| write(w, log, progress, hung));
    let mut all = Appends::default();
    let mut by_seq = HashMap::new();
    for one in futures::future::try_join_all(writers).await? {
        for (id, seq) in one.ok {
            if let Some(other) = by_seq.insert(seq, id.clone()) {
                all.notes.push(format!(
                    "append of {id} and append of {other} both returned {seq}"
                ));
            }
            all.ok.insert(id, seq);
        }
        all.indeterminate.extend(one.indeterminate);
        all.notes.extend(one.notes);
    }
    Ok(all)
}

async fn write(
    w: usize,
    log: Arc<dyn EventLog>,
    progress: &Progress,
    hung_after: Duration,
) -> Result<Appends> {
    let mut mine = Appends::default();
    let (mut errors, mut hung, mut last_error) = (0u64, 0u64, None);
    let mut failing_since: Option<Instant> = None;
    let mut n = 0u64;
    while !progress.done() {
        let id = format!("w{w}-{n}");
        n += 1;
        let event =
            EventEnvelope::new("/soak", "soak.event", id.clone().into_bytes()).with_id(id.clone());
        match tokio::time::timeout(hung_after, log.append(event)).await {
            Ok(Ok(seq)) => {
                mine.ok.insert(id, seq);
                progress.appended.send_modify(|n| *n += 1);
                failing_since = None;
                continue;
            }
            Ok(Err(err)) => {
                errors += 1;
                last_error = Some(format!("{err:#}"));
            }
            Err(_) => {
                hung += 1;
                last_error = Some(format!("append of {id} hung for {hung_after:?}"));
            }
        }
        mine.indeterminate.insert(id);
        progress.failed.fetch_add(1, Ordering::SeqCst);
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL {
            bail!(
                "writer {w}: no append succeeded for {STALL:?} ({} stored by all writers \
                 so far, {} of them by this one); last error: {}",
                progress.appended(),
                mine.ok.len(),
                last_error.unwrap_or_default()
            );
        }
        tokio::time::sleep(BACKOFF).await;
    }
    if errors + hung > 0 {
        mine.notes.push(format!(
            "writer {w}: {} ok, {errors} failed, {hung} hung; last error: {}",
            mine.ok.len(),
            last_error.unwrap_or_default()
        ));
    }
    Ok(mine)
}
