//! The broker's own request times during a run, read from its `GET /metrics` (Prometheus's text format, the
//! `strom_request_total_time_seconds` histogram of `crates/broker/src/metrics.rs`): scraped before and after the
//! run, the difference of the bucket counts is the run's requests, so a client's latency can be set beside the
//! broker's time from request read to response written, and one sees which side queues.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The broker's request times per API (`crates/broker/src/metrics.rs`).
pub const REQUEST_TIME: &str = "strom_request_total_time_seconds";
/// How long after new records woke a long-polling fetch its read ran.
pub const FETCH_WAKEUP: &str = "strom_fetch_wakeup_seconds";

/// Cumulative bucket counts per histogram series ("metric/request"): (upper bound in seconds, count at most that
/// long).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot(BTreeMap<String, Vec<(f64, u64)>>);

/// One API's request times over a run, in ms. Each percentile is the upper bound of the histogram bucket it falls
/// in (buckets are 26 % apart), so it is at most that.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct RequestTime {
    pub api: &'static str,
    pub requests: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Reads the broker's metrics once.
pub fn scrape(addr: SocketAddr) -> Result<Snapshot> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the broker's metrics at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: strom\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the broker's metrics")?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("the broker's metrics answer has no body: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "the broker's metrics answered {:?}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(parse(body))
}

/// The histogram buckets of the exposition text.
fn parse(text: &str) -> Snapshot {
    let mut out: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for line in text.lines() {
        let Some((metric, rest)) = line.split_once("_bucket{request=\"") else {
            continue;
        };
        let Some((request, rest)) = rest.split_once("\",le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(le) => le,
                Err(_) => continue,
            }
        };
        if let Ok(count) = count.trim().parse() {
            out.entry(format!("{metric}/{request}"))
                .or_default()
                .push((le, count));
        }
    }
    Snapshot(out)
}

impl Snapshot {
    /// `api`'s series of histogram `metric` between `before` and this snapshot; `None` if nothing was counted
    /// meanwhile.
    pub fn since(&self, before: &Snapshot, metric: &str, api: &'static str) -> Option<RequestTime> {
        let key = format!("{metric}/{api}");
        let after = self.0.get(&key)?;
        let earlier = before.0.get(&key);
        let counts: Vec<(f64, u64)> = after
            .iter()
            .enumerate()
            .map(|(i, (le, n))| {
                let was = earlier.and_then(|e| e.get(i)).map_or(0, |(_, n)| *n);
                (*le, n.saturating_sub(was))
            })
            .collect();
        let total = counts.last().map_or(0, |(_, n)| *n);
        if total == 0 {
            return None;
        }
        let at = |q: f64| {
            let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
            let le = counts
                .iter()
                .find(|(_, n)| *n >= rank)
                .map_or(f64::INFINITY, |(le, _)| *le);
            le * 1000.0
        };
        Some(RequestTime {
            api,
            requests: total,
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(produce: &[(&str, u64)]) -> String {
        let mut out = String::from("# TYPE strom_request_total_time_seconds histogram\n");
        for (le, n) in produce {
            out += &format!("{REQUEST_TIME}_bucket{{request=\"Produce\",le=\"{le}\"}} {n}\n");
        }
        out += "strom_request_total_time_seconds_count{request=\"Produce\"} 0\n";
        out
    }

    #[test]
    fn percentiles_come_from_the_difference_of_two_scrapes() {
        let before = parse(&text(&[("0.001", 90), ("0.002", 100), ("+Inf", 100)]));
        // 1,020 requests more: 980 within 1 ms, 35 more within 2 ms, 5 beyond.
        let after = parse(&text(&[("0.001", 1070), ("0.002", 1115), ("+Inf", 1120)]));
        let t = after.since(&before, REQUEST_TIME, "Produce").unwrap();
        assert_eq!(t.requests, 1020);
        assert_eq!(t.p50, 1.0);
        assert_eq!(t.p99, 2.0);
        assert_eq!(t.p999, f64::INFINITY);
        assert_eq!(
            after.since(&after, REQUEST_TIME, "Produce"),
            None,
            "nothing served between"
        );
        assert_eq!(after.since(&before, REQUEST_TIME, "Fetch"), None);
    }

    #[test]
    fn a_first_scrape_before_any_request_counts_from_zero() {
        let after = parse(&text(&[("0.0005", 3), ("+Inf", 4)]));
        let t = after
            .since(&Snapshot::default(), REQUEST_TIME, "Produce")
            .unwrap();
        assert_eq!((t.requests, t.p50, t.p99), (4, 0.5, f64::INFINITY));
    }
}
