//! Heartbeat: keeps a member's session alive and tells it when to rejoin (REBALANCE_IN_PROGRESS).

use std::sync::Arc;

use strom_protocol::kafka::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::Handled;
use crate::groups::{Event, Output};
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: HeartbeatRequest, _version: i16) -> Handled {
    if let Err(code) = state.check_coordinator(request.group_id.0.as_str()) {
        return super::ready(HeartbeatResponse::default().with_error_code(code));
    }
    let event = move |reply| Event::Heartbeat {
        reply,
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation_id: request.generation_id,
    };
    let pending = state.groups.submit(event);
    Box::pin(async move {
        let error = match pending.await {
            Ok(Output::Heartbeat { error, .. }) => error,
            _ => ResponseError::CoordinatorNotAvailable.code(),
        };
        Some(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(error),
        ))
    })
}
