//! Test brokers and test helpers for eventlog backends.
//!
//! * [`wait`]: unique names and waiting with a deadline (never a fixed
//!   sleep), for any test of an event log.
//! * [`Faults`]: the small trait through which a test stops, starts, pauses
//!   and thaws a broker of its own, however it runs.
//! * `containers` (feature `containers`, on by default): Redis, NATS and
//!   Kafka in Docker containers from their official images or locally built
//!   ones, with readiness, TLS fixtures and secured recipes, and a
//!   container as a [`Faults`] provider.
//!
//! `eventlog-conformance` (the contract suite) uses [`wait`] and [`Faults`];
//! the workspace's backend suites, benchmarks and soak use the containers.

#[cfg(feature = "containers")]
pub mod containers;
mod faults;
pub mod wait;

pub use faults::Faults;
