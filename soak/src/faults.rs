//! The fault task: broker restarts and pauses at fixed fractions of the
//! event count, so each one hits live traffic.

use crate::writers::Progress;
use anyhow::{Context, Result};
use conformance::harness::{BrokerSpec, Container};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How much longer than the operation timeout a pause lasts, so calls in
/// flight time out and their outcome is indeterminate.
pub(crate) const PAUSE_PAST_TIMEOUT: Duration = Duration::from_secs(3);

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `docker stop` (SIGTERM, SIGKILL after 10 s), then `docker start`,
    /// until the broker logs that it is ready.
    Restart,
    /// `docker pause` (the cgroup freezer: SIGSTOP-like) for the operation
    /// timeout plus [`PAUSE_PAST_TIMEOUT`].
    Pause,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Restart => "restart",
            Self::Pause => "pause",
        })
    }
}

/// `restarts` restarts and `pauses` pauses, the pauses spread evenly
/// among the restarts (5 and 2: R R R P R R P).
pub(crate) fn schedule(restarts: usize, pauses: usize) -> Vec<Fault> {
    let total = restarts + pauses;
    (0..total)
        .map(|i| {
            if (i + 1) * pauses / total > i * pauses / total {
                Fault::Pause
            } else {
                Fault::Restart
            }
        })
        .collect()
}

/// The faults that were injected.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Injected {
    pub(crate) restarts: usize,
    pub(crate) pauses: usize,
}

/// Injects the faults of `schedule` into the broker in `container`, the
/// `i`th once `(i + 1) / (len + 1)` of the events are stored; a pause lasts
/// `hold`.
///
/// Waiting for the writers has no deadline of its own: a writer that sees
/// no append succeed for [`STALL`](crate::run::STALL) fails the run, which
/// drops this task.
pub(crate) async fn run(
    spec: &BrokerSpec,
    container: &Container,
    schedule: &[Fault],
    hold: Duration,
    progress: &Progress,
) -> Result<Injected> {
    let mut injected = Injected::default();
    let slots = schedule.len() as u64 + 1;
    for (i, &fault) in schedule.iter().enumerate() {
        let at = progress.total * (i as u64 + 1) / slots;
        progress.until_appended(at).await;
        let (started, stored) = (Instant::now(), progress.appended());
        match fault {
            Fault::Restart => {
                container.stop().await?;
                container.start().await?;
                spec.wait_ready(container).await?;
                injected.restarts += 1;
            }
            Fault::Pause => {
                container.pause().await?;
                // The fault's length, not a wait for something to happen.
                tokio::time::sleep(hold).await;
                container
                    .unpause()
                    .await
                    .context("the broker stays paused")?;
                injected.pauses += 1;
            }
        }
        eprintln!(
            "   fault {}/{}: {fault} at {stored} stored appends, {:.1?}",
            i + 1,
            schedule.len(),
            started.elapsed()
        );
        progress.faults_ended.send_replace(i + 1);
    }
    Ok(injected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fault::{Pause as P, Restart as R};

    #[test]
    fn pauses_are_spread_among_restarts() {
        assert_eq!(schedule(5, 2), [R, R, R, P, R, R, P]);
        assert_eq!(schedule(2, 1), [R, R, P]);
        assert_eq!(schedule(0, 2), [P, P]);
        assert_eq!(schedule(3, 0), [R, R, R]);
        assert!(schedule(0, 0).is_empty());
    }
}
