//! Background log maintenance: retention (`retention.ms`, `retention.bytes`), time-based segment rolls and
//! compaction, every `log.retention.check.interval.ms`, on a blocking thread so it never stalls request handling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::server::BrokerState;

pub fn start(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
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

/// One maintenance pass over every partition.
pub fn run_once(state: &BrokerState) {
    for topic in state.topics.all() {
        for p in &topic.local {
            match p.run_cleanup(now_ms()) {
                Ok((0, 0)) => {}
                Ok((segments, records)) => {
                    tracing::info!(partition = %p.name(), segments_deleted = segments, records_compacted = records, "log cleanup");
                }
                Err(e) => tracing::warn!(partition = %p.name(), error = %e, "log cleanup failed"),
            }
        }
    }
}
