//! DeleteRecords: move a partition's log start offset forward (offset -1 means "up to the high watermark");
//! whole segments below it are removed.

use std::sync::Arc;

use strom_log::LogError;
use strom_protocol::kafka::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use strom_protocol::kafka::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strom_protocol::kafka::ResponseError;

use crate::partition::PartitionError;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let hosted = state.topics.get(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) =
                        hosted.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return result.with_error_code(
                            hosted
                                .as_ref()
                                .map_or(ResponseError::UnknownTopicOrPartition.code(), |t| {
                                    t.partition_error(p.partition_index)
                                }),
                        );
                    };
                    let target = if p.offset == -1 {
                        partition.high_watermark()
                    } else {
                        p.offset
                    };
                    if target < 0 || target > partition.high_watermark() {
                        return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match partition.delete_records_before(target) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(PartitionError::Log(LogError::OffsetOutOfRange { .. })) => {
                            result.with_error_code(ResponseError::OffsetOutOfRange.code())
                        }
                        Err(e) => result.with_error_code(super::produce::error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
