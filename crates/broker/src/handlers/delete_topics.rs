//! DeleteTopics, by name (all versions) or by topic id (v6+).

use std::sync::Arc;

use strom_protocol::kafka::messages::delete_topics_response::DeletableTopicResult;
use strom_protocol::kafka::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

pub async fn handle(
    state: Arc<BrokerState>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let timeout_ms = Some(request.timeout_ms);
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets.into_iter().map(|(name, id)| {
        let state = state.clone();
        async move {
            let name = name.map(|n| n.0.to_string()).or_else(|| {
                state
                    .topics
                    .all()
                    .into_iter()
                    .find(|t| t.id == id)
                    .map(|t| t.name.to_string())
            });
            let Some(name) = name else {
                return DeletableTopicResult::default()
                    .with_name(None)
                    .with_topic_id(id)
                    .with_error_code(ResponseError::UnknownTopicId.code());
            };
            let result =
                DeletableTopicResult::default().with_name(Some(TopicName(str_bytes(name.clone()))));
            match state.delete_topic(&name, timeout_ms).await {
                Ok(deleted_id) if version >= 6 => result.with_topic_id(deleted_id),
                Ok(_) => result,
                Err(e) => {
                    let r = result.with_error_code(e.code());
                    if version >= 5 {
                        r.with_error_message(Some(str_bytes(e.to_string())))
                    } else {
                        r
                    }
                }
            }
        }
    });
    DeleteTopicsResponse::default().with_responses(futures::future::join_all(responses).await)
}
