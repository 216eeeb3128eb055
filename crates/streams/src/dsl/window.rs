//! Windows on event time: tumbling and hopping ([`TimeWindows`]), sliding ([`SlidingWindows`]), session
//! ([`SessionWindows`]) and the windows of stream-stream joins ([`JoinWindows`]), each with a grace period: a
//! record later than its window's end plus grace (measured against the stream time the processor has seen) is
//! dropped, as in Kafka Streams.

use std::time::Duration;

use bytes::Bytes;

use crate::serdes::{DefaultSerde, Serde, SerdeError, SerdeRef};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A time interval `[start, end)` (sessions: `[start, end]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// A key within a window: the key type of windowed aggregations' results.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    pub key: K,
    pub window: Window,
}

struct WindowedSerde<K>(SerdeRef<K>);

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    /// The key's bytes, then the window start and end (8 bytes each, big-endian). Not Kafka's layouts (its
    /// time-windowed serde writes the start only, its session serde the end before the start): one layout for
    /// every window kind, readable without knowing the window size.
    fn serialize(&self, value: &Windowed<K>) -> Option<Bytes> {
        let key = self.0.serialize(&value.key).unwrap_or_default();
        let mut out = Vec::with_capacity(key.len() + 16);
        out.extend_from_slice(&key);
        out.extend_from_slice(&value.window.start.to_be_bytes());
        out.extend_from_slice(&value.window.end.to_be_bytes());
        Some(Bytes::from(out))
    }

    fn partition_key(&self, value: &Windowed<K>) -> Option<Bytes> {
        self.0.serialize(&value.key)
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let data = data.ok_or_else(|| SerdeError("null windowed key".into()))?;
        let n = data
            .len()
            .checked_sub(16)
            .ok_or_else(|| SerdeError(format!("{} bytes for a windowed key", data.len())))?;
        Ok(Windowed {
            key: self.0.deserialize(Some(&data[..n]))?,
            window: Window {
                start: i64::from_be_bytes(data[n..n + 8].try_into().unwrap()),
                end: i64::from_be_bytes(data[n + 8..].try_into().unwrap()),
            },
        })
    }
}

impl<K: DefaultSerde> DefaultSerde for Windowed<K> {
    fn serde() -> SerdeRef<Self> {
        std::sync::Arc::new(WindowedSerde(K::serde()))
    }
}

/// Fixed-size windows: tumbling (advance = size) or hopping (advance < size), aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub size_ms: i64,
    pub advance_ms: i64,
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` accepting records up to `grace` after a window ends
    /// (Kafka's `TimeWindows.ofSizeAndGrace`).
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        assert!(!size.is_zero(), "window size must be positive");
        Self {
            size_ms: ms(size),
            advance_ms: ms(size),
            grace_ms: ms(grace),
        }
    }

    /// Tumbling windows that drop every out-of-order record past a window's end.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Hopping windows: a new window every `advance` (0 < advance <= size).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        let advance = ms(advance);
        assert!(
            advance > 0 && advance <= self.size_ms,
            "advance must be in (0, size]"
        );
        self.advance_ms = advance;
        self
    }

    /// The windows that contain `timestamp`, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let last_start = timestamp - timestamp.rem_euclid(self.advance_ms);
        let mut start = last_start;
        let mut out = Vec::new();
        // Windows start at 0 or later, as Kafka's (a timestamp near 0 is in fewer hopping windows).
        while start > timestamp - self.size_ms && start >= 0 {
            out.push(Window {
                start,
                end: start + self.size_ms,
            });
            start -= self.advance_ms;
        }
        out.reverse();
        out
    }

    /// How long a window store keeps windows: size plus grace (Kafka's default retention).
    pub fn retention_ms(&self) -> i64 {
        self.size_ms.saturating_add(self.grace_ms)
    }
}

/// Sliding windows for aggregations (Kafka's `SlidingWindows`): every window `[t - difference, t]` that
/// contains a distinct set of records, so each record is aggregated with the records within `difference` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub time_difference_ms: i64,
    pub grace_ms: i64,
}

impl SlidingWindows {
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        Self {
            time_difference_ms: ms(difference),
            grace_ms: ms(grace),
        }
    }
}

/// Sessions: a key's records closer than `inactivity gap` to each other form one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub gap_ms: i64,
    pub grace_ms: i64,
}

impl SessionWindows {
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        Self {
            gap_ms: ms(gap),
            grace_ms: ms(grace),
        }
    }

    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }
}

/// Which records of two streams join: the other side's records within `before` earlier and `after` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; late records are accepted for `grace`.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        Self {
            before_ms: ms(difference),
            after_ms: ms(difference),
            grace_ms: ms(grace),
        }
    }

    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping_windows_contain_the_timestamp() {
        let tumbling = TimeWindows::of_size_with_no_grace(Duration::from_secs(10));
        assert_eq!(
            tumbling.windows_for(12_345),
            vec![Window {
                start: 10_000,
                end: 20_000
            }]
        );
        let hopping = tumbling.advance_by(Duration::from_secs(5));
        assert_eq!(
            hopping.windows_for(12_345),
            vec![
                Window {
                    start: 5_000,
                    end: 15_000
                },
                Window {
                    start: 10_000,
                    end: 20_000
                }
            ]
        );
        assert_eq!(
            hopping.windows_for(10_000)[0],
            Window {
                start: 5_000,
                end: 15_000
            }
        );
        // Near 0 only the windows that start at 0 or later.
        assert_eq!(
            hopping.windows_for(2_000),
            vec![Window {
                start: 0,
                end: 10_000
            }]
        );
    }

    #[test]
    fn windowed_keys_roundtrip() {
        let w = Windowed {
            key: "card".to_string(),
            window: Window {
                start: 60_000,
                end: 120_000,
            },
        };
        let serde = Windowed::<String>::serde();
        assert_eq!(
            serde.deserialize(serde.serialize(&w).as_deref()).unwrap(),
            w
        );
        assert!(serde.deserialize(Some(b"short")).is_err());
        // Sinks partition a windowed key by its key alone: every window of a card on one partition.
        assert_eq!(serde.partition_key(&w), Some(Bytes::from("card")));
    }
}
