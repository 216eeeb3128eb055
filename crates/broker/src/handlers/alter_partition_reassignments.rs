//! AlterPartitionReassignments (KIP-455): move partitions to other brokers, as `kafka-reassign-partitions.sh
//! --execute`, admin clients' `alterPartitionReassignments` and `strom topic reassign` ask. The active controller
//! adds the target replicas as followers first; they copy the leader's log and join the ISR as any follower does,
//! and the AlterPartition that brings the last of them into the ISR completes the move (the leaving replicas go,
//! and so does the leadership of a leaving leader). A partition without target replicas cancels its reassignment.
//! v1 (KIP-860) refuses a change of replication factor unless the request allows it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::{ControllerReply, ControllerRequest};
use strom_protocol::kafka::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use strom_protocol::kafka::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, TopicName,
};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

type Outcome = (i16, Option<String>);

pub async fn handle(
    state: Arc<BrokerState>,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_replication_factor_change = version < 1 || request.allow_replication_factor_change;
    let mut response = AlterPartitionReassignmentsResponse::default();
    if version >= 1 {
        response = response.with_allow_replication_factor_change(allow_replication_factor_change);
    }
    let partitions: Vec<(String, i32, Option<Vec<i32>>)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.replicas
                        .as_ref()
                        .map(|rs| rs.iter().map(|r| r.0).collect()),
                )
            })
        })
        .collect();
    let requested: Vec<(String, i32)> =
        partitions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
    let timeout = Duration::from_millis(request.timeout_ms.clamp(1_000, 60_000) as u64);
    let outcome = state
        .cluster
        .request(
            ControllerRequest::AlterReassignments {
                partitions,
                allow_replication_factor_change,
            },
            timeout,
        )
        .await;
    match outcome {
        Ok((ControllerReply::Reassignments(results), _)) => {
            let by_partition: BTreeMap<(String, i32), Outcome> = results
                .into_iter()
                .map(|(tp, e)| (tp, e.map_or((0, None), |e| (e.code, Some(e.message)))))
                .collect();
            response.with_responses(per_topic(&requested, |tp| {
                by_partition.get(tp).cloned().unwrap_or((0, None))
            }))
        }
        Ok(_) => response.with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => response
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(e.message.clone())))
            .with_responses(per_topic(&requested, |_| (e.code, Some(e.message.clone())))),
    }
}

fn per_topic(
    partitions: &[(String, i32)],
    outcome: impl Fn(&(String, i32)) -> Outcome,
) -> Vec<ReassignableTopicResponse> {
    let mut topics: BTreeMap<&str, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    for tp in partitions {
        let (code, message) = outcome(tp);
        topics.entry(tp.0.as_str()).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(tp.1)
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    topics
        .into_iter()
        .map(|(name, partitions)| {
            ReassignableTopicResponse::default()
                .with_name(TopicName(str_bytes(name.to_string())))
                .with_partitions(partitions)
        })
        .collect()
}
