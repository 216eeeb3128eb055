//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+) and offset-by-timestamp, the last being what
//! "replay from a point in time" uses: the first offset whose record timestamp is at or after the target.

use std::sync::Arc;

use strom_protocol::kafka::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use strom_protocol::kafka::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strom_protocol::kafka::ResponseError;

use crate::partition::Partition;
use crate::server::BrokerState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(
    state: &Arc<BrokerState>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let hosted = state.topics.get(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let Some(partition) =
                        hosted.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return response.with_error_code(
                            hosted
                                .as_ref()
                                .map_or(ResponseError::UnknownTopicOrPartition.code(), |t| {
                                    t.partition_error(p.partition_index)
                                }),
                        );
                    };
                    if let Err(code) = partition.check_leader_epoch(p.current_leader_epoch) {
                        return response.with_error_code(code);
                    }
                    let (code, timestamp, offset) =
                        lookup(partition, p.timestamp, version, read_committed);
                    let mut response = response
                        .with_error_code(code)
                        .with_timestamp(timestamp)
                        .with_offset(offset);
                    if version >= 4 && code == 0 {
                        response = response.with_leader_epoch(partition.leader_epoch());
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Returns (error code, timestamp, offset).
fn lookup(
    partition: &Partition,
    timestamp: i64,
    version: i16,
    read_committed: bool,
) -> (i16, i64, i64) {
    let result = match timestamp {
        // The end a read_committed consumer can reach is the last stable offset.
        LATEST if read_committed => partition.last_stable_offset().map(|lso| Some((lso, -1))),
        LATEST => Ok(Some((partition.high_watermark(), -1))),
        EARLIEST => Ok(Some((partition.log_start_offset(), -1))),
        MAX_TIMESTAMP if version >= 7 => partition.with_log(|log| Ok(log.max_timestamp()?)),
        ts if ts >= 0 => partition.with_log(|log| Ok(log.offset_for_timestamp(ts)?)),
        _ => return (ResponseError::UnsupportedVersion.code(), -1, -1),
    };
    match result {
        Ok(Some((offset, ts))) => (0, ts, offset),
        // No record at or after the timestamp: Kafka answers offset -1 with no error.
        Ok(None) => (0, -1, -1),
        Err(e) => (super::produce::error_code(&e), -1, -1),
    }
}
