//! What an append may ask for and what it reports: conditions on the log's
//! last event, and whether an event was stored or was already there.

use crate::SeqNo;
use std::fmt;
use std::time::Duration;

/// How long a log remembers the (`source`, `id`) of the events it stored,
/// unless configured otherwise: 2 minutes, JetStream's default.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// What an append expects the log's last sequence number to be when it
/// stores: optimistic concurrency, as KurrentDB's expected version or
/// JetStream's `Nats-Expected-Last-Sequence`.
///
/// On a mismatch nothing is stored and the append fails with
/// [`EventLogError::Conflict`](crate::EventLogError::Conflict), which
/// carries the actual last number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ExpectedLast {
    /// No condition: the append stores wherever the log ends.
    #[default]
    Any,
    /// The log holds no event yet.
    Empty,
    /// The log's last event is exactly this one (1 or more).
    SeqNo(SeqNo),
}

impl ExpectedLast {
    /// The condition that the log's last event is `last`: `Empty` for
    /// `None`, as [`try_last_seq_no`](crate::EventLog::try_last_seq_no)
    /// answers.
    pub fn at(last: Option<SeqNo>) -> Self {
        last.map_or(Self::Empty, Self::SeqNo)
    }

    /// Whether a log whose last sequence number is `last` (0 when empty)
    /// meets the condition.
    pub fn holds_for(self, last: SeqNo) -> bool {
        match self {
            Self::Any => true,
            Self::Empty => last == 0,
            Self::SeqNo(n) => last == n,
        }
    }

    /// `Ok` if a log whose last sequence number is `last` (0 when empty)
    /// meets the condition, the [`Conflict`](crate::EventLogError::Conflict)
    /// otherwise.
    pub fn check(self, last: SeqNo) -> Result<(), crate::EventLogError> {
        if self.holds_for(last) {
            return Ok(());
        }
        Err(crate::EventLogError::conflict(self, last))
    }

    /// The expected last sequence number, 0 for an empty log; `None` for
    /// no condition.
    pub fn as_last(self) -> Option<SeqNo> {
        match self {
            Self::Any => None,
            Self::Empty => Some(0),
            Self::SeqNo(n) => Some(n),
        }
    }
}

impl fmt::Display for ExpectedLast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any position"),
            Self::Empty => f.write_str("an empty log"),
            Self::SeqNo(n) => write!(f, "last event {n}"),
        }
    }
}

/// How [`append_with`](crate::EventLog::append_with) and
/// [`append_batch_with`](crate::EventLog::append_batch_with) append.
///
/// ```
/// use eventlog_core::{AppendOptions, ExpectedLast};
/// let options = AppendOptions::new().expect(ExpectedLast::SeqNo(41));
/// assert_eq!(options.expected, ExpectedLast::SeqNo(41));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AppendOptions {
    /// The condition on the log's last event (default: none).
    pub expected: ExpectedLast,
}

impl AppendOptions {
    /// No condition: as [`append`](crate::EventLog::append).
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores only if the log's last event is as `expected`.
    pub fn expect(mut self, expected: ExpectedLast) -> Self {
        self.expected = expected;
        self
    }
}

/// What an append did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Appended {
    /// The event was stored under this sequence number.
    Stored(SeqNo),
    /// The log already held an event with the same `source` and `id` from
    /// within its deduplication window (or earlier in the same batch):
    /// nothing was stored, and this is that event's sequence number.
    Duplicate(SeqNo),
}

impl Appended {
    /// The event's sequence number, stored now or before.
    pub fn seq_no(self) -> SeqNo {
        match self {
            Self::Stored(n) | Self::Duplicate(n) => n,
        }
    }

    /// Whether the event was already there.
    pub fn is_duplicate(self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_hold_for_the_right_last_number() {
        assert!(ExpectedLast::Any.holds_for(7));
        assert!(ExpectedLast::Empty.holds_for(0));
        assert!(!ExpectedLast::Empty.holds_for(1));
        assert!(ExpectedLast::SeqNo(3).holds_for(3));
        assert!(!ExpectedLast::SeqNo(3).holds_for(4));
        assert_eq!(ExpectedLast::at(None), ExpectedLast::Empty);
        assert_eq!(ExpectedLast::at(Some(5)), ExpectedLast::SeqNo(5));
    }

    #[test]
    fn outcomes_carry_their_number() {
        assert_eq!(Appended::Stored(4).seq_no(), 4);
        assert!(Appended::Duplicate(4).is_duplicate());
        assert!(!Appended::Stored(4).is_duplicate());
    }
}
