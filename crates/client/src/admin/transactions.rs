//! Transactions (KIP-664): list the transactions every broker coordinates (ListTransactions), describe
//! transactional ids at their coordinators (DescribeTransactions), and the producers with state on partitions at
//! their leaders (DescribeProducers).

use std::collections::BTreeMap;
use std::time::Duration;

use strom_protocol::kafka::messages::describe_producers_request::TopicRequest;
use strom_protocol::kafka::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest,
    ProducerId, TransactionalId,
};
use strom_protocol::kafka::ResponseError;

use super::groups::CoordinatorKey;
use super::offsets::{ByLeader, Outcomes, PartitionResult};
use super::{check, kafka_error, str_bytes, topic_name, Admin, TopicPartitions};
use crate::error::Error;

/// How long to keep retrying a coordinator that moved or is loading, or a broker whose coordinators load.
const RETRY_WAIT: Duration = Duration::from_secs(10);

/// Which transactions [`Admin::list_transactions`] lists; empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    /// Kafka's state names (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort,
    /// PrepareEpochFence).
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running for longer than this (KIP-994, ListTransactions v1).
    pub running_longer_than_ms: Option<i64>,
    /// Only transactional ids this regular expression matches whole (KIP-1152, ListTransactions v2).
    pub transactional_id_pattern: Option<String>,
}

/// A transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    /// Kafka's state name.
    pub state: String,
    /// The broker that coordinates it.
    pub coordinator: i32,
}

/// What [`Admin::list_transactions`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionList {
    /// Sorted by transactional id.
    pub transactions: Vec<TransactionListing>,
    /// State filters the brokers do not know (they match nothing).
    pub unknown_states: Vec<String>,
}

/// A transactional id as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator: i32,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort.
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the current (or last) transaction began; None before the first.
    pub start_time_ms: Option<i64>,
    /// The partitions of the current (or last) transaction, sorted.
    pub partitions: Vec<TopicPartitions>,
}

/// A producer with state on a partition (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i32,
    /// None when the partition has no sequenced batch of it (only markers or coordinator-written batches).
    pub last_sequence: Option<i32>,
    pub last_timestamp: Option<i64>,
    /// The epoch of the transaction coordinator that wrote its last marker here.
    pub coordinator_epoch: Option<i32>,
    /// The first offset of its transaction open on the partition, which holds the last stable offset there.
    pub current_txn_start_offset: Option<i64>,
}

fn non_negative<T: PartialOrd + Default>(v: T) -> Option<T> {
    (v >= T::default()).then_some(v)
}

impl Admin {
    /// The transactions every broker coordinates that pass `filter`. A broker still loading its coordinators
    /// is asked again for a while.
    pub async fn list_transactions(
        &self,
        filter: &TransactionFilter,
    ) -> Result<TransactionList, Error> {
        self.cluster.refresh().await?;
        let brokers: Vec<i32> = self.cluster.metadata().brokers.keys().copied().collect();
        let mut transactions = BTreeMap::new();
        let mut unknown_states = Vec::new();
        for id in brokers {
            let connection = self.cluster.broker_connection(id).await?;
            let version = connection.version(ApiKey::ListTransactions)?;
            let duration = filter.running_longer_than_ms.unwrap_or(-1);
            let needed = if filter.transactional_id_pattern.is_some() {
                2
            } else if duration >= 0 {
                1
            } else {
                0
            };
            if version < needed {
                return Err(Error::UnsupportedVersion {
                    addr: connection.addr().to_string(),
                    api: ApiKey::ListTransactions,
                    broker: connection.broker_versions(ApiKey::ListTransactions),
                    client_min: needed,
                    client_max: version,
                });
            }
            let request = ListTransactionsRequest::default()
                .with_state_filters(filter.states.iter().map(|s| str_bytes(s)).collect())
                .with_producer_id_filters(
                    filter.producer_ids.iter().map(|p| ProducerId(*p)).collect(),
                )
                .with_duration_filter(duration)
                .with_transactional_id_pattern(
                    filter.transactional_id_pattern.as_deref().map(str_bytes),
                );
            let deadline = tokio::time::Instant::now() + RETRY_WAIT;
            let mut backoff = Duration::from_millis(20);
            let response = loop {
                let response = connection.request_at(&request, version).await?;
                match check(
                    response.error_code,
                    None,
                    format!("list transactions on broker {id}"),
                ) {
                    Ok(()) => break response,
                    Err(e)
                        if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline =>
                    {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            };
            for s in response.unknown_state_filters {
                if !unknown_states.contains(&s.to_string()) {
                    unknown_states.push(s.to_string());
                }
            }
            for t in response.transaction_states {
                let transactional_id = t.transactional_id.0.to_string();
                transactions.insert(
                    transactional_id.clone(),
                    TransactionListing {
                        transactional_id,
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: id,
                    },
                );
            }
        }
        Ok(TransactionList {
            transactions: transactions.into_values().collect(),
            unknown_states,
        })
    }

    /// Describes each transactional id at its coordinator; each id's outcome is its own
    /// (TRANSACTIONAL_ID_NOT_FOUND for an id no coordinator knows).
    pub async fn describe_transactions(
        &self,
        transactional_ids: &[String],
    ) -> Result<Vec<(String, Result<TransactionDescription, Error>)>, Error> {
        let mut out = Vec::with_capacity(transactional_ids.len());
        for id in transactional_ids {
            let result = self.describe_transaction(id).await;
            out.push((id.clone(), result));
        }
        Ok(out)
    }

    async fn describe_transaction(&self, id: &str) -> Result<TransactionDescription, Error> {
        let deadline = tokio::time::Instant::now() + RETRY_WAIT;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (coordinator, connection) = self
                .find_coordinator(CoordinatorKey::Transaction, id)
                .await?;
            let request = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(str_bytes(id))]);
            let response = connection.request(&request).await?;
            let d = response
                .transaction_states
                .into_iter()
                .find(|d| d.transactional_id.0.as_str() == id)
                .ok_or_else(|| {
                    kafka_error(
                        ResponseError::UnknownServerError,
                        format!("the DescribeTransactions response does not mention '{id}'"),
                    )
                })?;
            match check(d.error_code, None, format!("transactional id '{id}'")) {
                Ok(()) => {
                    let mut partitions: Vec<TopicPartitions> = d
                        .topics
                        .into_iter()
                        .map(|t| {
                            let mut partitions = t.partitions;
                            partitions.sort_unstable();
                            TopicPartitions {
                                topic: t.topic.0.to_string(),
                                partitions,
                            }
                        })
                        .collect();
                    partitions.sort_by(|a, b| a.topic.cmp(&b.topic));
                    return Ok(TransactionDescription {
                        transactional_id: id.to_string(),
                        coordinator,
                        state: d.transaction_state.to_string(),
                        producer_id: d.producer_id.0,
                        producer_epoch: d.producer_epoch,
                        timeout_ms: d.transaction_timeout_ms,
                        start_time_ms: non_negative(d.transaction_start_time_ms),
                        partitions,
                    });
                }
                // The coordinator moved (NOT_COORDINATOR) or is loading: look it up again.
                Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The producers with state on each partition, from its leader; each partition's outcome is its own.
    pub async fn describe_producers(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<PartitionResult<Vec<ProducerDescription>>>, Error> {
        let (by_leader, mut results): (ByLeader<i32>, Outcomes<Vec<ProducerDescription>>) = self
            .route_to_leaders(partitions.iter().map(|(t, p)| (t.as_str(), *p, *p)))
            .await?;
        for (leader, topics) in by_leader {
            let request = DescribeProducersRequest::default().with_topics(
                topics
                    .into_iter()
                    .map(|(topic, parts)| {
                        TopicRequest::default()
                            .with_name(topic_name(&topic))
                            .with_partition_indexes(parts)
                    })
                    .collect(),
            );
            let response = self
                .cluster
                .broker_connection(leader)
                .await?
                .request(&request)
                .await?;
            for t in response.topics {
                for p in t.partitions {
                    let key = (t.name.0.to_string(), p.partition_index);
                    let what = format!("{}-{}", key.0, key.1);
                    let result = check(p.error_code, p.error_message.as_ref(), what).map(|()| {
                        let mut producers: Vec<ProducerDescription> = p
                            .active_producers
                            .into_iter()
                            .map(|s| ProducerDescription {
                                producer_id: s.producer_id.0,
                                producer_epoch: s.producer_epoch,
                                last_sequence: non_negative(s.last_sequence),
                                last_timestamp: non_negative(s.last_timestamp),
                                coordinator_epoch: non_negative(s.coordinator_epoch),
                                current_txn_start_offset: non_negative(s.current_txn_start_offset),
                            })
                            .collect();
                        producers.sort_by_key(|p| p.producer_id);
                        producers
                    });
                    results.insert(key, result);
                }
            }
        }
        Ok(partitions
            .iter()
            .map(|(topic, partition)| PartitionResult {
                topic: topic.clone(),
                partition: *partition,
                result: results
                    .get(&(topic.clone(), *partition))
                    .cloned()
                    .unwrap_or_else(|| {
                        Err(kafka_error(
                            ResponseError::UnknownServerError,
                            format!(
                                "the DescribeProducers response does not mention {topic}-{partition}"
                            ),
                        ))
                    }),
            })
            .collect())
    }
}
