//! CreatePartitions: grow a topic's partition count (never shrink).

use std::sync::Arc;

use strom_protocol::kafka::messages::create_partitions_response::CreatePartitionsTopicResult;
use strom_protocol::kafka::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let node = state.config.node_id;
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let assignments_ok = t.assignments.as_ref().is_none_or(|a| {
                a.iter()
                    .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node)
            });
            if !assignments_ok {
                return result
                    .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(str_bytes(format!(
                        "this cluster has one broker (id {node})"
                    ))));
            }
            match state
                .topics
                .create_partitions(t.name.0.as_str(), t.count, request.validate_only)
            {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
