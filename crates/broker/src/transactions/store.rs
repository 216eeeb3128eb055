//! The transaction coordinators of this broker: one [`Coordinator`] per `__transaction_state` partition it leads,
//! loaded from the partition when leadership arrives, and the persistence of their transitions (appended to the
//! partition, then flushed and replicated to the ISR before the transition counts, as Kafka's
//! `transaction.state.log` writes with acks=all).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_protocol::kafka::ResponseError;

use super::coordinator::{Coordinator, Settings, Then, TxnMetadata};
use super::record::{
    decode_key, decode_value, encode_key, encode_value, partition_for, TRANSACTION_STATE_TOPIC,
};
use crate::clock::now_ms;
use crate::flusher::Flusher;
use crate::partition::Partition;
use crate::topics::{TopicError, Topics};

pub struct TransactionStore {
    topics: Arc<Topics>,
    flusher: Flusher,
    partitions: i32,
    settings: Settings,
    /// By the index of a `__transaction_state` partition this broker leads (and has loaded).
    coordinators: Mutex<HashMap<i32, Coordinator>>,
    /// Connections to the other brokers for markers to their partitions (WriteTxnMarkers waits for fsyncs and
    /// replication, so verification requests get their own connections rather than queue behind them).
    pub marker_peers: super::verification::Peers,
    /// Connections to the other brokers' coordinators for verification (AddPartitionsToTxn v4).
    pub verify_peers: super::verification::Peers,
}

/// Marker work a coordinator left unfinished: the transaction's id and what to do.
pub type Resumed = Vec<(String, Then)>;

impl TransactionStore {
    pub fn new(topics: Arc<Topics>, flusher: Flusher, partitions: i32, settings: Settings) -> Self {
        Self {
            topics,
            flusher,
            partitions,
            settings,
            coordinators: Mutex::new(HashMap::new()),
            marker_peers: super::verification::Peers::default(),
            verify_peers: super::verification::Peers::default(),
        }
    }

    /// This broker just became the leader of a `__transaction_state` partition: its coordinator is rebuilt
    /// from the partition's log. Returns the transactions whose markers must be (re)written.
    pub fn reload(&self, partition: &Partition) -> Resumed {
        let records = match replay(partition) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(partition = %partition.name(), error = %e, "cannot load transactions");
                self.coordinators.lock().remove(&partition.index);
                return Vec::new();
            }
        };
        let mut coordinator = Coordinator::new(self.settings, partition.leader_epoch());
        let count = records.len();
        let resumed = coordinator.load(records);
        tracing::info!(partition = %partition.name(), records = count, resumed = resumed.len(), "loaded transactions");
        self.coordinators
            .lock()
            .insert(partition.index, coordinator);
        resumed
    }

    /// Whether the coordinator of `partition` is loaded at its current leader epoch (by the leadership hook).
    pub fn is_loaded(&self, partition: &Partition) -> bool {
        self.coordinators
            .lock()
            .get(&partition.index)
            .is_some_and(|c| c.coordinator_epoch == partition.leader_epoch())
    }

    /// Partitions of `__transaction_state` when it is created, and its topic configs (Kafka's).
    pub fn topic_spec(&self) -> (i32, BTreeMap<String, String>) {
        (self.partitions, crate::offsets::internal_topic_configs())
    }

    /// The `__transaction_state` partition of `transactional_id`, if this broker leads it.
    fn partition_of(&self, transactional_id: &str) -> Result<Arc<Partition>, i16> {
        let topic = self
            .topics
            .get(TRANSACTION_STATE_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
        let index = partition_for(transactional_id, topic.partition_count());
        match topic.slot(index) {
            Some(s) if s.leader == self.topics.node_id() => topic
                .partition(index)
                .cloned()
                .ok_or(ResponseError::NotCoordinator.code()),
            Some(s) if s.leader < 0 => Err(ResponseError::CoordinatorNotAvailable.code()),
            _ => Err(ResponseError::NotCoordinator.code()),
        }
    }

    /// Runs `f` on the coordinator of `transactional_id`: NOT_COORDINATOR when another broker leads its
    /// partition, COORDINATOR_LOAD_IN_PROGRESS while this one is still loading it.
    pub fn with<T>(
        &self,
        transactional_id: &str,
        f: impl FnOnce(&mut Coordinator) -> T,
    ) -> Result<T, i16> {
        let partition = self.partition_of(transactional_id)?;
        let mut coordinators = self.coordinators.lock();
        let coordinator = coordinators
            .get_mut(&partition.index)
            .ok_or(ResponseError::CoordinatorLoadInProgress.code())?;
        if coordinator.coordinator_epoch != partition.leader_epoch() {
            // Leadership moved away and back: what was loaded may be stale.
            return Err(ResponseError::CoordinatorLoadInProgress.code());
        }
        Ok(f(coordinator))
    }

    /// Every coordinator this broker runs now (of a partition it leads, loaded at its leader epoch), for the
    /// sweeps.
    pub fn for_each<T>(&self, mut f: impl FnMut(&mut Coordinator) -> Vec<T>) -> Vec<T> {
        let Some(topic) = self.topics.get(TRANSACTION_STATE_TOPIC) else {
            return Vec::new();
        };
        let mut coordinators = self.coordinators.lock();
        let mut out = Vec::new();
        for partition in &topic.led {
            if let Some(c) = coordinators.get_mut(&partition.index) {
                if c.coordinator_epoch == partition.leader_epoch() {
                    out.extend(f(c));
                }
            }
        }
        out
    }

    /// The metadata of every transactional id this broker coordinates now (ListTransactions): those of the
    /// `__transaction_state` partitions it leads, loaded at the current leader epoch. COORDINATOR_LOAD_IN_PROGRESS
    /// while one of them is not loaded yet, as Kafka answers while it loads a partition.
    pub fn coordinated(&self) -> Result<Vec<TxnMetadata>, i16> {
        let Some(topic) = self.topics.get(TRANSACTION_STATE_TOPIC) else {
            return Ok(Vec::new());
        };
        let coordinators = self.coordinators.lock();
        let mut out = Vec::new();
        for partition in &topic.led {
            match coordinators.get(&partition.index) {
                Some(c) if c.coordinator_epoch == partition.leader_epoch() => {
                    out.extend(c.all().cloned())
                }
                _ => return Err(ResponseError::CoordinatorLoadInProgress.code()),
            }
        }
        Ok(out)
    }

    /// Appends `metadata` to the transactional id's partition; resolves once it is flushed and on every in-sync
    /// replica. The caller then reports [`Coordinator::persisted`] or [`Coordinator::persist_failed`].
    pub fn persist(
        &self,
        metadata: &TxnMetadata,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(), i16>> {
        let partition = match self.partition_of(&metadata.transactional_id) {
            Ok(p) => p,
            Err(code) => return Box::pin(async move { Err(code) }),
        };
        let now = now_ms();
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now,
            key: Some(encode_key(&metadata.transactional_id)),
            value: Some(encode_value(metadata)),
            headers: Default::default(),
        };
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        if let Err(e) = RecordBatchEncoder::encode(&mut batch, [record].iter(), &options) {
            tracing::error!(error = %e, "cannot encode a transaction state record");
            return Box::pin(async { Err(ResponseError::UnknownServerError.code()) });
        }
        let (end, leader_epoch) = match partition.append(Bytes::from(batch), now, i64::MAX) {
            Ok(crate::partition::LeaderAppend {
                outcome: strom_log::AppendOutcome::Appended { last_offset, .. },
                leader_epoch,
                ..
            }) => (last_offset + 1, leader_epoch),
            Ok(_) | Err(_) => return Box::pin(async { Err(ResponseError::NotCoordinator.code()) }),
        };
        self.flusher.request(partition.clone());
        Box::pin(async move {
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
}

/// The last value of every key in the partition, to its log end offset.
fn replay(partition: &Partition) -> Result<Vec<(String, Option<TxnMetadata>)>, TopicError> {
    let mut latest: BTreeMap<String, Option<TxnMetadata>> = BTreeMap::new();
    partition
        .replay_records(|record| {
            if record.control {
                return;
            }
            let Some(id) = record.key.clone().and_then(decode_key) else {
                return;
            };
            let value = match record.value.clone() {
                None => None,
                Some(v) => match decode_value(&id, v) {
                    Some(m) => Some(m),
                    // A layout this broker does not read: keep what came before.
                    None => return,
                },
            };
            latest.insert(id, value);
        })
        .map_err(TopicError::Storage)?;
    Ok(latest.into_iter().collect())
}
