//! Fault injection: what a test may do to a broker of its own.

use anyhow::Result;
use async_trait::async_trait;

/// A broker a test owns and may take down, however it runs (a container, a
/// child process, a cluster node). The Docker provider is
/// `containers::OwnBroker`; a backend's fixture may bring its own.
#[async_trait]
pub trait Faults: Send + Sync {
    /// Where the broker listens (`host:port`); the same after a restart.
    fn address(&self) -> String;

    /// Stops the broker; its data stays.
    async fn stop(&self) -> Result<()>;

    /// Starts the stopped broker again, at the same address, and returns
    /// once it answers.
    async fn start(&self) -> Result<()>;

    /// Freezes the broker (as `docker pause`): connections stay open and
    /// nothing answers.
    async fn pause(&self) -> Result<()>;

    /// Thaws the paused broker.
    async fn unpause(&self) -> Result<()>;
}
