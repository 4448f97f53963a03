//! The EventLog contract (`docs/contract.md` in the repository) as tests.
//!
//! Each clause is a `pub async fn` in [`clauses`], named after it
//! (`c08_latest_sees_only_new_events`) and documented with the clause's text.
//! A backend's test file implements [`Fixture`] (and [`Broker`] for a real
//! broker) and instantiates every clause with [`contract_tests!`], so each
//! shows up by name in `cargo test` and `cargo test -p eventlog-redis c19`
//! runs one.
//!
//! The clauses never assume an empty broker: every test opens logs and
//! consumers with unique names, so all of them run in parallel on one broker.
//! Waiting is always "poll until a deadline", never a fixed sleep.
//!
//! [`harness`] gives the broker suites their broker: a running one named by
//! URL, or a container.

pub mod clauses;
mod fixture;
pub mod harness;
mod macros;
pub mod reliability;
pub mod security;
pub mod strategies;
pub mod support;

pub use fixture::{Broker, FaultyBroker, Fixture};

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
