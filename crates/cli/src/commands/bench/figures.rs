//! What one scenario run measured.

use std::time::Duration;

use serde::Serialize;

use super::broker_metrics::RequestTime;
use super::broker_process::ProcessUsage;

#[derive(Serialize, Debug, Clone, Default)]
pub struct Figures {
    pub records: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// Per-record latency in ms (produce: send to delivery report); `None` where the scenario has none.
    pub latency_ms: Option<Latency>,
    /// The broker process's CPU and peak memory during the run (not measured for an external broker).
    pub broker: Option<ProcessUsage>,
    /// The broker's own time per request of the run's main API, from request read to response written (its
    /// `GET /metrics`; not measured for an external broker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_request_ms: Option<RequestTime>,
    /// e2e: how long after new records woke a long-polling fetch the broker read them (its share of the fetch
    /// side of the latency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_fetch_wakeup_ms: Option<RequestTime>,
    /// The load client's (this process's) CPU and peak memory during the run.
    pub client: Option<ProcessUsage>,
    /// What the figure means beyond its name, e.g. a step the scenario skips.
    pub note: Option<&'static str>,
    /// failover: from the leader's kill to the acknowledgement of the first record sent after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<f64>,
    /// streams: from `start()` until the application's tasks were assigned (internal topics, the group join);
    /// not counted in the rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Figures {
    pub fn new(records: usize, bytes: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Figures {
            records,
            bytes,
            seconds,
            records_per_sec: records as f64 / seconds,
            mb_per_sec: bytes as f64 / seconds / 1e6,
            ..Default::default()
        }
    }

    /// One line in the style of `kafka-producer-perf-test`.
    /// `ratios`: this rate as a fraction of other cases' rates, by case name.
    pub fn summary_line(&self, ratios: &[(&str, f64)]) -> String {
        let mut line = format!(
            "{} records, {:.1} records/sec ({:.2} MB/sec)",
            self.records, self.records_per_sec, self.mb_per_sec
        );
        if let Some(l) = self.latency_ms {
            line += &format!(
                ", p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                l.p50, l.p99, l.p999, l.max
            );
        }
        if let Some(r) = self.broker_request_ms {
            line += &format!(
                ", broker {} request time p50 <= {:.2} ms, p99 <= {:.2} ms, p99.9 <= {:.2} ms ({} requests)",
                r.api, r.p50, r.p99, r.p999, r.requests
            );
        }
        if let Some(w) = self.broker_fetch_wakeup_ms {
            line += &format!(
                ", broker fetch wake-up p50 <= {:.2} ms, p99 <= {:.2} ms, p99.9 <= {:.2} ms",
                w.p50, w.p99, w.p999
            );
        }
        if let Some(pause) = self.pause_ms {
            line += &format!(", pause {pause:.0} ms");
        }
        if let Some(startup) = self.startup_ms {
            line += &format!(", startup {startup:.0} ms (not counted)");
        }
        for (baseline, ratio) in ratios {
            line += &format!(", {:.0} % of {baseline}", ratio * 100.0);
        }
        if let Some(b) = self.broker {
            line += &format!(
                ", broker cpu {:.2} s ({:.2} s per M records), broker peak rss {:.0} MiB",
                b.cpu_seconds, b.cpu_seconds_per_million_records, b.peak_rss_mib
            );
        }
        if let Some(c) = self.client {
            line += &format!(", client cpu {:.2} s", c.cpu_seconds);
        }
        if let Some(note) = self.note {
            line += &format!(" ({note})");
        }
        line
    }
}

impl Latency {
    /// Percentiles of `micros` (one entry per record), which it sorts.
    pub fn from_micros(micros: &mut [u32]) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[i]) / 1000.0
        };
        Some(Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        })
    }
}

/// The run with the median `key` (the upper one of the middle two for an even count).
pub fn median_run(mut runs: Vec<Figures>, key: impl Fn(&Figures) -> f64) -> Figures {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.swap_remove(runs.len() / 2)
}
