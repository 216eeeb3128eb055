//! Metadata changes a broker asks of the active controller: topics, partitions, configs, producer id blocks.
//!
//! Each validates what this broker can (topic names, config names and values) before the request leaves, sends
//! it through [`crate::cluster::Cluster::request`], and returns once this broker has applied the result, so the
//! handler that answers the client sees the change in [`crate::topics::Topics`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::{ControllerReply, ControllerRequest};
use uuid::Uuid;

use crate::offsets::OFFSETS_TOPIC;
use crate::server::BrokerState;
use crate::topic_config::TopicSettings;
use crate::topics::{validate_topic_name, Topic, TopicError};

/// What CreateTopics reports for a created (or validated) topic.
pub struct CreatedTopic {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub overrides: BTreeMap<String, String>,
    pub settings: TopicSettings,
}

impl BrokerState {
    fn admin_timeout(&self, timeout_ms: Option<i32>) -> Duration {
        match timeout_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
            _ => crate::cluster::DEFAULT_TIMEOUT,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        timeout_ms: Option<i32>,
    ) -> Result<CreatedTopic, TopicError> {
        validate_topic_name(name)?;
        let settings = TopicSettings::resolve(&self.config, &configs)?;
        let id = Uuid::new_v4();
        let request = ControllerRequest::CreateTopic {
            name: name.to_string(),
            topic_id: id.to_string(),
            partitions,
            replication_factor,
            assignments: assignments.clone(),
            configs: configs.clone(),
            validate_only,
        };
        self.cluster
            .request(request, self.admin_timeout(timeout_ms))
            .await?;
        if validate_only {
            let partitions = match (&assignments, partitions) {
                (Some(a), _) => a.len() as i32,
                (None, -1) => self.config.num_partitions,
                (None, p) => p,
            };
            let replication_factor = match (&assignments, replication_factor) {
                (Some(a), _) => a.first().map_or(1, |r| r.len() as i16),
                (None, -1) => self.config.default_replication_factor,
                (None, rf) => rf,
            };
            return Ok(CreatedTopic {
                id,
                partitions,
                replication_factor,
                overrides: configs,
                settings,
            });
        }
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        Ok(CreatedTopic {
            id: topic.id,
            partitions: topic.partition_count(),
            replication_factor: topic.slots.first().map_or(0, |s| s.replicas.len() as i16),
            overrides: topic.overrides.clone(),
            settings: topic.settings.clone(),
        })
    }

    /// The topic, created with the broker defaults first when auto-creation is on (Metadata requests that allow
    /// it). `Ok(None)`: it does not exist and may not be created.
    pub async fn get_or_auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, TopicError> {
        if let Some(topic) = self.topics.get(name) {
            return Ok(Some(topic));
        }
        if !self.config.auto_create_topics {
            return Ok(None);
        }
        match self
            .create_topic(name, -1, -1, None, BTreeMap::new(), false, None)
            .await
        {
            Ok(_) => Ok(self.topics.get(name)),
            Err(TopicError::Controller { code, .. })
                if code == strom_metadata::codes::TOPIC_ALREADY_EXISTS =>
            {
                Ok(self.topics.get(name))
            }
            Err(e) => Err(e),
        }
    }

    /// Ok if this broker coordinates `group`; otherwise NOT_COORDINATOR (or COORDINATOR_NOT_AVAILABLE), so the
    /// client asks FindCoordinator again.
    pub fn check_coordinator(&self, group: &str) -> Result<(), i16> {
        let live = self.cluster.image().live_brokers().count();
        self.offsets.check_coordinator(group, live)
    }

    /// Creates `__consumer_offsets` if it does not exist yet, with replication up to
    /// `offsets.topic.replication.factor` live brokers.
    pub async fn ensure_offsets_topic(&self) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.get(OFFSETS_TOPIC) {
            return Ok(topic);
        }
        let (partitions, configs) = self.offsets.topic_spec();
        let live = self.cluster.image().live_brokers().count().max(1) as i16;
        let rf = self.config.offsets_topic_replication_factor.min(live);
        match self
            .create_topic(OFFSETS_TOPIC, partitions, rf, None, configs, false, None)
            .await
        {
            Ok(_) => {}
            Err(TopicError::Controller { code, .. })
                if code == strom_metadata::codes::TOPIC_ALREADY_EXISTS => {}
            Err(e) => return Err(e),
        }
        self.topics.get(OFFSETS_TOPIC).ok_or_else(|| {
            TopicError::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC} is not ready"))
        })
    }

    /// `__transaction_state`, created through the controller on the first transactional FindCoordinator.
    pub async fn ensure_transaction_topic(&self) -> Result<Arc<Topic>, TopicError> {
        use crate::transactions::record::TRANSACTION_STATE_TOPIC;
        if let Some(topic) = self.topics.get(TRANSACTION_STATE_TOPIC) {
            return Ok(topic);
        }
        let (partitions, configs) = self.transactions.topic_spec();
        let live = self.cluster.image().live_brokers().count().max(1) as i16;
        let rf = self
            .config
            .transaction_state_log_replication_factor
            .min(live);
        match self
            .create_topic(
                TRANSACTION_STATE_TOPIC,
                partitions,
                rf,
                None,
                configs,
                false,
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(TopicError::Controller { code, .. })
                if code == strom_metadata::codes::TOPIC_ALREADY_EXISTS => {}
            Err(e) => return Err(e),
        }
        self.topics.get(TRANSACTION_STATE_TOPIC).ok_or_else(|| {
            TopicError::CoordinatorNotAvailable(format!("{TRANSACTION_STATE_TOPIC} is not ready"))
        })
    }

    pub async fn delete_topic(
        &self,
        name: &str,
        timeout_ms: Option<i32>,
    ) -> Result<Uuid, TopicError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.cluster
            .request(
                ControllerRequest::DeleteTopic {
                    name: name.to_string(),
                },
                self.admin_timeout(timeout_ms),
            )
            .await?;
        Ok(topic.id)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
        timeout_ms: Option<i32>,
    ) -> Result<(), TopicError> {
        self.cluster
            .request(
                ControllerRequest::CreatePartitions {
                    name: name.to_string(),
                    count,
                    assignments,
                    validate_only,
                },
                self.admin_timeout(timeout_ms),
            )
            .await?;
        Ok(())
    }

    /// Replaces a topic's config overrides with `overrides` (AlterConfigs; IncrementalAlterConfigs computes the
    /// new map first), after validating them.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        if self.topics.get(name).is_none() {
            return Err(TopicError::Unknown(name.to_string()));
        }
        TopicSettings::resolve(&self.config, &overrides)?;
        self.cluster
            .request(
                ControllerRequest::AlterTopicConfigs {
                    name: name.to_string(),
                    set: overrides,
                    remove: Vec::new(),
                    replace: true,
                    validate_only,
                },
                crate::cluster::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// A block of `count` producer ids no other broker will hand out.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, TopicError> {
        let (reply, _) = self
            .cluster
            .request(
                ControllerRequest::AllocateProducerIds {
                    broker_id: self.config.node_id,
                    count,
                },
                crate::cluster::DEFAULT_TIMEOUT,
            )
            .await?;
        match reply {
            ControllerReply::ProducerIds { first, .. } => Ok(first),
            other => Err(TopicError::Storage(format!(
                "unexpected controller reply to a producer id request: {other:?}"
            ))),
        }
    }
}
