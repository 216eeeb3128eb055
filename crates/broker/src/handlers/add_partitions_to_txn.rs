//! AddPartitionsToTxn (v0-3, from producers): the partitions a transaction is about to write join it on its
//! coordinator, persisted before the answer, so its markers reach every one of them. Every partition of the
//! request gets the same result.

use std::sync::Arc;

use strom_protocol::kafka::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use strom_protocol::kafka::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
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
        // The broker-to-broker batched form (KIP-890) is not advertised.
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
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
