//! ElectLeaders: move partitions' leadership to their preferred replica (the first in the replica list), as
//! `kafka-leader-election.sh --election-type PREFERRED` and `strom cluster elect-leaders` ask. The active
//! controller decides and commits; each partition is answered with its outcome (ELECTION_NOT_NEEDED when the
//! preferred replica leads already, PREFERRED_LEADER_NOT_AVAILABLE when it is down or out of sync). Unclean
//! elections are refused: Strom never elects an out-of-sync replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::{ControllerReply, ControllerRequest};
use strom_protocol::kafka::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use strom_protocol::kafka::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

const PREFERRED: i8 = 0;

pub async fn handle(
    state: Arc<BrokerState>,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let requested: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let response = ElectLeadersResponse::default();
    if version >= 1 && request.election_type != PREFERRED {
        let message =
            "Strom never elects an out-of-sync replica: only PREFERRED elections are served";
        let results = per_partition(requested.unwrap_or_default(), |_| {
            (
                ResponseError::InvalidRequest.code(),
                Some(message.to_string()),
            )
        });
        return response.with_replica_election_results(results);
    }
    let timeout = Duration::from_millis(request.timeout_ms.clamp(1_000, 60_000) as u64);
    let outcome = state
        .cluster
        .request(
            ControllerRequest::ElectPreferredLeaders {
                partitions: requested.clone(),
            },
            timeout,
        )
        .await;
    match outcome {
        Ok((ControllerReply::Elections(results), _)) => {
            let by_partition: BTreeMap<(String, i32), Option<(i16, String)>> = results
                .into_iter()
                .map(|(tp, e)| (tp, e.map(|e| (e.code, e.message))))
                .collect();
            let partitions: Vec<(String, i32)> = by_partition.keys().cloned().collect();
            response.with_replica_election_results(per_partition(
                partitions,
                |tp| match by_partition.get(tp).cloned().flatten() {
                    Some((code, message)) => (code, Some(message)),
                    None => (0, None),
                },
            ))
        }
        Ok(_) => response.with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => {
            let results = per_partition(requested.unwrap_or_default(), |_| {
                (e.code, Some(e.message.clone()))
            });
            let response = response.with_replica_election_results(results);
            if version >= 1 {
                response.with_error_code(e.code)
            } else {
                response
            }
        }
    }
}

fn per_partition(
    partitions: Vec<(String, i32)>,
    outcome: impl Fn(&(String, i32)) -> (i16, Option<String>),
) -> Vec<ReplicaElectionResult> {
    let mut topics: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for tp in partitions {
        let (code, message) = outcome(&tp);
        topics.entry(tp.0.clone()).or_default().push(
            PartitionResult::default()
                .with_partition_id(tp.1)
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    topics
        .into_iter()
        .map(|(topic, results)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(results)
        })
        .collect()
}
