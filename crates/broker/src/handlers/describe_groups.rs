//! DescribeGroups: state, protocol, and members with their metadata and assignments. A group Strom has never
//! heard of is described as Dead, as Kafka does for these versions.
//!
//! A KIP-848 consumer group gets the classic-compatible view: its KIP-848 state name, protocol type "consumer",
//! the server assignor's name as protocol, and each member with its subscription and current assignment
//! encoded as the classic consumer protocol (version 0) would, so tools that only speak DescribeGroups still
//! see who owns what.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use strom_protocol::kafka::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind,
};
use strom_protocol::kafka::ResponseError;

use bytes::{BufMut, Bytes, BytesMut};
use strom_protocol::kafka::messages::consumer_protocol_assignment::TopicPartition;
use strom_protocol::kafka::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use strom_protocol::kafka::protocol::Encodable;

use super::{str_bytes, Handled};
use crate::groups::consumer::ConsumerGroupDescription;
use crate::groups::{GroupDescription, GroupState, MemberDescription};
use crate::server::BrokerState;

/// A consumer group as DescribeGroups shows it (see the module comment): its state name and the classic-shaped
/// description (whose `state` field is unused).
fn classic_view(d: ConsumerGroupDescription) -> (String, GroupDescription) {
    let state = d.state.as_kafka_str().to_string();
    let description = GroupDescription {
        state: GroupState::Stable,
        protocol_type: "consumer".to_string(),
        protocol_name: d.assignor,
        members: d
            .members
            .into_iter()
            .map(|m| {
                let subscription = ConsumerProtocolSubscription::default().with_topics(
                    m.subscribed_topic_names
                        .iter()
                        .map(|t| str_bytes(t.clone()))
                        .collect(),
                );
                let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    m.assignment
                        .iter()
                        .map(|p| {
                            TopicPartition::default()
                                .with_topic(TopicName(str_bytes(p.topic_name.clone())))
                                .with_partitions(p.partitions.clone())
                        })
                        .collect(),
                );
                MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: encode_v0(&subscription),
                    assignment: encode_v0(&assignment),
                }
            })
            .collect(),
    };
    (state, description)
}

/// The classic consumer protocol's framing: an i16 version, then the message at that version.
fn encode_v0(message: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    match message.encode(&mut buf, 0) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

pub fn handle(state: &Arc<BrokerState>, request: DescribeGroupsRequest, version: i16) -> Handled {
    let state = state.clone();
    let ids: Vec<String> = request.groups.iter().map(|g| g.0.to_string()).collect();
    let described = state.groups.inspect_both(move |classic, consumer| {
        ids.iter()
            .map(|id| match classic.describe_group(id) {
                Some(d) => Some((d.state.as_kafka_str().to_string(), d)),
                None => consumer.describe_group(id).map(classic_view),
            })
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
                    Some((group_state, d)) => base
                        .with_group_state(str_bytes(group_state.clone()))
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
