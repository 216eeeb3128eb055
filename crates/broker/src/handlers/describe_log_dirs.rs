//! DescribeLogDirs: the data directory and the size of every partition in it (UIs show these as topic sizes).

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use strom_protocol::kafka::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str_bytes;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let topics = state
        .topics
        .all()
        .into_iter()
        .filter_map(|topic| {
            let selected: Vec<i32> = match &wanted {
                None => topic.local.iter().map(|p| p.index).collect(),
                Some(w) => w.iter().find(|(name, _)| **name == *topic.name)?.1.clone(),
            };
            let partitions = selected
                .into_iter()
                .filter_map(|index| {
                    let p = topic.slot(index)?.local.as_ref()?;
                    let size = p.with_log(|log| Ok(log.size_bytes())).unwrap_or(0);
                    Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(index)
                            .with_partition_size(size as i64)
                            .with_offset_lag(0),
                    )
                })
                .collect();
            Some(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(topic.name.to_string())))
                    .with_partitions(partitions),
            )
        })
        .collect();
    let dir = std::fs::canonicalize(&state.config.data_dir)
        .unwrap_or_else(|_| state.config.data_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics);
    DescribeLogDirsResponse::default().with_results(vec![result])
}
