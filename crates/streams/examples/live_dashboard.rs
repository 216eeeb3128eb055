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

use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_protocol::kafka::ResponseError;
use strom_streams::{
    KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, TimeWindows, Topology,
    Windowed,
};

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

struct Args {
    bootstrap: String,
    application_id: String,
    state_dir: Option<String>,
    demo: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: "127.0.0.1:9092".into(),
        application_id: "live-dashboard".into(),
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

/// Three users browsing for half a minute from now.
async fn produce_demo(bootstrap: &str) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await?;
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
async fn print_counts(bootstrap: String) -> Result<(), strom_client::Error> {
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let topic = consumer
        .cluster()
        .wait_for_topic(PAGE_VIEW_COUNTS, Duration::from_secs(30))
        .await?;
    let partitions =
        (0..topic.partition_count() as i32).map(|p| TopicPartition::new(PAGE_VIEW_COUNTS, p));
    consumer.assign(partitions).await?;
    loop {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let key =
                String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
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
    create_topics(&args.bootstrap, &[PAGE_VIEWS, PAGE_VIEW_COUNTS]).await?;
    if args.demo {
        produce_demo(&args.bootstrap).await?;
    }
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if let Some(dir) = &args.state_dir {
        config.state_dir = dir.into();
    }
    let mut streams = KafkaStreams::new(topology(), config)?;
    streams.start().await?;
    let printer = tokio::spawn(print_counts(args.bootstrap.clone()));
    println!("views per page and 10 s window, as they change; Ctrl-C stops");
    let result: Result<(), Box<dyn Error>> = tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.map_err(Into::into),
        error = failure(&streams) => Err(error.into()),
    };
    printer.abort();
    streams.close().await;
    result
}
