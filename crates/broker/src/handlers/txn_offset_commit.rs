//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its transaction (sent to the
//! group's coordinator). They are appended to `__consumer_offsets` as the producer's transactional batch and
//! take effect only when the transaction commits (see `offsets/`). From v3 the member and generation are checked
//! as OffsetCommit checks them, so a zombie of an old generation cannot commit.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use strom_protocol::kafka::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use strom_protocol::kafka::ResponseError;

use crate::clock::now_ms;
use crate::offsets::record::{partition_for_group, CommittedOffset, OffsetKey};
use crate::offsets::OFFSETS_TOPIC;
use crate::server::BrokerState;
use crate::transactions::verification;

pub async fn handle(
    state: Arc<BrokerState>,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let group_error = if group_id.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else if let Err(code) = state.check_coordinator(&group_id) {
        code
    } else if version >= 3 && request.generation_id >= 0 {
        let (group, member) = (group_id.clone(), request.member_id.to_string());
        let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
        let generation = request.generation_id;
        let validation = state.groups.update_both(move |now, classic, consumer| {
            consumer
                .validate_commit(&group, &member, generation)
                .unwrap_or_else(|| {
                    classic.commit(now, &group, &member, instance.as_deref(), generation)
                })
        });
        match validation.await {
            Ok(Ok(())) => 0,
            Ok(Err(code)) => code,
            Err(_) => ResponseError::CoordinatorNotAvailable.code(),
        }
    } else {
        0
    };
    let group_error = if group_error == 0 {
        transaction_check(&state, &request, &group_id, version).await
    } else {
        group_error
    };
    let now = now_ms();
    let mut changes = Vec::new();
    let mut results: Vec<(usize, i32, i16)> = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let hosted = state.topics.get(topic.name.0.as_str());
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = super::offset_commit::partition_error(
                group_error,
                hosted.as_deref(),
                p.partition_index,
                &metadata,
            );
            if error == 0 {
                changes.push((
                    OffsetKey {
                        group: group_id.clone(),
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                    },
                    Some(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
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
            .commit_transactional(
                &group_id,
                changes,
                (request.producer_id.0, request.producer_epoch),
                Duration::from_secs(30),
            )
            .await
    };
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, partition, error) in results {
        let error = match (&written, error) {
            (Err(code), 0) => *code,
            (_, e) => e,
        };
        topics[t].partitions.push(
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(error),
        );
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// KIP-890: the group's `__consumer_offsets` partition must be in the producer's ongoing transaction (added by
/// AddOffsetsToTxn), or, from v5 (transaction version 2, where the producer sends no AddOffsetsToTxn), is added
/// now. Otherwise a commit delayed past its transaction's end would leave offsets no coordinator completes.
async fn transaction_check(
    state: &Arc<BrokerState>,
    request: &TxnOffsetCommitRequest,
    group_id: &str,
    version: i16,
) -> i16 {
    let topic = match state.ensure_offsets_topic().await {
        Ok(topic) => topic,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the offsets topic");
            return ResponseError::CoordinatorNotAvailable.code();
        }
    };
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for_group(group_id, topic.partition_count()),
    );
    let codes = verification::verify_or_add(
        state,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        &[partition],
        version >= 5,
    )
    .await;
    match codes.first().copied().unwrap_or(0) {
        0 => 0,
        code if code == ResponseError::InvalidTxnState.code()
            || code == ResponseError::InvalidProducerIdMapping.code()
            || code == ResponseError::InvalidProducerEpoch.code() =>
        {
            code
        }
        code if code == ResponseError::ProducerFenced.code() => {
            ResponseError::InvalidProducerEpoch.code()
        }
        // The transaction coordinator cannot answer now (moving, loading, ending the previous transaction):
        // retriable for the producer, which asks again.
        _ => ResponseError::CoordinatorLoadInProgress.code(),
    }
}
