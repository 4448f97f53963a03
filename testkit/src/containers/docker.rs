//! Containers through testcontainers, and the crash-safe cleanup it lacks.

use super::{Listen, TlsFiles};
use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use testcontainers::bollard::Docker;
use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
use testcontainers::core::{CmdWaitFor, ContainerPort, ExecCommand, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The label every container of the suite carries, so leftovers are easy to
/// find: `docker ps -a --filter label=eventlog-test`.
pub(crate) const LABEL: &str = "eventlog-test";

/// One broker container, removed when dropped, and in any case once this
/// process has exited (a watcher process sees to it, even after a crash or
/// for a container kept in a `static`, which is never dropped).
#[derive(Debug)]
pub struct Container {
    /// Behind a lock: testcontainers' container is `Send` but not `Sync`,
    /// and a test binary shares its broker from a `static`.
    container: tokio::sync::Mutex<ContainerAsync<GenericImage>>,
    id: String,
    port: u16,
    monitor_port: u16,
    /// How many times the container was started, to tell a fresh ready
    /// line in its logs from an old one.
    starts: AtomicUsize,
    /// The certificates (and data) directory mounted into the container.
    files: Option<TlsFiles>,
}

/// Two distinct TCP ports on 127.0.0.1 that nothing listens on right now.
fn free_ports() -> Result<(u16, u16)> {
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    );
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Whether containers use the host's network (`EVENTLOG_TEST_DOCKER_NETWORK=host`).
fn host_network() -> bool {
    std::env::var("EVENTLOG_TEST_DOCKER_NETWORK").is_ok_and(|n| n == "host")
}

/// `image` as testcontainers takes it: the name and the tag (`latest` when
/// none is given; a registry's port is not a tag).
fn image_parts(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

impl Container {
    /// Starts `image` running `command(port)` for the broker `name`, reachable
    /// at `127.0.0.1:port` on a free port: with host networking the broker
    /// listens there itself; otherwise the same port is published from the
    /// container, so the address survives a restart either way. `files`, if
    /// any, is mounted at the path given with it.
    pub(crate) async fn run(
        name: &str,
        image: &str,
        command: fn(&Listen) -> Vec<String>,
        env: fn(&Listen) -> Vec<(String, String)>,
        files: Option<(TlsFiles, &str)>,
    ) -> Result<Self> {
        let (image_name, tag) = image_parts(image);
        let mount = files
            .as_ref()
            .map(|(files, at)| Mount::bind_mount(files.dir().display().to_string(), *at));
        let files = files.map(|(files, _)| files);
        // Another process may take the free port before the broker binds it:
        // try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let (port, monitor_port) = free_ports()?;
            let bind = if host_network() {
                "127.0.0.1"
            } else {
                "0.0.0.0"
            };
            let listen = Listen {
                port,
                bind,
                monitor_port,
            };
            let mut request = GenericImage::new(image_name, tag)
                .with_cmd(command(&listen))
                .with_label(LABEL, name);
            for (key, value) in env(&listen) {
                request = request.with_env_var(key, value);
            }
            if let Some(mount) = &mount {
                request = request.with_mount(mount.clone());
            }
            request = if host_network() {
                request.with_network("host")
            } else {
                request
                    .with_mapped_port(port, ContainerPort::Tcp(port))
                    .with_mapped_port(monitor_port, ContainerPort::Tcp(monitor_port))
            };
            match request.start().await {
                Ok(container) => {
                    let container = Self {
                        id: container.id().to_owned(),
                        container: tokio::sync::Mutex::new(container),
                        port,
                        monitor_port,
                        starts: AtomicUsize::new(1),
                        files,
                    };
                    container.remove_when_process_exits()?;
                    return Ok(container);
                }
                Err(err) => last_error = Some(err),
            }
        }
        let err = last_error.expect("at least one attempt");
        Err(anyhow::Error::new(err).context(format!("starting a container of {image}")))
    }

    /// Runs `command` inside the running container, waits until it exits,
    /// and returns its output; an exit code other than 0 is an error. (The
    /// error cannot carry the command's standard error: testcontainers 0.28
    /// reads an exit code only through a future that is not `Send`.)
    pub async fn exec(&self, command: &[String]) -> Result<String> {
        let mut result = self
            .container
            .lock()
            .await
            .exec(
                ExecCommand::new(command.iter().cloned())
                    .with_cmd_ready_condition(CmdWaitFor::exit_code(0)),
            )
            .await
            .with_context(|| format!("running {command:?} in container {}", self.id))?;
        let stdout = result.stdout_to_vec().await?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
    }

    /// The certificates mounted into the container, for a broker spec with
    /// `files`.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    /// Takes the mounted directory away from the container, so it outlives
    /// it (for a second container on the same data).
    pub(crate) fn take_files(&mut self) -> Option<TlsFiles> {
        self.files.take()
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, where the broker listens.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<monitor port>`, for a broker that serves monitoring there.
    pub fn monitor_address(&self) -> String {
        format!("127.0.0.1:{}", self.monitor_port)
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s); the container and
    /// its data stay.
    pub async fn stop(&self) -> Result<()> {
        Ok(self
            .container
            .lock()
            .await
            .stop_with_timeout(Some(10))
            .await?)
    }

    /// Starts the stopped container again.
    pub async fn start(&self) -> Result<()> {
        self.container.lock().await.start().await?;
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// How many times the container was started.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Kills the broker process at once (SIGKILL, as `docker kill`): no
    /// shutdown, nothing flushed; its data stays. testcontainers has no
    /// kill (its stop sends SIGTERM first), so this asks the engine through
    /// the bollard client it re-exports.
    pub async fn kill(&self) -> Result<()> {
        let options = KillContainerOptionsBuilder::new().signal("KILL").build();
        Docker::connect_with_local_defaults()?
            .kill_container(self.id(), Some(options))
            .await
            .with_context(|| format!("killing container {}", self.id()))
    }

    /// Freezes every process of the container (SIGSTOP-like).
    pub async fn pause(&self) -> Result<()> {
        Ok(self.container.lock().await.pause().await?)
    }

    /// Thaws a paused container.
    pub async fn unpause(&self) -> Result<()> {
        Ok(self.container.lock().await.unpause().await?)
    }

    /// The container's logs (standard output and error, of every start), or
    /// their last `tail` lines.
    pub async fn logs(&self, tail: Option<usize>) -> String {
        let container = self.container.lock().await;
        let (stdout, stderr) = (
            container.stdout_to_vec().await,
            container.stderr_to_vec().await,
        );
        let logs = match (stdout, stderr) {
            (Ok(out), Ok(err)) => format!(
                "{}{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            ),
            (Err(err), _) | (_, Err(err)) => return format!("(no logs: {err})"),
        };
        match tail {
            None => logs,
            Some(n) => {
                let lines: Vec<&str> = logs.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
        }
    }

    /// Starts a small watcher process that removes the container (and its
    /// files) once this process has exited. testcontainers removes a
    /// container when its value is dropped, and after a crash only through
    /// Ryuk, a container from Docker Hub that no registry here serves; the
    /// watcher is a shell loop and the `docker` command line.
    fn remove_when_process_exits(&self) -> Result<()> {
        // The watcher runs in the background of a shell that exits at once,
        // so it is nobody's child to wait for.
        // A container kept in a `static` never drops its files either.
        let files = self
            .files
            .as_ref()
            .map(|files| format!("; rm -rf '{}'", files.dir().display()))
            .unwrap_or_default();
        let watcher = format!(
            "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
              docker rm --force --volumes {id} >/dev/null 2>&1{files}) >/dev/null 2>&1 &",
            pid = std::process::id(),
            id = self.id()
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &watcher])
            .stdin(Stdio::null())
            .status()
            .context("cannot start the container's watcher")?;
        if !status.success() {
            bail!("the container's watcher did not start: {status}");
        }
        Ok(())
    }
}
