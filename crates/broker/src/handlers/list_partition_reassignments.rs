//! ListPartitionReassignments (KIP-455): the reassignments in progress, from the committed metadata (any broker
//! answers from its image, which follows the controller's): each partition's replicas (target and leaving) and
//! which replicas are being added and removed. Requested partitions without a reassignment are left out, as
//! Kafka does; an unknown topic or partition is UNKNOWN_TOPIC_OR_PARTITION for the whole request.

use std::sync::Arc;

use strom_protocol::kafka::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use strom_protocol::kafka::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let image = state.cluster.image();
    let brokers = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let requested: Vec<(String, Option<Vec<i32>>)> = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes.clone())))
            .collect(),
        None => image
            .topics
            .keys()
            .map(|name| (name.clone(), None))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, indexes) in requested {
        let Some(topic) = image.topics.get(&name) else {
            return unknown(format!("topic '{name}' does not exist"));
        };
        let indexes: Vec<i32> =
            indexes.unwrap_or_else(|| topic.partitions.keys().copied().collect());
        let mut ongoing = Vec::new();
        for index in indexes {
            let Some(p) = topic.partitions.get(&index) else {
                return unknown(format!("{name}-{index} does not exist"));
            };
            if p.is_reassigning() {
                ongoing.push(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(index)
                        .with_replicas(brokers(&p.replicas))
                        .with_adding_replicas(brokers(&p.adding_replicas))
                        .with_removing_replicas(brokers(&p.removing_replicas)),
                );
            }
        }
        if !ongoing.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(ongoing),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn unknown(message: String) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
        .with_error_message(Some(str_bytes(message)))
}
