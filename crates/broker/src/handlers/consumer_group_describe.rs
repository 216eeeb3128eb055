//! ConsumerGroupDescribe (KIP-848): a consumer-protocol group's state, epochs, assignor, and every member with
//! its current and target assignment. A classic group or an unknown id answers GROUP_ID_NOT_FOUND, as Kafka.

use std::sync::Arc;

use strom_protocol::kafka::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use strom_protocol::kafka::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ResponseKind, TopicName,
};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::groups::consumer::{ConsumerGroupDescription, DescribedPartitions};
use crate::server::BrokerState;

/// `authorized_operations` when not requested (Kafka's "not provided" sentinel).
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

enum Found {
    Consumer(ConsumerGroupDescription),
    Classic,
    Unknown,
}

pub fn handle(
    state: &Arc<BrokerState>,
    request: ConsumerGroupDescribeRequest,
    _version: i16,
) -> Handled {
    let ids: Vec<String> = request.group_ids.iter().map(|g| g.0.to_string()).collect();
    let described = state.groups.inspect_both(move |classic, consumer| {
        ids.iter()
            .map(|id| match consumer.describe_group(id) {
                Some(d) => Found::Consumer(d),
                None if classic.group_state(id).is_some() => Found::Classic,
                None => Found::Unknown,
            })
            .collect::<Vec<_>>()
    });
    Box::pin(async move {
        let found = described.await.ok();
        let groups = request
            .group_ids
            .into_iter()
            .enumerate()
            .map(|(i, group_id)| {
                let name = group_id.0.to_string();
                let base = DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_authorized_operations(OPERATIONS_NOT_REQUESTED);
                let Some(found) = &found else {
                    return base.with_error_code(ResponseError::CoordinatorNotAvailable.code());
                };
                match &found[i] {
                    Found::Consumer(d) => describe(base, d),
                    Found::Classic => base
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(format!(
                            "Group {name} is not a consumer group."
                        )))),
                    Found::Unknown => base
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(format!("Group {name} not found.")))),
                }
            })
            .collect();
        Some(ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(groups),
        ))
    })
}

fn describe(base: DescribedGroup, d: &ConsumerGroupDescription) -> DescribedGroup {
    base.with_group_state(str_bytes(d.state.as_kafka_str()))
        .with_group_epoch(d.group_epoch)
        .with_assignment_epoch(d.assignment_epoch)
        .with_assignor_name(str_bytes(d.assignor.clone()))
        .with_members(
            d.members
                .iter()
                .map(|m| {
                    Member::default()
                        .with_member_id(str_bytes(m.member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(str_bytes))
                        .with_rack_id(m.rack_id.clone().map(str_bytes))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed_topic_names
                                .iter()
                                .map(|t| TopicName(str_bytes(t.clone())))
                                .collect(),
                        )
                        .with_assignment(assignment(&m.assignment))
                        .with_target_assignment(assignment(&m.target_assignment))
                        // v1: 1 = a member using the consumer protocol (0 would be classic).
                        .with_member_type(1)
                })
                .collect(),
        )
}

fn assignment(partitions: &[DescribedPartitions]) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .iter()
            .map(|p| {
                TopicPartitions::default()
                    .with_topic_id(p.topic_id)
                    .with_topic_name(TopicName(str_bytes(p.topic_name.clone())))
                    .with_partitions(p.partitions.clone())
            })
            .collect(),
    )
}
