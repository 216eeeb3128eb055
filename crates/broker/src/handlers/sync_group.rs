//! SyncGroup: the leader hands in assignments; every member gets its own once they are in.

use std::sync::Arc;

use strom_protocol::kafka::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::groups::{Event, Output};
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: SyncGroupRequest, version: i16) -> Handled {
    if let Err(code) = state.check_coordinator(request.group_id.0.as_str()) {
        return super::ready(SyncGroupResponse::default().with_error_code(code));
    }
    let event = move |reply| Event::Sync {
        reply,
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let pending = state.groups.submit(event);
    Box::pin(async move {
        let response = match pending.await {
            Ok(Output::Sync {
                error,
                protocol_type,
                protocol_name,
                assignment,
                ..
            }) => {
                let mut r = SyncGroupResponse::default()
                    .with_error_code(error)
                    .with_assignment(assignment);
                if version >= 5 {
                    r = r
                        .with_protocol_type(protocol_type.map(str_bytes))
                        .with_protocol_name(protocol_name.map(str_bytes));
                }
                r
            }
            _ => SyncGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
        Some(ResponseKind::SyncGroup(response))
    })
}
