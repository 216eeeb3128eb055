//! The Strom broker: a Kafka-protocol server over `strom-log` partitions.
//!
//! Data flow of a produce: `connection` frames and decodes the request, `handlers::produce` looks up each
//! partition and appends under that partition's own lock (`partition`), the `flusher` group-commits fsyncs for
//! acks=all, and the response goes back in request order. A fetch reads whole batches below the high watermark and
//! long-polls on the partitions' append notifications.

pub mod admin;
pub mod clock;
pub mod cluster;
pub mod config;
mod connection;
pub mod dynamic_config;
mod flusher;
mod group_driver;
pub mod groups;
mod handlers;
pub mod kafka_broker_keys;
pub mod maintenance;
pub mod metadata;
pub mod metrics;
pub mod offsets;
pub mod partition;
mod producer_ids;
pub mod replication;
mod server;
pub mod topic_config;
pub mod topics;
pub mod transactions;

pub use config::{BrokerConfig, ConfigError};
pub use server::{Broker, BrokerError, BrokerState, RunningBroker};
