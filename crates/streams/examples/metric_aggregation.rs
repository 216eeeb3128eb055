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
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_protocol::kafka::ResponseError;
use strom_streams::{
    Json, KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, TimeWindows, Topology,
};

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

struct Args {
    bootstrap: String,
    application_id: String,
    state_dir: Option<String>,
    demo: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: "127.0.0.1:9092".into(),
        application_id: "metric-aggregation".into(),
        state_dir: None,
        demo: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value()?,
            "--application-id" => args.application_id = value()?,
            "--state-dir" => args.state_dir = Some(value()?),
            "--demo" => args.demo = true,
            _ => {
                return Err(format!(
                    "unknown flag {flag:?}; flags: --bootstrap host:port --application-id id --state-dir path --demo"
                ))
            }
        }
    }
    Ok(args)
}

/// Creates the topics with 6 partitions; a topic that exists already is fine.
async fn create_topics(bootstrap: &str, names: &[&str]) -> Result<(), Box<dyn Error>> {
    let admin = Admin::connect(bootstrap).await?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(*n).partitions(6))
        .collect();
    for created in admin.create_topics(&topics, false).await? {
        if let Err(e) = created.result {
            if e.kafka_code() != Some(ResponseError::TopicAlreadyExists) {
                return Err(format!("creating {}: {e}", created.topic).into());
            }
        }
    }
    Ok(())
}

/// Three hosts reporting their CPU load every 5 s for two minutes up to now.
async fn produce_demo(bootstrap: &str) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await?;
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
async fn print_stats(bootstrap: String) -> Result<(), strom_client::Error> {
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let topic = consumer
        .cluster()
        .wait_for_topic(METRIC_STATS, Duration::from_secs(30))
        .await?;
    let partitions =
        (0..topic.partition_count() as i32).map(|p| TopicPartition::new(METRIC_STATS, p));
    consumer.assign(partitions).await?;
    loop {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let key =
                String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            let value = record.value.unwrap_or_default();
            match serde_json::from_slice::<Stats>(&value) {
                Ok(s) => println!(
                    "{key:>28}  min {:>6.1}  max {:>6.1}  avg {:>6.2}  ({} readings)",
                    s.min, s.max, s.avg, s.count
                ),
                Err(e) => eprintln!("{key}: a value that is not JSON stats: {e}"),
            }
        }
    }
}

/// Resolves when a stream thread stopped on an error, with that error.
async fn failure(streams: &KafkaStreams) -> String {
    loop {
        if let State::Error(e) = streams.state() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Err(e) = run().await {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    create_topics(&args.bootstrap, &[METRICS, METRIC_STATS]).await?;
    if args.demo {
        produce_demo(&args.bootstrap).await?;
    }
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if let Some(dir) = &args.state_dir {
        config.state_dir = dir.into();
    }
    let mut streams = KafkaStreams::new(topology(), config)?;
    streams.start().await?;
    let printer = tokio::spawn(print_stats(args.bootstrap.clone()));
    println!("min/max/avg per host over 60 s windows every 10 s, as they change; Ctrl-C stops");
    let result: Result<(), Box<dyn Error>> = tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.map_err(Into::into),
        error = failure(&streams) => Err(error.into()),
    };
    printer.abort();
    streams.close().await;
    result
}
