//! DescribeProducers (KIP-664): the producers with state on each requested partition, from this broker's replica
//! of it. As in Kafka any replica answers, leader or follower (the admin client sends to the leader unless told
//! otherwise, to look at a follower's copy of the state): NOT_LEADER_OR_FOLLOWER when this broker holds no
//! replica, UNKNOWN_TOPIC_OR_PARTITION when the partition does not exist.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use strom_protocol::kafka::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};
use strom_protocol::kafka::ResponseError;

use crate::server::BrokerState;
use crate::topics::Topic;

pub fn handle(
    state: &Arc<BrokerState>,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let hosted = state.topics.get(topic.name.0.as_str());
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| describe(hosted.as_deref(), index))
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe(topic: Option<&Topic>, index: i32) -> PartitionResponse {
    let response = PartitionResponse::default().with_partition_index(index);
    let Some(slot) = topic.and_then(|t| t.slot(index)) else {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let Some(partition) = &slot.local else {
        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
    };
    match partition.with_log(|log| Ok(log.active_producers()?)) {
        Ok(producers) => response.with_active_producers(
            producers
                .into_iter()
                .map(|p| {
                    ProducerState::default()
                        .with_producer_id(ProducerId(p.producer_id))
                        .with_producer_epoch(i32::from(p.producer_epoch))
                        .with_last_sequence(p.last_sequence)
                        .with_last_timestamp(p.last_timestamp)
                        .with_coordinator_epoch(p.coordinator_epoch)
                        .with_current_txn_start_offset(p.txn_start_offset.unwrap_or(-1))
                })
                .collect(),
        ),
        Err(e) => response.with_error_code(e.kafka_error_code()),
    }
}
