//! DescribeGroups: state, protocol, and members with their metadata and assignments. A group Strom has never
//! heard of is described as Dead, as Kafka does for these versions.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use strom_protocol::kafka::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind,
};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: DescribeGroupsRequest, version: i16) -> Handled {
    let state = state.clone();
    let ids: Vec<String> = request.groups.iter().map(|g| g.0.to_string()).collect();
    let described = state.groups.inspect(move |c| {
        ids.iter()
            .map(|id| c.describe_group(id))
            .collect::<Vec<_>>()
    });
    Box::pin(async move {
        let descriptions = described.await.ok();
        let groups = request
            .groups
            .into_iter()
            .enumerate()
            .map(|(i, group_id)| {
                let base = DescribedGroup::default().with_group_id(group_id.clone());
                let Some(descriptions) = &descriptions else {
                    return base.with_error_code(ResponseError::CoordinatorNotAvailable.code());
                };
                match &descriptions[i] {
                    Some(d) => base
                        .with_group_state(str_bytes(d.state.as_kafka_str()))
                        .with_protocol_type(str_bytes(d.protocol_type.clone()))
                        .with_protocol_data(str_bytes(d.protocol_name.clone()))
                        .with_members(
                            d.members
                                .iter()
                                .map(|m| {
                                    let mut member = DescribedGroupMember::default()
                                        .with_member_id(str_bytes(m.member_id.clone()))
                                        .with_client_id(str_bytes(m.client_id.clone()))
                                        .with_client_host(str_bytes(m.client_host.clone()))
                                        .with_member_metadata(m.metadata.clone())
                                        .with_member_assignment(m.assignment.clone());
                                    if version >= 4 {
                                        member = member.with_group_instance_id(
                                            m.group_instance_id.clone().map(str_bytes),
                                        );
                                    }
                                    member
                                })
                                .collect(),
                        ),
                    None if state.offsets.has_offsets(group_id.0.as_str()) => base
                        .with_group_state(str_bytes("Empty"))
                        .with_protocol_type(str_bytes("consumer")),
                    None => base.with_group_state(str_bytes("Dead")),
                }
            })
            .collect();
        Some(ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(groups),
        ))
    })
}
