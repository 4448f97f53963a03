//! Sequence numbers, seek positions and consumer state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The number a log gives to each event it stores: the first event is 1, and
/// each later one is the previous plus one. 0 never names an event.
pub type SeqNo = u64;

/// Where a subscription starts, or where [`seek`](crate::EventLog::seek) puts a
/// consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SeekPosition {
    /// The first event of the log.
    Beginning,
    /// Just after the last event stored at the time of the call: only events
    /// appended later are seen.
    #[default]
    Latest,
    /// The consumer's stored position: the event after the last one it
    /// acknowledged, or the beginning for a consumer that has none.
    LastAcknowledged,
    /// The event with this sequence number (1 or more); past the end, the
    /// subscription waits until it is appended.
    Sequence(SeqNo),
}

impl fmt::Display for SeekPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Beginning => f.write_str("beginning"),
            Self::Latest => f.write_str("latest"),
            Self::LastAcknowledged => f.write_str("last-acked"),
            Self::Sequence(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for SeekPosition {
    type Err = crate::EventLogError;

    /// Parses `beginning`, `latest`, `last-acked` or a sequence number.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beginning" => Ok(Self::Beginning),
            "latest" => Ok(Self::Latest),
            "last-acked" | "last-acknowledged" => Ok(Self::LastAcknowledged),
            other => {
                let n: SeqNo =
                    other
                        .parse()
                        .map_err(|_| crate::EventLogError::InvalidPosition {
                            position: other.to_owned(),
                            reason:
                                "expected `beginning`, `latest`, `last-acked` or a sequence number"
                                    .into(),
                        })?;
                let position = Self::Sequence(n);
                crate::validate::position(position)?;
                Ok(position)
            }
        }
    }
}

/// What the log knows of one consumer, from
/// [`consumer_state`](crate::EventLog::consumer_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsumerState {
    /// The highest sequence number covered by the consumer's acknowledgements
    /// (or by a seek): `None` while its position is at the beginning.
    pub last_acknowledged: Option<SeqNo>,
    /// How many stored events come after `last_acknowledged`.
    pub lag: u64,
}

impl ConsumerState {
    /// The state of a consumer whose next event is `next` on a log whose last
    /// event is `last`.
    pub fn from_next(next: SeqNo, last: Option<SeqNo>) -> Self {
        let acked = next.saturating_sub(1);
        Self {
            last_acknowledged: (acked > 0).then_some(acked),
            lag: last.unwrap_or(0).saturating_sub(acked),
        }
    }

    /// The sequence number `subscribe(c, LastAcknowledged)` starts at.
    pub fn next(&self) -> SeqNo {
        self.last_acknowledged.unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_position_is_latest() {
        assert_eq!(SeekPosition::default(), SeekPosition::Latest);
    }

    #[test]
    fn positions_parse_and_print() {
        for p in [
            SeekPosition::Beginning,
            SeekPosition::Latest,
            SeekPosition::LastAcknowledged,
            SeekPosition::Sequence(42),
        ] {
            assert_eq!(p.to_string().parse::<SeekPosition>().unwrap(), p);
        }
        assert!("0".parse::<SeekPosition>().is_err());
        assert!("soon".parse::<SeekPosition>().is_err());
    }

    #[test]
    fn state_from_next() {
        assert_eq!(
            ConsumerState::from_next(1, None),
            ConsumerState {
                last_acknowledged: None,
                lag: 0
            }
        );
        assert_eq!(
            ConsumerState::from_next(1, Some(5)),
            ConsumerState {
                last_acknowledged: None,
                lag: 5
            }
        );
        let s = ConsumerState::from_next(4, Some(10));
        assert_eq!((s.last_acknowledged, s.lag, s.next()), (Some(3), 7, 4));
        // A seek past the end has no negative lag.
        assert_eq!(ConsumerState::from_next(20, Some(10)).lag, 0);
    }
}
