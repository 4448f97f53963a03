//! TLS, authentication and secret hygiene, against a broker that requires
//! them (issue 8). Not contract clauses: the contract says nothing of
//! security, but every broker backend must pass these.
//!
//! A backend's `tests/security.rs` implements [`Secured`] over a broker from
//! `eventlog_testkit::containers` (`REDIS_SECURE`, `NATS_SECURE`, `KAFKA_SASL`)
//! and instantiates the checks with [`security_tests!`](crate::security_tests).

use crate::support::{append_n, take, unique};
use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use eventlog_core::{EventLog, EventLogError, SeekPosition};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// The operation timeout of the handles the checks open.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How much later than [`TIMEOUT`] a refusal may come: a connect may take
/// a few bounded steps.
const SLACK: Duration = Duration::from_secs(10);

/// How a check opens a log on the secured broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Access {
    /// TLS trusting the test CA (where the broker serves TLS) and the test
    /// user with the right password.
    Granted,
    /// As `Granted`, but with this password.
    WrongPassword(String),
    /// As `Granted`, but with no credentials at all.
    Anonymous,
    /// The right credentials, in plain text, to the TLS endpoint.
    PlainText,
    /// The right credentials, over TLS trusting a CA that did not sign the
    /// broker's certificate.
    UntrustedCa,
}

/// A backend on a broker that requires authentication (and TLS, where the
/// test broker serves it).
#[async_trait]
pub trait Secured: Send + Sync + 'static {
    /// Opens `log` the way `access` says, every operation bounded by
    /// `timeout`.
    async fn open(&self, log: &str, access: Access, timeout: Duration)
    -> Result<Arc<dyn EventLog>>;

    /// Every configuration value of the backend that can hold a secret,
    /// built with `canary` in each secret field (passwords, tokens, keys,
    /// secret client properties, a URL's password), rendered with `Debug`
    /// and, where the type has it, `Display`.
    fn rendered_configs(&self, canary: &str) -> Result<Vec<String>>;

    /// Whether the broker tells a client without credentials why it is
    /// refused. A Kafka listener that requires SASL just closes the
    /// connection of a client that does not start it, so the client sees a
    /// broker that never answers: a `Timeout`, not `Unauthorized`.
    fn names_missing_credentials(&self) -> bool {
        true
    }
}

/// Opens `log` with `access`, expecting a typed refusal within the bound.
async fn refused(fx: &dyn Secured, access: Access) -> Result<EventLogError> {
    let log = unique("refused");
    let start = Instant::now();
    let outcome = tokio::time::timeout(TIMEOUT + SLACK * 2, async {
        let handle = fx.open(&log, access.clone(), TIMEOUT).await?;
        // A backend that connects lazily refuses at the first operation.
        handle.append(crate::support::event(0)).await
    })
    .await;
    let took = start.elapsed();
    let err = match outcome {
        Err(_) => bail!("{access:?}: no answer within {took:?} (timeout {TIMEOUT:?})"),
        Ok(Ok(seq)) => bail!("{access:?}: the broker took an append ({seq}); it must refuse"),
        Ok(Err(err)) => err,
    };
    ensure!(
        took <= TIMEOUT + SLACK,
        "{access:?}: refused only after {took:?} (timeout {TIMEOUT:?}): {err:#}"
    );
    match err.downcast::<EventLogError>() {
        Ok(typed) => Ok(typed),
        Err(err) => bail!("{access:?}: expected a typed EventLogError, got {err:#}"),
    }
}

/// The test user over TLS (where the broker serves it) appends, reads and
/// acknowledges like on an open broker.
pub async fn s01_tls_and_credentials_grant_access(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    let name = unique("s01");
    let log = fx.open(&name, Access::Granted, TIMEOUT).await?;
    append_n(&*log, 3).await?;
    let consumer = unique("reader");
    let mut stream = log.subscribe(&consumer, SeekPosition::Beginning).await?;
    take(&mut stream, 3).await?;
    log.ack(&consumer, 3).await?;
    let state = log.consumer_state(&consumer).await?;
    ensure!(
        state.last_acknowledged == Some(3),
        "log {name}: consumer state after ack(3) is {state:?}"
    );
    Ok(())
}

/// A wrong password is refused with `Unauthorized`, within the timeout.
pub async fn s02_a_wrong_password_is_refused(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    let err = refused(fx, Access::WrongPassword(unique("wrong"))).await?;
    ensure!(
        matches!(err, EventLogError::Unauthorized { .. }),
        "a wrong password gave {err:?}, expected Unauthorized"
    );
    Ok(())
}

/// No credentials at all are refused with `Unauthorized` (or, where the
/// broker does not say why, a `Timeout`), within the timeout.
pub async fn s03_missing_credentials_are_refused(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    let err = refused(fx, Access::Anonymous).await?;
    ensure!(
        matches!(err, EventLogError::Unauthorized { .. })
            || (!fx.names_missing_credentials() && matches!(err, EventLogError::Timeout { .. })),
        "no credentials gave {err:?}, expected Unauthorized"
    );
    Ok(())
}

/// Plain text spoken to the TLS endpoint fails with a typed error within
/// the timeout: no hang, no panic.
pub async fn s04_plain_text_to_a_tls_endpoint_fails_cleanly(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    refused(fx, Access::PlainText).await.map(drop)
}

/// A broker certificate signed by a CA the client does not trust is
/// refused with a typed error that is not worth retrying.
pub async fn s05_an_untrusted_certificate_is_refused(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    let err = refused(fx, Access::UntrustedCa).await?;
    ensure!(
        !err.is_retryable(),
        "an untrusted certificate gave {err:?}, which says to retry; it cannot succeed"
    );
    Ok(())
}

/// A unique fake secret in every credential field never appears in the
/// `Debug` or `Display` of a configuration, in any error chain, or in the
/// `tracing` output at trace level of everything the test binary did.
pub async fn s06_secrets_never_leak(fx: &dyn Secured) -> Result<()> {
    capture_traces();
    let canary = unique("canary");
    for rendered in fx.rendered_configs(&canary)? {
        ensure!(
            !rendered.contains(&canary),
            "a configuration shows its secret: {rendered}"
        );
    }
    let err = fx
        .open(
            &unique("s06"),
            Access::WrongPassword(canary.clone()),
            TIMEOUT,
        )
        .await
        .err()
        .context("the broker took a wrong password")?;
    let mut renderings = vec![format!("{err}"), format!("{err:#}"), format!("{err:?}")];
    for cause in err.chain() {
        renderings.extend([cause.to_string(), format!("{cause:?}")]);
    }
    for rendered in renderings {
        ensure!(
            !rendered.contains(&canary),
            "an error shows the password: {rendered}"
        );
    }
    // The secured session of the other checks, traced too.
    s01_tls_and_credentials_grant_access(fx).await?;
    let sentinel = unique("sentinel");
    tracing::trace!(%sentinel, "secret hygiene check");
    let traces = captured_traces();
    ensure!(
        traces.contains(&sentinel),
        "the trace capture saw nothing; it cannot vouch for anything"
    );
    if let Some(at) = traces.find(&canary) {
        let line = traces[..at].rfind('\n').map_or(0, |n| n + 1);
        let end = traces[at..].find('\n').map_or(traces.len(), |n| at + n);
        bail!("trace output shows the password: {}", &traces[line..end]);
    }
    Ok(())
}

/// Everything written by the `tracing` subscriber this module installs.
static TRACES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct TraceWriter;

impl Write for TraceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        TRACES.lock().expect("trace buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global `tracing` subscriber at trace
/// level (`log` records included) that keeps everything in memory.
///
/// Run the security checks in a test binary of their own: the contract
/// tests install their own subscriber, and a binary has one, so this
/// panics where another was installed first.
pub fn capture_traces() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| TraceWriter)
            .try_init()
            .expect("a test binary of the security checks installs no other subscriber");
    });
}

/// What the subscriber of [`capture_traces`] has seen so far.
pub fn captured_traces() -> String {
    String::from_utf8_lossy(&TRACES.lock().expect("trace buffer")).into_owned()
}
