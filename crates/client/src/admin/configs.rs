//! Configs: DescribeConfigs and IncrementalAlterConfigs (SET / DELETE) for topics and brokers.

use strom_protocol::kafka::messages::describe_configs_request::DescribeConfigsResource;
use strom_protocol::kafka::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use strom_protocol::kafka::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use strom_protocol::kafka::ResponseError;

use super::{check, kafka_error, str_bytes, Admin};
use crate::error::Error;

/// What a config belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    /// A broker by id.
    Broker(i32),
}

impl ConfigResource {
    /// Kafka's resource type codes: 2 = topic, 4 = broker.
    fn kind(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    fn name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(id) => id.to_string(),
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic '{t}'"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// Where a config's value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    /// A topic override (`strom topic alter-config`, or set at creation).
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    /// The broker's config file.
    StaticBroker,
    /// The built-in default.
    Default,
    DynamicBrokerLogger,
    Other(i8),
}

impl ConfigSource {
    pub fn from_code(code: i8) -> Self {
        match code {
            0 => Self::Unknown,
            1 => Self::DynamicTopic,
            2 => Self::DynamicBroker,
            3 => Self::DynamicDefaultBroker,
            4 => Self::StaticBroker,
            5 => Self::Default,
            6 => Self::DynamicBrokerLogger,
            other => Self::Other(other),
        }
    }

    /// Kafka's name for the source, as `kafka-configs.sh` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            Self::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            Self::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            Self::StaticBroker => "STATIC_BROKER_CONFIG",
            Self::Default => "DEFAULT_CONFIG",
            Self::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            Self::Other(_) => "OTHER",
        }
    }
}

/// One config with its effective value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// None for sensitive configs.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the built-in default (not set for the topic nor in the broker's config).
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    Set(String, String),
    /// Removes the override: the config falls back to the broker's value.
    Delete(String),
}

impl Admin {
    /// Every config of `resource`, sorted by name.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, Error> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource.kind())
                .with_resource_name(str_bytes(&resource.name()))
                .with_configuration_keys(None),
        ]);
        let connection = match resource {
            ConfigResource::Broker(id) => self.cluster.broker_connection(*id).await?,
            ConfigResource::Topic(_) => self.cluster.any_connection().await?,
        };
        let response = connection.request(&request).await?;
        let result = response.results.into_iter().next().ok_or_else(|| {
            kafka_error(
                ResponseError::UnknownServerError,
                format!("the DescribeConfigs response does not mention {resource}"),
            )
        })?;
        check(result.error_code, result.error_message.as_ref(), resource)?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_code(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Applies SET / DELETE changes to one resource's configs in one request (all or nothing on the broker).
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<(), Error> {
        const SET: i8 = 0;
        const DELETE: i8 = 1;
        let configs = changes
            .iter()
            .map(|c| match c {
                AlterConfigOp::Set(k, v) => AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(SET)
                    .with_value(Some(str_bytes(v))),
                AlterConfigOp::Delete(k) => AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(DELETE)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(resource.kind())
                .with_resource_name(str_bytes(&resource.name()))
                .with_configs(configs)]);
        let connection = match resource {
            ConfigResource::Broker(id) => self.cluster.broker_connection(*id).await?,
            ConfigResource::Topic(_) => self.controller_connection().await?,
        };
        let response = connection.request(&request).await?;
        let result = response.responses.into_iter().next().ok_or_else(|| {
            kafka_error(
                ResponseError::UnknownServerError,
                format!("the IncrementalAlterConfigs response does not mention {resource}"),
            )
        })?;
        check(result.error_code, result.error_message.as_ref(), resource)
    }
}
