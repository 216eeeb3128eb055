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
use strom_client::consumer::ConsumerRecord;
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_streams::{Json, Materialized, StreamsBuilder, TimeWindows, Topology};

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

#[path = "common/mod.rs"]
mod common;

/// Card 0001 pays five times within a minute (two alerts: counts 4 and 5); card 0002 twice.
async fn produce_demo(bootstrap: String) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(&bootstrap)).await?;
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
fn print_alert(record: ConsumerRecord) {
    let value = record.value.unwrap_or_default();
    match serde_json::from_slice::<Alert>(&value) {
        Ok(a) => println!(
            "ALERT card {} made {} payments in [{}, {})",
            a.card, a.payments, a.window_start, a.window_end
        ),
        Err(e) => eprintln!("an alert that is not JSON: {e}"),
    }
}

#[tokio::main]
async fn main() {
    common::run(
        "fraud-detection",
        &[PAYMENTS, FRAUD_ALERTS],
        topology(),
        produce_demo,
        FRAUD_ALERTS,
        print_alert,
        "watching {PAYMENTS} for cards used more than {THRESHOLD} times a minute",
    )
    .await;
}
