//! Replication throttles, as Kafka's ReplicationQuotaManager: `leader.replication.throttled.rate` bounds the bytes
//! per second a leader sends, and `follower.replication.throttled.rate` those a follower fetches, for the replicas
//! a topic's `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas` name. Only a
//! replica out of the ISR is held back (a reassignment's new replica catching up, a broker back from a long
//! outage): in-sync replicas are never slowed, or acks=all writes would wait on the throttle. The bytes of every
//! throttled replica count against the rate, in sync or not.
//!
//! The rate is measured over `replication.quota.window.num` windows of `replication.quota.window.size.seconds`
//! each, dividing by the time since the oldest window began but never by less than all windows but one (Kafka's
//! `Rate`), so a quota does not read as exceeded the moment it starts.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas` of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ThrottledReplicas {
    /// Empty: none (the default).
    #[default]
    None,
    /// `*`: every replica of the topic.
    All,
    /// `partitionId:brokerId` pairs.
    Listed(Vec<(i32, i32)>),
}

/// Kafka's message for a value that is neither `*` nor a list of `partitionId:brokerId`.
pub const THROTTLED_REPLICAS_EXPECTED: &str =
    "must be the literal '*' or a list of replicas in the following format: \
     [partitionId]:[brokerId],[partitionId]:[brokerId],...";

impl ThrottledReplicas {
    pub fn parse(value: &str) -> Result<Self, String> {
        let entries: Vec<&str> = value.split(',').map(str::trim).collect();
        if entries.concat() == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let mut listed = Vec::new();
        for entry in entries.into_iter().filter(|e| !e.is_empty()) {
            let pair = entry.split_once(':').and_then(|(p, b)| {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
                (digits(p) && digits(b)).then(|| Some((p.parse().ok()?, b.parse().ok()?)))?
            });
            listed.push(pair.ok_or_else(|| THROTTLED_REPLICAS_EXPECTED.to_string())?);
        }
        Ok(if listed.is_empty() {
            ThrottledReplicas::None
        } else {
            ThrottledReplicas::Listed(listed)
        })
    }

    /// Whether the replica of `partition` on `broker` is throttled.
    pub fn covers(&self, partition: i32, broker: i32) -> bool {
        match self {
            ThrottledReplicas::None => false,
            ThrottledReplicas::All => true,
            ThrottledReplicas::Listed(pairs) => pairs.contains(&(partition, broker)),
        }
    }
}

/// A byte rate measured over sliding windows; no clock of its own, so it is tested with any time.
#[derive(Debug)]
pub struct Rate {
    window_ms: u64,
    windows: usize,
    /// (window start, bytes), oldest first.
    samples: std::collections::VecDeque<(u64, u64)>,
}

impl Rate {
    pub fn new(windows: usize, window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            windows: windows.max(2),
            samples: std::collections::VecDeque::new(),
        }
    }

    pub fn record(&mut self, now_ms: u64, bytes: u64) {
        self.expire(now_ms);
        match self.samples.back_mut() {
            Some((start, sum)) if now_ms < *start + self.window_ms => *sum += bytes,
            _ => self.samples.push_back((now_ms, bytes)),
        }
    }

    /// Bytes per second over the retained windows.
    pub fn per_second(&mut self, now_ms: u64) -> f64 {
        self.expire(now_ms);
        let total: u64 = self.samples.iter().map(|(_, b)| b).sum();
        let oldest = self.samples.front().map_or(now_ms, |(start, _)| *start);
        let floor = (self.windows as u64 - 1) * self.window_ms;
        let elapsed = now_ms.saturating_sub(oldest).max(floor);
        total as f64 * 1000.0 / elapsed as f64
    }

    fn expire(&mut self, now_ms: u64) {
        let span = self.windows as u64 * self.window_ms;
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| start + span <= now_ms)
        {
            self.samples.pop_front();
        }
    }
}

/// One side's throttle: a limit in bytes per second (`u64::MAX`: none, Kafka's default) and the measured rate.
#[derive(Debug)]
pub struct ReplicationQuota {
    /// Bytes per second; changed at run time by a dynamic broker config (`dynamic_config.rs`).
    limit: AtomicU64,
    rate: Mutex<Rate>,
}

impl ReplicationQuota {
    pub fn new(limit: u64, windows: usize, window_ms: u64) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            rate: Mutex::new(Rate::new(windows, window_ms)),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts bytes of throttled replicas. Recorded while there is no limit too, so a limit set at run time
    /// starts from the real recent rate.
    pub fn record(&self, now_ms: u64, bytes: u64) {
        if bytes > 0 {
            self.rate.lock().record(now_ms, bytes);
        }
    }

    pub fn is_exceeded(&self, now_ms: u64) -> bool {
        let limit = self.limit();
        limit != u64::MAX && self.rate.lock().per_second(now_ms) > limit as f64
    }
}

/// The leader's and the follower's throttles of this broker.
#[derive(Debug)]
pub struct ReplicationQuotas {
    pub leader: ReplicationQuota,
    pub follower: ReplicationQuota,
}

impl ReplicationQuotas {
    /// The limits of `config` (its dynamic values applied, `dynamic_config::effective`).
    pub fn set_limits(&self, config: &crate::config::BrokerConfig) {
        self.leader
            .set_limit(config.leader_replication_throttled_rate);
        self.follower
            .set_limit(config.follower_replication_throttled_rate);
    }

    /// Whether the limits are still those of `config`.
    pub fn unchanged_from(&self, config: &crate::config::BrokerConfig) -> bool {
        self.leader.limit() == config.leader_replication_throttled_rate
            && self.follower.limit() == config.follower_replication_throttled_rate
    }

    pub fn new(config: &crate::config::BrokerConfig) -> Self {
        let windows = config.replication_quota_window_num;
        let window_ms = config.replication_quota_window_size_seconds * 1000;
        Self {
            leader: ReplicationQuota::new(
                config.leader_replication_throttled_rate,
                windows,
                window_ms,
            ),
            follower: ReplicationQuota::new(
                config.follower_replication_throttled_rate,
                windows,
                window_ms,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replicas_are_kafka_s_star_or_partition_broker_pairs() {
        assert_eq!(ThrottledReplicas::parse(""), Ok(ThrottledReplicas::None));
        assert_eq!(ThrottledReplicas::parse("*"), Ok(ThrottledReplicas::All));
        assert_eq!(ThrottledReplicas::parse(" * "), Ok(ThrottledReplicas::All));
        let listed = ThrottledReplicas::parse("0:1, 1:2,").unwrap();
        assert_eq!(listed, ThrottledReplicas::Listed(vec![(0, 1), (1, 2)]));
        assert!(listed.covers(0, 1) && listed.covers(1, 2));
        assert!(!listed.covers(0, 2) && !listed.covers(2, 1));
        assert!(ThrottledReplicas::All.covers(7, 3));
        assert!(!ThrottledReplicas::None.covers(0, 1));
        for bad in ["0", "a:1", "0:1,*", "1:-2", "0:1:2", "**"] {
            assert_eq!(
                ThrottledReplicas::parse(bad),
                Err(THROTTLED_REPLICAS_EXPECTED.to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_rate_divides_by_all_windows_but_one_until_they_have_passed() {
        let mut rate = Rate::new(11, 1000);
        rate.record(0, 10_000);
        // Ten seconds' floor at the start: 10 kB in the first instant is 1 kB/s, not a spike.
        assert_eq!(rate.per_second(0), 1000.0);
        rate.record(5_500, 10_000);
        assert_eq!(rate.per_second(10_000), 2000.0);
        // After eleven windows the first sample has expired.
        assert_eq!(rate.per_second(11_000), 1000.0);
        assert_eq!(rate.per_second(17_000), 0.0);
    }

    #[test]
    fn a_quota_is_exceeded_above_its_limit_and_never_without_one() {
        let quota = ReplicationQuota::new(1_000, 11, 1000);
        quota.record(0, 9_000);
        assert!(!quota.is_exceeded(0), "900 B/s");
        quota.record(100, 2_000);
        assert!(quota.is_exceeded(100), "1,100 B/s");
        // Eleven windows later the bytes have aged out.
        assert!(!quota.is_exceeded(11_100));

        let unlimited = ReplicationQuota::new(u64::MAX, 11, 1000);
        unlimited.record(0, u64::MAX / 2);
        assert!(!unlimited.is_exceeded(0));
    }
}
