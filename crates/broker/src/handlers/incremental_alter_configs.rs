//! IncrementalAlterConfigs (topic resources): SET, DELETE, APPEND and SUBTRACT applied to the current overrides.
//! APPEND/SUBTRACT only apply to list-typed configs (`cleanup.policy`).

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::kafka::messages::incremental_alter_configs_request::AlterableConfig;
use strom_protocol::kafka::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use strom_protocol::kafka::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use strom_protocol::kafka::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::server::BrokerState;
use crate::topic_config::{self, ConfigType};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    state: Arc<BrokerState>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = request.resources.into_iter().map(|resource| {
        let state = state.clone();
        async move {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.to_string();
            let outcome = if resource.resource_type == RESOURCE_TOPIC {
                match state.topics.get(&name) {
                    Some(topic) => match apply(&state, &topic.overrides, &resource.configs) {
                        Ok(overrides) => state
                            .set_topic_configs(&name, overrides, validate_only)
                            .await
                            .map_err(|e| (e.code(), e.to_string())),
                        Err(e) => Err(e),
                    },
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("topic '{name}' does not exist"),
                    )),
                }
            } else if resource.resource_type == RESOURCE_BROKER {
                alter_broker(&state, &name, &resource.configs, validate_only).await
            } else {
                Err(unsupported_resource(resource.resource_type))
            };
            match outcome {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            }
        }
    });
    IncrementalAlterConfigsResponse::default()
        .with_responses(futures::future::join_all(responses).await)
}

fn apply(
    state: &BrokerState,
    current: &BTreeMap<String, String>,
    changes: &[AlterableConfig],
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let invalid = |m: String| (ResponseError::InvalidConfig.code(), m);
    let mut overrides = current.clone();
    for change in changes {
        let key = change.name.to_string();
        let def = topic_config::lookup(&key)
            .ok_or_else(|| invalid(format!("unknown topic config {key:?}")))?;
        let value = change.value.as_ref().map(|v| v.to_string());
        match change.config_operation {
            SET => {
                let v = value.ok_or_else(|| invalid(format!("SET {key} needs a value")))?;
                overrides.insert(key, v);
            }
            DELETE => {
                overrides.remove(&key);
            }
            APPEND | SUBTRACT => {
                if def.config_type != ConfigType::List {
                    return Err(invalid(format!(
                        "{key} is not a list; APPEND and SUBTRACT need a list config"
                    )));
                }
                let effective = overrides.get(&key).cloned().unwrap_or_else(|| {
                    topic_config::TopicSettings::resolve(&state.config, &BTreeMap::new())
                        .map(|s| s.value_of(&key))
                        .unwrap_or_default()
                });
                let mut items: Vec<String> = effective
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                for item in value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if change.config_operation == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                overrides.insert(key, items.join(","));
            }
            op => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("unknown config operation {op}"),
                ))
            }
        }
    }
    Ok(overrides)
}

/// SET and DELETE of dynamic broker configs (`dynamic_config.rs`); none of them is a list.
async fn alter_broker(
    state: &BrokerState,
    resource: &str,
    changes: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for change in changes {
        let key = change.name.to_string();
        match change.config_operation {
            SET => {
                let value = change
                    .value
                    .as_ref()
                    .map(|v| v.to_string())
                    .ok_or_else(|| {
                        (
                            ResponseError::InvalidConfig.code(),
                            format!("SET {key} needs a value"),
                        )
                    })?;
                set.insert(key, value);
            }
            DELETE => remove.push(key),
            APPEND | SUBTRACT => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("{key} is not a list; APPEND and SUBTRACT need a list config"),
                ))
            }
            op => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("unknown config operation {op}"),
                ))
            }
        }
    }
    crate::dynamic_config::alter(state, resource, set, remove, false, validate_only).await
}

pub(crate) fn unsupported_resource(resource_type: i8) -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        format!("resource type {resource_type} is not supported"),
    )
}
