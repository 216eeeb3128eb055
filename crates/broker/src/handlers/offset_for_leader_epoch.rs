//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients use to detect log truncation after a
//! leader change (KIP-101, KIP-320). Answered by the partition's leader from its log's leader epoch cache: the
//! largest epoch at or below the one asked for, and the offset where it ends (the log end offset for the latest
//! epoch); -1 and -1 when the log has no epoch that old.

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
                    // The current epoch ends at the log end offset even before its first batch is appended;
                    // an epoch newer than the current one is unknown, as in Kafka.
                    let current = partition.leader_epoch();
                    let answer = if p.leader_epoch == current {
                        partition.log_end_offset().map(|end| (current, end))
                    } else if p.leader_epoch > current {
                        Ok((-1, -1))
                    } else {
                        partition.end_offset_for_epoch(p.leader_epoch)
                    };
                    match answer {
                        Ok((epoch, end)) => result.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => result.with_error_code(super::produce::error_code(&e)),
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
