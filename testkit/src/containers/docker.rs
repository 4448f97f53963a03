//! Containers through the `docker` command line.

use super::{Listen, TlsFiles};
use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::process::Command;

/// The label every container of the suite carries, so leftovers are easy to
/// find: `docker ps -a --filter label=eventlog-test`.
pub(crate) const LABEL: &str = "eventlog-test";

/// One broker container, removed when dropped, and in any case once this
/// process has exited (a watcher process sees to it, even after a crash or
/// for a container kept in a `static`, which is never dropped).
#[derive(Debug)]
pub struct Container {
    id: String,
    port: u16,
    monitor_port: u16,
    /// How many times the container was started, to tell a fresh ready
    /// line in its logs from an old one.
    starts: AtomicUsize,
    /// The certificates (and data) directory mounted into the container.
    files: Option<TlsFiles>,
}

/// Runs `docker args…` and returns its standard output.
async fn docker(args: &[&str]) -> Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run `docker`: is the Docker CLI installed?")?;
    if !output.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
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
        let mount = files
            .as_ref()
            .map(|(files, at)| format!("{}:{at}", files.dir().display()));
        let files = files.map(|(files, _)| files);
        // Another process may take the free port before the broker binds it:
        // try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let (port, monitor_port) = free_ports()?;
            let label = format!("{LABEL}={name}");
            let publish = format!("127.0.0.1:{port}:{port}");
            let publish_monitor = format!("127.0.0.1:{monitor_port}:{monitor_port}");
            let mut args = vec!["run", "--detach", "--label", &label];
            if let Some(mount) = &mount {
                args.extend(["--volume", mount]);
            }
            let bind = if host_network() {
                args.extend(["--network", "host"]);
                "127.0.0.1"
            } else {
                args.extend(["--publish", &publish, "--publish", &publish_monitor]);
                "0.0.0.0"
            };
            let listen = Listen {
                port,
                bind,
                monitor_port,
            };
            let env: Vec<String> = env(&listen)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            for variable in &env {
                args.extend(["--env", variable]);
            }
            args.push(image);
            let command = command(&listen);
            args.extend(command.iter().map(String::as_str));
            match docker(&args).await {
                Ok(id) => {
                    let container = Self {
                        id,
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
        Err(last_error.expect("at least one attempt"))
    }

    /// Runs `command` inside the running container and returns its output.
    pub async fn exec(&self, command: &[String]) -> Result<String> {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend(command.iter().map(String::as_str));
        docker(&args).await
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
        docker(&["stop", "--time", "10", &self.id]).await.map(drop)
    }

    /// Starts the stopped container again.
    pub async fn start(&self) -> Result<()> {
        docker(&["start", &self.id]).await?;
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// How many times the container was started.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Kills the broker process at once (`docker kill --signal KILL`): no
    /// shutdown, nothing flushed; its data stays.
    pub async fn kill(&self) -> Result<()> {
        docker(&["kill", "--signal", "KILL", &self.id])
            .await
            .map(drop)
    }

    /// Freezes every process of the container (SIGSTOP-like).
    pub async fn pause(&self) -> Result<()> {
        docker(&["pause", &self.id]).await.map(drop)
    }

    /// Thaws a paused container.
    pub async fn unpause(&self) -> Result<()> {
        docker(&["unpause", &self.id]).await.map(drop)
    }

    /// The container's logs (standard output and error), or their last
    /// `tail` lines.
    pub async fn logs(&self, tail: Option<usize>) -> String {
        let tail = tail.map_or("all".to_owned(), |n| n.to_string());
        match Command::new("docker")
            .args(["logs", "--tail", &tail, &self.id])
            .output()
            .await
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => format!("(no logs: {err})"),
        }
    }

    /// Starts a small watcher process that removes the container (and its
    /// files) once this process has exited.
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
            id = self.id
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

impl Drop for Container {
    fn drop(&mut self) {
        // Blocking is fine here: tests drop containers at their end.
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
