//! Topic operations: create, delete, list, describe, add partitions.

use strom_protocol::kafka::messages::create_partitions_request::CreatePartitionsTopic;
use strom_protocol::kafka::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use strom_protocol::kafka::messages::delete_topics_request::DeleteTopicState;
use strom_protocol::kafka::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
};
use strom_protocol::kafka::ResponseError;

use super::configs::{ConfigEntry, ConfigResource};
use super::{check, kafka_error, str_bytes, topic_name, Admin, OPERATION_TIMEOUT_MS};
use crate::error::Error;

/// A topic to create. `-1` partitions or replication factor means the broker's default
/// (`num.partitions`, `default.replication.factor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic config overrides, Kafka names (`retention.ms`, `cleanup.policy`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    pub fn replication_factor(mut self, replication_factor: i16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// What the broker created (or, with `validate_only`, would create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// -1 when the broker's version of CreateTopics does not report it.
    pub partitions: i32,
    pub replication_factor: i16,
    /// The topic id (CreateTopics v7+), a hyphenated UUID.
    pub topic_id: Option<String>,
}

/// One topic's outcome in a batch operation.
#[derive(Debug, Clone)]
pub struct TopicResult<T> {
    pub topic: String,
    pub result: Result<T, Error>,
}

/// A topic as `list_topics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    pub name: String,
    pub topic_id: Option<String>,
    pub partitions: usize,
    /// Replicas of partition 0 (all partitions share it unless reassigned).
    pub replication_factor: usize,
    pub internal: bool,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

/// A topic with its partitions and every config (DescribeConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: Option<String>,
    pub internal: bool,
    /// Sorted by partition.
    pub partitions: Vec<PartitionDescription>,
    pub configs: Vec<ConfigEntry>,
}

/// A topic id as Kafka's tools print it, or None for the nil id (a broker that does not assign ids). Takes
/// `Display` because the UUID type belongs to a crate this one does not depend on directly.
fn topic_id(id: impl std::fmt::Display) -> Option<String> {
    let id = id.to_string();
    (id != "00000000-0000-0000-0000-000000000000").then_some(id)
}

impl Admin {
    /// Creates topics; each topic's result is its own. With `validate_only` the broker checks everything and
    /// creates nothing.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<TopicResult<CreatedTopic>>, Error> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_validate_only(validate_only)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(str_bytes(k))
                                            .with_value(Some(str_bytes(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .controller_connection()
            .await?
            .request(&request)
            .await?;
        let results = topics
            .iter()
            .map(|t| {
                let result = match response.topics.iter().find(|r| r.name.0.as_str() == t.name) {
                    None => Err(missing(&t.name, "CreateTopics")),
                    Some(r) => check(
                        r.error_code,
                        r.error_message.as_ref(),
                        format!("topic '{}'", t.name),
                    )
                    .map(|()| CreatedTopic {
                        partitions: r.num_partitions,
                        replication_factor: r.replication_factor,
                        topic_id: topic_id(r.topic_id),
                    }),
                };
                TopicResult {
                    topic: t.name.clone(),
                    result,
                }
            })
            .collect();
        Ok(results)
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<TopicResult<()>>, Error> {
        let connection = self.controller_connection().await?;
        let version = connection.version(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(OPERATION_TIMEOUT_MS);
        // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
        if version >= 6 {
            request.topics = names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect();
        } else {
            request.topic_names = names.iter().map(|n| topic_name(n)).collect();
        }
        let response = connection.request_at(&request, version).await?;
        Ok(names
            .iter()
            .map(|name| {
                let found = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str()));
                let result = match found {
                    None => Err(missing(name, "DeleteTopics")),
                    Some(r) => check(
                        r.error_code,
                        r.error_message.as_ref(),
                        format!("topic '{name}'"),
                    ),
                };
                TopicResult {
                    topic: name.clone(),
                    result,
                }
            })
            .collect())
    }

    /// Every topic, sorted by name; internal topics (`__consumer_offsets`) only when asked for.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>, Error> {
        let response = self.metadata(None).await?;
        let mut topics: Vec<TopicListing> = response
            .topics
            .into_iter()
            .filter(|t| include_internal || !t.is_internal)
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let replication_factor = t
                    .partitions
                    .iter()
                    .find(|p| p.partition_index == 0)
                    .map_or(0, |p| p.replica_nodes.len());
                Some(TopicListing {
                    name,
                    topic_id: topic_id(t.topic_id),
                    partitions: t.partitions.len(),
                    replication_factor,
                    internal: t.is_internal,
                })
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Describes topics: partitions with leader, replicas and ISR from Metadata, configs from DescribeConfigs.
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<TopicResult<TopicDescription>>, Error> {
        let response = self.metadata(Some(names.to_vec())).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let found = response
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str()));
            let described = match found {
                None => Err(missing(name, "Metadata")),
                Some(t) => match check(t.error_code, None, format!("topic '{name}'")) {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let mut partitions: Vec<PartitionDescription> = t
                            .partitions
                            .iter()
                            .map(|p| PartitionDescription {
                                partition: p.partition_index,
                                leader: p.leader_id.0,
                                leader_epoch: p.leader_epoch,
                                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                                offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                            })
                            .collect();
                        partitions.sort_by_key(|p| p.partition);
                        match self
                            .describe_configs(&ConfigResource::Topic(name.clone()))
                            .await
                        {
                            Ok(configs) => Ok(TopicDescription {
                                name: name.clone(),
                                topic_id: topic_id(t.topic_id),
                                internal: t.is_internal,
                                partitions,
                                configs,
                            }),
                            Err(e) => Err(e),
                        }
                    }
                },
            };
            out.push(TopicResult {
                topic: name.clone(),
                result: described,
            });
        }
        Ok(out)
    }

    /// Grows topics to a new total partition count each (`(topic, total)`); partitions are never removed.
    pub async fn create_partitions(
        &self,
        totals: &[(String, i32)],
        validate_only: bool,
    ) -> Result<Vec<TopicResult<()>>, Error> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_validate_only(validate_only)
            .with_topics(
                totals
                    .iter()
                    .map(|(name, count)| {
                        CreatePartitionsTopic::default()
                            .with_name(topic_name(name))
                            .with_count(*count)
                    })
                    .collect(),
            );
        let response = self
            .controller_connection()
            .await?
            .request(&request)
            .await?;
        Ok(totals
            .iter()
            .map(|(name, _)| {
                let result = match response.results.iter().find(|r| r.name.0.as_str() == name) {
                    None => Err(missing(name, "CreatePartitions")),
                    Some(r) => check(
                        r.error_code,
                        r.error_message.as_ref(),
                        format!("topic '{name}'"),
                    ),
                };
                TopicResult {
                    topic: name.clone(),
                    result,
                }
            })
            .collect())
    }
}

/// A response that left out an item the request named: the broker broke the protocol.
fn missing(name: &str, api: &str) -> Error {
    kafka_error(
        ResponseError::UnknownServerError,
        format!("the {api} response does not mention '{name}'"),
    )
}
