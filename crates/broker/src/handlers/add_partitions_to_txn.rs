//! AddPartitionsToTxn (v0-3, from producers): the partitions a transaction is about to write join it on its
//! coordinator, persisted before the answer, so its markers reach every one of them. Every partition of the
//! request gets the same result. v4 is KIP-890's broker-to-broker form: several transactions per request, each
//! verified (`verify_only`, asked by a partition leader before it takes a transaction's first batch) or added.

use std::sync::Arc;

use strom_protocol::kafka::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use strom_protocol::kafka::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use crate::server::BrokerState;
use crate::transactions::coordinator::ProducerIdAndEpoch;
use crate::transactions::driver;

pub async fn handle(
    state: Arc<BrokerState>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let response = AddPartitionsToTxnResponse::default();
    if version >= 4 {
        return batched(&state, request).await;
    }
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let producer = ProducerIdAndEpoch {
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
    };
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        let hosted = state.topics.get(topic.name.0.as_str());
        for p in &topic.partitions {
            let exists = hosted
                .as_ref()
                .is_some_and(|t| *p >= 0 && *p < t.partition_count());
            if exists {
                partitions.push((topic.name.0.to_string(), *p));
            } else {
                unknown.push((topic.name.0.to_string(), *p));
            }
        }
    }
    // Kafka's rule: one bad partition fails the request; the others are answered OPERATION_NOT_ATTEMPTED.
    let outcome = if unknown.is_empty() {
        driver::add_partitions(&state, &transactional_id, producer, &partitions).await
    } else {
        Err(ResponseError::OperationNotAttempted.code())
    };
    let code_of = |topic: &str, partition: i32| match &outcome {
        Ok(()) => 0,
        Err(_) if unknown.iter().any(|(t, p)| t == topic && *p == partition) => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        Err(code) => crate::transactions::for_version(*code, version, 2),
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code_of(topic.name.0.as_str(), *p))
                        })
                        .collect(),
                )
        })
        .collect();
    response.with_results_by_topic_v3_and_below(results)
}

/// AddPartitionsToTxn v4+: each transaction answered on its own, per partition.
async fn batched(
    state: &Arc<BrokerState>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let outcomes =
        crate::transactions::verification::serve_batched(state, &request.transactions).await;
    let results = request
        .transactions
        .iter()
        .zip(outcomes)
        .map(|(txn, outcome)| {
            let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
            for ((topic, partition), code) in outcome {
                let result = AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(partition)
                    .with_partition_error_code(code);
                match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.results_by_partition.push(result),
                    None => topics.push(
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(TopicName(StrBytes::from_string(topic)))
                            .with_results_by_partition(vec![result]),
                    ),
                }
            }
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id.clone())
                .with_topic_results(topics)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}
