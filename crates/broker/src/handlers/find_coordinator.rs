//! FindCoordinator: this broker coordinates every group (and would every transactional id). v4 batches keys.
//! The first group lookup creates `__consumer_offsets`, where the coordinator keeps committed offsets.

use std::sync::Arc;

use strom_protocol::kafka::messages::find_coordinator_response::Coordinator;
use strom_protocol::kafka::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

const GROUP: i8 = 0;

pub fn handle(
    state: &Arc<BrokerState>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let node = BrokerId(state.config.node_id);
    let (host, port) = (
        str_bytes(state.advertised.0.clone()),
        i32::from(state.advertised.1),
    );
    let lookup = |key: &str| -> (i16, Option<String>) {
        if request.key_type == GROUP {
            if key.is_empty() {
                return (
                    ResponseError::InvalidRequest.code(),
                    Some("empty group id".into()),
                );
            }
            if let Err(e) = state.offsets.offsets_partition(key) {
                tracing::error!(error = %e, "cannot create the offsets topic");
                return (
                    ResponseError::CoordinatorNotAvailable.code(),
                    Some(e.to_string()),
                );
            }
        }
        (0, None)
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, message) = lookup(key.as_str());
                let c = Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes));
                if code == 0 {
                    c.with_node_id(node).with_host(host.clone()).with_port(port)
                } else {
                    c.with_node_id(BrokerId(-1)).with_port(-1)
                }
            })
            .collect();
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let (code, message) = lookup(request.key.as_str());
    let mut response = FindCoordinatorResponse::default().with_error_code(code);
    response = if code == 0 {
        response.with_node_id(node).with_host(host).with_port(port)
    } else {
        response.with_node_id(BrokerId(-1)).with_port(-1)
    };
    if version >= 1 {
        response = response.with_error_message(message.map(str_bytes));
    }
    response
}
