//! Metadata records: the entries of the Raft metadata log, as KRaft's `__cluster_metadata` records.
//!
//! Format: each Raft entry's data is one [`RecordBatch`], encoded as JSON (`{"records":[{"type":"Topic",...}]}`).
//! A batch is applied atomically: either every record in it takes effect or none does (see
//! [`crate::MetadataImage::apply_batch`]), so a topic and its partitions appear together. JSON keeps the log
//! readable with `strings`/`jq` and the metadata rate is a few records a second, far from where encoding matters.
//! New fields must be `#[serde(default)]` so an older log still decodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One listener a broker is reachable on, as advertised to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)registered. Its broker epoch is the log index of this record, so a broker that restarts gets
    /// a new epoch and stale heartbeats of its previous life are refused. A broker registers fenced; the
    /// controller unfences it once it has caught up with the metadata log.
    RegisterBroker {
        broker_id: i32,
        incarnation_id: String,
        endpoint: Endpoint,
        #[serde(default)]
        rack: Option<String>,
        /// Whether the broker's previous life ended in a clean shutdown (its logs closed and fsynced). After an
        /// unclean one its copies may have lost unflushed records, so it leaves every partition's eligible
        /// leader replicas (KIP-966).
        #[serde(default)]
        clean_shutdown: bool,
    },
    /// The broker stopped heartbeating (or shut down): it leaves Metadata and leads nothing.
    FenceBroker { broker_id: i32, broker_epoch: u64 },
    /// The broker is caught up and heartbeating: it may lead partitions and is listed in Metadata.
    UnfenceBroker { broker_id: i32, broker_epoch: u64 },
    /// A topic was created. Its partitions follow in the same batch.
    Topic { name: String, topic_id: String },
    /// A partition was created (or its whole assignment replaced).
    Partition {
        topic_id: String,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        /// -1 when no replica can lead.
        leader: i32,
        leader_epoch: i32,
    },
    /// A partition's leader or ISR changed. The leader epoch rises by one whenever the leader changes.
    PartitionChange {
        topic_id: String,
        partition: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    /// A partition's replica set changed (Kafka's partition reassignment, KIP-455). While a reassignment runs,
    /// `replicas` holds the target replicas followed by those leaving, `adding` the target replicas that are new
    /// and `removing` the replicas that leave; once it completes (or is cancelled) `replicas` is the final set and
    /// both lists are empty. Leader and ISR changes come as a PartitionChange in the same batch.
    PartitionReplicas {
        topic_id: String,
        partition: i32,
        replicas: Vec<i32>,
        adding: Vec<i32>,
        removing: Vec<i32>,
    },
    /// A partition's eligible leader replicas (KIP-966): replicas that left the ISR while it was smaller than
    /// `min.insync.replicas`, so they hold every committed record (the high watermark does not advance while the
    /// ISR is that small), and may lead when the ISR has no live member left.
    PartitionElr {
        topic_id: String,
        partition: i32,
        elr: Vec<i32>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic { topic_id: String },
    /// A dynamic topic config was set (`Some`) or removed (`None`).
    TopicConfig {
        topic: String,
        key: String,
        value: Option<String>,
    },
    /// A dynamic broker config was set (`Some`) or removed (`None`): for the broker whose id `resource` is, or for
    /// every broker when `resource` is empty (Kafka's cluster-wide default).
    BrokerConfig {
        resource: String,
        key: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` have been handed out; the broker named got the block just below it.
    ProducerIds {
        broker_id: i32,
        next_producer_id: i64,
    },
}

/// The records of one Raft entry, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecordBatch {
    pub records: Vec<MetadataRecord>,
}

impl RecordBatch {
    pub fn new(records: Vec<MetadataRecord>) -> Self {
        Self { records }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata records always serialise")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Dynamic config overrides by key.
pub type Configs = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_roundtrips_through_its_encoding() {
        let batch = RecordBatch::new(vec![
            MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: "id".into(),
            },
            MetadataRecord::Partition {
                topic_id: "id".into(),
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
            },
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                incarnation_id: "x".into(),
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9092,
                },
                rack: None,
                clean_shutdown: true,
            },
        ]);
        assert_eq!(RecordBatch::decode(&batch.encode()).unwrap(), batch);
    }

    #[test]
    fn the_encoding_names_each_record_type() {
        let json = String::from_utf8(
            RecordBatch::new(vec![MetadataRecord::RemoveTopic {
                topic_id: "t".into(),
            }])
            .encode(),
        )
        .unwrap();
        assert_eq!(
            json,
            r#"{"records":[{"type":"RemoveTopic","topic_id":"t"}]}"#
        );
    }
}
