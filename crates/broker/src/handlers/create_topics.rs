//! CreateTopics: -1 partitions / replication factor mean the broker defaults; `validate_only` checks without
//! creating; per-topic configs are validated by name and value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strom_protocol::kafka::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use strom_protocol::kafka::messages::{CreateTopicsRequest, CreateTopicsResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;
use crate::topic_config::{self, TOPIC_CONFIGS};
use crate::topics::TopicError;

pub async fn handle(
    state: Arc<BrokerState>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let timeout_ms = Some(request.timeout_ms);
    let validate_only = request.validate_only;
    let results = request.topics.into_iter().map(|t| {
        let state = state.clone();
        let duplicate = seen.get(t.name.0.as_str()).copied().unwrap_or(0) > 1;
        async move {
            let name = t.name.0.to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            let fail = |code: i16, message: String| {
                result.clone().with_error_code(code).with_error_message(Some(str_bytes(message)))
            };
            if duplicate {
                return fail(ResponseError::InvalidRequest.code(), format!("topic '{name}' appears more than once in the request"));
            }
            let mut partitions = t.num_partitions;
            let mut assignments: Option<Vec<Vec<i32>>> = None;
            if !t.assignments.is_empty() {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return fail(
                        ResponseError::InvalidRequest.code(),
                        "give either replica assignments or partitions and replication factor, not both".into(),
                    );
                }
                let mut sorted: Vec<_> = t.assignments.iter().map(|a| a.partition_index).collect();
                sorted.sort_unstable();
                if sorted.iter().enumerate().any(|(i, p)| *p != i as i32) {
                    return fail(
                        ResponseError::InvalidReplicaAssignment.code(),
                        "partition indexes in the assignment must be 0..n without gaps".into(),
                    );
                }
                let mut by_index: Vec<_> = t.assignments.iter().collect();
                by_index.sort_by_key(|a| a.partition_index);
                assignments = Some(by_index.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect());
                partitions = t.assignments.len() as i32;
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(value) = &c.value {
                    configs.insert(c.name.to_string(), value.to_string());
                }
            }
            match state
                .create_topic(&name, partitions, t.replication_factor, assignments, configs, validate_only, timeout_ms)
                .await
            {
                Ok(topic) => {
                    let mut ok = result
                        .with_num_partitions(topic.partitions)
                        .with_replication_factor(topic.replication_factor);
                    if version >= 7 {
                        ok = ok.with_topic_id(topic.id);
                    }
                    if version >= 5 {
                        let configs = TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let described = topic_config::describe(
                                    &state.config,
                                    &topic.overrides,
                                    &topic.settings,
                                    d,
                                );
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(d.name))
                                    .with_value(Some(str_bytes(described.value)))
                                    .with_config_source(described.source)
                            })
                            .collect();
                        ok = ok.with_configs(Some(configs));
                    }
                    ok
                }
                Err(e) => {
                    let mut failed = fail(e.code(), e.to_string());
                    if version >= 5 && matches!(e, TopicError::InvalidConfig(_)) {
                        failed = failed.with_topic_config_error_code(e.code());
                    }
                    failed.with_num_partitions(-1).with_replication_factor(-1)
                }
            }
        }
    });
    CreateTopicsResponse::default().with_topics(futures::future::join_all(results).await)
}
