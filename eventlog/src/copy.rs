//! Copying a log into another, on any backends.

use eventlog_core::{EventLog, Result, SeekPosition, SeqNo};
use futures::StreamExt;

/// What [`copy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// How many events were appended to the target.
    pub copied: u64,
    /// The source's sequence numbers copied, `None` when nothing was left.
    pub range: Option<(SeqNo, SeqNo)>,
}

/// Copies `source` into `target`, in order, keeping every event's id and
/// attributes: the events after `consumer`'s position on the source, up to
/// the source's last event when the copy starts.
///
/// It is resumable: each batch of up to `batch` events is appended to the
/// target, then acknowledged on the source, so a copy that is interrupted
/// and started again goes on after the last whole batch. A batch interrupted
/// between the two steps is appended again (at least once; a target that
/// deduplicates stores it once if the copy is resumed within its window,
/// as the events keep their `source` and `id`).
/// `progress(done, total)` is called after each batch.
pub async fn copy(
    source: &dyn EventLog,
    target: &dyn EventLog,
    consumer: &str,
    batch: usize,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<CopyReport> {
    let nothing = CopyReport {
        copied: 0,
        range: None,
    };
    let Some(end) = source.try_last_seq_no().await? else {
        return Ok(nothing);
    };
    let start = source.consumer_state(consumer).await?.next();
    if start > end {
        return Ok(nothing);
    }
    let total = end - start + 1;
    let mut events = source
        .subscribe(consumer, SeekPosition::LastAcknowledged)
        .await?;
    let (mut copied, mut next) = (0, start);
    // No larger than what there is to copy, whatever the caller asked.
    let batch = batch.clamp(1, usize::try_from(total).unwrap_or(usize::MAX));
    while next <= end {
        let mut chunk = Vec::with_capacity(batch);
        while chunk.len() < batch && next <= end {
            let Some(event) = events.next().await else {
                anyhow::bail!(
                    "the source subscription ended after {copied} events; see the log output"
                );
            };
            next = event.seq_no.unwrap_or(next) + 1;
            chunk.push(event);
        }
        let n = chunk.len() as u64;
        target.append_batch(chunk).await?;
        source.ack(consumer, next - 1).await?;
        copied += n;
        progress(copied, total);
    }
    Ok(CopyReport {
        copied,
        range: Some((start, end)),
    })
}
