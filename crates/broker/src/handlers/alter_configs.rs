//! AlterConfigs: the given set replaces a topic's overrides, or a broker resource's dynamic configs
//! (`dynamic_config.rs`); anything not named returns to its default, as in Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::kafka::messages::alter_configs_response::AlterConfigsResourceResponse;
use strom_protocol::kafka::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::server::BrokerState;

pub async fn handle(
    state: Arc<BrokerState>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = request.resources.into_iter().map(|resource| {
        let state = state.clone();
        async move {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            // The resource's whole new set of configs: a key without a value is not set.
            let named: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let outcome = if resource.resource_type == RESOURCE_TOPIC {
                state
                    .set_topic_configs(resource.resource_name.as_str(), named, validate_only)
                    .await
                    .map_err(|e| (e.code(), e.to_string()))
            } else if resource.resource_type == RESOURCE_BROKER {
                crate::dynamic_config::alter(
                    &state,
                    resource.resource_name.as_str(),
                    named,
                    Vec::new(),
                    true,
                    validate_only,
                )
                .await
            } else {
                Err(super::incremental_alter_configs::unsupported_resource(
                    resource.resource_type,
                ))
            };
            match outcome {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            }
        }
    });
    AlterConfigsResponse::default().with_responses(futures::future::join_all(responses).await)
}
