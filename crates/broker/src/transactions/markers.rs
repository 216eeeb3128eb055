//! Writing a transaction's markers: on partitions this broker leads directly, and on the others through their
//! leader's WriteTxnMarkers (the request Kafka's coordinators send, answered by `handlers/write_txn_markers.rs`
//! with [`write_local`]). A marker counts once it is flushed and on the partition's ISR, like an acks=all write;
//! a marker on a `__consumer_offsets` partition then applies (or drops) the transaction's offset commits there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strom_log::txn::{ControlType, Marker};
use strom_protocol::kafka::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use strom_protocol::kafka::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use crate::clock::now_ms;
use crate::server::BrokerState;

/// Appends the marker on `partitions` (all led here, else NOT_LEADER_OR_FOLLOWER) and waits until each is
/// durable. Returns the error code of each partition: 0 once written, INVALID_PRODUCER_EPOCH or
/// TRANSACTION_COORDINATOR_FENCED for a marker older than the partition's producer or coordinator epoch.
pub async fn write_local(
    state: &Arc<BrokerState>,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    partitions: &[(String, i32)],
) -> Vec<i16> {
    let mut codes = vec![0i16; partitions.len()];
    let mut waits = Vec::new();
    for (i, (topic, index)) in partitions.iter().enumerate() {
        let Some(partition) = state
            .topics
            .get(topic)
            .and_then(|t| t.partition(*index).cloned())
        else {
            codes[i] = ResponseError::NotLeaderOrFollower.code();
            continue;
        };
        match partition.append_marker(producer_id, producer_epoch, marker, now_ms()) {
            Ok((offset, leader_epoch)) => waits.push((i, partition, leader_epoch, offset + 1)),
            // Fenced (an older producer epoch or coordinator epoch): INVALID_PRODUCER_EPOCH or
            // TRANSACTION_COORDINATOR_FENCED, as Kafka answers; nothing is written.
            Err(e) => codes[i] = e.kafka_error_code(),
        }
    }
    // Every flush is asked for before any is waited on, so the partitions' fsyncs overlap.
    for (_, partition, _, _) in &waits {
        state.flusher.request(partition.clone());
    }
    for (i, partition, leader_epoch, end) in waits {
        let durable =
            partition.wait_flushed(end).await && partition.wait_replicated(leader_epoch, end).await;
        if !durable {
            codes[i] = ResponseError::NotLeaderOrFollower.code();
        } else if partitions[i].0 == crate::offsets::OFFSETS_TOPIC {
            state.offsets.complete_txn(
                partitions[i].1,
                producer_id,
                marker.control == ControlType::Commit,
            );
        }
    }
    codes
}

/// Writes the marker on every partition of `pending` once: directly where this broker leads, through
/// WriteTxnMarkers where another does. Returns the partitions still to do.
pub async fn write_once(
    state: &Arc<BrokerState>,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    pending: &BTreeSet<(String, i32)>,
) -> BTreeSet<(String, i32)> {
    let me = state.topics.node_id();
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut failed = BTreeSet::new();
    for (topic, index) in pending {
        let leader = state
            .topics
            .get(topic)
            .and_then(|t| t.slot(*index).map(|s| s.leader));
        match leader {
            Some(l) if l >= 0 => by_leader
                .entry(l)
                .or_default()
                .push((topic.clone(), *index)),
            _ => {
                failed.insert((topic.clone(), *index));
            }
        }
    }
    for (leader, partitions) in by_leader {
        let codes = if leader == me {
            write_local(state, producer_id, producer_epoch, marker, &partitions).await
        } else {
            write_remote(
                state,
                leader,
                producer_id,
                producer_epoch,
                marker,
                &partitions,
            )
            .await
        };
        for (p, code) in partitions.into_iter().zip(codes) {
            if fenced(code) {
                // A newer producer epoch or coordinator already ended the transaction there: nothing left to
                // do, as Kafka's coordinator treats these answers.
                tracing::warn!(topic = %p.0, partition = p.1, leader, code, "marker fenced; nothing to do");
            } else if code != 0 {
                tracing::debug!(topic = %p.0, partition = p.1, leader, code, "marker not written; retrying");
                failed.insert(p);
            }
        }
    }
    failed
}

/// Whether a marker's answer says a newer producer or coordinator epoch already ended the transaction there.
fn fenced(code: i16) -> bool {
    code == ResponseError::InvalidProducerEpoch.code()
        || code == ResponseError::TransactionCoordinatorFenced.code()
}

/// WriteTxnMarkers to the leader `leader` for `partitions`; every partition fails if the request does.
async fn write_remote(
    state: &Arc<BrokerState>,
    leader: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    partitions: &[(String, i32)],
) -> Vec<i16> {
    let unavailable = vec![ResponseError::NotLeaderOrFollower.code(); partitions.len()];
    let Some(connection) = state
        .transactions
        .marker_peers
        .connection(state, leader)
        .await
    else {
        return unavailable;
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, index) in partitions {
        topics.entry(topic).or_default().push(*index);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(marker.control == ControlType::Commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            )]);
    let response = match connection.request(&request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(leader, error = %e, "WriteTxnMarkers failed");
            state.transactions.marker_peers.failed(leader);
            return unavailable;
        }
    };
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for m in response.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    partitions
        .iter()
        .map(|p| {
            codes
                .get(p)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect()
}
