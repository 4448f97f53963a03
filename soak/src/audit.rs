//! The final audit, once the faults are over: a fresh connection and a
//! fresh consumer read the whole log, and the checks compare it with what
//! the writers were told and what the consumer received.

use crate::consumer::Consumed;
use crate::run::{RECOVERY, STALL, connect, retry};
use crate::writers::Appends;
use anyhow::{Context, Result};
use eventlog::{SeekPosition, SeqNo};
use std::collections::{BTreeMap, HashMap};
use testkit::wait::{next_within, unique};

/// Violations described in full; the counts hold all of them.
const NOTES: usize = 10;

/// The log as the audit read it.
pub(crate) struct Stored {
    /// The id stored at each sequence number.
    pub(crate) ids: BTreeMap<SeqNo, String>,
    /// The highest sequence number.
    pub(crate) last: SeqNo,
    /// Sequence numbers that came out of order in the audit's read.
    pub(crate) reorders: u64,
    pub(crate) notes: Vec<String>,
}

/// Reads the log at `url` from the beginning up to its last event,
/// asking for the last event again once there, in case a late append
/// landed meanwhile.
pub(crate) async fn read(url: &str) -> Result<Stored> {
    let log = connect(url).await?;
    let last = || retry("last_seq_no", RECOVERY, || log.try_last_seq_no());
    let mut target = last().await?.context("the log is empty")?;
    let consumer = unique("audit");
    let mut stream = retry("subscribe(audit, beginning)", RECOVERY, || {
        log.subscribe(&consumer, SeekPosition::Beginning)
    })
    .await?;
    let mut stored = Stored {
        ids: BTreeMap::new(),
        last: 0,
        reorders: 0,
        notes: Vec::new(),
    };
    loop {
        if stored.last >= target {
            match last().await? {
                Some(now) if now > target => target = now,
                _ => return Ok(stored),
            }
        }
        let event = next_within(&mut stream, STALL).await.with_context(|| {
            format!(
                "the audit's read stopped after {} of {target} events",
                stored.ids.len()
            )
        })?;
        let seq = event.seq_no.unwrap_or(0);
        if seq != stored.last + 1 {
            stored.reorders += 1;
            if stored.notes.len() < NOTES {
                stored.notes.push(format!(
                    "audit read {seq} ({}) after {}",
                    event.id, stored.last
                ));
            }
        }
        stored.ids.insert(seq, event.id);
        stored.last = stored.last.max(seq);
    }
}

/// What the checks found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Ids whose append returned `Ok(n)` but that are not stored at `n`.
    pub(crate) lost: u64,
    /// Extra copies of ids stored more than once.
    pub(crate) duplicates: u64,
    /// Sequence numbers in 1..=last that hold no event, that the consumer
    /// never received, or at which it received another event than stored.
    pub(crate) gaps: u64,
    /// Indeterminate appends that are stored (allowed).
    pub(crate) recovered: u64,
    /// Stored ids that no writer appended.
    pub(crate) unknown: u64,
    pub(crate) notes: Vec<String>,
}

impl Findings {
    fn note(&mut self, note: String) {
        if self.notes.len() < NOTES {
            self.notes.push(note);
        }
    }
}

/// Compares the stored log with the writers' and the consumer's records.
pub(crate) fn check(appends: &Appends, stored: &Stored, consumed: &Consumed) -> Findings {
    let mut found = Findings::default();
    let mut seqs_of: HashMap<&str, Vec<SeqNo>> = HashMap::new();
    for (&seq, id) in &stored.ids {
        seqs_of.entry(id).or_default().push(seq);
    }
    for (id, seqs) in &seqs_of {
        if seqs.len() > 1 {
            found.duplicates += seqs.len() as u64 - 1;
            found.note(format!("{id} is stored at {seqs:?}"));
        }
        if !appends.ok.contains_key(*id) && !appends.indeterminate.contains(*id) {
            found.unknown += 1;
            found.note(format!("{id} at {seqs:?} was never appended"));
        }
    }
    let mut lost: Vec<(&String, SeqNo)> = appends
        .ok
        .iter()
        .filter(|(id, seq)| !seqs_of.get(id.as_str()).is_some_and(|s| s.contains(seq)))
        .map(|(id, seq)| (id, *seq))
        .collect();
    lost.sort_by_key(|(_, seq)| *seq);
    found.lost = lost.len() as u64;
    for (id, seq) in lost.into_iter().take(NOTES) {
        found.note(format!(
            "lost: append of {id} returned {seq}; stored at {:?}, {seq} holds {:?}",
            seqs_of.get(id.as_str()),
            stored.ids.get(&seq)
        ));
    }
    found.recovered = appends
        .indeterminate
        .iter()
        .filter(|id| seqs_of.contains_key(id.as_str()))
        .count() as u64;
    for seq in 1..=stored.last {
        let stored_id = stored.ids.get(&seq);
        let delivered = consumed.delivered.get(&seq);
        if stored_id.is_none() || delivered != stored_id {
            found.gaps += 1;
            found.note(format!(
                "{seq}: stored {stored_id:?}, the consumer received {delivered:?}"
            ));
        }
    }
    found
}
