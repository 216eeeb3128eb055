//! Enrichment: each order joined with what is known of its customer at the time the order is processed.
//!
//! `orders` (key: customer id, value: JSON [`Order`]) is a stream; `customers` (key: customer id, value: JSON
//! [`Customer`], a null value deletes) is read as a table. A left join writes every order to
//! `enriched-orders` (key: customer id, value: JSON [`EnrichedOrder`]), with `customer: null` when the
//! customer is unknown. Both input topics must have the same number of partitions (6 here): a stream-table
//! join looks the key up in the table partition of the same number.
//!
//! ```text
//! cargo run -p strom-streams --example enrichment -- --bootstrap 127.0.0.1:9092 --demo
//! ```
//! Flags: `--bootstrap host:port`, `--application-id id`, `--state-dir path`, `--demo` (first produce a few
//! customers and orders). Ctrl-C stops it.

use std::error::Error;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_protocol::kafka::ResponseError;
use strom_streams::{
    Json, KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, Topology,
};

pub const ORDERS: &str = "orders";
pub const CUSTOMERS: &str = "customers";
pub const ENRICHED_ORDERS: &str = "enriched-orders";
/// The table of customers, queryable by this name.
pub const CUSTOMERS_STORE: &str = "customers-by-id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub customer: Option<Customer>,
}

pub fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table::<String, Json<Customer>>(CUSTOMERS, Materialized::named(CUSTOMERS_STORE));
    builder
        .stream::<String, Json<Order>>(ORDERS)
        // The joiner sees the value only; the key goes in with a map before.
        .map_values_with_key(|customer_id, order| (customer_id.clone(), order))
        .left_join(&customers, |(customer_id, order), customer| {
            Json(EnrichedOrder {
                order_id: order.0.order_id.clone(),
                customer_id: customer_id.clone(),
                amount_cents: order.0.amount_cents,
                customer: customer.map(|c| c.0.clone()),
            })
        })
        .to(ENRICHED_ORDERS);
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
        application_id: "enrichment".into(),
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

/// Two customers, then three orders, one of them by a customer nobody knows.
async fn produce_demo(bootstrap: &str) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = now.as_millis() as i64;
    let mut deliveries = Vec::new();
    for (id, name, tier) in [("c-1", "Ada", "gold"), ("c-2", "Grace", "silver")] {
        let customer = Customer {
            name: name.into(),
            tier: tier.into(),
        };
        let record = ProducerRecord::new(CUSTOMERS)
            .key(id)
            .value(serde_json::to_vec(&customer)?)
            .timestamp(now);
        deliveries.push(producer.send(record).await?);
    }
    // Orders come a second later in event time: a task takes the records it fetched from its partitions in
    // timestamp order, so customers fetched together with the orders are in the table first.
    for (i, (customer, amount_cents)) in [("c-1", 12_000), ("c-2", 450), ("c-9", 7_300)]
        .into_iter()
        .enumerate()
    {
        let order = Order {
            order_id: format!("o-{}", i + 1),
            amount_cents,
        };
        let record = ProducerRecord::new(ORDERS)
            .key(customer)
            .value(serde_json::to_vec(&order)?)
            .timestamp(now + 1_000);
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    Ok(())
}

/// Prints every enriched order written to `enriched-orders`, from the beginning of the topic.
async fn print_orders(bootstrap: String) -> Result<(), strom_client::Error> {
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let topic = consumer
        .cluster()
        .wait_for_topic(ENRICHED_ORDERS, Duration::from_secs(30))
        .await?;
    let partitions =
        (0..topic.partition_count() as i32).map(|p| TopicPartition::new(ENRICHED_ORDERS, p));
    consumer.assign(partitions).await?;
    loop {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let value = record.value.unwrap_or_default();
            match serde_json::from_slice::<EnrichedOrder>(&value) {
                Ok(o) => {
                    let who = o.customer.map_or_else(
                        || "an unknown customer".to_string(),
                        |c| format!("{} ({})", c.name, c.tier),
                    );
                    println!(
                        "order {} of {} cents by {} {who}",
                        o.order_id, o.amount_cents, o.customer_id
                    );
                }
                Err(e) => eprintln!("an enriched order that is not JSON: {e}"),
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
    create_topics(&args.bootstrap, &[ORDERS, CUSTOMERS, ENRICHED_ORDERS]).await?;
    if args.demo {
        produce_demo(&args.bootstrap).await?;
    }
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if let Some(dir) = &args.state_dir {
        config.state_dir = dir.into();
    }
    let mut streams = KafkaStreams::new(topology(), config)?;
    streams.start().await?;
    let printer = tokio::spawn(print_orders(args.bootstrap.clone()));
    println!("orders joined with their customers; Ctrl-C stops");
    let result: Result<(), Box<dyn Error>> = tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.map_err(Into::into),
        error = failure(&streams) => Err(error.into()),
    };
    printer.abort();
    streams.close().await;
    result
}
