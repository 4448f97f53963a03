//! Ack and seek: C15 to C22, and consumer state: C24.

use crate::Fixture;
use crate::expect_refused;
use crate::support::{append_n, event, expect_seq_nos, take, unique};
use anyhow::{Result, ensure};
use eventlog_core::{EventLog, EventLogError, SeekPosition, SeqNo};

/// Where `subscribe(consumer, LastAcknowledged)` starts: the first event it
/// yields. Needs an event at or after that position.
async fn resumes_at(log: &dyn EventLog, consumer: &str) -> Result<Option<SeqNo>> {
    let mut stream = log
        .subscribe(consumer, SeekPosition::LastAcknowledged)
        .await?;
    Ok(take(&mut stream, 1).await?[0].seq_no)
}

/// Fails unless `consumer` resumes at `expected`.
async fn expect_resume(
    log: &dyn EventLog,
    consumer: &str,
    expected: SeqNo,
    context: &str,
) -> Result<()> {
    let got = resumes_at(log, consumer).await?;
    ensure!(
        got == Some(expected),
        "{context}: `{consumer}` resumed at {got:?}, expected {expected}"
    );
    Ok(())
}

/// Fails unless `consumer_state(consumer).last_acknowledged` is `expected`.
async fn expect_acked(
    log: &dyn EventLog,
    consumer: &str,
    expected: Option<SeqNo>,
    context: &str,
) -> Result<()> {
    let state = log.consumer_state(consumer).await?;
    ensure!(
        state.last_acknowledged == expected,
        "{context}: `{consumer}` reports last acknowledged {:?}, expected {expected:?}",
        state.last_acknowledged
    );
    Ok(())
}

/// C15 After `ack(c, n)`, `subscribe(c, LastAcknowledged)` starts at `n + 1`.
/// The acknowledgement is cumulative: it covers every event up to `n`.
pub async fn c15_ack_is_cumulative(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c15");
    let log = fx.open(&name).await?;
    append_n(&*log, 6).await?;
    let c = unique("reader");
    let mut stream = log.subscribe(&c, SeekPosition::Beginning).await?;
    take(&mut stream, 2).await?;
    // Acks 3 without acking 1 and 2 and beyond what was received.
    log.ack(&c, 3).await?;
    drop(stream);
    expect_acked(&*log, &c, Some(3), &format!("log {name}")).await?;
    expect_resume(&*log, &c, 4, &format!("log {name}: after ack 3")).await?;
    // An ack from a handle that never subscribed counts the same.
    let never_read = unique("other");
    log.ack(&never_read, 5).await?;
    expect_resume(
        &*log,
        &never_read,
        6,
        &format!("log {name}: ack without a subscription"),
    )
    .await
}

/// C16 The position is kept by the broker, not by the process: a new
/// `EventLog` value on the same log (as after a restart) sees the same
/// `LastAcknowledged`.
pub async fn c16_position_outlives_the_handle(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c16");
    let c = unique("reader");
    {
        let first = fx.open(&name).await?;
        append_n(&*first, 4).await?;
        let mut stream = first.subscribe(&c, SeekPosition::Beginning).await?;
        take(&mut stream, 2).await?;
        first.ack(&c, 2).await?;
    }
    let second = fx.open(&name).await?;
    expect_acked(&*second, &c, Some(2), &format!("log {name}: new handle")).await?;
    expect_resume(&*second, &c, 3, &format!("log {name}: new handle")).await
}

/// C17 `ack` never moves a position backwards: `ack(c, m)` with `m` below the
/// current position is accepted and changes nothing.
pub async fn c17_ack_never_moves_backwards(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c17");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let c = unique("reader");
    log.ack(&c, 4).await?;
    log.ack(&c, 2).await?;
    log.ack(&c, 4).await?;
    expect_acked(&*log, &c, Some(4), &format!("log {name}: ack 4, 2, 4")).await?;
    expect_resume(&*log, &c, 5, &format!("log {name}: ack 4, 2, 4")).await
}

/// C18 `ack(c, 0)` and `ack(c, n)` with `n` above `last_seq_no` are refused
/// with a typed error and change nothing.
pub async fn c18_ack_out_of_range_is_refused(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c18");
    let log = fx.open(&name).await?;
    let c = unique("reader");
    expect_refused!(
        log.ack(&c, 1).await,
        EventLogError::AckOutOfRange { .. },
        format!("log {name}: ack 1 on an empty log")
    );
    append_n(&*log, 3).await?;
    log.ack(&c, 2).await?;
    for n in [0, 4, u64::MAX] {
        expect_refused!(
            log.ack(&c, n).await,
            EventLogError::AckOutOfRange { .. },
            format!("log {name}: ack {n} with 3 stored")
        );
    }
    expect_acked(
        &*log,
        &c,
        Some(2),
        &format!("log {name}: after refused acks"),
    )
    .await?;
    expect_resume(&*log, &c, 3, &format!("log {name}: after refused acks")).await
}

/// C19 `seek(c, Beginning)`, `seek(c, Sequence(n))` and `seek(c, Latest)` set
/// where the next `subscribe(c, LastAcknowledged)` starts: at 1, at `n`, and
/// just after the last event at the time of the seek. `seek(c,
/// LastAcknowledged)` changes nothing. After a seek backwards, acks advance the
/// position again from there.
pub async fn c19_seek_sets_where_the_next_subscription_starts(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c19");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let c = unique("reader");
    let ctx = |what: &str| format!("log {name}: {what}");

    log.seek(&c, SeekPosition::Sequence(3)).await?;
    expect_resume(&*log, &c, 3, &ctx("seek to 3")).await?;
    log.seek(&c, SeekPosition::Beginning).await?;
    expect_resume(&*log, &c, 1, &ctx("seek to Beginning")).await?;
    log.seek(&c, SeekPosition::Latest).await?;
    expect_acked(&*log, &c, Some(5), &ctx("seek to Latest with 5 stored")).await?;
    log.append(event(5)).await?;
    expect_resume(&*log, &c, 6, &ctx("seek to Latest, then one append")).await?;

    let before = log.consumer_state(&c).await?;
    log.seek(&c, SeekPosition::LastAcknowledged).await?;
    let after = log.consumer_state(&c).await?;
    ensure!(
        before == after,
        "{}",
        ctx(&format!(
            "seek to LastAcknowledged moved {before:?} to {after:?}"
        ))
    );

    log.ack(&c, 6).await?;
    log.seek(&c, SeekPosition::Sequence(2)).await?;
    expect_acked(&*log, &c, Some(1), &ctx("ack 6, then seek back to 2")).await?;
    log.ack(&c, 3).await?;
    expect_acked(&*log, &c, Some(3), &ctx("seek back to 2, then ack 3")).await?;
    expect_resume(&*log, &c, 4, &ctx("seek back to 2, then ack 3")).await
}

/// C20 Positions of different consumers are independent.
pub async fn c20_consumers_are_independent(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c20");
    let log = fx.open(&name).await?;
    append_n(&*log, 5).await?;
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    log.ack(&a, 3).await?;
    log.seek(&b, SeekPosition::Latest).await?;
    expect_acked(
        &*log,
        &a,
        Some(3),
        &format!("log {name}: after seeking another consumer"),
    )
    .await?;
    expect_acked(
        &*log,
        &b,
        Some(5),
        &format!("log {name}: after acking another consumer"),
    )
    .await?;
    expect_acked(&*log, &c, None, &format!("log {name}: untouched consumer")).await?;
    expect_resume(&*log, &c, 1, &format!("log {name}: untouched consumer")).await?;
    expect_resume(&*log, &a, 4, &format!("log {name}")).await
}

/// Names the contract refuses, for consumers (`max` 64) and logs (`max` 128).
pub(crate) fn bad_names(max: usize) -> Vec<String> {
    ["", "a.b", "a b", "*", ">", "a/b", "tab\t", "ünï"]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("{}x", "a".repeat(max))])
        .collect()
}

/// C21 Consumer names: 1 to 64 characters of `A-Z a-z 0-9 _ -`. Anything else
/// (empty, too long, a dot, a space, `*`, `>`, a slash) is refused with a
/// typed error by every method that takes a consumer, before anything reaches
/// the broker. Log names follow the same rule with at most 128 characters.
pub async fn c21_bad_names_are_refused(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c21");
    let log = fx.open(&name).await?;
    append_n(&*log, 2).await?;
    for bad in bad_names(64) {
        let ctx = |call: &str| format!("log {name}: {call} with consumer {bad:?}");
        expect_refused!(
            log.subscribe(&bad, SeekPosition::Beginning).await,
            EventLogError::InvalidConsumerName { .. },
            ctx("subscribe")
        );
        expect_refused!(
            log.subscribe(&bad, SeekPosition::LastAcknowledged).await,
            EventLogError::InvalidConsumerName { .. },
            ctx("subscribe")
        );
        expect_refused!(
            log.ack(&bad, 1).await,
            EventLogError::InvalidConsumerName { .. },
            ctx("ack")
        );
        expect_refused!(
            log.seek(&bad, SeekPosition::Beginning).await,
            EventLogError::InvalidConsumerName { .. },
            ctx("seek")
        );
        expect_refused!(
            log.consumer_state(&bad).await,
            EventLogError::InvalidConsumerName { .. },
            ctx("consumer_state")
        );
    }
    // The longest allowed names work.
    let longest = "C".repeat(64);
    log.ack(&longest, 1).await?;
    expect_acked(
        &*log,
        &longest,
        Some(1),
        &format!("log {name}: 64-character consumer"),
    )
    .await?;
    for bad in bad_names(128) {
        expect_refused!(
            fx.open(&bad).await,
            EventLogError::InvalidLogName { .. },
            format!("open log {bad:?}")
        );
    }
    let long_log = format!("c21-{}", "L".repeat(124));
    let opened = fx.open(&long_log).await?;
    opened.try_last_seq_no().await?;
    Ok(())
}

/// C22 Two logs on one broker are isolated: appends, positions and
/// subscriptions of one never show in the other.
pub async fn c22_logs_are_isolated(fx: &dyn Fixture) -> Result<()> {
    let (name_a, name_b) = (unique("c22a"), unique("c22b"));
    let a = fx.open(&name_a).await?;
    let b = fx.open(&name_b).await?;
    append_n(&*a, 3).await?;
    let b_first = event(100);
    b.append(b_first.clone()).await?;
    ensure!(
        a.last_seq_no().await == Some(3),
        "log {name_a}: last {:?}, expected 3",
        a.last_seq_no().await
    );
    ensure!(
        b.last_seq_no().await == Some(1),
        "log {name_b}: last {:?}, expected 1",
        b.last_seq_no().await
    );

    let c = unique("shared-name");
    a.ack(&c, 3).await?;
    expect_acked(
        &*b,
        &c,
        None,
        &format!("log {name_b}: consumer acked on {name_a}"),
    )
    .await?;

    let mut on_b = b.subscribe(&c, SeekPosition::Beginning).await?;
    a.append(event(3)).await?;
    let b_second = event(101);
    b.append(b_second.clone()).await?;
    let got = take(&mut on_b, 2).await?;
    expect_seq_nos(&got, [1, 2], &format!("log {name_b}"))?;
    ensure!(
        got[0].id == b_first.id && got[1].id == b_second.id,
        "log {name_b}: subscription saw events of {name_a}: {:?}",
        got.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    Ok(())
}

/// C24 `consumer_state(c)` (an addition to the trait) reports the last
/// acknowledged sequence number (`None` before any) and the lag (events after
/// it), consistent with C15 to C19.
pub async fn c24_consumer_state_reports_position_and_lag(fx: &dyn Fixture) -> Result<()> {
    let name = unique("c24");
    let log = fx.open(&name).await?;
    let c = unique("reader");
    let expect = |acked: Option<SeqNo>, lag: u64, after: &'static str| {
        let log = log.clone();
        let c = c.clone();
        let name = name.clone();
        async move {
            let state = log.consumer_state(&c).await?;
            ensure!(
                state.last_acknowledged == acked && state.lag == lag,
                "log {name}: after {after}: expected acked {acked:?} lag {lag}, got {state:?}"
            );
            anyhow::Ok(())
        }
    };
    expect(None, 0, "nothing").await?;
    append_n(&*log, 5).await?;
    expect(None, 5, "5 appends").await?;
    log.ack(&c, 2).await?;
    expect(Some(2), 3, "ack 2").await?;
    append_n(&*log, 2).await?;
    expect(Some(2), 5, "2 more appends").await?;
    log.ack(&c, 1).await?;
    expect(Some(2), 5, "ack 1 below the position").await?;
    log.seek(&c, SeekPosition::Latest).await?;
    expect(Some(7), 0, "seek to Latest").await?;
    log.seek(&c, SeekPosition::Sequence(3)).await?;
    expect(Some(2), 5, "seek to 3").await?;
    log.seek(&c, SeekPosition::Beginning).await?;
    expect(None, 7, "seek to Beginning").await
}
