//! The EventLog contract (`docs/contract.md` in the repository) as tests.
//!
//! Each clause is a `pub async fn` in [`clauses`], named after it
//! (`c08_latest_sees_only_new_events`) and documented with the clause's text.
//! A backend's test file implements [`Fixture`] (and [`Broker`] for a real
//! broker) and instantiates every clause with [`contract_tests!`], so each
//! shows up by name in `cargo test` and `cargo test -p eventlog-redis c19`
//! runs one. A backend that lacks something the suite can check names it
//! ([`Feature`]); the clauses that need it are then generated as ignored
//! tests that say why, never dropped. What a backend's
//! [`Capabilities`](eventlog_core::Capabilities) say it lacks is checked too:
//! those clauses assert the documented refusal instead.
//!
//! The clauses never assume an empty broker: every test opens logs and
//! consumers with unique names, so all of them run in parallel on one broker.
//! Waiting is always "poll until a deadline" ([`Timings`]), never a fixed
//! sleep.
//!
//! `docs/writing-a-backend.md` in the repository walks a backend author
//! through it; `eventlog-testkit` gives brokers in containers.

pub mod clauses;
mod features;
mod fixture;
mod macros;
pub mod reliability;
pub mod security;
pub mod strategies;
pub mod support;
mod timings;

#[doc(hidden)]
pub use features::__named as __feature;
pub use features::Feature;
pub use fixture::{Broker, FaultyBroker, Fixture, Opener};
pub use testkit::Faults;
pub use timings::{Timings, timings};

/// The error type of the fixture traits and the clauses, re-exported so a
/// backend's test crate needs no dependency of its own for it.
pub use anyhow;
/// The attribute the fixture traits are implemented with, re-exported for
/// the same reason.
pub use async_trait::async_trait;

#[doc(hidden)]
pub use anyhow as __anyhow;

/// Runs one generated test on a runtime of its own, two worker threads,
/// as `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` would:
/// the generated tests need no tokio of the backend's own.
#[doc(hidden)]
pub fn __run(test: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(test)
}

/// Makes `fixture`'s [`Timings`] those of this test binary, and shows the
/// library's warnings (reconnects, outages) in the output of a test that
/// fails: `EVENTLOG_TEST_LOG` is a `tracing` filter, `warn` by default.
#[doc(hidden)]
pub fn __adopt_timings(fixture: &dyn Fixture) {
    timings::adopt(|| fixture.timings());
    static LOG: std::sync::Once = std::sync::Once::new();
    LOG.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTLOG_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // A binary that installed its own subscriber keeps it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}
