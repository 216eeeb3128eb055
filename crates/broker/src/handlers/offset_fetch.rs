//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); all partitions with commits when the
//! topic list is null. A partition without a commit answers offset -1.

use std::sync::Arc;

use strom_protocol::kafka::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use strom_protocol::kafka::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::offsets::record::CommittedOffset;
use crate::server::BrokerState;

/// (topic, [(partition, committed)]) for one group.
type Fetched = Vec<(TopicName, Vec<(i32, Option<CommittedOffset>)>)>;

pub fn handle(
    state: &Arc<BrokerState>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                if let Err(code) = state.check_coordinator(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code);
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let unstable = unstable(state, g.group_id.0.as_str(), request.require_stable);
                let topics = lookup(state, g.group_id.0.as_str(), wanted)
                    .into_iter()
                    .map(|(name, partitions)| {
                        let partitions = partitions
                            .into_iter()
                            .map(|(index, c)| {
                                let (offset, epoch, metadata) = unpack(c);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(str_bytes(metadata)))
                                    .with_error_code(error_of(&unstable, &name, index))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(code) = state.check_coordinator(request.group_id.0.as_str()) {
        // v1 has no top-level error: it goes on every partition asked for.
        let topics = request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partition_indexes
                            .into_iter()
                            .map(|i| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(i)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = OffsetFetchResponse::default().with_topics(topics);
        return if version >= 2 {
            response.with_error_code(code)
        } else {
            response
        };
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let unstable = unstable(
        state,
        request.group_id.0.as_str(),
        version >= 7 && request.require_stable,
    );
    let topics = lookup(state, request.group_id.0.as_str(), wanted)
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, c)| {
                    let (offset, epoch, metadata) = unpack(c);
                    let mut p = OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_metadata(Some(str_bytes(metadata)))
                        .with_error_code(error_of(&unstable, &name, index));
                    if version >= 5 {
                        p = p.with_committed_leader_epoch(epoch);
                    }
                    p
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// With `require_stable` (v7+, read_committed consumers), the partitions whose offsets a transaction is still
/// committing.
fn unstable(
    state: &BrokerState,
    group: &str,
    require_stable: bool,
) -> std::collections::HashSet<(String, i32)> {
    if require_stable {
        state.offsets.pending_partitions(group)
    } else {
        Default::default()
    }
}

fn error_of(
    unstable: &std::collections::HashSet<(String, i32)>,
    topic: &TopicName,
    partition: i32,
) -> i16 {
    if unstable.contains(&(topic.0.to_string(), partition)) {
        strom_protocol::kafka::ResponseError::UnstableOffsetCommit.code()
    } else {
        0
    }
}

fn unpack(c: Option<CommittedOffset>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

fn lookup(state: &BrokerState, group: &str, wanted: Option<Vec<(TopicName, Vec<i32>)>>) -> Fetched {
    let committed = state.offsets.fetch(group);
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, committed.get(&(name.0.to_string(), p)).cloned()))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut by_topic: Fetched = Vec::new();
            for ((topic, partition), c) in committed {
                if by_topic.last().map(|(n, _)| n.0.as_str()) != Some(topic.as_str()) {
                    by_topic.push((TopicName(str_bytes(topic.clone())), Vec::new()));
                }
                if let Some((_, parts)) = by_topic.last_mut() {
                    parts.push((partition, Some(c)));
                }
            }
            by_topic
        }
    }
}
