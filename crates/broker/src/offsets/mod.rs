//! Committed consumer-group offsets, stored durably in the compacted internal topic `__consumer_offsets` and
//! served from an in-memory cache rebuilt from that topic at startup.
//!
//! A group's commits all go to one partition of the topic (Kafka's placement, see [`record::partition_for_group`]),
//! so their order in the log is their commit order and the latest record per key is the committed offset —
//! exactly what compaction keeps. A commit is appended and applied to the cache in request order, and
//! acknowledged once the append is fsynced, so an acknowledged commit survives `kill -9` and power loss.
//!
//! A transactional commit (TxnOffsetCommit) is appended as a transactional batch of the producer and stays
//! pending, invisible to OffsetFetch, until the transaction's marker reaches the partition: a commit marker
//! makes its offsets the committed ones, an abort marker drops them (Kafka's pending transactional offsets).

pub mod lag;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use strom_log::AppendOutcome;
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_protocol::kafka::ResponseError;

use crate::clock::now_ms;
use crate::flusher::Flusher;
use crate::partition::{LeaderAppend, Partition};
use crate::topics::{TopicError, Topics};
use record::{
    decode_key, decode_value, encode_key, encode_value, partition_for_group, CommittedOffset,
    OffsetKey,
};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One group's committed offsets by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// What a commit writes for one partition: a new committed offset, or `None` to delete it (a tombstone).
pub type OffsetChange = (OffsetKey, Option<CommittedOffset>);

pub struct OffsetStore {
    topics: Arc<Topics>,
    flusher: Flusher,
    partitions: i32,
    committed: Mutex<HashMap<String, GroupOffsets>>,
    /// Transactional commits awaiting their marker, by (`__consumer_offsets` partition, producer id).
    pending: Mutex<HashMap<(i32, i64), Vec<OffsetChange>>>,
}

impl OffsetStore {
    /// Loads every committed offset from `__consumer_offsets` if it exists.
    pub fn load(
        topics: Arc<Topics>,
        flusher: Flusher,
        partitions: i32,
    ) -> Result<Self, TopicError> {
        let store = Self {
            topics,
            flusher,
            partitions,
            committed: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        };
        if let Some(topic) = store.topics.get(OFFSETS_TOPIC) {
            let mut loaded = 0usize;
            for p in &topic.local {
                loaded += store.replay(p)?;
            }
            tracing::info!(
                records = loaded,
                groups = store.committed.lock().len(),
                "loaded committed offsets"
            );
        }
        Ok(store)
    }

    /// This broker just became the leader of an `__consumer_offsets` partition (so the coordinator of its
    /// groups): its cache of those groups is rebuilt from the partition's log, which as a follower it kept
    /// copying from the previous coordinator.
    pub fn reload(&self, partition: &Partition) {
        let count = self
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(self.partitions, |t| t.partition_count());
        self.committed
            .lock()
            .retain(|group, _| partition_for_group(group, count) != partition.index);
        self.pending
            .lock()
            .retain(|(index, _), _| *index != partition.index);
        match self.replay(partition) {
            Ok(records) => {
                tracing::info!(partition = %partition.name(), records, "loaded the committed offsets of a newly led partition")
            }
            Err(e) => {
                tracing::error!(partition = %partition.name(), error = %e, "cannot load committed offsets")
            }
        }
    }

    /// Applies the partition's records to the cache, to its log end offset (as Kafka's coordinator loads: what
    /// a new leader holds beyond the high watermark becomes committed as its followers copy it).
    fn replay(&self, partition: &Partition) -> Result<usize, TopicError> {
        let mut applied = 0;
        partition
            .replay_records(|record| {
                if record.control {
                    // A transaction marker: key version 0, type 0 abort / 1 commit.
                    let commit = record
                        .key
                        .as_deref()
                        .is_some_and(|k| k.len() >= 4 && k[3] == 1);
                    self.complete_txn(partition.index, record.producer_id, commit);
                    return;
                }
                let Some(key) = record.key.clone().and_then(decode_key) else {
                    return;
                };
                let value = record.value.clone().and_then(decode_value);
                if record.transactional {
                    self.pending
                        .lock()
                        .entry((partition.index, record.producer_id))
                        .or_default()
                        .push((key, value));
                } else {
                    self.apply(key, value);
                }
                applied += 1;
            })
            .map_err(TopicError::Storage)?;
        Ok(applied)
    }

    /// The marker of `producer_id`'s transaction reached `__consumer_offsets` partition `index`: its pending
    /// offsets become the committed ones, or are dropped.
    pub fn complete_txn(&self, index: i32, producer_id: i64, commit: bool) {
        let Some(changes) = self.pending.lock().remove(&(index, producer_id)) else {
            return;
        };
        if commit {
            for (key, value) in changes {
                self.apply(key, value);
            }
        }
    }

    /// The partitions of `group` with transactional offsets waiting for their transaction's end (OffsetFetch
    /// with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them, and the client asks again).
    pub fn pending_partitions(&self, group: &str) -> std::collections::HashSet<(String, i32)> {
        self.pending
            .lock()
            .values()
            .flatten()
            .filter(|(key, _)| key.group == group)
            .map(|(key, _)| (key.topic.clone(), key.partition))
            .collect()
    }

    fn apply(&self, key: OffsetKey, value: Option<CommittedOffset>) {
        let mut committed = self.committed.lock();
        match value {
            Some(v) => {
                committed
                    .entry(key.group)
                    .or_default()
                    .insert((key.topic, key.partition), v);
            }
            None => {
                if let Some(group) = committed.get_mut(&key.group) {
                    group.remove(&(key.topic, key.partition));
                    if group.is_empty() {
                        committed.remove(&key.group);
                    }
                }
            }
        }
    }

    /// The `__consumer_offsets` partition that holds `group`'s offsets, if this broker leads it (and so
    /// coordinates the group). The topic itself is created by FindCoordinator through the controller.
    pub fn offsets_partition(&self, group: &str) -> Result<Arc<Partition>, TopicError> {
        let topic = self.topics.get(OFFSETS_TOPIC).ok_or_else(|| {
            TopicError::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC} does not exist yet"))
        })?;
        let index = partition_for_group(group, topic.partition_count());
        topic.partition(index).cloned().ok_or_else(|| {
            TopicError::NotCoordinator(format!(
                "group '{group}' is coordinated by the leader of {OFFSETS_TOPIC}-{index}, not by this broker"
            ))
        })
    }

    /// Whether this broker coordinates `group`: it leads the group's `__consumer_offsets` partition. Before the
    /// topic exists, a broker that is alone in its cluster coordinates every group (it will lead every
    /// partition); in a larger cluster the client must ask FindCoordinator first.
    pub fn check_coordinator(&self, group: &str, live_brokers: usize) -> Result<(), i16> {
        let Some(topic) = self.topics.get(OFFSETS_TOPIC) else {
            return if live_brokers <= 1 {
                Ok(())
            } else {
                Err(ResponseError::CoordinatorNotAvailable.code())
            };
        };
        let index = partition_for_group(group, topic.partition_count());
        match topic.slot(index) {
            Some(s) if s.leader == self.topics.node_id() && s.local.is_some() => Ok(()),
            Some(s) if s.leader < 0 => Err(ResponseError::CoordinatorNotAvailable.code()),
            _ => Err(ResponseError::NotCoordinator.code()),
        }
    }

    /// Partitions of `__consumer_offsets` when it is created, and its topic configs.
    pub fn topic_spec(&self) -> (i32, BTreeMap<String, String>) {
        (self.partitions, internal_topic_configs())
    }

    /// Appends `changes` for `group` and applies them to the cache, in call order. Returns a future that resolves
    /// once they are durable (or with the Kafka error code that prevented it).
    pub fn commit(
        &self,
        group: &str,
        changes: Vec<OffsetChange>,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Result<(), i16>> {
        self.write(group, changes, None, timeout)
    }

    /// TxnOffsetCommit: appends `changes` as a batch of `producer`'s transaction (id and epoch: an older epoch is
    /// refused by the log, which fences zombies), pending until the transaction's marker.
    pub fn commit_transactional(
        &self,
        group: &str,
        changes: Vec<OffsetChange>,
        producer: (i64, i16),
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Result<(), i16>> {
        self.write(group, changes, Some(producer), timeout)
    }

    fn write(
        &self,
        group: &str,
        changes: Vec<OffsetChange>,
        producer: Option<(i64, i16)>,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Result<(), i16>> {
        if changes.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let partition = match self.offsets_partition(group) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(group, error = %e, "cannot commit offsets here");
                let code = e.code();
                return Box::pin(async move { Err(code) });
            }
        };
        let now = now_ms();
        let records: Vec<Record> = changes
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: producer.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: producer.map_or(-1, |p| p.0),
                producer_epoch: producer.map_or(-1, |p| p.1),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now,
                key: Some(encode_key(key)),
                value: value.as_ref().map(encode_value),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        if let Err(e) = RecordBatchEncoder::encode(&mut batch, &records, &options) {
            tracing::error!(group, error = %e, "cannot encode offset commit");
            return Box::pin(async { Err(ResponseError::UnknownServerError.code()) });
        }
        let (last_offset, leader_epoch) = match partition.append(Bytes::from(batch), now, i64::MAX)
        {
            Ok(LeaderAppend {
                outcome: AppendOutcome::Appended { last_offset, .. },
                leader_epoch,
                ..
            }) => (last_offset, leader_epoch),
            Ok(LeaderAppend {
                outcome: AppendOutcome::Duplicate { .. },
                leader_epoch,
                ..
            }) => (unreachable_duplicate(), leader_epoch),
            Err(crate::partition::PartitionError::Append(e)) if producer.is_some() => {
                // A fenced producer epoch, or a write outside the transaction.
                tracing::debug!(group, error = %e, "transactional offset commit refused");
                let code = e.kafka_error_code();
                return Box::pin(async move { Err(code) });
            }
            Err(e) => {
                tracing::error!(group, error = %e, "cannot append offset commit");
                return Box::pin(async { Err(ResponseError::CoordinatorNotAvailable.code()) });
            }
        };
        match producer {
            Some((producer_id, _)) => self
                .pending
                .lock()
                .entry((partition.index, producer_id))
                .or_default()
                .extend(changes),
            None => {
                for (key, value) in changes {
                    self.apply(key, value);
                }
            }
        }
        self.flusher.request(partition.clone());
        // As Kafka's offsets.commit.required.acks=-1: durable on the coordinator and on every in-sync replica, so
        // a committed offset survives the loss of the coordinator's broker.
        Box::pin(async move {
            let end = last_offset + 1;
            let done = tokio::time::timeout(timeout, async {
                partition.wait_flushed(end).await
                    && partition.wait_replicated(leader_epoch, end).await
            })
            .await;
            match done {
                Ok(true) => Ok(()),
                Ok(false) => Err(ResponseError::NotCoordinator.code()),
                Err(_) => Err(ResponseError::RequestTimedOut.code()),
            }
        })
    }

    /// Committed offsets of `group`, optionally only for some topics.
    pub fn fetch(&self, group: &str) -> GroupOffsets {
        self.committed
            .lock()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.committed.lock().keys().cloned().collect();
        groups.sort();
        groups
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.committed.lock().contains_key(group)
    }
}

/// The topic configs of the coordinators' compacted internal topics (`__consumer_offsets`,
/// `__transaction_state`), Kafka's.
pub fn internal_topic_configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "104857600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Offset commits carry no producer id, so the log never reports one as an idempotent retry.
fn unreachable_duplicate() -> i64 {
    tracing::error!("offset commit reported as an idempotent duplicate");
    -1
}
