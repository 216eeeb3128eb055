//! LeaveGroup: v0-2 name one member; v3+ a batch of members, possibly by group instance id.

use std::sync::Arc;

use strom_protocol::kafka::messages::leave_group_response::MemberResponse;
use strom_protocol::kafka::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::groups::{Event, Output};
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: LeaveGroupRequest, version: i16) -> Handled {
    if let Err(code) = state.check_coordinator(request.group_id.0.as_str()) {
        return super::ready(LeaveGroupResponse::default().with_error_code(code));
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .into_iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let group_id = request.group_id.0.to_string();
    let pending = state.groups.submit(move |reply| Event::Leave {
        reply,
        group_id,
        members,
    });
    Box::pin(async move {
        let response = match pending.await {
            Ok(Output::Leave { error, members, .. }) => {
                let mut r = LeaveGroupResponse::default();
                if version >= 3 {
                    r = r.with_error_code(error).with_members(
                        members
                            .into_iter()
                            .map(|(member_id, instance, code)| {
                                MemberResponse::default()
                                    .with_member_id(str_bytes(member_id))
                                    .with_group_instance_id(instance.map(str_bytes))
                                    .with_error_code(code)
                            })
                            .collect(),
                    );
                } else {
                    // v0-2 carry one member; its error is the response's error.
                    let member_error = members.first().map_or(error, |m| m.2);
                    r = r.with_error_code(if error != 0 { error } else { member_error });
                }
                r
            }
            _ => LeaveGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
        Some(ResponseKind::LeaveGroup(response))
    })
}
