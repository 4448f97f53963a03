//! How a subscription shares its consumer and its events: options of
//! [`subscribe_with`](crate::EventLog::subscribe_with).

use crate::Member;
use std::time::Duration;

/// How long a holder that stopped renewing (its process died or froze)
/// keeps an exclusive consumer before a standby may take over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// What an exclusive subscription does when another reader holds its
/// consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenBusy {
    /// Wait as a standby, delivering nothing, and take over once the
    /// holder's subscription is dropped (at once) or its lease runs out
    /// (within the lease), from the consumer's acknowledged position.
    #[default]
    Standby,
    /// Fail at once with [`ConsumerBusy`](crate::EventLogError::ConsumerBusy).
    Refuse,
}

/// Options of [`subscribe_with`](crate::EventLog::subscribe_with).
///
/// ```
/// use eventlog_core::{Member, SubscribeOptions, WhenBusy};
/// use std::time::Duration;
/// // Member 0 of 3 of its consumer, exclusive with a 10 s lease.
/// let options = SubscribeOptions::exclusive(WhenBusy::Standby)
///     .with_lease(Duration::from_secs(10))
///     .with_member(Member::new(0, 3));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// `Some`: the subscription holds its consumer alone, and acks and
    /// seeks of the consumer through other handles are refused while it
    /// does (fencing). `None` (the default): readers of one consumer are
    /// not coordinated.
    pub exclusive: Option<WhenBusy>,
    /// How long the subscription holds its consumer without renewing;
    /// it renews every third of it (default [`DEFAULT_LEASE`]).
    pub lease: Duration,
    /// `Some`: the subscription is one member of a partitioned consumer,
    /// and receives only its share of the events ([`Member`]).
    pub member: Option<Member>,
    /// Where `LastAcknowledged` starts a consumer with no stored position
    /// instead of the beginning: a new member of a resized consumer starts
    /// at the lowest position of the old ones. Decided when the
    /// subscription opens (for an exclusive one, once it holds the lease),
    /// so a standby never rewinds what its predecessor acknowledged.
    pub(crate) start_if_new: Option<crate::SeqNo>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            exclusive: None,
            lease: DEFAULT_LEASE,
            member: None,
            start_if_new: None,
        }
    }
}

impl SubscribeOptions {
    /// No coordination between readers: what
    /// [`subscribe`](crate::EventLog::subscribe) does.
    pub fn new() -> Self {
        Self::default()
    }

    /// An exclusive subscription that does `when_busy` while another reader
    /// holds the consumer.
    pub fn exclusive(when_busy: WhenBusy) -> Self {
        Self {
            exclusive: Some(when_busy),
            ..Self::default()
        }
    }

    /// The same, holding the consumer for `lease` without renewing.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The same, as `member` of a partitioned consumer.
    pub fn with_member(mut self, member: Member) -> Self {
        self.member = Some(member);
        self
    }
}
