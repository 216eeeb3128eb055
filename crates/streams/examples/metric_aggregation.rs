//! Metric aggregation: min, max and average of each host's readings over the last minute, every 10 seconds.
//!
//! `metrics` (key: host, value: the reading as a big-endian f64, Kafka's DoubleSerde) is aggregated per host in
//! hopping windows of 60 s advancing by 10 s, so each reading lands in six windows. Every update of a window
//! goes to `metric-stats` with the key `host@window-start` and a JSON [`Stats`] value.
//!
//! ```text
//! cargo run -p strom-streams --example metric_aggregation -- --bootstrap 127.0.0.1:9092 --demo
//! ```
//! Flags: `--bootstrap host:port`, `--application-id id`, `--state-dir path`, `--demo` (first produce a few
//! sample readings). Ctrl-C stops it.

use std::error::Error;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strom_client::consumer::ConsumerRecord;
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_streams::{Json, Materialized, StreamsBuilder, TimeWindows, Topology};

pub const METRICS: &str = "metrics";
pub const METRIC_STATS: &str = "metric-stats";
pub const WINDOW: Duration = Duration::from_secs(60);
pub const ADVANCE: Duration = Duration::from_secs(10);
/// Agents buffer readings while their network is down and send them when it is back.
pub const GRACE: Duration = Duration::from_secs(30);
pub const STATS_STORE: &str = "stats-per-host";

/// What a window keeps: the sum rather than the average, so that a reading is one addition.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

impl Summary {
    pub fn with(self, reading: f64) -> Self {
        if self.count == 0 {
            // JSON has no infinities, so an empty summary cannot start from them.
            return Self {
                min: reading,
                max: reading,
                sum: reading,
                count: 1,
            };
        }
        Self {
            min: self.min.min(reading),
            max: self.max.max(reading),
            sum: self.sum + reading,
            count: self.count + 1,
        }
    }
}

/// The output value of a host's window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: i64,
}

impl From<Summary> for Stats {
    fn from(s: Summary) -> Self {
        Self {
            min: s.min,
            max: s.max,
            avg: s.sum / s.count as f64,
            count: s.count,
        }
    }
}

pub fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, f64>(METRICS)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, GRACE).advance_by(ADVANCE))
        .aggregate(
            || Json(Summary::default()),
            |_host, reading, summary| Json(summary.0.with(reading)),
            Materialized::named(STATS_STORE),
        )
        .to_stream()
        .map(|window, summary| {
            let key = format!("{}@{}", window.key, window.window.start);
            (key, summary.map(|s| Json(Stats::from(s.0))))
        })
        .to(METRIC_STATS);
    builder.build()
}

#[path = "common/mod.rs"]
mod common;

/// Three hosts reporting their CPU load every 5 s for two minutes up to now.
async fn produce_demo(bootstrap: String) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(&bootstrap)).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let start = now.as_millis() as i64 - 120_000;
    let mut deliveries = Vec::new();
    for i in 0..24 {
        for (h, host) in ["web-1", "web-2", "db-1"].into_iter().enumerate() {
            let load = 20.0 + ((i * 7 + h * 13) % 50) as f64;
            let record = ProducerRecord::new(METRICS)
                .key(host)
                .value(load.to_be_bytes().to_vec())
                .timestamp(start + i as i64 * 5_000);
            deliveries.push(producer.send(record).await?);
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    Ok(())
}

/// Prints every update written to `metric-stats`, from the beginning of the topic.
fn print_stats(record: ConsumerRecord) {
    let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
    let value = record.value.unwrap_or_default();
    match serde_json::from_slice::<Stats>(&value) {
        Ok(s) => println!(
            "{key:>28}  min {:>6.1}  max {:>6.1}  avg {:>6.2}  ({} readings)",
            s.min, s.max, s.avg, s.count
        ),
        Err(e) => eprintln!("{key}: a value that is not JSON stats: {e}"),
    }
}

#[tokio::main]
async fn main() {
    common::run(
        "metric-aggregation",
        &[METRICS, METRIC_STATS],
        topology(),
        produce_demo,
        METRIC_STATS,
        print_stats,
        "min/max/avg per host over 60 s windows every 10 s, as they change",
    )
    .await;
}
