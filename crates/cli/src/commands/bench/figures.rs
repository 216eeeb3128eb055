//! What one scenario run measured, and the in-process broker's CPU time and memory during it.

use std::time::Duration;

use serde::Serialize;

use super::BROKER_THREAD;

/// Linux reports /proc CPU times in USER_HZ ticks, fixed at 100 per second for user space on every architecture
/// Strom runs on.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Serialize, Debug, Clone, Default)]
pub struct Figures {
    pub records: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// Per-record latency in ms (produce: send to delivery report); `None` where the scenario has none.
    pub latency_ms: Option<Latency>,
    pub broker: Option<BrokerUsage>,
    /// What the figure means beyond its name, e.g. a step the scenario skips.
    pub note: Option<&'static str>,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct BrokerUsage {
    /// CPU seconds (user + system) of the broker's runtime threads during the run.
    pub cpu_seconds: f64,
    /// Broker CPU seconds per million records.
    pub cpu_seconds_per_million_records: f64,
    /// Peak resident memory of the whole process (broker and client together) during the run, in MiB.
    pub process_peak_rss_mib: f64,
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
    pub fn summary_line(&self, ceiling_ratio: Option<f64>) -> String {
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
        if let Some(ratio) = ceiling_ratio {
            line += &format!(", {:.0} % of ceiling", ratio * 100.0);
        }
        if let Some(b) = self.broker {
            line += &format!(", broker cpu {:.2} s", b.cpu_seconds);
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

/// The run with the median rate (the upper one of the middle two for an even count).
pub fn median_run(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec));
    runs.swap_remove(runs.len() / 2)
}

/// Reads the in-process broker's CPU time at the start and end of a run. The broker shares the process with the
/// client, so CPU is summed over the threads its runtime names [`BROKER_THREAD`] only; threads that exit during
/// the run (idle blocking-pool threads) take their CPU time with them.
pub struct BrokerProbe {
    start_cpu: Option<f64>,
}

impl BrokerProbe {
    pub fn start(in_process: bool) -> Self {
        if !in_process {
            return BrokerProbe { start_cpu: None };
        }
        // Resets the process's peak RSS (VmHWM) so the reading at the end covers this run only.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        BrokerProbe {
            start_cpu: broker_cpu_seconds(),
        }
    }

    pub fn finish(&self, records: usize) -> Option<BrokerUsage> {
        let start = self.start_cpu?;
        let cpu_seconds = (broker_cpu_seconds()? - start).max(0.0);
        Some(BrokerUsage {
            cpu_seconds,
            cpu_seconds_per_million_records: cpu_seconds / records.max(1) as f64 * 1e6,
            process_peak_rss_mib: status_kib("VmHWM").unwrap_or(0) as f64 / 1024.0,
        })
    }
}

fn broker_cpu_seconds() -> Option<f64> {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        // comm is truncated to 15 bytes; the runtime names its threads exactly BROKER_THREAD.
        if comm.trim_end() != BROKER_THREAD {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// A `kB` line of /proc/self/status.
pub fn status_kib(key: &str) -> Option<u64> {
    read_kib("/proc/self/status", key)
}

pub fn read_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
