//! The broker's own view: consumer groups (C23) and the wire format (C28).

use crate::support::{append_n, poll_until, take, unique};
use crate::timings;
use crate::{Broker, Fixture};
use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use eventlog_core::{EventEnvelope, SeekPosition};

fn broker<'a>(fx: &'a dyn Fixture, clause: &str) -> Result<&'a dyn Broker> {
    fx.broker()
        .with_context(|| format!("{clause} needs a broker, and this fixture has none"))
}

/// C23 A consumer's position lives in the broker's own consumer-group state:
/// a JetStream durable consumer named after it, the Kafka committed offset of
/// a group named after it, a Redis Streams consumer group named after it. The
/// broker's own tools (`nats consumer info`, the Kafka group offsets, `XINFO
/// GROUPS`) show the same acknowledged position that the log reports; the
/// test reads it with the raw client.
pub async fn c23_positions_are_broker_consumer_groups(fx: &dyn Fixture) -> Result<()> {
    let broker = broker(fx, "C23")?;
    let name = unique("c23");
    let log = fx.open(&name).await?;
    append_n(&*log, 6).await?;
    let c = unique("group");
    let check = |step: &'static str| {
        let log = log.clone();
        let (name, c) = (name.clone(), c.clone());
        async move {
            let reported = log.consumer_state(&c).await?.last_acknowledged;
            let raw = poll_until(
                &format!("log {name}: broker position of `{c}` after {step}"),
                timings().deadline,
                || broker.raw_acked(&name, &c),
                |raw| *raw == reported,
            )
            .await?;
            ensure!(
                raw == reported,
                "log {name}: after {step}, log reports {reported:?}, broker {raw:?}"
            );
            anyhow::Ok(reported)
        }
    };
    log.ack(&c, 2).await?;
    ensure!(
        check("ack 2").await? == Some(2),
        "log {name}: ack 2 not reported"
    );
    let mut stream = log.subscribe(&c, SeekPosition::LastAcknowledged).await?;
    let got = take(&mut stream, 3).await?;
    log.ack(&c, got[2].seq_no.unwrap_or_default()).await?;
    ensure!(
        check("receiving 3..=5 and acking 5").await? == Some(5),
        "log {name}: ack 5 not reported"
    );
    drop(stream);
    log.seek(&c, SeekPosition::Sequence(3)).await?;
    ensure!(
        check("seek to 3").await? == Some(2),
        "log {name}: seek to 3 not reported"
    );
    log.seek(&c, SeekPosition::Latest).await?;
    ensure!(
        check("seek to Latest").await? == Some(6),
        "log {name}: seek to Latest not reported"
    );
    Ok(())
}

/// C28 The wire format is the documented one: an event appended through the
/// log is read by the broker's plain client as a CloudEvent in binary content
/// mode (Kafka, NATS) or as the documented entry fields (Redis), and an event
/// published that way by a plain client comes out of `subscribe` intact, with
/// its sequence number.
pub async fn c28_wire_format_is_the_documented_one(fx: &dyn Fixture) -> Result<()> {
    let broker = broker(fx, "C28")?;
    let name = unique("c28");
    let log = fx.open(&name).await?;
    let ours = EventEnvelope::new(
        "/wire/ours",
        "wire.appended",
        Bytes::from_static(b"\0payload\xff"),
    )
    .with_subject("sübject")
    .with_content_type("application/octet-stream")
    .with_extension("tenant", "acme")
    .with_extension("traceparent", "00-abc-def-01");
    let seq = log.append(ours.clone()).await?;
    let raw = broker.raw_read(&name, seq).await?;
    ensure!(
        raw == ours.clone().with_seq_no(seq),
        "log {name}: plain client read\n  {raw:?}\nfor appended\n  {ours:?}"
    );

    let theirs = EventEnvelope::new(
        "/wire/theirs",
        "wire.published",
        Bytes::from_static(b"{\"k\":1}"),
    )
    .with_content_type("application/json")
    .with_extension("origin", "plainclient");
    broker.raw_publish(&name, &theirs).await?;
    let plain = EventEnvelope::new("/wire/theirs", "wire.minimal", Bytes::new());
    broker.raw_publish(&name, &plain).await?;
    let mut stream = log
        .subscribe(&unique("reader"), SeekPosition::Sequence(seq + 1))
        .await?;
    let got = take(&mut stream, 2).await?;
    for (sent, got, n) in [(&theirs, &got[0], seq + 1), (&plain, &got[1], seq + 2)] {
        let expected = sent.clone().with_seq_no(n);
        ensure!(
            *got == expected,
            "log {name}: published by the plain client\n  {expected:?}\nsubscribe gave\n  {got:?}"
        );
    }
    append_n(&*log, 1).await?;
    ensure!(
        log.last_seq_no().await == Some(seq + 3),
        "log {name}: numbering after plain-client events: {:?}",
        log.last_seq_no().await
    );
    Ok(())
}
