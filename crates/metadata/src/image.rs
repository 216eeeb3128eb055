//! The metadata image: the state every node builds by applying the committed metadata log in order.
//!
//! Applying is deterministic and total: a batch that does not fit the image (a topic name taken by a batch
//! committed just before, a fence for a broker epoch that is gone) is rejected as a whole on every node alike,
//! and the proposer learns so from [`Applied::outcome`]. That is how two controllers' racing proposals, or a
//! retried one, can never half-apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Configs, Endpoint, MetadataRecord, RecordBatch};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// The log index of the registration: a restarted broker has a new epoch.
    pub broker_epoch: u64,
    pub incarnation_id: String,
    pub endpoint: Endpoint,
    pub rack: Option<String>,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    /// Rises with every change to the partition (KRaft's partition epoch).
    pub partition_epoch: i32,
    /// A reassignment in progress: replicas joining (in `replicas`, not yet in sync) and replicas leaving once
    /// every target replica is in sync. Both empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
    /// Eligible leader replicas (KIP-966): out of the ISR, but holding every committed record; never ISR members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<i32>,
}

impl PartitionImage {
    /// A partition with this assignment and no reassignment in progress.
    pub fn new(replicas: Vec<i32>, isr: Vec<i32>, leader: i32, leader_epoch: i32) -> Self {
        Self {
            replicas,
            isr,
            leader,
            leader_epoch,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            elr: Vec::new(),
        }
    }

    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition ends up with: while a reassignment runs, its target.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// The replicas the partition had before the reassignment in progress (what a cancellation goes back to).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: String,
    pub partitions: BTreeMap<i32, PartitionImage>,
    pub configs: Configs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MetadataImage {
    /// The log index of the last entry applied.
    pub applied_index: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Producer ids below this have been handed out.
    pub next_producer_id: i64,
    /// Dynamic broker configs by resource: a broker's id, or "" for the cluster-wide default.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, Configs>,
}

/// Why a batch was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejected {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic id {0} is unknown")]
    UnknownTopicId(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic id {topic_id} does not exist")]
    UnknownPartition { topic_id: String, partition: i32 },
    #[error("partition {partition} of topic id {topic_id} exists already")]
    PartitionExists { topic_id: String, partition: i32 },
    #[error("broker {broker_id} epoch {broker_epoch} is not registered")]
    StaleBrokerEpoch { broker_id: i32, broker_epoch: u64 },
    #[error("producer id block {next} is below the high-water mark {current}")]
    StaleProducerIds { next: i64, current: i64 },
    #[error("entry {index} is not a metadata record batch: {reason}")]
    Undecodable { index: u64, reason: String },
}

/// One committed entry, applied. Drivers act on `batch` when `outcome` is `Ok` (a broker creates the logs of
/// partitions it now hosts, say); a new leader's empty entry is an empty batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub batch: RecordBatch,
    pub outcome: Result<(), Rejected>,
}

impl MetadataImage {
    pub fn topic_by_id(&self, topic_id: &str) -> Option<&TopicImage> {
        self.topics.values().find(|t| t.topic_id == topic_id)
    }

    /// Brokers that are registered and not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Applies one committed batch at `index`, atomically.
    pub fn apply_batch(&mut self, index: u64, batch: &RecordBatch) -> Result<(), Rejected> {
        let mut next = self.clone();
        for record in &batch.records {
            next.apply_record(index, record)?;
        }
        *self = next;
        self.applied_index = index;
        Ok(())
    }

    /// Marks `index` applied without records (the leader's empty entry at the start of its term, or a rejected
    /// batch).
    pub fn skip(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// The partition a record names, or why the record does not apply.
    fn partition_mut(
        &mut self,
        topic_id: &str,
        partition: i32,
    ) -> Result<&mut PartitionImage, Rejected> {
        let name = self.topic_name_of(topic_id)?;
        let topic = self.topics.get_mut(&name).expect("found by id");
        topic
            .partitions
            .get_mut(&partition)
            .ok_or_else(|| Rejected::UnknownPartition {
                topic_id: topic_id.to_string(),
                partition,
            })
    }

    fn topic_name_of(&self, topic_id: &str) -> Result<String, Rejected> {
        self.topic_by_id(topic_id)
            .map(|t| t.name.clone())
            .ok_or_else(|| Rejected::UnknownTopicId(topic_id.to_string()))
    }

    fn apply_record(&mut self, index: u64, record: &MetadataRecord) -> Result<(), Rejected> {
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                endpoint,
                rack,
                ..
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        broker_epoch: index,
                        incarnation_id: incarnation_id.clone(),
                        endpoint: endpoint.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
            }
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            }
            | MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                let broker = self
                    .brokers
                    .get_mut(broker_id)
                    .filter(|b| b.broker_epoch == *broker_epoch)
                    .ok_or(Rejected::StaleBrokerEpoch {
                        broker_id: *broker_id,
                        broker_epoch: *broker_epoch,
                    })?;
                broker.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topics.contains_key(name) || self.topic_by_id(topic_id).is_some() {
                    return Err(Rejected::TopicExists(name.clone()));
                }
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: topic_id.clone(),
                        partitions: BTreeMap::new(),
                        configs: Configs::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
            } => {
                let name = self.topic_name_of(topic_id)?;
                let topic = self.topics.get_mut(&name).expect("found by id");
                if topic.partitions.contains_key(partition) {
                    return Err(Rejected::PartitionExists {
                        topic_id: topic_id.clone(),
                        partition: *partition,
                    });
                }
                topic.partitions.insert(
                    *partition,
                    PartitionImage::new(replicas.clone(), isr.clone(), *leader, *leader_epoch),
                );
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                if p.leader != *leader {
                    p.leader_epoch += 1;
                }
                p.leader = *leader;
                p.isr = isr.clone();
                // A replica back in the ISR is no longer merely eligible.
                p.elr.retain(|r| !isr.contains(r));
                p.partition_epoch += 1;
            }
            MetadataRecord::PartitionReplicas {
                topic_id,
                partition,
                replicas,
                adding,
                removing,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                p.replicas = replicas.clone();
                p.adding_replicas = adding.clone();
                p.removing_replicas = removing.clone();
                p.elr.retain(|r| replicas.contains(r));
                p.partition_epoch += 1;
            }
            MetadataRecord::PartitionElr {
                topic_id,
                partition,
                elr,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                p.elr = elr
                    .iter()
                    .copied()
                    .filter(|r| p.replicas.contains(r) && !p.isr.contains(r))
                    .collect();
                p.partition_epoch += 1;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self.topic_name_of(topic_id)?;
                self.topics.remove(&name);
            }
            MetadataRecord::TopicConfig { topic, key, value } => {
                let t = self
                    .topics
                    .get_mut(topic)
                    .ok_or_else(|| Rejected::UnknownTopic(topic.clone()))?;
                match value {
                    Some(v) => t.configs.insert(key.clone(), v.clone()),
                    None => t.configs.remove(key),
                };
            }
            MetadataRecord::BrokerConfig {
                resource,
                key,
                value,
            } => {
                let configs = self.broker_configs.entry(resource.clone()).or_default();
                match value {
                    Some(v) => configs.insert(key.clone(), v.clone()),
                    None => configs.remove(key),
                };
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(Rejected::StaleProducerIds {
                        next: *next_producer_id,
                        current: self.next_producer_id,
                    });
                }
                self.next_producer_id = *next_producer_id;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: &str, partitions: i32) -> RecordBatch {
        let mut records = vec![MetadataRecord::Topic {
            name: name.into(),
            topic_id: id.into(),
        }];
        records.extend((0..partitions).map(|p| MetadataRecord::Partition {
            topic_id: id.into(),
            partition: p,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
        }));
        RecordBatch::new(records)
    }

    #[test]
    fn a_topic_and_its_partitions_apply_together() {
        let mut image = MetadataImage::default();
        image.apply_batch(3, &topic("orders", "a", 3)).unwrap();
        assert_eq!(image.topics["orders"].partitions.len(), 3);
        assert_eq!(image.applied_index, 3);
    }

    #[test]
    fn a_batch_that_conflicts_changes_nothing() {
        let mut image = MetadataImage::default();
        image.apply_batch(1, &topic("orders", "a", 1)).unwrap();
        let before = image.clone();
        // Same name, other id: a racing CreateTopics lost.
        assert_eq!(
            image.apply_batch(2, &topic("orders", "b", 2)),
            Err(Rejected::TopicExists("orders".into()))
        );
        assert_eq!(image, before);
        // A batch whose second record fails leaves the first unapplied too.
        let mut batch = topic("payments", "c", 1);
        batch.records.push(MetadataRecord::RemoveTopic {
            topic_id: "nope".into(),
        });
        assert!(image.apply_batch(3, &batch).is_err());
        assert!(!image.topics.contains_key("payments"));
    }

    #[test]
    fn a_leader_change_bumps_the_leader_epoch_and_an_isr_change_does_not() {
        let mut image = MetadataImage::default();
        image.apply_batch(1, &topic("t", "a", 1)).unwrap();
        let change = |leader, isr: Vec<i32>| {
            RecordBatch::new(vec![MetadataRecord::PartitionChange {
                topic_id: "a".into(),
                partition: 0,
                leader,
                isr,
            }])
        };
        image.apply_batch(2, &change(1, vec![1, 2])).unwrap();
        assert_eq!(image.topics["t"].partitions[&0].leader_epoch, 0);
        image.apply_batch(3, &change(2, vec![2])).unwrap();
        let p = &image.topics["t"].partitions[&0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
    }

    #[test]
    fn fencing_needs_the_current_broker_epoch() {
        let mut image = MetadataImage::default();
        let register = RecordBatch::new(vec![MetadataRecord::RegisterBroker {
            broker_id: 1,
            incarnation_id: "i".into(),
            endpoint: Endpoint {
                host: "h".into(),
                port: 1,
            },
            rack: None,
            clean_shutdown: true,
        }]);
        image.apply_batch(5, &register).unwrap();
        assert!(image.brokers[&1].fenced);
        let unfence = |epoch| {
            RecordBatch::new(vec![MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: epoch,
            }])
        };
        assert!(image.apply_batch(6, &unfence(4)).is_err());
        image.apply_batch(7, &unfence(5)).unwrap();
        assert_eq!(image.live_brokers().count(), 1);
    }
}
