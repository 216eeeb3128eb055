//! ConsumerGroupHeartbeat (KIP-848): join, stay in and leave a consumer-protocol group; the answer carries the
//! member's epoch and, when it changed, its assignment. The rules live in `groups::consumer`.

use std::sync::Arc;

use strom_protocol::kafka::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions,
};
use strom_protocol::kafka::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ResponseKind,
};
use strom_protocol::kafka::ResponseError;

use super::join_group::ClientInfo;
use super::{str_bytes, Handled};
use crate::groups::consumer::Heartbeat;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    request: ConsumerGroupHeartbeatRequest,
    _version: i16,
    client: ClientInfo,
) -> Handled {
    if let Err(code) = state.check_coordinator(request.group_id.0.as_str()) {
        return super::ready(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_member_epoch(request.member_epoch),
        );
    }
    let heartbeat = Heartbeat {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned: request.topic_partitions.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.topic_id, t.partitions))
                .collect()
        }),
        client_id: client.client_id,
        client_host: client.host,
    };
    let pending = state.groups.consumer_heartbeat(heartbeat);
    Box::pin(async move {
        let response = match pending.await {
            Ok(r) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(r.error)
                .with_error_message(r.error_message.map(str_bytes))
                .with_member_id(Some(str_bytes(r.member_id)))
                .with_member_epoch(r.member_epoch)
                .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
                .with_assignment(r.assignment.map(|a| {
                    Assignment::default().with_topic_partitions(
                        a.into_iter()
                            .map(|(topic_id, partitions)| {
                                TopicPartitions::default()
                                    .with_topic_id(topic_id)
                                    .with_partitions(partitions.into_iter().collect())
                            })
                            .collect(),
                    )
                })),
            Err(_) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
        Some(ResponseKind::ConsumerGroupHeartbeat(response))
    })
}
