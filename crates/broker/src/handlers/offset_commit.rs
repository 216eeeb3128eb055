//! OffsetCommit: validate the member and generation with the group coordinator (a valid commit from a classic
//! group's member also restarts its session, as a heartbeat does), then append the offsets to
//! `__consumer_offsets` and answer once they are durable. Standalone consumers (empty member id, generation -1)
//! may commit for a group with no active members, as in Kafka.
//!
//! For a KIP-848 consumer group, `generation_id_or_member_epoch` is the member epoch. Deviation: Kafka requires
//! OffsetCommit v9+ from consumer-protocol members; Strom serves up to v8 and accepts their commits there.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::kafka::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::Handled;
use crate::clock::now_ms;
use crate::offsets::record::{CommittedOffset, OffsetKey};
use crate::offsets::OFFSETS_TOPIC;
use crate::server::BrokerState;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// Why one partition of an OffsetCommit or TxnOffsetCommit cannot be committed (0: it can): the group's own
/// error, an unknown partition (it must exist; who leads it does not matter, the coordinator is elsewhere), or
/// metadata over `offset.metadata.max.bytes`.
pub(super) fn partition_error(
    group_error: i16,
    topic: Option<&crate::topics::Topic>,
    partition: i32,
    metadata: &str,
) -> i16 {
    if group_error != 0 {
        group_error
    } else if topic.and_then(|t| t.slot(partition)).is_none() {
        ResponseError::UnknownTopicOrPartition.code()
    } else if metadata.len() > MAX_METADATA_BYTES {
        ResponseError::OffsetMetadataTooLarge.code()
    } else {
        0
    }
}

pub fn handle(state: &Arc<BrokerState>, request: OffsetCommitRequest, version: i16) -> Handled {
    let state = state.clone();
    let group_id = request.group_id.0.to_string();
    let validation = {
        let (group, member) = (group_id.clone(), request.member_id.to_string());
        let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
        let generation = request.generation_id_or_member_epoch;
        // A consumer-protocol group checks the member epoch (STALE_MEMBER_EPOCH); a classic one the generation,
        // and a valid commit restarts the member's session there, as in Kafka.
        state.groups.update_both(move |now, classic, consumer| {
            consumer
                .validate_commit(&group, &member, generation)
                .unwrap_or_else(|| {
                    classic.commit(now, &group, &member, instance.as_deref(), generation)
                })
        })
    };
    Box::pin(async move {
        let group_error = if group_id.is_empty() {
            ResponseError::InvalidGroupId.code()
        } else if let Err(code) = state.check_coordinator(&group_id) {
            code
        } else {
            match validation.await {
                Ok(Ok(())) => 0,
                Ok(Err(code)) => code,
                Err(_) => ResponseError::CoordinatorNotAvailable.code(),
            }
        };
        // A client that commits before it ever asked FindCoordinator still gets `__consumer_offsets` created.
        if group_error == 0 && state.topics.get(OFFSETS_TOPIC).is_none() {
            if let Err(e) = state.ensure_offsets_topic().await {
                tracing::warn!(error = %e, "cannot create the offsets topic");
            }
        }
        let now = now_ms();
        let mut changes = Vec::new();
        // (topic index, partition index, error) for every partition in the request.
        let mut results: Vec<(usize, i32, i16)> = Vec::new();
        for (t, topic) in request.topics.iter().enumerate() {
            let hosted = state.topics.get(topic.name.0.as_str());
            for p in &topic.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let error =
                    partition_error(group_error, hosted.as_deref(), p.partition_index, &metadata);
                if error == 0 {
                    let key = OffsetKey {
                        group: group_id.clone(),
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                    };
                    let leader_epoch = if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    };
                    changes.push((
                        key,
                        Some(CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp: now,
                        }),
                    ));
                }
                results.push((t, p.partition_index, error));
            }
        }
        let written = if changes.is_empty() {
            Ok(())
        } else {
            state
                .offsets
                .commit(&group_id, changes, Duration::from_secs(30))
                .await
        };
        let mut topics: Vec<OffsetCommitResponseTopic> = request
            .topics
            .iter()
            .map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone()))
            .collect();
        for (t, partition, error) in results {
            let error = match (&written, error) {
                (Err(code), 0) => *code,
                (_, e) => e,
            };
            topics[t].partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(partition)
                    .with_error_code(error),
            );
        }
        Some(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(topics),
        ))
    })
}
