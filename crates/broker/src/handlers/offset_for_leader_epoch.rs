//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients use to detect log truncation after a
//! leader change. A single broker has had one leader epoch (0) for every partition, so epoch 0 ends at the log
//! end offset and later epochs are unknown.

use std::sync::Arc;

use strom_protocol::kafka::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use strom_protocol::kafka::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use strom_protocol::kafka::ResponseError;

use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let hosted = state.topics.get(topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = hosted.as_ref().and_then(|t| t.partition(p.partition))
                    else {
                        return result.with_error_code(
                            hosted
                                .as_ref()
                                .map_or(ResponseError::UnknownTopicOrPartition.code(), |t| {
                                    t.partition_error(p.partition)
                                }),
                        );
                    };
                    if let Err(code) = partition.check_leader_epoch(p.current_leader_epoch) {
                        return result.with_error_code(code);
                    }
                    if p.leader_epoch <= partition.leader_epoch() {
                        let end = partition
                            .with_log(|log| Ok(log.log_end_offset()))
                            .unwrap_or(-1);
                        result
                            .with_leader_epoch(partition.leader_epoch())
                            .with_end_offset(end)
                    } else {
                        result
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
