//! How long the suite waits: deadlines and recovery bounds, configurable for
//! a slow broker or machine.

use std::sync::OnceLock;
use std::time::Duration;

/// The suite's timings. The defaults are the contract's numbers (C13's
/// 2 s) and bounds that hold for the workspace's brokers in containers on a
/// two-core machine; a fixture whose broker is slower returns longer ones
/// from [`Fixture::timings`](crate::Fixture::timings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// How long the suite waits for something that should happen soon: an
    /// event, a position, a report (default 15 s).
    pub deadline: Duration,
    /// The operation timeout of the handles the fault checks open on a
    /// broker they stop or freeze (default 3 s).
    pub fault_timeout: Duration,
    /// How much later than its timeout a failed operation may return
    /// (default 2 s).
    pub slack: Duration,
    /// How long a restarted broker may take to be reconnected to and serve
    /// again (default 60 s).
    pub recovery: Duration,
    /// How soon an event appended while subscribers wait reaches them, C13
    /// (default 2 s).
    pub prompt: Duration,
    /// How soon a new subscription gets the events a dead consumer left
    /// unacknowledged, C27: no broker-side ack timeout may stand between
    /// (default 5 s).
    pub redelivery: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(15),
            fault_timeout: Duration::from_secs(3),
            slack: Duration::from_secs(2),
            recovery: Duration::from_secs(60),
            prompt: Duration::from_secs(2),
            redelivery: Duration::from_secs(5),
        }
    }
}

impl Timings {
    /// The same, waiting up to `deadline` for what should happen soon.
    pub fn with_deadline(self, deadline: Duration) -> Self {
        Self { deadline, ..self }
    }

    /// The same, with `timeout` for the handles of the fault checks.
    pub fn with_fault_timeout(self, fault_timeout: Duration) -> Self {
        Self {
            fault_timeout,
            ..self
        }
    }

    /// The same, letting a failed operation return up to `slack` after its
    /// timeout.
    pub fn with_slack(self, slack: Duration) -> Self {
        Self { slack, ..self }
    }

    /// The same, giving a restarted broker up to `recovery`.
    pub fn with_recovery(self, recovery: Duration) -> Self {
        Self { recovery, ..self }
    }

    /// The same, allowing C13's delivery up to `prompt`.
    pub fn with_prompt(self, prompt: Duration) -> Self {
        Self { prompt, ..self }
    }

    /// The same, allowing C27's redelivery up to `redelivery`.
    pub fn with_redelivery(self, redelivery: Duration) -> Self {
        Self { redelivery, ..self }
    }
}

static TIMINGS: OnceLock<Timings> = OnceLock::new();

/// The timings of this test binary: those of the first fixture a generated
/// test ran with (one fixture per binary is the rule), or the defaults for
/// a clause called directly.
pub fn timings() -> Timings {
    *TIMINGS.get_or_init(Timings::default)
}

/// Makes `fixture`'s timings this binary's, unless a test already ran.
pub(crate) fn adopt(timings: impl FnOnce() -> Timings) {
    TIMINGS.get_or_init(timings);
}
