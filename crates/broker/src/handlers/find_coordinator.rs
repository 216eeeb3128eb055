//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition (Kafka's placement,
//! `abs(javaHash(group)) % partitions`), which this broker looks up in the metadata; the first group lookup
//! creates `__consumer_offsets` through the controller. A transactional id's coordinator is the leader of its
//! `__transaction_state` partition, placed the same way; the first lookup creates that topic. v4 batches keys.

use std::sync::Arc;

use strom_protocol::kafka::messages::find_coordinator_response::Coordinator;
use strom_protocol::kafka::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::offsets::record::partition_for_group;
use crate::server::BrokerState;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// The coordinator's (node id, host, port), or an error code and message.
type Found = Result<(i32, String, i32), (i16, String)>;

async fn lookup(state: &BrokerState, key_type: i8, key: &str) -> Found {
    if key.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "empty group or transactional id".into(),
        ));
    }
    let topic = match key_type {
        GROUP => state.ensure_offsets_topic().await,
        TRANSACTION => state.ensure_transaction_topic().await,
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown coordinator key type {other}"),
            ))
        }
    }
    .map_err(|e| {
        tracing::warn!(error = %e, "cannot create the coordinator's topic");
        (ResponseError::CoordinatorNotAvailable.code(), e.to_string())
    })?;
    let index = partition_for_group(key, topic.partition_count());
    let leader = topic.slot(index).map_or(-1, |s| s.leader);
    let image = state.cluster.image();
    match image.brokers.get(&leader).filter(|b| !b.fenced) {
        Some(b) => Ok((leader, b.endpoint.host.clone(), i32::from(b.endpoint.port))),
        None => Err((
            ResponseError::CoordinatorNotAvailable.code(),
            format!("{}-{index} has no live leader", topic.name),
        )),
    }
}

pub async fn handle(
    state: Arc<BrokerState>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in &request.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match lookup(&state, request.key_type, key.as_str()).await {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err((code, message)) => c
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let mut response = FindCoordinatorResponse::default();
    match lookup(&state, request.key_type, request.key.as_str()).await {
        Ok((node, host, port)) => {
            response = response
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(host))
                .with_port(port);
        }
        Err((code, message)) => {
            response = response
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                response = response.with_error_message(Some(str_bytes(message)));
            }
        }
    }
    response
}
