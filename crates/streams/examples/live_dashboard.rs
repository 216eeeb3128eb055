//! Live dashboard: page views per page in 10-second tumbling windows, updated with every view.
//!
//! `page-views` (key: user id, value: the page) is re-keyed by page (through a repartition topic, since the
//! input is keyed by user) and counted per window; every new count goes to `page-view-counts` with a readable
//! key `page@window-start` (see [`dashboard_key`]) and the count as value (big-endian i64, Kafka's LongSerde).
//!
//! ```text
//! cargo run -p strom-streams --example live_dashboard -- --bootstrap 127.0.0.1:9092 --demo
//! ```
//! Flags: `--bootstrap host:port`, `--application-id id`, `--state-dir path`, `--demo` (first produce a few
//! sample views). Ctrl-C stops it.

use std::error::Error;
use std::time::Duration;

use strom_client::consumer::ConsumerRecord;
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_streams::{Materialized, StreamsBuilder, TimeWindows, Topology, Windowed};

pub const PAGE_VIEWS: &str = "page-views";
pub const PAGE_VIEW_COUNTS: &str = "page-view-counts";
pub const WINDOW: Duration = Duration::from_secs(10);
/// Browsers send beacons late (tabs in the background, flaky networks): a view counts if it arrives within
/// 5 s after its window ended.
pub const GRACE: Duration = Duration::from_secs(5);
pub const COUNTS_STORE: &str = "views-per-page";

/// The output key of a page's window: `"/home@1700000000000"`.
pub fn dashboard_key(page: &Windowed<String>) -> String {
    format!("{}@{}", page.key, page.window.start)
}

pub fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(PAGE_VIEWS)
        .group_by(|_user, page| page.clone())
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, GRACE))
        .count(Materialized::named(COUNTS_STORE))
        .to_stream()
        .map(|page, count| (dashboard_key(&page), count.unwrap_or_default()))
        .to(PAGE_VIEW_COUNTS);
    builder.build()
}

#[path = "common/mod.rs"]
mod common;

/// Three users browsing for half a minute from now.
async fn produce_demo(bootstrap: String) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(&bootstrap)).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = now.as_millis() as i64;
    let pages = ["/home", "/products", "/home", "/cart", "/home", "/products"];
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let user = format!("user-{}", i % 3);
        let record = ProducerRecord::new(PAGE_VIEWS)
            .key(user)
            .value(pages[i % pages.len()])
            .timestamp(now + i as i64 * 1_000);
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    Ok(())
}

/// Prints every count written to `page-view-counts`, from the beginning of the topic.
fn print_count(record: ConsumerRecord) {
    let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
    let count = record
        .value
        .as_deref()
        .and_then(|v| v.try_into().ok())
        .map(i64::from_be_bytes);
    match count {
        Some(n) => println!("{key:>40}  {n:>6} views"),
        None => eprintln!("{key}: a count that is not 8 bytes"),
    }
}

#[tokio::main]
async fn main() {
    common::run(
        "live-dashboard",
        &[PAGE_VIEWS, PAGE_VIEW_COUNTS],
        topology(),
        produce_demo,
        PAGE_VIEW_COUNTS,
        print_count,
        "views per page and 10 s window, as they change",
    )
    .await;
}
