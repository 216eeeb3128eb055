//! ListGroups: groups the coordinator knows, plus groups that only have committed offsets (shown Empty, as
//! Kafka shows them), optionally filtered by state (v4+). Classic and KIP-848 consumer groups alike.

use std::sync::Arc;

use strom_protocol::kafka::messages::list_groups_response::ListedGroup;
use strom_protocol::kafka::messages::{
    GroupId, ListGroupsRequest, ListGroupsResponse, ResponseKind,
};
use strom_protocol::kafka::ResponseError;

use super::{str_bytes, Handled};
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: ListGroupsRequest, version: i16) -> Handled {
    let state = state.clone();
    let listing = state.groups.inspect_both(|classic, consumer| {
        let mut all: Vec<(String, String, String)> = classic
            .list_groups()
            .into_iter()
            .map(|g| {
                (
                    g.group_id,
                    g.protocol_type,
                    g.state.as_kafka_str().to_string(),
                )
            })
            .collect();
        // KIP-848 groups are listed with protocol type "consumer" and their own state names (v5 would add the
        // group type; Strom serves up to v4).
        all.extend(
            consumer
                .list_groups()
                .into_iter()
                .map(|(id, state)| (id, "consumer".to_string(), state.as_kafka_str().to_string())),
        );
        all
    });
    Box::pin(async move {
        let Ok(active) = listing.await else {
            return Some(ResponseKind::ListGroups(
                ListGroupsResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            ));
        };
        let mut groups = active;
        for group in state.offsets.groups() {
            if !groups.iter().any(|(id, _, _)| *id == group) {
                groups.push((group, "consumer".to_string(), "Empty".to_string()));
            }
        }
        groups.sort();
        let filter: Vec<String> = request
            .states_filter
            .iter()
            .map(|s| s.to_string())
            .collect();
        let listed = groups
            .into_iter()
            .filter(|(_, _, s)| {
                filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(s))
            })
            .map(|(id, protocol_type, group_state)| {
                let g = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_protocol_type(str_bytes(protocol_type));
                if version >= 4 {
                    g.with_group_state(str_bytes(group_state))
                } else {
                    g
                }
            })
            .collect();
        Some(ResponseKind::ListGroups(
            ListGroupsResponse::default().with_groups(listed),
        ))
    })
}
