//! OffsetDelete: remove committed offsets of partitions the group no longer consumes. Partitions of topics an
//! active member subscribes to are refused with GROUP_SUBSCRIBED_TO_TOPIC.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use strom_protocol::kafka::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::Handled;
use crate::groups::GroupState;
use crate::offsets::record::OffsetKey;
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: OffsetDeleteRequest, _version: i16) -> Handled {
    let state = state.clone();
    let group = request.group_id.0.to_string();
    let probe = {
        let group = group.clone();
        state.groups.inspect_both(move |classic, consumer| {
            match consumer.describe_group(&group) {
                // A consumer-protocol group: active while it has members; their subscriptions are known directly.
                Some(d) => {
                    let state = if d.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                    let topics = d
                        .members
                        .iter()
                        .flat_map(|m| m.subscribed_topic_names.iter().cloned())
                        .collect();
                    (Some(state), Some(topics))
                }
                None => (
                    classic.group_state(&group),
                    classic.subscribed_topics(&group),
                ),
            }
        })
    };
    Box::pin(async move {
        let Ok((group_state, subscribed)) = probe.await else {
            return Some(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            ));
        };
        let known = group_state.is_some() || state.offsets.has_offsets(&group);
        if !known {
            return Some(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code()),
            ));
        }
        let active =
            matches!(group_state, Some(s) if s != GroupState::Empty && s != GroupState::Dead);
        let subscribed = subscribed.unwrap_or_default();
        let mut tombstones = Vec::new();
        let mut topics = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let refused = active && subscribed.contains(&name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if refused {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else if state
                        .topics
                        .get(&name)
                        .and_then(|t| t.slot(p.partition_index).cloned())
                        .is_none()
                    {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        tombstones.push((
                            OffsetKey {
                                group: group.clone(),
                                topic: name.clone(),
                                partition: p.partition_index,
                            },
                            None,
                        ));
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        if let Err(code) = state
            .offsets
            .commit(&group, tombstones, Duration::from_secs(30))
            .await
        {
            return Some(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(code),
            ));
        }
        Some(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_topics(topics),
        ))
    })
}
