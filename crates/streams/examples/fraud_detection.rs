//! Fraud detection: a card used more than [`THRESHOLD`] times within one minute raises an alert.
//!
//! `payments` (key: card id, value: JSON [`Payment`]) is counted per card in 1-minute tumbling windows; every
//! count above the threshold is written to `fraud-alerts` (key: card id, value: JSON [`Alert`]), so an alert
//! goes out with the payment that crosses the threshold and is updated by each further one in the window.
//!
//! ```text
//! cargo run -p strom-streams --example fraud_detection -- --bootstrap 127.0.0.1:9092 --demo
//! ```
//! Flags: `--bootstrap host:port`, `--application-id id`, `--state-dir path`, `--demo` (first produce a few
//! sample payments). Ctrl-C stops it.

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

pub const PAYMENTS: &str = "payments";
pub const FRAUD_ALERTS: &str = "fraud-alerts";
/// More payments than this on one card within a window is suspicious.
pub const THRESHOLD: i64 = 3;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Payment terminals batch and retry: a payment may reach the topic a few seconds after it happened.
pub const GRACE: Duration = Duration::from_secs(10);
/// The store of the counts per card and window, queryable by this name.
pub const COUNTS_STORE: &str = "payments-per-card";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub amount_cents: i64,
    pub merchant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub card: String,
    pub window_start: i64,
    pub window_end: i64,
    pub payments: i64,
}

pub fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, Json<Payment>>(PAYMENTS)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, GRACE))
        .count(Materialized::named(COUNTS_STORE))
        .to_stream()
        .filter(|_, count| count.is_some_and(|n| n > THRESHOLD))
        .map(|card, count| {
            let alert = Alert {
                card: card.key.clone(),
                window_start: card.window.start,
                window_end: card.window.end,
                payments: count.unwrap_or_default(),
            };
            (card.key, Json(alert))
        })
        .to(FRAUD_ALERTS);
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
        application_id: "fraud-detection".into(),
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

/// Card 0001 pays five times within a minute (two alerts: counts 4 and 5); card 0002 twice.
async fn produce_demo(bootstrap: &str) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let minute = now.as_millis() as i64 / 60_000 * 60_000;
    let payments = [
        ("card-0001", 1_250, "coffee", 1_000),
        ("card-0002", 4_000, "books", 2_000),
        ("card-0001", 9_999, "electronics", 5_000),
        ("card-0001", 9_999, "electronics", 6_000),
        ("card-0001", 9_999, "electronics", 7_000),
        ("card-0002", 800, "bakery", 30_000),
        ("card-0001", 9_999, "jewellery", 8_000),
    ];
    let mut deliveries = Vec::new();
    for (card, amount_cents, merchant, offset_ms) in payments {
        let payment = Payment {
            amount_cents,
            merchant: merchant.into(),
        };
        let record = ProducerRecord::new(PAYMENTS)
            .key(card)
            .value(serde_json::to_vec(&payment)?)
            .timestamp(minute + offset_ms);
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    Ok(())
}

/// Prints every alert written to `fraud-alerts`, from the beginning of the topic.
async fn print_alerts(bootstrap: String) -> Result<(), strom_client::Error> {
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let topic = consumer
        .cluster()
        .wait_for_topic(FRAUD_ALERTS, Duration::from_secs(30))
        .await?;
    let partitions =
        (0..topic.partition_count() as i32).map(|p| TopicPartition::new(FRAUD_ALERTS, p));
    consumer.assign(partitions).await?;
    loop {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let value = record.value.unwrap_or_default();
            match serde_json::from_slice::<Alert>(&value) {
                Ok(a) => println!(
                    "ALERT card {} made {} payments in [{}, {})",
                    a.card, a.payments, a.window_start, a.window_end
                ),
                Err(e) => eprintln!("an alert that is not JSON: {e}"),
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
    create_topics(&args.bootstrap, &[PAYMENTS, FRAUD_ALERTS]).await?;
    if args.demo {
        produce_demo(&args.bootstrap).await?;
    }
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if let Some(dir) = &args.state_dir {
        config.state_dir = dir.into();
    }
    let mut streams = KafkaStreams::new(topology(), config)?;
    streams.start().await?;
    let printer = tokio::spawn(print_alerts(args.bootstrap.clone()));
    println!(
        "watching {PAYMENTS} for cards used more than {THRESHOLD} times a minute; Ctrl-C stops"
    );
    let result: Result<(), Box<dyn Error>> = tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.map_err(Into::into),
        error = failure(&streams) => Err(error.into()),
    };
    printer.abort();
    streams.close().await;
    result
}
