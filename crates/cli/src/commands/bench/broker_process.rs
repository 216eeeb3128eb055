//! The broker under test when no `--brokers` is given: `strom broker` from this same binary, started as a child
//! process on an ephemeral loopback port with a temp data dir. A separate process keeps the broker's CPU time and
//! memory apart from the load client's, and lets them be read from /proc of the broker process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// Linux reports /proc CPU times in USER_HZ ticks, fixed at 100 per second for user space on every architecture
/// Strom runs on.
const TICKS_PER_SEC: f64 = 100.0;
/// How long [`BrokerProcess::settle`] waits at most, and the window it judges idleness over (/proc CPU times
/// move in 10 ms ticks, so the window must span many of them).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const SETTLE_WINDOW: Duration = Duration::from_millis(500);
/// How long the broker may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    /// Where the broker serves `GET /metrics` (its request times).
    metrics: Option<SocketAddr>,
    // The data directory; dropped (deleted) with the broker.
    dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts `strom broker` and waits for its ready line, which names the bound address. `overrides` are
    /// `KEY=VALUE` broker config settings.
    pub fn start(overrides: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the broker's temp dir")?;
        let exe = std::env::current_exe().context("finding the strom binary")?;
        let mut command = Command::new(exe);
        command
            .arg("broker")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(["--set", "strom.metrics.listener=127.0.0.1:0"])
            .env("STROM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for setting in overrides {
            command.args(["--set", setting]);
        }
        let mut child = command.spawn().context("starting strom broker")?;
        let stderr = child.stderr.take().context("broker stderr")?;
        let (ready_tx, ready_rx) = mpsc::channel::<std::result::Result<String, Vec<String>>>();
        // Drains the broker's log for its whole life, so the broker never blocks on a full pipe. Until the ready
        // line everything is kept (to explain a failed start); after it, warnings and errors are passed on to this
        // process's stderr.
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            let mut early = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if ready_tx.is_some() {
                    if line.contains("Strom broker ready") {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Ok(line));
                        }
                    } else {
                        early.push(line);
                    }
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("broker: {line}");
                }
            }
            if let Some(tx) = ready_tx {
                let _ = tx.send(Err(early));
            }
        });
        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(log)) => {
                let _ = child.wait();
                bail!("the broker exited before it was ready:\n{}", log.join("\n"));
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the broker did not report ready within {READY_TIMEOUT:?}");
            }
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("no listen= address in the broker's ready line {line:?}"))?;
        let metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics=http://"))
            .and_then(|a| a.strip_suffix("/metrics"))
            .and_then(|a| a.parse().ok());
        Ok(BrokerProcess {
            child,
            addr,
            metrics,
            dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`SETTLE_LIMIT`]) until the broker is idle, i.e. used less than 2 % of a core over the last
    /// [`SETTLE_WINDOW`], so one case's leftover work (the periodic flush of what it wrote, segment rolls) is not
    /// counted in the next case's figures. Returns whether it settled.
    pub fn settle(&self) -> bool {
        let deadline = std::time::Instant::now() + SETTLE_LIMIT;
        let Some(mut before) = cpu_seconds(self.pid()) else {
            return false;
        };
        while std::time::Instant::now() < deadline {
            std::thread::sleep(SETTLE_WINDOW);
            let Some(now) = cpu_seconds(self.pid()) else {
                return false;
            };
            if now - before <= 0.02 * SETTLE_WINDOW.as_secs_f64() {
                return true;
            }
            before = now;
        }
        false
    }

    /// Stops the broker with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            let _ = self.child.kill();
        }
        self.child.wait().context("waiting for the broker")?;
        Ok(())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // After `stop` this finds the process gone; on an error path it makes sure no broker outlives the bench.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes back everything dirty in the page cache of the filesystem holding `dir` (`syncfs`), so a case does not
/// pay for the previous case's disk writes: an fsync waits for every dirty page of its file to reach the disk, and
/// the kernel throttles writers once too much is dirty.
pub fn settle_writeback(dir: &std::path::Path) -> Result<()> {
    let dir = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    rustix::fs::syncfs(&dir).context("syncfs")?;
    Ok(())
}

/// Drops `topic`'s log segments under the broker data dir `dir` from the page cache (`posix_fadvise`
/// `DONTNEED`; they must be written back first, see [`settle_writeback`]), so the next read of them comes from
/// the disk. Returns how many segment files were evicted.
pub fn evict_from_page_cache(dir: &std::path::Path, topic: &str) -> Result<usize> {
    let prefix = format!("{topic}-");
    let mut evicted = 0;
    for partition in std::fs::read_dir(dir)?.flatten() {
        let name = partition.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        // `<topic>-<partition index>` only: a longer topic name with this one as its prefix is not ours.
        if rest.parse::<u32>().is_err() {
            continue;
        }
        for file in std::fs::read_dir(partition.path())?.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "log") {
                let segment = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                rustix::fs::fadvise(&segment, 0, None, rustix::fs::Advice::DontNeed)
                    .with_context(|| format!("evicting {} from the page cache", path.display()))?;
                evicted += 1;
            }
        }
    }
    Ok(evicted)
}

/// CPU time and memory of one process during a run.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    /// CPU seconds (user + system) used during the run.
    pub cpu_seconds: f64,
    /// CPU seconds per million records.
    pub cpu_seconds_per_million_records: f64,
    /// Peak resident memory during the run, in MiB.
    pub peak_rss_mib: f64,
}

/// Reads a process's CPU time at the start and end of a run, and its peak RSS over the run.
pub struct UsageProbe {
    pid: u32,
    start_cpu: f64,
}

impl UsageProbe {
    /// `None` where /proc cannot be read (not Linux, or the process is gone).
    pub fn start(pid: u32) -> Option<Self> {
        // Resets the process's peak RSS (VmHWM) so the reading at the end covers this run only.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        Some(UsageProbe {
            pid,
            start_cpu: cpu_seconds(pid)?,
        })
    }

    pub fn finish(&self, records: usize) -> Option<ProcessUsage> {
        // /proc counts in 10 ms ticks: rounding to them drops float noise such as 0.3899999999999997.
        let cpu = ((cpu_seconds(self.pid)? - self.start_cpu).max(0.0) * TICKS_PER_SEC).round()
            / TICKS_PER_SEC;
        Some(ProcessUsage {
            cpu_seconds: cpu,
            cpu_seconds_per_million_records: (cpu / records.max(1) as f64 * 1e9).round() / 1e3,
            peak_rss_mib: read_kib(&format!("/proc/{}/status", self.pid), "VmHWM")? as f64 / 1024.0,
        })
    }
}

/// User + system CPU seconds of a whole process (all its threads, including exited ones).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// A `kB` line (`VmHWM`, `MemTotal`, ...) of a /proc file.
pub fn read_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_this_process() {
        let probe = UsageProbe::start(std::process::id()).expect("/proc readable");
        // Burn a little CPU so the figure can move.
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let usage = probe.finish(1_000_000).unwrap();
        assert!(usage.cpu_seconds >= 0.0);
        assert_eq!(usage.cpu_seconds, usage.cpu_seconds_per_million_records);
        assert!(usage.peak_rss_mib > 0.0, "{usage:?}");
    }
}
