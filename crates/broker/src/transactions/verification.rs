//! KIP-890's server-side defence against hanging transactions: a partition leader takes a producer's first
//! transactional batch of a transaction only once the transaction's coordinator confirms the partition was added
//! to that ongoing transaction. Otherwise a produce request delayed past its transaction's end (its retry, or a
//! zombie's) would open a transaction there that no coordinator knows, and the partition's last stable offset
//! would stay behind it forever.
//!
//! The coordinator is asked directly when it runs on this broker, and through AddPartitionsToTxn v4 with
//! `verify_only` (the broker-to-broker form) when it runs elsewhere. Later batches of the same transaction need no
//! check: the partition already has the transaction open for that producer id and epoch. A transactional offset
//! commit is verified the same way for its `__consumer_offsets` partition.
//!
//! Under transaction version 2 (KIP-890 part 2: Produce v12+, TxnOffsetCommit v5+) the producer sends no
//! AddPartitionsToTxn or AddOffsetsToTxn: the leader (or group coordinator) asks the transaction coordinator to
//! add the partition instead of verifying it (AddPartitionsToTxn v5 without `verify_only` when it is remote).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strom_client::{Connection, ConnectionConfig};
use strom_protocol::kafka::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use strom_protocol::kafka::messages::{
    AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use super::coordinator::TxnState;
use super::record::{partition_for, TRANSACTION_STATE_TOPIC};
use crate::server::BrokerState;

/// The broker-to-broker version of AddPartitionsToTxn that carries `verify_only`.
const VERIFY_VERSION: i16 = 4;
/// The version a partition leader adds a transaction version 2 producer's partitions with.
const ADD_VERSION: i16 = 5;

/// Asks the coordinator of `transactional_id`, which must run on this broker, whether `(producer_id, epoch)` has
/// an ongoing transaction holding `topic`-`partition`. The outer error is the coordinator's own (NOT_COORDINATOR,
/// COORDINATOR_LOAD_IN_PROGRESS, ...); the inner one Kafka's answer to the producer: INVALID_PRODUCER_ID_MAPPING,
/// PRODUCER_FENCED, INVALID_PRODUCER_EPOCH or INVALID_TXN_STATE.
pub fn check_local(
    state: &BrokerState,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<Result<(), i16>, i16> {
    state.transactions.with(transactional_id, |c| {
        let m = c
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping.code())?;
        if m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        }
        if producer_epoch < m.producer_epoch {
            return Err(ResponseError::ProducerFenced.code());
        }
        if producer_epoch > m.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch.code());
        }
        if m.state == TxnState::Ongoing && m.partitions.contains(&(topic.to_string(), partition)) {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState.code())
        }
    })
}

/// What a produce request answers for a batch its coordinator did not confirm. Coordinators that cannot answer
/// now (moving, loading, busy ending the previous transaction, unreachable) give NOT_ENOUGH_REPLICAS, the
/// retriable error every producer understands, as Kafka does; a fenced producer gets INVALID_PRODUCER_EPOCH.
pub fn produce_error(code: i16) -> i16 {
    if code == ResponseError::InvalidTxnState.code()
        || code == ResponseError::InvalidProducerIdMapping.code()
        || code == ResponseError::InvalidProducerEpoch.code()
    {
        code
    } else if code == ResponseError::ProducerFenced.code() {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        ResponseError::NotEnoughReplicas.code()
    }
}

/// Connections to the other brokers, for the coordinator's WriteTxnMarkers and the leaders' verification
/// requests: one per broker, reused, dropped when a request on it fails.
#[derive(Default)]
pub struct Peers {
    connections: Mutex<HashMap<i32, Connection>>,
}

impl Peers {
    /// A connection to broker `node` (NOT_ENOUGH_REPLICAS-style `None` when it is unknown, fenced or unreachable).
    pub async fn connection(&self, state: &BrokerState, node: i32) -> Option<Connection> {
        if let Some(c) = self.connections.lock().get(&node) {
            return Some(c.clone());
        }
        let endpoint = state
            .cluster
            .image()
            .brokers
            .get(&node)
            .filter(|b| !b.fenced)
            .map(|b| format!("{}:{}", b.endpoint.host, b.endpoint.port))?;
        let settings = ConnectionConfig {
            client_id: format!("strom-broker-{}", state.topics.node_id()),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ..ConnectionConfig::default()
        };
        match Connection::connect(&endpoint, settings).await {
            Ok(c) => {
                self.connections.lock().insert(node, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot connect to a peer broker");
                None
            }
        }
    }

    /// Forgets the connection to `node` after a request on it failed, so the next one reconnects.
    pub fn failed(&self, node: i32) {
        self.connections.lock().remove(&node);
    }
}

/// Asks the coordinator of `transactional_id` on another broker, with AddPartitionsToTxn v4 `verify_only`,
/// whether `(producer_id, epoch)` has an ongoing transaction holding each of `partitions`, or (not `verify_only`,
/// v5: a transaction version 2 producer's first write to them) to add them to its transaction. Returns one code
/// per partition, in order (0: verified, or added).
pub async fn ask_remote(
    state: &BrokerState,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    verify_only: bool,
) -> Vec<i16> {
    let unavailable = vec![ResponseError::CoordinatorNotAvailable.code(); partitions.len()];
    let Some(coordinator) = state.topics.get(TRANSACTION_STATE_TOPIC).and_then(|t| {
        t.slot(partition_for(transactional_id, t.partition_count()))
            .map(|s| s.leader)
    }) else {
        return unavailable;
    };
    if coordinator < 0 {
        return unavailable;
    }
    let Some(connection) = state
        .transactions
        .verify_peers
        .connection(state, coordinator)
        .await
    else {
        return unavailable;
    };
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, index) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(*index),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![*index]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(verify_only)
            .with_topics(topics),
    ]);
    let version = if verify_only {
        VERIFY_VERSION
    } else {
        ADD_VERSION
    };
    let response = match connection.request_at(&request, version).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(coordinator, error = %e, "transaction verification failed");
            state.transactions.verify_peers.failed(coordinator);
            return unavailable;
        }
    };
    if response.error_code != 0 {
        return vec![response.error_code; partitions.len()];
    }
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for txn in &response.results_by_transaction {
        for t in &txn.topic_results {
            for p in &t.results_by_partition {
                codes.insert(
                    (t.name.0.as_str(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
    }
    partitions
        .iter()
        .map(|(t, p)| {
            codes
                .get(&(t.as_str(), *p))
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect()
}

/// Verifies (or, `add`, adds) `partitions` in the transaction of `transactional_id`'s producer, with its
/// coordinator wherever it runs. One code per partition, in order (0: verified or added).
pub async fn verify_or_add(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Vec<i16> {
    match state.transactions.with(transactional_id, |_| ()) {
        Err(code) if code == ResponseError::NotCoordinator.code() => {
            ask_remote(
                state,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                !add,
            )
            .await
        }
        _ if add => {
            let producer = super::coordinator::ProducerIdAndEpoch {
                producer_id,
                producer_epoch,
            };
            let code = super::driver::add_partitions(state, transactional_id, producer, partitions)
                .await
                .err()
                .unwrap_or(0);
            vec![code; partitions.len()]
        }
        _ => partitions
            .iter()
            .map(|(topic, p)| {
                match check_local(
                    state,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    topic,
                    *p,
                ) {
                    Ok(Ok(())) => 0,
                    Ok(Err(code)) | Err(code) => code,
                }
            })
            .collect(),
    }
}

/// The coordinator's side of AddPartitionsToTxn v4+: each transaction's partitions verified (`verify_only`) or
/// added, every partition of a transaction answered with that transaction's outcome.
pub async fn serve_batched(
    state: &Arc<BrokerState>,
    transactions: &[AddPartitionsToTxnTransaction],
) -> Vec<Vec<((String, i32), i16)>> {
    let mut results = Vec::with_capacity(transactions.len());
    for txn in transactions {
        let id = txn.transactional_id.0.as_str();
        let partitions: Vec<(String, i32)> = txn
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect();
        let codes: Vec<i16> = if txn.verify_only {
            partitions
                .iter()
                .map(|(topic, p)| {
                    match check_local(state, id, txn.producer_id.0, txn.producer_epoch, topic, *p) {
                        Ok(Ok(())) => 0,
                        Ok(Err(code)) | Err(code) => code,
                    }
                })
                .collect()
        } else {
            let producer = super::coordinator::ProducerIdAndEpoch {
                producer_id: txn.producer_id.0,
                producer_epoch: txn.producer_epoch,
            };
            let code = super::driver::add_partitions(state, id, producer, &partitions)
                .await
                .err()
                .unwrap_or(0);
            vec![code; partitions.len()]
        };
        results.push(partitions.into_iter().zip(codes).collect());
    }
    results
}
