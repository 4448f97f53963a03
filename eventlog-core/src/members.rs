//! Partitioned consumers: member `i` of `N` of a consumer receives, in log
//! order, the events whose partition key hashes to `i`, and keeps its own
//! position under a consumer name of its own.
//!
//! No broker can filter a log by a hash of a CloudEvents attribute on its
//! side (the key is in the payload's headers or fields, not in a subject or
//! a Kafka partition), so every member reads the whole log and drops what
//! is not its own, here, above the backends: a member on Redis and one on
//! NATS split a log identically.

use crate::{
    CheckedEventStream, EventEnvelope, EventLog, EventLogError, Result, SeekPosition, SeqNo,
    SubscribeOptions, validate,
};
use futures::StreamExt;

/// The most members a partitioned consumer can have.
pub const MAX_MEMBERS: u32 = 1024;

/// Member `index` (from 0) of `count` members of one consumer: a
/// [`SubscribeOptions::with_member`] option.
///
/// * The member receives, in log order, exactly the events whose
///   [`partition_key`](EventEnvelope::partition_key) falls to it
///   ([`partition_of`]), so events of one key go to one member, in order.
///   Reports (an event that cannot be decoded, a gap) go to every member.
/// * It keeps its own position, under the consumer name
///   [`consumer`](Self::consumer) gives (`<consumer>-m<index>of<count>`):
///   acknowledge and seek it under that name. Its acks are cumulative as
///   any consumer's: they cover the events of other members it skipped.
/// * With [`SubscribeOptions::exclusive`] each member is exclusive on its
///   own: a second process running member 1 of 3 waits as its standby.
///
/// **Changing the count.** Stop every member, then start the new ones with
/// [`resized_from`](Self::resized_from) the old count. A new member with no
/// position of its own starts (at `LastAcknowledged`) from the lowest
/// position of the old members, and skips every event that the old member
/// of its key had acknowledged. So across the change, every event the old
/// members had not acknowledged is delivered to its new member, in order
/// per key, and no acknowledged one comes again. An event of a key that old
/// members had acknowledged past is never redelivered; one a member had
/// received but not acknowledged comes again, as after any restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// This member, from 0.
    pub index: u32,
    /// How many members the consumer has (1 to [`MAX_MEMBERS`]).
    pub count: u32,
    /// The count before a change, whose members' positions a new member
    /// starts from.
    pub resized_from: Option<u32>,
}

impl Member {
    /// Member `index` (from 0) of `count`; checked when subscribing.
    pub fn new(index: u32, count: u32) -> Self {
        Self {
            index,
            count,
            resized_from: None,
        }
    }

    /// The same member, the first time it runs after the consumer had
    /// `previous` members.
    pub fn resized_from(mut self, previous: u32) -> Self {
        self.resized_from = Some(previous);
        self
    }

    /// The consumer name this member's position is stored under:
    /// `<consumer>-m<index>of<count>`; what [`ack`](EventLog::ack),
    /// [`seek`](EventLog::seek) and
    /// [`consumer_state`](EventLog::consumer_state) take for it.
    pub fn consumer(&self, consumer: &str) -> String {
        format!("{consumer}-m{}of{}", self.index, self.count)
    }

    /// Whether `event` is this member's.
    pub fn owns(&self, event: &EventEnvelope) -> bool {
        partition_of(event.partition_key(), self.count) == self.index
    }

    fn check(&self) -> Result<(), EventLogError> {
        for n in [Some(self.count), self.resized_from].into_iter().flatten() {
            if n == 0 || n > MAX_MEMBERS {
                return Err(EventLogError::InvalidConfig {
                    reason: format!(
                        "a partitioned consumer has 1 to {MAX_MEMBERS} members, not {n}"
                    ),
                });
            }
        }
        if self.index >= self.count {
            return Err(EventLogError::InvalidConfig {
                reason: format!(
                    "member {} of {}: members are numbered from 0 to {}",
                    self.index,
                    self.count,
                    self.count - 1
                ),
            });
        }
        Ok(())
    }
}

/// The member (of `count`) that events with partition key `key` go to:
/// Kafka's default partitioner, `(murmur2(key) & 0x7fffffff) % count`
/// over the key's UTF-8 bytes, so the split is the one a Kafka producer
/// would make of keyed records.
pub fn partition_of(key: &str, count: u32) -> u32 {
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % count.max(1)
}

/// MurmurHash2 with Kafka's seed, as `org.apache.kafka.common.utils.Utils`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Subscribes `member` of `consumer` at `position`, as `options` say.
pub(crate) async fn subscribe<L: EventLog + ?Sized>(
    log: &L,
    consumer: &str,
    position: SeekPosition,
    options: SubscribeOptions,
    member: Member,
) -> Result<CheckedEventStream> {
    validate::consumer_name(consumer)?;
    member.check()?;
    let name = member.consumer(consumer);
    if validate::consumer_name(&name).is_err() {
        return Err(EventLogError::InvalidConsumerName {
            name: consumer.to_owned(),
            reason: format!(
                "as member {} of {} it is stored as `{name}`, longer than {} characters",
                member.index,
                member.count,
                validate::MAX_CONSUMER_NAME
            ),
        }
        .into());
    }
    // What the old members acknowledged, by old member.
    let mut old_acks: Vec<SeqNo> = Vec::new();
    let previous = member
        .resized_from
        .filter(|&previous| previous != member.count);
    if let Some(previous) = previous {
        for index in 0..previous {
            let old = Member::new(index, previous).consumer(consumer);
            let state = log.consumer_state(&old).await?;
            old_acks.push(state.last_acknowledged.unwrap_or(0));
        }
    }
    // A new member starts at the lowest old position; whether it is new is
    // decided when its subscription opens, not here: a standby that took
    // over from a holder must go on from the holder's acks.
    let lowest = old_acks.iter().copied().min().unwrap_or(0);
    let options = SubscribeOptions {
        member: None,
        start_if_new: previous.map(|_| lowest + 1),
        ..options
    };
    let events = log.subscribe_with(&name, position, options).await?;
    Ok(Box::pin(events.filter(move |item| {
        let keep = match item {
            Ok(event) => {
                let acked_before = previous.is_some_and(|previous| {
                    let old = partition_of(event.partition_key(), previous);
                    event.seq() <= old_acks[old as usize]
                });
                member.owns(event) && !acked_before
            }
            Err(_) => true,
        };
        std::future::ready(keep)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_is_kafkas() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data) as i32,
                expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn every_key_has_one_member_and_keys_spread() {
        let mut counts = [0u32; 3];
        for key in 0..3_000 {
            counts[partition_of(&format!("key-{key}"), 3) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }

    #[test]
    fn bad_members_are_refused() {
        for member in [
            Member::new(0, 0),
            Member::new(3, 3),
            Member::new(0, MAX_MEMBERS + 1),
            Member::new(0, 2).resized_from(0),
        ] {
            assert!(
                matches!(member.check(), Err(EventLogError::InvalidConfig { .. })),
                "{member:?}"
            );
        }
        assert!(Member::new(2, 3).resized_from(5).check().is_ok());
    }
}
