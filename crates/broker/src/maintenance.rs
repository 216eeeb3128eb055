//! Background log maintenance, on blocking threads so it never stalls request handling:
//! - retention (`retention.ms`, `retention.bytes`), time-based segment rolls and the removal of `*.deleted` files,
//!   every `log.retention.check.interval.ms`;
//! - the log cleaner, on Kafka's cadence: it compacts every `cleanup.policy=compact` log whose dirty ratio reached
//!   `min.cleanable.dirty.ratio` or whose oldest dirty segment is older than `max.compaction.lag.ms`
//!   (`Log::cleaning_due`), rolling active segments whose time came first; then it looks again at once, or after
//!   `log.cleaner.backoff.ms` when nothing needed cleaning. `log.cleaner.threads` cleaners work at once, each over
//!   its own share of the logs (by a hash of the partition's name), and `log.cleaner.io.max.bytes.per.second`
//!   bounds the bytes they read and write together: after a log is compacted its cleaner pauses until the bytes
//!   so far fit the rate. The pause comes between logs, never inside one log's pass, because compaction holds
//!   the partition's log lock and a pause there would stall its produce and fetch requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::server::BrokerState;

pub fn start(state: Arc<BrokerState>, shutdown: watch::Receiver<bool>) {
    start_retention(state.clone(), shutdown.clone());
    if state.config.log_cleaner_enable {
        let threads = state.config.log_cleaner_threads;
        let throttle = state.cleaner_throttle.clone();
        for cleaner in 0..threads {
            let share = Share {
                cleaner,
                of: threads,
            };
            start_cleaner(state.clone(), share, throttle.clone(), shutdown.clone());
        }
    }
}

/// Which logs one cleaner compacts: those whose name hashes to `cleaner` out of `of`.
#[derive(Debug, Clone, Copy)]
struct Share {
    cleaner: usize,
    of: usize,
}

impl Share {
    fn includes(&self, partition: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        partition.hash(&mut h);
        h.finish() as usize % self.of.max(1) == self.cleaner
    }
}

/// `log.cleaner.io.max.bytes.per.second`, shared by every cleaner, as Kafka's cleaner Throttler: bytes are counted
/// over a period that restarts every [`IoThrottle::PERIOD`], and a cleaner that finds them above what the rate
/// allows for the time passed sleeps the difference.
#[derive(Debug)]
pub struct IoThrottle {
    /// The rate's f64 bits; changed at run time by a dynamic broker config (`dynamic_config.rs`).
    rate: std::sync::atomic::AtomicU64,
    period: parking_lot::Mutex<(std::time::Instant, f64)>,
}

impl IoThrottle {
    const PERIOD: Duration = Duration::from_millis(300);

    pub fn new(bytes_per_second: f64) -> Self {
        Self {
            rate: std::sync::atomic::AtomicU64::new(bytes_per_second.to_bits()),
            period: parking_lot::Mutex::new((std::time::Instant::now(), 0.0)),
        }
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn set_rate(&self, bytes_per_second: f64) {
        self.rate.store(
            bytes_per_second.to_bits(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Counts `bytes` and returns how long to pause so that the bytes of the period fit the rate.
    pub fn account(&self, bytes: u64, now: std::time::Instant) -> Duration {
        let rate = self.rate();
        if rate >= f64::MAX {
            return Duration::ZERO;
        }
        let mut period = self.period.lock();
        period.1 += bytes as f64;
        let pause = throttle_pause(period.1, now.saturating_duration_since(period.0), rate);
        if now.saturating_duration_since(period.0) + pause >= Self::PERIOD {
            *period = (now + pause, 0.0);
        }
        pause
    }
}

/// How much longer than `elapsed` moving `bytes` must take at `rate` bytes per second.
fn throttle_pause(bytes: f64, elapsed: Duration, rate: f64) -> Duration {
    let needed = Duration::from_secs_f64((bytes / rate).min(86_400.0));
    needed.saturating_sub(elapsed)
}

fn start_retention(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.retention_check_interval_ms);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let state = state.clone();
            let _ = tokio::task::spawn_blocking(move || run_once(&state)).await;
        }
    });
}

fn start_cleaner(
    state: Arc<BrokerState>,
    share: Share,
    throttle: Arc<IoThrottle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let backoff = Duration::from_millis(state.config.log_cleaner_backoff_ms);
    tokio::spawn(async move {
        loop {
            let pass = {
                let state = state.clone();
                let throttle = throttle.clone();
                tokio::task::spawn_blocking(move || clean_share(&state, share, &throttle)).await
            };
            // Something was cleaned: look again at once (more may be due); otherwise back off.
            let wait = if matches!(pass, Ok(n) if n > 0) {
                Duration::ZERO
            } else {
                backoff
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// One retention pass over every partition.
pub fn run_once(state: &BrokerState) {
    for topic in state.topics.all() {
        for p in &topic.local {
            match p.run_cleanup(now_ms()) {
                Ok(0) => {}
                Ok(segments) => {
                    tracing::info!(partition = %p.name(), segments_deleted = segments, "log retention");
                }
                Err(e) => tracing::warn!(partition = %p.name(), error = %e, "log retention failed"),
            }
        }
    }
}

/// One cleaner pass over every compacted partition hosted here. Returns how many it compacted.
pub fn clean_once(state: &BrokerState) -> usize {
    let all = Share { cleaner: 0, of: 1 };
    clean_share(state, all, &IoThrottle::new(f64::MAX))
}

/// One pass of one cleaner over its share of the compacted partitions hosted here, pausing after each compaction
/// as `throttle` says. Returns how many it compacted.
fn clean_share(state: &BrokerState, share: Share, throttle: &IoThrottle) -> usize {
    let mut cleaned = 0;
    for topic in state.topics.all() {
        if !topic.settings.log.cleanup_policy.compact {
            continue;
        }
        for p in topic.local.iter().filter(|p| share.includes(&p.name())) {
            match p.clean(now_ms()) {
                Ok(None) => {}
                Ok(Some((due, stats))) => {
                    cleaned += 1;
                    tracing::info!(
                        partition = %p.name(),
                        ?due,
                        segments_cleaned = stats.segments_cleaned,
                        records_removed = stats.records_removed,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        "log cleaner compacted"
                    );
                    let io = stats.bytes_read + stats.bytes_after;
                    let pause = throttle.account(io, std::time::Instant::now());
                    if !pause.is_zero() {
                        tracing::debug!(?pause, io, "log cleaner throttled");
                        std::thread::sleep(pause);
                    }
                }
                Err(e) => tracing::warn!(partition = %p.name(), error = %e, "log cleaner failed"),
            }
        }
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleaner_throttle_pauses_until_the_bytes_fit_the_rate() {
        assert_eq!(
            throttle_pause(1_000_000.0, Duration::ZERO, 1_000_000.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            throttle_pause(1_000_000.0, Duration::from_millis(400), 1_000_000.0),
            Duration::from_millis(600)
        );
        assert_eq!(
            throttle_pause(1_000.0, Duration::from_millis(400), 1_000_000.0),
            Duration::ZERO
        );

        let start = std::time::Instant::now();
        let throttle = IoThrottle::new(10_000.0);
        // 5 kB at 10 kB/s: half a second; the period then starts after that pause.
        assert_eq!(throttle.account(5_000, start), Duration::from_millis(500));
        let later = start + Duration::from_millis(500);
        assert_eq!(throttle.account(1_000, later), Duration::from_millis(100));

        let unbounded = IoThrottle::new(f64::MAX);
        assert_eq!(unbounded.account(u64::MAX, start), Duration::ZERO);
    }

    #[test]
    fn cleaner_shares_split_the_logs_between_the_cleaners() {
        let names: Vec<String> = (0..100).map(|i| format!("topic-{i}")).collect();
        let shares: Vec<Share> = (0..3).map(|cleaner| Share { cleaner, of: 3 }).collect();
        for name in &names {
            let owners = shares.iter().filter(|s| s.includes(name)).count();
            assert_eq!(owners, 1, "{name}");
        }
        for share in &shares {
            assert!(
                names.iter().any(|n| share.includes(n)),
                "{share:?} has none"
            );
        }
    }
}
