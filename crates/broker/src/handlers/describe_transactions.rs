//! DescribeTransactions (KIP-664): each transactional id's state as its coordinator holds it, answered only by the
//! broker that coordinates the id. Kafka's errors per id: NOT_COORDINATOR when another broker leads the id's
//! `__transaction_state` partition (or the topic does not exist yet), COORDINATOR_LOAD_IN_PROGRESS while this one
//! loads it, TRANSACTIONAL_ID_NOT_FOUND for an id it has no metadata for (or one being expired, Dead),
//! INVALID_REQUEST for the empty id.

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::kafka::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use strom_protocol::kafka::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
    TransactionalId,
};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;
use crate::transactions::coordinator::{TxnMetadata, TxnState};

pub fn handle(
    state: &Arc<BrokerState>,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| describe(state, id))
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(state: &BrokerState, id: TransactionalId) -> TransactionState {
    let response = TransactionState::default().with_transactional_id(id.clone());
    if id.0.is_empty() {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    let found = state
        .transactions
        .with(id.0.as_str(), |c| c.get(id.0.as_str()).cloned());
    match found {
        // No leader for the partition, or no `__transaction_state` at all: Kafka's broker has no coordinator
        // loaded for the id and says NOT_COORDINATOR; the admin client looks the coordinator up again.
        Err(code) if code == ResponseError::CoordinatorNotAvailable.code() => {
            response.with_error_code(ResponseError::NotCoordinator.code())
        }
        Err(code) => response.with_error_code(code),
        Ok(None) => response.with_error_code(ResponseError::TransactionalIdNotFound.code()),
        Ok(Some(m)) if m.state == TxnState::Dead => {
            response.with_error_code(ResponseError::TransactionalIdNotFound.code())
        }
        Ok(Some(m)) => described(response, &m),
    }
}

fn described(response: TransactionState, m: &TxnMetadata) -> TransactionState {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &m.partitions {
        topics.entry(topic.as_str()).or_default().push(*partition);
    }
    response
        .with_transaction_state(str_bytes(m.state.name()))
        .with_transaction_timeout_ms(m.timeout_ms)
        .with_transaction_start_time_ms(m.start_ms)
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.producer_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
