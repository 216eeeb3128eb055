//! The transactional producer's requests: to its transaction coordinator (InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn) and to a consumer group's coordinator (TxnOffsetCommit), each found with
//! FindCoordinator and retried as Kafka's producer does (see [`classify`]): a coordinator that moved or is
//! loading is looked up again, CONCURRENT_TRANSACTIONS (the previous transaction is still writing its markers)
//! is retried after a short backoff, and everything is bounded by `max.block.ms`.
//!
//! Versions are capped below KIP-890's transaction version 2 (AddPartitionsToTxn v4+ is the brokers' own form;
//! EndTxn v5, AddOffsetsToTxn v4, TxnOffsetCommit v4 and InitProducerId v5+ mean a new epoch per transaction),
//! which this producer does not implement.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use strom_protocol::kafka::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use strom_protocol::kafka::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use super::accumulator::{ProducerIdentity, TopicPartition};
use super::transactions::{classify, ErrorClass};
use crate::cluster::Cluster;
use crate::connection::{Connection, ConnectionConfig};
use crate::consumer::{ConsumerGroupMetadata, OffsetAndMetadata};
use crate::error::Error;

/// FindCoordinator's key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// How long CONCURRENT_TRANSACTIONS waits before trying again: the previous transaction's markers take
/// milliseconds (the Java producer waits 20 ms too).
const SHORT_BACKOFF: Duration = Duration::from_millis(20);

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One coordinator's address in the cache: FindCoordinator's key type and key.
type Key = (i8, String);

pub(crate) struct Coordinators {
    cluster: Arc<Cluster>,
    transactional_id: String,
    transaction_timeout_ms: i32,
    retry_backoff: Duration,
    /// How long one call keeps retrying.
    max_block: Duration,
    /// Connections of their own: EndTxn waits for the transaction's markers, and must not hold up the produce
    /// responses that share the pooled connection to the same broker.
    connections: tokio::sync::Mutex<HashMap<Key, Connection>>,
}

impl Coordinators {
    pub fn new(
        cluster: Arc<Cluster>,
        transactional_id: String,
        transaction_timeout: Duration,
        retry_backoff: Duration,
        max_block: Duration,
    ) -> Self {
        Self {
            cluster,
            transactional_id,
            transaction_timeout_ms: i32::try_from(transaction_timeout.as_millis())
                .unwrap_or(i32::MAX),
            retry_backoff,
            max_block,
            connections: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(str_bytes(&self.transactional_id))
    }

    /// The coordinator of `key`, from the cache or found with FindCoordinator.
    async fn connection(&self, key: &Key) -> Result<Connection, Error> {
        let mut cache = self.connections.lock().await;
        if let Some(c) = cache.get(key).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let (key_type, id) = key;
        let any = self.cluster.any_connection().await?;
        let version = any.version(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(*key_type);
        if version >= 4 {
            request.coordinator_keys = vec![str_bytes(id)];
        } else {
            request.key = str_bytes(id);
        }
        let response = any.request_at(&request, version).await?;
        let (code, host, port) = if version >= 4 {
            let c = response.coordinators.first().ok_or_else(|| Error::Decode {
                addr: any.addr().to_string(),
                api: ApiKey::FindCoordinator,
                reason: "no coordinator in the response".into(),
            })?;
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (
                response.error_code,
                response.host.to_string(),
                response.port,
            )
        };
        let what = if *key_type == TRANSACTION {
            "transactional.id"
        } else {
            "group"
        };
        if let Some(e) = Error::kafka(code, format!("FindCoordinator for {what} {id}")) {
            return Err(e);
        }
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let connection = Connection::connect(
            &addr,
            ConnectionConfig {
                client_id: self.cluster.config().connection.client_id.clone(),
                ..self.cluster.config().connection.clone()
            },
        )
        .await?;
        cache.insert(key.clone(), connection.clone());
        Ok(connection)
    }

    /// Runs `attempt` against the coordinator of `key` until it succeeds, fails for good, or `max.block.ms`
    /// passes.
    async fn call<T, F, Fut>(&self, key: Key, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.max_block;
        loop {
            let result = match self.connection(&key).await {
                Ok(c) => attempt(c).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let ErrorClass::Retry { rediscover, short } = classify(&error) else {
                return Err(error);
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{what} for transactional.id {} (last error: {error})",
                        self.transactional_id
                    ),
                    timeout: self.max_block,
                });
            }
            tracing::debug!(transactional_id = %self.transactional_id, error = %error, "{what} failed; retrying");
            if rediscover {
                self.connections.lock().await.remove(&key);
            }
            tokio::time::sleep(if short {
                SHORT_BACKOFF
            } else {
                self.retry_backoff
            })
            .await;
        }
    }

    fn transaction_key(&self) -> Key {
        (TRANSACTION, self.transactional_id.clone())
    }

    /// InitProducerId for the transactional id: a new epoch (fencing any older producer with the id, and
    /// aborting its open transaction). With `current`, the epoch bump of KIP-360 for this producer's own id.
    pub async fn init_producer_id(
        &self,
        current: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity, Error> {
        self.call(self.transaction_key(), "InitProducerId", |c| async move {
            let version = c.version(ApiKey::InitProducerId)?.min(4);
            let current = current.filter(|_| version >= 3);
            let request = InitProducerIdRequest::default()
                .with_transactional_id(Some(self.txn_id()))
                .with_transaction_timeout_ms(self.transaction_timeout_ms)
                .with_producer_id(current.map_or(-1, |p| p.id).into())
                .with_producer_epoch(current.map_or(-1, |p| p.epoch));
            let response = c.request_at(&request, version).await?;
            if let Some(e) = Error::kafka(response.error_code, "InitProducerId") {
                return Err(e);
            }
            Ok(ProducerIdentity {
                id: response.producer_id.0,
                epoch: response.producer_epoch,
            })
        })
        .await
    }

    /// AddPartitionsToTxn: the coordinator records the partitions in the transaction.
    pub async fn add_partitions(
        &self,
        producer: ProducerIdentity,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let topics: Vec<AddPartitionsToTxnTopic> = by_topic
            .into_iter()
            .map(|(t, ps)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(str_bytes(t)))
                    .with_partitions(ps)
            })
            .collect();
        self.call(self.transaction_key(), "AddPartitionsToTxn", |c| {
            let topics = topics.clone();
            async move {
                let version = c.version(ApiKey::AddPartitionsToTxn)?.min(3);
                let request = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(self.txn_id())
                    .with_v3_and_below_producer_id(producer.id.into())
                    .with_v3_and_below_producer_epoch(producer.epoch)
                    .with_v3_and_below_topics(topics);
                let response = c.request_at(&request, version).await?;
                // When one partition fails the others answer OPERATION_NOT_ATTEMPTED: report the cause.
                let mut first = None;
                for t in &response.results_by_topic_v3_and_below {
                    for p in &t.results_by_partition {
                        let code = p.partition_error_code;
                        if code == 0 {
                            continue;
                        }
                        let not_attempted = code == ResponseError::OperationNotAttempted.code();
                        if first.is_none() || !not_attempted {
                            first = Error::kafka(
                                code,
                                format!("AddPartitionsToTxn {}-{}", t.name.0, p.partition_index),
                            );
                        }
                        if !not_attempted {
                            return Err(first.expect("an error code"));
                        }
                    }
                }
                first.map_or(Ok(()), Err)
            }
        })
        .await
    }

    /// AddOffsetsToTxn: the coordinator records that the transaction commits offsets of `group_id`.
    pub async fn add_offsets(
        &self,
        producer: ProducerIdentity,
        group_id: &str,
    ) -> Result<(), Error> {
        self.call(self.transaction_key(), "AddOffsetsToTxn", |c| async move {
            let version = c.version(ApiKey::AddOffsetsToTxn)?.min(3);
            let request = AddOffsetsToTxnRequest::default()
                .with_transactional_id(self.txn_id())
                .with_producer_id(producer.id.into())
                .with_producer_epoch(producer.epoch)
                .with_group_id(GroupId(str_bytes(group_id)));
            let response = c.request_at(&request, version).await?;
            match Error::kafka(
                response.error_code,
                format!("AddOffsetsToTxn for group {group_id}"),
            ) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await
    }

    /// TxnOffsetCommit to the group's coordinator: the offsets, pending until the transaction ends. From v3 the
    /// coordinator checks the member and generation, so a consumer that lost its partitions cannot commit.
    pub async fn txn_offset_commit(
        &self,
        producer: ProducerIdentity,
        group: &ConsumerGroupMetadata,
        offsets: &BTreeMap<crate::consumer::TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), Error> {
        let mut by_topic: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, o) in offsets {
            by_topic.entry(&tp.topic).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_metadata(Some(str_bytes(&o.metadata))),
            );
        }
        let topics: Vec<TxnOffsetCommitRequestTopic> = by_topic
            .into_iter()
            .map(|(t, ps)| {
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(str_bytes(t)))
                    .with_partitions(ps)
            })
            .collect();
        let key = (GROUP, group.group_id.clone());
        self.call(key, "TxnOffsetCommit", |c| {
            let topics = topics.clone();
            async move {
                let version = c.version(ApiKey::TxnOffsetCommit)?.min(3);
                let mut request = TxnOffsetCommitRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_group_id(GroupId(str_bytes(&group.group_id)))
                    .with_producer_id(producer.id.into())
                    .with_producer_epoch(producer.epoch)
                    .with_topics(topics);
                if version >= 3 {
                    request.generation_id = group.generation_id;
                    request.member_id = str_bytes(&group.member_id);
                    request.group_instance_id = group.group_instance_id.as_deref().map(str_bytes);
                }
                let response = c.request_at(&request, version).await?;
                for t in &response.topics {
                    for p in &t.partitions {
                        if let Some(e) = Error::kafka(
                            p.error_code,
                            format!(
                                "TxnOffsetCommit of {}-{} for group {}",
                                t.name.0, p.partition_index, group.group_id
                            ),
                        ) {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// EndTxn: commit or abort. Answered once the outcome is durable at the coordinator.
    pub async fn end_txn(&self, producer: ProducerIdentity, commit: bool) -> Result<(), Error> {
        self.call(self.transaction_key(), "EndTxn", |c| async move {
            let version = c.version(ApiKey::EndTxn)?.min(3);
            let request = EndTxnRequest::default()
                .with_transactional_id(self.txn_id())
                .with_producer_id(producer.id.into())
                .with_producer_epoch(producer.epoch)
                .with_committed(commit);
            let response = c.request_at(&request, version).await?;
            match Error::kafka(
                response.error_code,
                if commit {
                    "EndTxn (commit)"
                } else {
                    "EndTxn (abort)"
                },
            ) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await
    }
}
