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

use serde::{Deserialize, Serialize};
use strom_client::consumer::ConsumerRecord;
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use strom_streams::{Json, Materialized, StreamsBuilder, Topology};

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

#[path = "common/mod.rs"]
mod common;

/// Two customers, then three orders, one of them by a customer nobody knows.
async fn produce_demo(bootstrap: String) -> Result<(), Box<dyn Error>> {
    let producer = Producer::new(ProducerConfig::new(&bootstrap)).await?;
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
fn print_order(record: ConsumerRecord) {
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

#[tokio::main]
async fn main() {
    common::run(
        "enrichment",
        &[ORDERS, CUSTOMERS, ENRICHED_ORDERS],
        topology(),
        produce_demo,
        ENRICHED_ORDERS,
        print_order,
        "orders joined with their customers",
    )
    .await;
}
