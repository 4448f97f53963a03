//! Brokers for the suite: a running one given by URL, or a container.
//!
//! For a broker named `redis`:
//!
//! * `EVENTLOG_TEST_REDIS_URL` set: the suite uses that running broker.
//! * otherwise the first test of the binary starts one container from
//!   `EVENTLOG_TEST_REDIS_IMAGE` (default: the pinned official image), shared
//!   by every test of the binary; unique log and consumer names keep the
//!   tests apart. The container is removed when the test binary exits.
//! * `EVENTLOG_TEST_DOCKER_NETWORK=host` runs containers with host networking
//!   on a free 127.0.0.1 port (what `scripts/test` uses); by default the
//!   container port is published on 127.0.0.1.
//!
//! The fault checks always get a container of their own ([`OwnBroker`], a
//! [`Faults`](crate::Faults) provider), which they stop, start and freeze;
//! they need Docker even when a URL is given.
//!
//! Containers run on testcontainers (`GenericImage` with the broker's
//! command, environment, mounts and host networking; stop, start, pause,
//! exec and logs through it). What it lacks is kept beside it: readiness
//! counts a ready line per start and probes the port (a wait condition on a
//! log line would take an old start's line after a restart), a kill goes
//! through the bollard client it re-exports, and a watcher process removes
//! the containers after a crash (testcontainers does that only through
//! Ryuk, an image no registry here serves). `docs/testing.md` says what was
//! measured on which engine.

mod brokers;
mod docker;
mod tls;

pub use brokers::{
    KAFKA, KAFKA_SASL, NATS, NATS_DEFAULTS, NATS_SECURE, PASSWORD, REDIS, REDIS_DEFAULTS,
    REDIS_SECURE, USER,
};
pub use docker::Container;
pub use tls::TlsFiles;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a broker may take to answer after its container starts.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Where a broker in a container listens.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Listen {
    /// The port, the same inside the container and on 127.0.0.1.
    pub port: u16,
    /// The address to bind: `127.0.0.1` with host networking (nothing but
    /// loopback may reach it), `0.0.0.0` inside a container whose port is
    /// published.
    pub bind: &'static str,
    /// A second free port, for a monitoring endpoint.
    pub monitor_port: u16,
}

/// A broker the suite can start, as its backend's test file describes it.
#[derive(Debug)]
pub struct BrokerSpec {
    /// The broker's name, upper-cased in environment variables:
    /// `EVENTLOG_TEST_<NAME>_URL`, `EVENTLOG_TEST_<NAME>_IMAGE`.
    pub name: &'static str,
    /// The image users with internet get: a pinned official tag.
    pub default_image: &'static str,
    /// The container's command line for a broker listening where `listen`
    /// says, with clients told to connect to `127.0.0.1:<port>`.
    pub command: fn(listen: &Listen) -> Vec<String>,
    /// The container's environment for a broker listening where `listen`
    /// says (brokers configured through variables, like Kafka's images).
    pub env: fn(listen: &Listen) -> Vec<(String, String)>,
    /// What the broker logs once it serves clients, after each start: any
    /// one of these (images of one broker may differ).
    pub ready_logs: &'static [&'static str],
    /// Where the container sees a fresh [`TlsFiles`] directory, for a broker
    /// that serves TLS or keeps data beside its certificates.
    pub files: Option<&'static str>,
    /// A configuration file for the broker, written as `broker.conf` into
    /// the files directory (so `files` must be set), for settings that
    /// have no command-line option.
    pub config: Option<&'static str>,
    /// A first run that provisions the broker before the real one starts.
    pub prepare: Option<Prepare>,
}

/// Provisioning a broker that only takes it while unsecured: a first
/// container runs `command` on the same files and environment, `exec` runs
/// inside it once it is ready, and then it is removed.
#[derive(Debug, Clone, Copy)]
pub struct Prepare {
    /// The first container's command line.
    pub command: fn(listen: &Listen) -> Vec<String>,
    /// What to run inside it, given the port it listens on.
    pub exec: fn(port: u16) -> Vec<String>,
}

impl BrokerSpec {
    fn env(&self, what: &str) -> String {
        format!("EVENTLOG_TEST_{}_{what}", self.name.to_uppercase())
    }

    /// The URL of the running broker the caller gave, if any.
    pub fn given_url(&self) -> Option<String> {
        std::env::var(self.env("URL"))
            .ok()
            .filter(|url| !url.is_empty())
    }

    fn image(&self) -> String {
        std::env::var(self.env("IMAGE"))
            .ok()
            .filter(|image| !image.is_empty())
            .unwrap_or_else(|| self.default_image.to_owned())
    }

    /// What to tell someone whose suite found no broker.
    fn how_to_provide(&self) -> String {
        format!(
            "the {name} suite needs a {name} broker: set {url} to the URL of a running one, \
             or make Docker available (`scripts/test` installs and starts it on Debian, and \
             builds a local image; {image} names the image to run)",
            name = self.name,
            url = self.env("URL"),
            image = self.env("IMAGE"),
        )
    }

    /// Starts a container of this broker and waits until it serves.
    pub async fn start_container(&'static self) -> Result<Container> {
        let mut files = match self.files {
            Some(at) => Some((TlsFiles::generate()?, at)),
            None => None,
        };
        if let Some(config) = self.config {
            let (dir, _) = files
                .as_ref()
                .with_context(|| format!("{}: a config file needs `files`", self.name))?;
            std::fs::write(dir.dir().join("broker.conf"), config)?;
        }
        if let Some(prepare) = self.prepare {
            let mut first = self.run(prepare.command, files).await?;
            first.exec(&(prepare.exec)(first.port())).await?;
            first.stop().await?;
            files = first.take_files().zip(self.files);
        }
        self.run(self.command, files).await
    }

    async fn run(
        &self,
        command: fn(&Listen) -> Vec<String>,
        files: Option<(TlsFiles, &str)>,
    ) -> Result<Container> {
        let container = Container::run(self.name, &self.image(), command, self.env, files)
            .await
            .with_context(|| self.how_to_provide())?;
        self.wait_ready(&container).await?;
        Ok(container)
    }

    /// Waits until the broker in `container` has logged its ready line once
    /// per start (an old start's line, or one a first-time setup printed,
    /// does not count twice) and accepts TCP connections on its port, or
    /// fails with its logs.
    pub async fn wait_ready(&self, container: &Container) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let logs = container.logs(None).await;
            let logged = self
                .ready_logs
                .iter()
                .any(|line| logs.matches(line).count() >= container.starts());
            if logged
                && tokio::net::TcpStream::connect(container.address())
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} in container {} did not log any of {:?} and accept connections on {} within {READY_WITHIN:?}; its last log lines:\n{}",
                    self.name,
                    container.id(),
                    self.ready_logs,
                    container.address(),
                    container.logs(Some(40)).await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The broker shared by every test of one test binary.
#[derive(Debug)]
pub enum SharedBroker {
    /// A running broker given by URL.
    Url(String),
    /// A container started for this test binary.
    Container(Box<Container>),
}

impl SharedBroker {
    /// The broker given by `EVENTLOG_TEST_<NAME>_URL`, or a new container
    /// removed when this process exits.
    pub async fn start(spec: &'static BrokerSpec) -> Result<Self> {
        match spec.given_url() {
            Some(url) => Ok(Self::Url(url)),
            None => Self::container(spec).await,
        }
    }

    /// A new container of `spec` even when a URL is given (a secured broker
    /// the suite configures itself).
    pub async fn container(spec: &'static BrokerSpec) -> Result<Self> {
        Ok(Self::Container(Box::new(spec.start_container().await?)))
    }

    /// The container of a secured broker kept in `cell`, started by the
    /// first test of the binary that asks (see [`container`](Self::container)).
    pub async fn secured(
        cell: &'static OnceCell<SharedBroker>,
        spec: &'static BrokerSpec,
    ) -> Result<&'static Container> {
        match cell.get_or_try_init(|| Self::container(spec)).await? {
            Self::Container(c) => Ok(c),
            Self::Url(_) => bail!("{} is always a container of the suite's own", spec.name),
        }
    }

    /// `127.0.0.1:<monitor port>` of the container; `None` for a broker given
    /// by URL.
    pub fn monitor_address(&self) -> Option<String> {
        match self {
            Self::Url(_) => None,
            Self::Container(c) => Some(c.monitor_address()),
        }
    }

    /// The URL of the broker: the given one, or `{scheme}://127.0.0.1:port`.
    pub fn url(&self, scheme: &str) -> String {
        match self {
            Self::Url(url) => url.clone(),
            Self::Container(c) => format!("{scheme}://{}", c.address()),
        }
    }
}

/// A broker container of one test's own, which the fault checks stop,
/// start and freeze.
#[derive(Debug)]
pub struct OwnBroker {
    spec: &'static BrokerSpec,
    container: Container,
}

impl OwnBroker {
    /// Starts a container of `spec`.
    pub async fn start(spec: &'static BrokerSpec) -> Result<Self> {
        Ok(Self {
            spec,
            container: spec.start_container().await?,
        })
    }
}

#[async_trait]
impl crate::Faults for OwnBroker {
    fn address(&self) -> String {
        self.container.address()
    }

    async fn stop(&self) -> Result<()> {
        self.container.stop().await
    }

    async fn start(&self) -> Result<()> {
        self.container.start().await?;
        self.spec.wait_ready(&self.container).await
    }

    async fn pause(&self) -> Result<()> {
        self.container.pause().await
    }

    async fn unpause(&self) -> Result<()> {
        self.container.unpause().await
    }
}
