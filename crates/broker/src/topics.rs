//! The topics this broker hosts: creation, deletion, partition growth and config changes, kept in memory as
//! immutable [`Topic`] snapshots and persisted through the [`MetadataStore`].
//!
//! Readers (produce, fetch, metadata) take an `Arc<Topic>` from a read lock and never block admin operations for
//! longer than a map lookup. Admin operations are serialised by one mutex over the metadata image: they are rare,
//! and serialising them keeps "persist, then publish" trivially ordered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use strom_protocol::kafka;
use strom_protocol::kafka::ResponseError;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::{MetadataImage, MetadataStore, TopicRecord};
use crate::partition::Partition;
use crate::topic_config::{InvalidConfig, TopicSettings};

/// An immutable snapshot of one topic. Changes publish a new snapshot that shares the `Partition`s.
#[derive(Debug)]
pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    pub overrides: BTreeMap<String, String>,
    pub settings: TopicSettings,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// A topic operation that failed, with the Kafka error code the response carries.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    #[error("storage error: {0}")]
    Storage(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        match self {
            TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition.code(),
            TopicError::InvalidName { .. } => ResponseError::InvalidTopicException.code(),
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
            TopicError::InvalidReplicationFactor(_) => {
                ResponseError::InvalidReplicationFactor.code()
            }
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
            TopicError::Storage(_) => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// Kafka's rule for topic names: 1..=249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| {
        Err(TopicError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if name.len() > 249 {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

pub struct Topics {
    config: Arc<BrokerConfig>,
    store: MetadataStore,
    image: Mutex<MetadataImage>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl Topics {
    /// Loads the metadata image (creating a fresh one for a new data directory) and opens every partition log.
    pub fn open(config: Arc<BrokerConfig>) -> Result<Self, TopicError> {
        let storage = |e: std::io::Error| TopicError::Storage(e.to_string());
        std::fs::create_dir_all(&config.data_dir).map_err(storage)?;
        let store = MetadataStore::new(&config.data_dir);
        let image = match store.load().map_err(storage)? {
            Some(image) => image,
            None => {
                let image = MetadataImage {
                    cluster_id: Uuid::new_v4().simple().to_string(),
                    node_id: config.node_id,
                    next_producer_id: 0,
                    topics: BTreeMap::new(),
                };
                store.save(&image).map_err(storage)?;
                image
            }
        };
        let mut topics = HashMap::new();
        for (name, record) in &image.topics {
            let settings = TopicSettings::resolve(&config, &record.configs)?;
            let name: Arc<str> = Arc::from(name.as_str());
            let id = Uuid::parse_str(&record.topic_id)
                .map_err(|e| TopicError::Storage(e.to_string()))?;
            let partitions = (0..record.partitions)
                .map(|p| open_partition(&config.data_dir, &name, p, &settings))
                .collect::<Result<Vec<_>, _>>()?;
            let topic = Topic {
                name: name.clone(),
                id,
                partitions,
                overrides: record.configs.clone(),
                settings,
            };
            topics.insert(name, Arc::new(topic));
        }
        Ok(Self {
            config,
            store,
            image: Mutex::new(image),
            topics: RwLock::new(topics),
        })
    }

    pub fn cluster_id(&self) -> String {
        self.image.lock().cluster_id.clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Returns the topic, creating it with broker defaults when auto-creation is allowed.
    pub fn get_or_auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, TopicError> {
        if let Some(topic) = self.get(name) {
            return Ok(Some(topic));
        }
        if !self.config.auto_create_topics {
            return Ok(None);
        }
        validate_topic_name(name)?;
        match self.create(name, -1, -1, BTreeMap::new(), false) {
            Ok(topic) => Ok(Some(topic)),
            Err(TopicError::AlreadyExists(_)) => Ok(self.get(name)),
            Err(e) => Err(e),
        }
    }

    /// CreateTopics for one topic. `partitions` / `replication_factor` of -1 mean "broker default".
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }
        let settings = TopicSettings::resolve(&self.config, &configs)?;
        if settings.min_insync_replicas > 1 {
            tracing::warn!(
                topic = name,
                "min.insync.replicas > 1 on a single broker: acks=all writes will fail"
            );
        }
        let mut image = self.image.lock();
        if image.topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let id = Uuid::new_v4();
        let name: Arc<str> = Arc::from(name);
        let topic = Topic {
            name: name.clone(),
            id,
            partitions: Vec::new(),
            overrides: configs.clone(),
            settings,
        };
        if validate_only {
            return Ok(Arc::new(topic));
        }
        let partitions = (0..partitions)
            .map(|p| open_partition(&self.config.data_dir, &name, p, &topic.settings))
            .collect::<Result<Vec<_>, _>>()?;
        let topic = Arc::new(Topic {
            partitions,
            ..topic
        });
        let record = TopicRecord {
            topic_id: id.to_string(),
            partitions: topic.partitions.len() as i32,
            configs,
        };
        if let Err(e) = self.persist(&mut image, |next| {
            next.topics.insert(name.to_string(), record);
        }) {
            // Not recorded, so not created: remove what was opened.
            for p in &topic.partitions {
                let _ = p.delete();
            }
            return Err(e);
        }
        self.topics.write().insert(name.clone(), topic.clone());
        tracing::info!(topic = %name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// DeleteTopics for one topic: unpublish, persist, then remove its data.
    pub fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let mut image = self.image.lock();
        if !image.topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        self.persist(&mut image, |next| {
            next.topics.remove(name);
        })?;
        let topic = self.topics.write().remove(name);
        let Some(topic) = topic else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        // Still under the metadata lock: a topic re-created with this name must not open these directories
        // before they are gone.
        for p in &topic.partitions {
            if let Err(e) = p.delete() {
                tracing::warn!(partition = %p.name(), error = %e, "could not remove partition data");
            }
        }
        drop(image);
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic.id)
    }

    /// Writes `change` applied to the image to disk, and only then to the in-memory image, so a failed write
    /// leaves both as they were.
    fn persist(
        &self,
        image: &mut MetadataImage,
        change: impl FnOnce(&mut MetadataImage),
    ) -> Result<(), TopicError> {
        let mut next = image.clone();
        change(&mut next);
        self.store
            .save(&next)
            .map_err(|e| TopicError::Storage(e.to_string()))?;
        *image = next;
        Ok(())
    }

    /// CreatePartitions: grows `name` to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut image = self.image.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count must be larger, got {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            partitions.push(open_partition(
                &self.config.data_dir,
                &topic.name,
                p,
                &topic.settings,
            )?);
        }
        self.persist(&mut image, |next| {
            if let Some(record) = next.topics.get_mut(name) {
                record.partitions = count;
            }
        })?;
        let updated = Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            overrides: topic.overrides.clone(),
            settings: topic.settings.clone(),
        };
        self.topics
            .write()
            .insert(topic.name.clone(), Arc::new(updated));
        Ok(())
    }

    /// Replaces the topic's config overrides (AlterConfigs semantics; IncrementalAlterConfigs computes the new
    /// map first).
    pub fn set_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut image = self.image.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let settings = TopicSettings::resolve(&self.config, &overrides)?;
        if validate_only {
            return Ok(());
        }
        self.persist(&mut image, |next| {
            if let Some(record) = next.topics.get_mut(name) {
                record.configs = overrides.clone();
            }
        })?;
        for p in &topic.partitions {
            p.set_config(settings.log.clone());
        }
        let updated = Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            overrides,
            settings,
        };
        self.topics
            .write()
            .insert(topic.name.clone(), Arc::new(updated));
        Ok(())
    }

    /// Reserves a block of producer ids, persisting the new high-water mark before any id of it is handed out,
    /// so ids are never reused after a crash.
    pub fn reserve_producer_ids(&self, count: i64) -> Result<i64, TopicError> {
        let mut image = self.image.lock();
        let first = image.next_producer_id;
        self.persist(&mut image, |next| next.next_producer_id = first + count)?;
        Ok(first)
    }

    /// Clean shutdown of every partition log.
    pub fn close_all(&self) {
        for topic in self.all() {
            for p in &topic.partitions {
                if let Err(e) = p.close() {
                    tracing::error!(partition = %p.name(), error = %e, "could not close partition log cleanly");
                }
            }
        }
    }
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

fn open_partition(
    data_dir: &Path,
    topic: &Arc<str>,
    index: i32,
    settings: &TopicSettings,
) -> Result<Arc<Partition>, TopicError> {
    let dir = partition_dir(data_dir, topic, index);
    Partition::open(topic.clone(), index, dir, settings.log.clone(), now_ms())
        .map(Arc::new)
        .map_err(|e| TopicError::Storage(format!("cannot open {topic}-{index}: {e}")))
}

/// Turns a Kafka request's topic name into a `&str`.
pub fn topic_str(name: &kafka::messages::TopicName) -> &str {
    name.0.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
