//! DescribeConfigs for topics (every topic config with its effective value and source) and for the broker
//! (its static configuration, read-only).

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use strom_protocol::kafka::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;
use crate::topic_config::{self, ConfigType, SOURCE_DEFAULT, SOURCE_STATIC_BROKER, TOPIC_CONFIGS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(
    state: &Arc<BrokerState>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |key: &str| keys.as_ref().is_none_or(|k| k.iter().any(|w| w == key));
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => match state.topics.get(&name) {
                    Some(topic) => {
                        let configs = TOPIC_CONFIGS
                            .iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let described = topic_config::describe(
                                    &state.config,
                                    &topic.overrides,
                                    &topic.settings,
                                    d,
                                );
                                let synonyms = described.synonyms;
                                let mut entry = DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(d.name))
                                    .with_value(Some(str_bytes(described.value)))
                                    .with_config_source(described.source);
                                if request.include_synonyms {
                                    entry = entry.with_synonyms(
                                        synonyms
                                            .into_iter()
                                            .map(|(n, v, s)| {
                                                DescribeConfigsSynonym::default()
                                                    .with_name(str_bytes(n))
                                                    .with_value(Some(str_bytes(v)))
                                                    .with_source(s)
                                            })
                                            .collect(),
                                    );
                                }
                                if version >= 3 {
                                    entry = entry.with_config_type(d.config_type as i8);
                                    if request.include_documentation {
                                        entry = entry.with_documentation(Some(str_bytes(d.doc)));
                                    }
                                }
                                entry
                            })
                            .collect();
                        result.with_configs(configs)
                    }
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(format!(
                            "topic '{name}' does not exist"
                        )))),
                },
                RESOURCE_BROKER if name.is_empty() || name == state.config.node_id.to_string() => {
                    let image = state.cluster.image();
                    let configs = broker_configs(state)
                        .into_iter()
                        .filter(|(k, _, _)| wanted(k))
                        .map(|(key, value, config_type)| {
                            let dynamic = crate::dynamic_config::dynamic_value(
                                &image,
                                state.config.node_id,
                                &key,
                            );
                            let (value, source) = match dynamic {
                                Some((value, source)) => (value, source),
                                None if state.config.explicit.contains_key(&key) => {
                                    (value, SOURCE_STATIC_BROKER)
                                }
                                None => (value, SOURCE_DEFAULT),
                            };
                            let read_only = !crate::dynamic_config::is_dynamic(&key);
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(read_only)
                                .with_config_source(source);
                            if version >= 3 {
                                entry = entry.with_config_type(config_type as i8);
                            }
                            entry
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "this broker's id is {}",
                        state.config.node_id
                    )))),
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker's effective config: the keys Strom acts on, then any other key the config file set (accepted but
/// not acted on, shown as set, as Kafka shows its static config).
fn broker_configs(state: &BrokerState) -> Vec<(String, String, ConfigType)> {
    let mut out: Vec<(String, String, ConfigType)> = acted_on_broker_configs(state)
        .into_iter()
        .map(|(k, v, t)| (k.to_string(), v, t))
        .collect();
    for (key, value) in &state.config.explicit {
        if !out.iter().any(|(k, _, _)| k == key) {
            out.push((key.clone(), value.clone(), ConfigType::String));
        }
    }
    out
}

fn acted_on_broker_configs(state: &BrokerState) -> Vec<(&'static str, String, ConfigType)> {
    let c = &state.config;
    let topic_defaults = crate::topic_config::TopicSettings::resolve(c, &Default::default()).ok();
    let mut out = vec![
        ("node.id", c.node_id.to_string(), ConfigType::Int),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "num.partitions",
            c.num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "connections.max.idle.ms",
            c.connections_max_idle_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.flush.interval.ms",
            c.flush_interval_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.cleaner.enable",
            c.log_cleaner_enable.to_string(),
            ConfigType::Boolean,
        ),
        (
            "log.cleaner.backoff.ms",
            c.log_cleaner_backoff_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.cleaner.threads",
            c.log_cleaner_threads.to_string(),
            ConfigType::Int,
        ),
        (
            "log.cleaner.io.max.bytes.per.second",
            if c.log_cleaner_io_max_bytes_per_second >= f64::MAX {
                "1.7976931348623157E308".to_string()
            } else {
                c.log_cleaner_io_max_bytes_per_second.to_string()
            },
            ConfigType::Double,
        ),
        (
            "strom.metrics.listener",
            c.metrics_listener.clone().unwrap_or_default(),
            ConfigType::String,
        ),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            ConfigType::Int,
        ),
        (
            "leader.replication.throttled.rate",
            throttle_rate(c.leader_replication_throttled_rate),
            ConfigType::Long,
        ),
        (
            "follower.replication.throttled.rate",
            throttle_rate(c.follower_replication_throttled_rate),
            ConfigType::Long,
        ),
        (
            "replication.quota.window.num",
            c.replication_quota_window_num.to_string(),
            ConfigType::Int,
        ),
        (
            "replication.quota.window.size.seconds",
            c.replication_quota_window_size_seconds.to_string(),
            ConfigType::Int,
        ),
        (
            "replica.fetch.max.bytes",
            c.replica_fetch_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "replica.lag.time.max.ms",
            c.replica_lag_time_max_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "fetch.max.bytes",
            c.fetch_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "group.initial.rebalance.delay.ms",
            c.group_initial_rebalance_delay_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.min.session.timeout.ms",
            c.group_min_session_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.max.session.timeout.ms",
            c.group_max_session_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.max.size",
            c.group_max_size.min(i32::MAX as usize).to_string(),
            ConfigType::Int,
        ),
        (
            "group.consumer.heartbeat.interval.ms",
            c.group_consumer_heartbeat_interval_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.consumer.session.timeout.ms",
            c.group_consumer_session_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.consumer.assignors",
            c.group_consumer_assignors
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            ConfigType::List,
        ),
        (
            "offsets.topic.num.partitions",
            c.offsets_topic_num_partitions.to_string(),
            ConfigType::Int,
        ),
    ];
    if let Some(defaults) = topic_defaults {
        for d in TOPIC_CONFIGS {
            // A topic config whose broker key has its own name is listed when Kafka has that broker key.
            let broker_key_of_its_own = matches!(
                d.name,
                "min.insync.replicas"
                    | "unclean.leader.election.enable"
                    | "compression.type"
                    | "compression.gzip.level"
                    | "compression.lz4.level"
                    | "compression.zstd.level"
            );
            if d.broker_key != d.name || broker_key_of_its_own {
                out.push((d.broker_key, defaults.value_of(d.name), d.config_type));
            }
        }
    }
    out
}

/// Kafka shows an unlimited throttle as Long.MAX_VALUE.
fn throttle_rate(rate: u64) -> String {
    i64::try_from(rate).unwrap_or(i64::MAX).to_string()
}
