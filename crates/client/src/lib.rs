//! The Strom Rust client: speaks only the public Kafka protocol, so it works against Strom and Apache Kafka.
//!
//! What exists:
//! - [`connection`]: one TCP connection per broker: ApiVersions handshake and version negotiation, pipelined
//!   requests matched by correlation id, per-request timeout, typed failure of in-flight requests when the
//!   connection drops, response size checked before allocation.
//! - [`cluster`]: the metadata cache (topic → partitions → leader, broker id → address), bootstrap,
//!   refresh on demand and on stale-metadata errors, one pooled connection per broker.
//! - [`partitioner`]: the [`Partitioner`] trait and the built-in strategies (Java-compatible murmur2,
//!   sticky, round-robin, explicit).
//! - [`producer`]: the async [`Producer`]: batching (`linger.ms`, `batch.size`), compression, acks,
//!   retries, idempotence (on by default), headers and timestamps, bounded `buffer.memory`, flush and close;
//!   with `transactional.id`, transactions (`init_transactions`, `begin_transaction`,
//!   `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`) as in Kafka's Java producer.
//!
//! Next: the consumer (assign/subscribe with the classic and KIP-848 group protocols, seek, commit,
//! pause/resume, lag), the admin client, and the `strom` CLI commands built on them.

pub mod admin;
pub mod cluster;
mod config_value;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod partitioner;
pub mod producer;

pub use cluster::{Cluster, ClusterConfig};
pub use connection::{Connection, ConnectionConfig};
pub use error::Error;
pub use partitioner::Partitioner;
pub use producer::{
    Acks, DeliveryFuture, DeliveryReport, IntoTopic, PartitionerChoice, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata,
};
pub use strom_protocol::kafka::records::Compression;
