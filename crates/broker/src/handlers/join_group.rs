//! JoinGroup: handed to the group coordinator, which answers when the rebalance completes.

use std::net::SocketAddr;
use std::sync::Arc;

use strom_protocol::kafka::messages::join_group_response::JoinGroupResponseMember;
use strom_protocol::kafka::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::groups::{Event, Output};
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
) -> Handled {
    let group_id = request.group_id.0.to_string();
    if let Err(code) = state.check_coordinator(&group_id) {
        return super::ready(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(request.member_id),
        );
    }
    // v0 has no rebalance timeout: it equals the session timeout.
    let rebalance_timeout_ms = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let event = move |reply| Event::Join {
        reply,
        group_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: client.client_id,
        client_host: client.host,
        session_timeout_ms: request.session_timeout_ms.max(0) as u64,
        rebalance_timeout_ms: rebalance_timeout_ms.max(0) as u64,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        version,
        reason: request.reason.map(|s| s.to_string()),
    };
    let pending = state.groups.submit(event);
    Box::pin(async move {
        let response = match pending.await {
            Ok(Output::Join {
                error,
                generation_id,
                protocol_type,
                protocol_name,
                leader,
                member_id,
                skip_assignment,
                members,
                ..
            }) => {
                let mut r = JoinGroupResponse::default()
                    .with_error_code(error)
                    .with_generation_id(generation_id)
                    .with_protocol_name(Some(str_bytes(protocol_name.unwrap_or_default())))
                    .with_leader(str_bytes(leader))
                    .with_member_id(str_bytes(member_id))
                    .with_members(
                        members
                            .into_iter()
                            .map(|m| {
                                let mut member = JoinGroupResponseMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_metadata(m.metadata);
                                if version >= 5 {
                                    member = member
                                        .with_group_instance_id(m.group_instance_id.map(str_bytes));
                                }
                                member
                            })
                            .collect(),
                    );
                if version >= 7 {
                    r = r.with_protocol_type(protocol_type.map(str_bytes));
                }
                if version >= 9 {
                    r = r.with_skip_assignment(skip_assignment);
                }
                r
            }
            _ => JoinGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
        Some(ResponseKind::JoinGroup(response))
    })
}

/// Who sent a request, for DescribeGroups' client id and host.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
}

impl ClientInfo {
    pub fn new(client_id: Option<&str>, peer: SocketAddr) -> Self {
        Self {
            client_id: client_id.unwrap_or_default().to_string(),
            host: format!("/{}", peer.ip()),
        }
    }
}
