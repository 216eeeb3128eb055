//! Background log maintenance, on blocking threads so it never stalls request handling:
//! - retention (`retention.ms`, `retention.bytes`), time-based segment rolls and the removal of `*.deleted` files,
//!   every `log.retention.check.interval.ms`;
//! - the log cleaner, on Kafka's cadence: it compacts every `cleanup.policy=compact` log whose dirty ratio reached
//!   `min.cleanable.dirty.ratio` or whose oldest dirty segment is older than `max.compaction.lag.ms`
//!   (`Log::cleaning_due`), rolling active segments whose time came first; then it looks again at once, or after
//!   `log.cleaner.backoff.ms` when nothing needed cleaning.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::server::BrokerState;

pub fn start(state: Arc<BrokerState>, shutdown: watch::Receiver<bool>) {
    start_retention(state.clone(), shutdown.clone());
    if state.config.log_cleaner_enable {
        start_cleaner(state, shutdown);
    }
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

fn start_cleaner(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let backoff = Duration::from_millis(state.config.log_cleaner_backoff_ms);
    tokio::spawn(async move {
        loop {
            let pass = {
                let state = state.clone();
                tokio::task::spawn_blocking(move || clean_once(&state)).await
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
    let mut cleaned = 0;
    for topic in state.topics.all() {
        if !topic.settings.log.cleanup_policy.compact {
            continue;
        }
        for p in &topic.local {
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
                }
                Err(e) => tracing::warn!(partition = %p.name(), error = %e, "log cleaner failed"),
            }
        }
    }
    cleaned
}
