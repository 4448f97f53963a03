//! The `eventlog` CLI and the examples, end to end, on every backend: the
//! brokers come from the conformance harness (a running one by URL, or a
//! container), the binaries are the ones `cargo test` built.

use anyhow::{Context, Result, ensure};
use eventlog::EventEnvelope;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use testkit::containers::{BrokerSpec, KAFKA, NATS, REDIS, SharedBroker};
use testkit::wait::unique;
use tokio::sync::OnceCell;

/// The URL of a fresh log on the shared broker of `spec`.
async fn log_url(
    spec: &'static BrokerSpec,
    scheme: &str,
    cell: &'static OnceCell<SharedBroker>,
) -> Result<String> {
    let broker = cell.get_or_try_init(|| SharedBroker::start(spec)).await?;
    Ok(format!("{}/{}", broker.url(scheme), unique("e2e")))
}

async fn redis() -> Result<String> {
    static CELL: OnceCell<SharedBroker> = OnceCell::const_new();
    log_url(&REDIS, "redis", &CELL).await
}

async fn nats() -> Result<String> {
    static CELL: OnceCell<SharedBroker> = OnceCell::const_new();
    log_url(&NATS, "nats", &CELL).await
}

async fn kafka() -> Result<String> {
    static CELL: OnceCell<SharedBroker> = OnceCell::const_new();
    log_url(&KAFKA, "kafka", &CELL).await
}

/// Runs `program`, feeding it `stdin`, on a blocking thread: the binaries
/// talk to brokers for a while.
async fn run(mut program: Command, stdin: Option<String>) -> Result<Output> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        program
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = program.spawn()?;
        let mut input = child.stdin.take().context("stdin")?;
        input.write_all(stdin.unwrap_or_default().as_bytes())?;
        drop(input);
        Ok(child.wait_with_output()?)
    })
    .await?
}

/// `eventlog --url URL args…` with `stdin`.
async fn cli_output(url: &str, args: &[&str], stdin: Option<String>) -> Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventlog"));
    command.arg("--url").arg(url).args(args);
    run(command, stdin).await
}

/// `eventlog --url URL args…`, which must succeed; its standard output.
async fn cli(url: &str, args: &[&str]) -> Result<String> {
    let output = cli_output(url, args, None).await?;
    ensure!(
        output.status.success(),
        "eventlog {args:?} on {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The facade's example `name`, which `cargo test --workspace` (or `-p
/// eventlog -p eventlog-cli`) builds next to this test's binary; the
/// examples live in the facade, whose light dev-dependencies keep the
/// README's quickstart quick to build. A test run without the facade
/// (`-p eventlog-cli` alone) uses whatever examples an earlier build left,
/// so run both packages in one command after changing an example.
fn example(name: &str) -> Result<PathBuf> {
    let deps = std::env::current_exe()?
        .parent()
        .context("test binary folder")?
        .to_owned();
    let path = deps
        .parent()
        .context("target folder")?
        .join("examples")
        .join(name);
    ensure!(
        path.exists(),
        "example {name} is not built at {}: run `cargo test -p eventlog -p eventlog-cli --all-features`",
        path.display()
    );
    Ok(path)
}

/// Runs the example `name` on the log at `url`; its standard output.
async fn run_example(name: &str, url: &str) -> Result<String> {
    let mut command = Command::new(example(name)?);
    command.env("EVENTLOG_URL", url);
    let output = run(command, None).await?;
    ensure!(
        output.status.success(),
        "example {name} on {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn json_lines(events: &[EventEnvelope]) -> Result<String> {
    Ok(events
        .iter()
        .map(|e| serde_json::to_string(e).map(|l| l + "\n"))
        .collect::<Result<_, _>>()?)
}

fn parse_lines(text: &str) -> Result<Vec<EventEnvelope>> {
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// Appends, tails, acknowledges, seeks and inspects a log through the CLI,
/// then runs both examples on the same broker.
async fn cli_and_examples(url: String) -> Result<()> {
    let args = [
        "append",
        "--type",
        "greeting",
        "--subject",
        "s1",
        "--ext",
        "tenant=acme",
        "hello",
    ];
    let first = cli(&url, &args).await?;
    ensure!(first.trim() == "1", "first append printed {first:?}");

    let events: Vec<EventEnvelope> = (0..4)
        .map(|i| {
            EventEnvelope::new("/e2e", "batch", format!("line {i}"))
                .with_extension("n", i.to_string())
        })
        .collect();
    let output = cli_output(&url, &["append", "--stdin"], Some(json_lines(&events)?)).await?;
    let printed = String::from_utf8(output.stdout)?;
    ensure!(
        printed.trim() == "appended 4 events: 2..=5",
        "append --stdin printed {printed:?}"
    );

    let info = cli(&url, &["info", "--consumer", "reader"]).await?;
    ensure!(
        info.contains("last sequence number: 5")
            && info.contains("consumer reader: acknowledged up to none, lag 5"),
        "info printed:\n{info}"
    );

    let args = [
        "tail",
        "--consumer",
        "reader",
        "--from",
        "beginning",
        "--limit",
        "5",
        "--format",
        "json",
        "--ack",
    ];
    let tailed = parse_lines(&cli(&url, &args).await?)?;
    let seq_nos: Vec<_> = tailed.iter().map(|e| e.seq_no).collect();
    ensure!(
        seq_nos == (1..=5).map(Some).collect::<Vec<_>>(),
        "tail gave {seq_nos:?}"
    );
    ensure!(
        tailed[0].extensions["tenant"] == "acme" && tailed[1].id == events[0].id,
        "tail changed the events: {tailed:?}"
    );

    let info = cli(&url, &["info", "--consumer", "reader", "--format", "json"]).await?;
    let info: serde_json::Value = serde_json::from_str(&info)?;
    let reader = &info["consumers"][0];
    ensure!(
        reader["last_acknowledged"] == 5 && reader["lag"] == 0,
        "after tail --ack: {info}"
    );

    cli(&url, &["seek", "--consumer", "reader", "2"]).await?;
    cli(&url, &["ack", "--consumer", "reader", "3"]).await?;
    let info = cli(&url, &["info", "--consumer", "reader"]).await?;
    ensure!(
        info.contains("acknowledged up to 3, lag 2"),
        "after seek 2 and ack 3:\n{info}"
    );

    let refused = cli_output(&url, &["ack", "--consumer", "reader", "99"], None).await?;
    let stderr = String::from_utf8(refused.stderr)?;
    ensure!(
        !refused.status.success()
            && stderr.lines().count() == 1
            && stderr.contains("cannot ack 99"),
        "ack 99: {stderr:?}"
    );

    // A conditional append: refused on a stale expectation, stored on the
    // right one; Kafka refuses conditions altogether.
    let append_expecting = |last: &'static str, data: &'static str| {
        let url = url.clone();
        async move {
            let args = ["append", "--type", "t", "--expect-last", last, data];
            cli_output(&url, &args, None).await
        }
    };
    let stale = append_expecting("4", "late").await?;
    let stderr = String::from_utf8(stale.stderr)?;
    if url.starts_with("kafka://") {
        ensure!(
            !stale.status.success() && stderr.contains("does not support conditional appends"),
            "append --expect-last on Kafka: {stderr:?}"
        );
    } else {
        ensure!(
            !stale.status.success() && stderr.contains("the log's last event is 5"),
            "append --expect-last 4 on a log ending at 5: {stderr:?}"
        );
        let on_time = append_expecting("5", "on time").await?;
        let printed = String::from_utf8(on_time.stdout)?;
        ensure!(
            on_time.status.success() && printed.trim() == "6",
            "append --expect-last 5 printed {printed:?}"
        );
    }

    let quickstart = run_example("quickstart", &url).await?;
    ensure!(
        quickstart.contains("billing lag: 1 event(s)"),
        "quickstart printed:\n{quickstart}"
    );
    let projection = run_example("projection", &format!("{url}-projection")).await?;
    ensure!(
        projection.contains("applied 30 events exactly once"),
        "projection printed:\n{projection}"
    );
    expect_worker(&format!("{url}-worker")).await
}

/// The worker example ships every order but the poisoned one, which it
/// parks in the dead-letter log.
async fn expect_worker(url: &str) -> Result<()> {
    let worker = run_example("worker", url).await?;
    ensure!(
        worker.contains("shipped 39 orders; parked order") && worker.contains("payment refused"),
        "worker printed:\n{worker}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_examples_on_redis() -> Result<()> {
    cli_and_examples(redis().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_examples_on_nats() -> Result<()> {
    cli_and_examples(nats().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_examples_on_kafka() -> Result<()> {
    cli_and_examples(kafka().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_on_memory() -> Result<()> {
    let quickstart = run_example("quickstart", "memory://orders").await?;
    ensure!(
        quickstart.contains("billing lag: 1 event(s) after Some(4)"),
        "quickstart printed:\n{quickstart}"
    );
    let projection = run_example("projection", "memory://accounts").await?;
    ensure!(
        projection.contains("applied 30 events exactly once"),
        "projection printed:\n{projection}"
    );
    expect_worker("memory://orders-worker").await
}

/// Memory to Redis in process (a memory log lives in one process), then
/// Redis to NATS to Kafka with the CLI; copies resume from their consumer's
/// position, and the last log holds the same events, in order, with the same
/// ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_across_backends() -> Result<()> {
    let memory = eventlog::connect(&format!("memory://{}", unique("copy"))).await?;
    let events: Vec<EventEnvelope> = (0..1200)
        .map(|i| {
            EventEnvelope::new("/copy", "copied", format!("{i}")).with_subject(format!("s{i}"))
        })
        .collect();
    memory.append_batch(events[..1000].to_vec()).await?;

    let (redis, nats, kafka) = (redis().await?, nats().await?, kafka().await?);
    let on_redis = eventlog::connect(&redis).await?;
    let report = eventlog::copy(&*memory, &*on_redis, "copier", 300, |_, _| {}).await?;
    ensure!(
        report.copied == 1000 && report.range == Some((1, 1000)),
        "memory to redis: {report:?}"
    );
    memory.append_batch(events[1000..].to_vec()).await?;
    let report = eventlog::copy(&*memory, &*on_redis, "copier", 300, |_, _| {}).await?;
    ensure!(
        report.copied == 200 && report.range == Some((1001, 1200)),
        "memory to redis, resumed: {report:?}"
    );

    let printed = cli(
        &redis,
        &["copy", "--from", &redis, "--to", &nats, "--batch", "500"],
    )
    .await?;
    ensure!(
        printed.trim() == "copied 1200 events: 1..=1200",
        "redis to nats printed {printed:?}"
    );
    let again = cli(&redis, &["copy", "--from", &redis, "--to", &nats]).await?;
    ensure!(
        again.contains("copied 0 events"),
        "a finished copy copied again: {again:?}"
    );
    let printed = cli(&nats, &["copy", "--from", &nats, "--to", &kafka]).await?;
    ensure!(
        printed.trim() == "copied 1200 events: 1..=1200",
        "nats to kafka printed {printed:?}"
    );

    let args = [
        "tail",
        "--consumer",
        "check",
        "--from",
        "beginning",
        "--limit",
        "1200",
        "--format",
        "json",
    ];
    let got = parse_lines(&cli(&kafka, &args).await?)?;
    ensure!(got.len() == 1200, "kafka holds {} events", got.len());
    for (i, (sent, got)) in events.iter().zip(&got).enumerate() {
        ensure!(
            got.id == sent.id
                && got.subject == sent.subject
                && got.payload == sent.payload
                && got.seq_no == Some(i as u64 + 1),
            "event {} changed on the way: {got:?}",
            i + 1
        );
    }
    Ok(())
}

/// `copy` sends each broker only its own password: `EVENTLOG_FROM_PASSWORD`
/// to `--from`, `EVENTLOG_TO_PASSWORD` to `--to`; while `EVENTLOG_PASSWORD`
/// is set it refuses to start, without printing it. Two ACL users with
/// different passwords on one Redis tell which side got which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_gives_each_side_its_own_password() -> Result<()> {
    let url = redis().await?;
    let (server, _) = url.rsplit_once('/').context("a log URL")?;
    let mut admin = redis::Client::open(server)?
        .get_multiplexed_async_connection()
        .await?;
    let (reader, writer) = (unique("reader"), unique("writer"));
    let (read_secret, write_secret) = (unique("read-secret"), unique("write-secret"));
    for (user, password) in [(&reader, &read_secret), (&writer, &write_secret)] {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg(&["reset", "on", &format!(">{password}"), "~*", "&*", "+@all"])
            .query_async::<()>(&mut admin)
            .await?;
    }
    let host = server.trim_start_matches("redis://");
    let (from, to) = (unique("copy-from"), unique("copy-to"));
    eventlog::connect(&format!("redis://{reader}:{read_secret}@{host}/{from}"))
        .await?
        .append_batch(
            (0..3)
                .map(|i| EventEnvelope::new("/s", "t", format!("{i}")))
                .collect(),
        )
        .await?;
    let copy = |env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eventlog"));
        command.args([
            "copy",
            "--from",
            &format!("redis://{reader}@{host}/{from}"),
            "--to",
            &format!("redis://{writer}@{host}/{to}"),
        ]);
        for name in eventlog::CREDENTIAL_VARIABLES {
            for prefix in ["EVENTLOG_", "EVENTLOG_FROM_", "EVENTLOG_TO_"] {
                command.env_remove(format!("{prefix}{name}"));
            }
        }
        command.envs(env.iter().copied());
        run(command, None)
    };

    let shared = copy(&[("EVENTLOG_PASSWORD", &read_secret)]).await?;
    let said = String::from_utf8_lossy(&shared.stderr);
    ensure!(
        !shared.status.success()
            && said.contains("EVENTLOG_FROM_PASSWORD")
            && !said.contains(&read_secret),
        "copy with EVENTLOG_PASSWORD set: {shared:?}"
    );
    let swapped = copy(&[
        ("EVENTLOG_FROM_PASSWORD", &write_secret),
        ("EVENTLOG_TO_PASSWORD", &read_secret),
    ])
    .await?;
    ensure!(
        !swapped.status.success(),
        "copy logged in with the other side's password: {swapped:?}"
    );
    let right = copy(&[
        ("EVENTLOG_FROM_PASSWORD", &read_secret),
        ("EVENTLOG_TO_PASSWORD", &write_secret),
    ])
    .await?;
    let printed = String::from_utf8_lossy(&right.stdout);
    ensure!(
        right.status.success() && printed.trim() == "copied 3 events: 1..=3",
        "copy with a password per side: {right:?}"
    );
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&reader)
        .arg(&writer)
        .query_async::<()>(&mut admin)
        .await?;
    Ok(())
}
