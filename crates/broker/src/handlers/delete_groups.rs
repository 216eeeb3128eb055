//! DeleteGroups: only groups without active members (NON_EMPTY_GROUP otherwise); their committed offsets are
//! tombstoned in `__consumer_offsets`.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::delete_groups_response::DeletableGroupResult;
use strom_protocol::kafka::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use strom_protocol::kafka::ResponseError;

use super::Handled;
use crate::offsets::record::OffsetKey;
use crate::server::BrokerState;

pub fn handle(state: &Arc<BrokerState>, request: DeleteGroupsRequest, _version: i16) -> Handled {
    let state = state.clone();
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|g| g.0.to_string())
        .collect();
    // A group id belongs to the classic or the consumer-protocol coordinator; ask the one that has it.
    let deleted = state.groups.inspect_both(move |classic, consumer| {
        ids.iter()
            .map(|id| {
                if consumer.has_group(id) {
                    consumer.delete_group(id)
                } else {
                    classic.delete_group(id)
                }
            })
            .collect::<Vec<_>>()
    });

    Box::pin(async move {
        let outcomes = deleted.await.ok();
        let mut results = Vec::new();
        for (i, group_id) in request.groups_names.into_iter().enumerate() {
            let name = group_id.0.to_string();
            let has_offsets = state.offsets.has_offsets(&name);
            let code = match outcomes.as_ref().map(|o| o[i]) {
                None => ResponseError::CoordinatorNotAvailable.code(),
                Some(Ok(())) => 0,
                Some(Err(code)) if code == ResponseError::GroupIdNotFound.code() && has_offsets => {
                    0
                }
                Some(Err(code)) => code,
            };
            let code = if code == 0 && has_offsets {
                let tombstones = state
                    .offsets
                    .fetch(&name)
                    .into_keys()
                    .map(|(topic, partition)| {
                        (
                            OffsetKey {
                                group: name.clone(),
                                topic,
                                partition,
                            },
                            None,
                        )
                    })
                    .collect();
                match state
                    .offsets
                    .commit(&name, tombstones, Duration::from_secs(30))
                    .await
                {
                    Ok(()) => 0,
                    Err(code) => code,
                }
            } else {
                code
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(code),
            );
        }
        Some(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(results),
        ))
    })
}
