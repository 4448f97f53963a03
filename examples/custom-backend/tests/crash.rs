//! What a crash mid-append leaves: a record with no index entry, which the
//! next append cuts off.

use eventlog_core::{EventEnvelope, EventLog, SeekPosition};
use eventlog_file::FileEventLog;
use futures::StreamExt;
use std::io::Write;

#[tokio::test]
async fn a_record_without_an_index_entry_is_cut_off_by_the_next_append()
-> eventlog_conformance::anyhow::Result<()> {
    let root = std::env::temp_dir().join(eventlog_conformance::support::unique("eventlog-file"));
    let log = FileEventLog::open(&root, "orders")?;
    log.append(EventEnvelope::new("/test", "first", b"1".to_vec()))
        .await?;
    // A crash after writing a record's bytes, before its index entry.
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("orders/events"))?
        .write_all(b"\x40\x00\x00\x00{\"torn")?;
    assert_eq!(
        log.try_last_seq_no().await?,
        Some(1),
        "a torn record is no event"
    );

    let second = log
        .append(EventEnvelope::new("/test", "second", b"2".to_vec()))
        .await?;
    assert_eq!(second, 2);
    let mut stream = log.subscribe("reader", SeekPosition::Beginning).await?;
    let mut types = Vec::new();
    for _ in 0..2 {
        let event = stream.next().await.expect("the stream goes on");
        types.push((event.seq_no, event.event_type));
    }
    assert_eq!(
        types,
        [
            (Some(1), "first".to_owned()),
            (Some(2), "second".to_owned())
        ]
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
