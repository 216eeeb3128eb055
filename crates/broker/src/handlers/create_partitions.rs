//! CreatePartitions: grow a topic's partition count (never shrink).

use std::sync::Arc;

use strom_protocol::kafka::messages::create_partitions_response::CreatePartitionsTopicResult;
use strom_protocol::kafka::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::server::BrokerState;

pub async fn handle(
    state: Arc<BrokerState>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let (validate_only, timeout_ms) = (request.validate_only, Some(request.timeout_ms));
    let results = request.topics.into_iter().map(|t| {
        let state = state.clone();
        async move {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let assignments = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
                a.iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            });
            match state
                .create_partitions(
                    t.name.0.as_str(),
                    t.count,
                    assignments,
                    validate_only,
                    timeout_ms,
                )
                .await
            {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        }
    });
    CreatePartitionsResponse::default().with_results(futures::future::join_all(results).await)
}
