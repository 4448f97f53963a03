//! The fault task: broker restarts and pauses at fixed fractions of the
//! event count, so each one hits live traffic.

use crate::writers::Progress;
use anyhow::{Context, Result};
use std::fmt;
use std::time::Duration;
use testkit::containers::{BrokerSpec, Container};
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
    /// `docker kill --signal KILL` (no shutdown, nothing flushed), then
    /// `docker start`, until the broker logs that it is ready.
    Kill,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Restart => "restart",
            Self::Pause => "pause",
            Self::Kill => "kill",
        })
    }
}

/// `restarts` restarts, `pauses` pauses and `kills` kills: the pauses
/// spread evenly among the rest (5 and 2: R R R P R R P), then the kills
/// evenly among the restart slots (4 restarts, 2 pauses, 1 kill:
/// R R R P R K P).
pub(crate) fn schedule(restarts: usize, pauses: usize, kills: usize) -> Vec<Fault> {
    let spread = |n: usize, among: usize, i: usize| (i + 1) * n / among > i * n / among;
    let (stops, total) = (restarts + kills, restarts + kills + pauses);
    let mut stop = 0;
    (0..total)
        .map(|i| {
            if spread(pauses, total, i) {
                return Fault::Pause;
            }
            stop += 1;
            if spread(kills, stops, stop - 1) {
                Fault::Kill
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
    pub(crate) kills: usize,
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
            Fault::Kill => {
                container.kill().await?;
                container.start().await?;
                spec.wait_ready(container).await?;
                injected.kills += 1;
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
    use Fault::{Kill as K, Pause as P, Restart as R};

    #[test]
    fn faults_are_spread_evenly() {
        assert_eq!(schedule(5, 2, 0), [R, R, R, P, R, R, P]);
        assert_eq!(schedule(2, 1, 0), [R, R, P]);
        assert_eq!(schedule(0, 2, 0), [P, P]);
        assert_eq!(schedule(3, 0, 0), [R, R, R]);
        assert!(schedule(0, 0, 0).is_empty());
        assert_eq!(schedule(4, 2, 1), [R, R, R, P, R, K, P]);
        assert_eq!(schedule(0, 0, 2), [K, K]);
        assert_eq!(schedule(2, 1, 2), [R, K, R, K, P]);
    }
}
