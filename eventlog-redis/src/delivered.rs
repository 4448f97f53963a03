//! What this handle's subscriptions have read and not yet acknowledged, so
//! that acknowledging it is one plain `XACK` rather than the ACK script.
//!
//! The script has to ask the server which entries are pending up to `n`
//! (`XPENDING`) before it acknowledges them; a subscription of this handle
//! already knows: acks are cumulative and one consumer has one reader, so
//! the group's pending entries are exactly the ones it read after the last
//! acknowledged one. When the server disagrees (`XACK` acknowledges fewer
//! entries than expected: another process moved the group), the script
//! decides, as it does for everything this handle did not read itself.

use eventlog_core::SeqNo;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// The most entry ids one `XACK` names; more go through the script.
const MAX_IDS: SeqNo = 1000;

/// Per consumer read by a live subscription of this handle: the entries
/// `acked + 1 ..= read` are the group's pending entries.
#[derive(Debug, Default)]
pub(crate) struct Delivered(Mutex<HashMap<String, Window>>);

#[derive(Debug, Clone, Copy)]
struct Window {
    acked: SeqNo,
    read: SeqNo,
}

impl Delivered {
    /// A subscription of `consumer` read the entries `first..=last`.
    ///
    /// Only the first read of a subscription (`opening`) starts a window:
    /// it starts at the group's oldest pending entry (or, with none
    /// pending, just after its last delivered one), so everything before
    /// `first` is acknowledged. A later read says nothing of the entries
    /// before it, so once a window is forgotten (an `XACK` that found less
    /// pending than expected) that subscription's acks go through the
    /// script.
    pub(crate) fn read(&self, consumer: &str, first: SeqNo, last: SeqNo, opening: bool) {
        let mut windows = self.0.lock().expect("delivered lock poisoned");
        match windows.get_mut(consumer) {
            Some(window) => window.read = window.read.max(last),
            None if opening => {
                windows.insert(
                    consumer.to_owned(),
                    Window {
                        acked: first - 1,
                        read: last,
                    },
                );
            }
            None => {}
        }
    }

    /// The entries a cumulative ack of `n` acknowledges, when this handle
    /// read all of them and they are few enough for one `XACK`.
    pub(crate) fn pending_up_to(&self, consumer: &str, n: SeqNo) -> Option<RangeInclusive<SeqNo>> {
        let windows = self.0.lock().expect("delivered lock poisoned");
        let window = windows.get(consumer)?;
        (window.acked < n && n <= window.read && n - window.acked <= MAX_IDS)
            .then(|| window.acked + 1..=n)
    }

    /// Everything up to `n` of `consumer` is acknowledged.
    pub(crate) fn acked(&self, consumer: &str, n: SeqNo) {
        let mut windows = self.0.lock().expect("delivered lock poisoned");
        if let Some(window) = windows.get_mut(consumer) {
            window.acked = window.acked.max(n);
        }
    }

    /// Forgets `consumer`: its group moved (seek, a new subscription) or its
    /// subscription ended.
    pub(crate) fn forget(&self, consumer: &str) {
        self.0
            .lock()
            .expect("delivered lock poisoned")
            .remove(consumer);
    }
}
