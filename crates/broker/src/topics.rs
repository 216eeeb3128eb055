//! The topics as this broker sees them: every topic of the committed metadata image, with the logs of the
//! partitions this broker hosts, kept in memory as immutable [`Topic`] snapshots.
//!
//! The metadata log decides; this registry follows. [`Topics::reconcile`] runs for every committed change
//! (before the new image is published), opening the logs of partitions this broker now hosts, applying config
//! changes and removing the data of topics that were deleted. Readers (produce, fetch, metadata) take an
//! `Arc<Topic>` from a read lock held only for a map lookup.
//!
//! Each partition directory holds Kafka's `partition.metadata` (`version: 0` and `topic_id: <uuid>`), so a
//! directory left by a deleted topic of the same name is recognised as stray and never served as the new
//! topic's data.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use strom_metadata::MetadataImage;
use strom_protocol::kafka;
use strom_protocol::kafka::ResponseError;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::partition::Partition;
use crate::topic_config::{InvalidConfig, TopicSettings};

/// One partition of a topic as the metadata records it, with its log when this broker hosts it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The log, when this broker is one of the replicas.
    pub local: Option<Arc<Partition>>,
}

/// An immutable snapshot of one topic. Changes publish a new snapshot that shares the `Partition`s.
#[derive(Debug)]
pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    pub slots: Vec<Slot>,
    /// The partitions this broker leads.
    pub led: Vec<Arc<Partition>>,
    /// Every partition log this broker hosts, led or not.
    pub local: Vec<Arc<Partition>>,
    pub overrides: BTreeMap<String, String>,
    pub settings: TopicSettings,
    node_id: i32,
}

impl Topic {
    pub fn partition_count(&self) -> i32 {
        self.slots.len() as i32
    }

    /// The partition, if this broker leads it; see [`Topic::partition_error`] for why not.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get(i))?;
        if slot.leader == self.node_id {
            slot.local.as_ref()
        } else {
            None
        }
    }

    pub fn slot(&self, index: i32) -> Option<&Slot> {
        usize::try_from(index).ok().and_then(|i| self.slots.get(i))
    }

    /// The error for a partition [`Topic::partition`] did not return: unknown, without a leader, or led by
    /// another broker (the client refreshes its metadata and goes there).
    pub fn partition_error(&self, index: i32) -> i16 {
        match self.slot(index) {
            None => ResponseError::UnknownTopicOrPartition.code(),
            Some(s) if s.leader < 0 => ResponseError::LeaderNotAvailable.code(),
            Some(_) => ResponseError::NotLeaderOrFollower.code(),
        }
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
    #[error("{0}")]
    NotCoordinator(String),
    #[error("{0}")]
    CoordinatorNotAvailable(String),
    /// The controller's answer, with its Kafka error code.
    #[error("{message}")]
    Controller { code: i16, message: String },
}

impl From<strom_metadata::ControllerError> for TopicError {
    fn from(e: strom_metadata::ControllerError) -> Self {
        TopicError::Controller {
            code: e.code,
            message: e.message,
        }
    }
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
            TopicError::NotCoordinator(_) => ResponseError::NotCoordinator.code(),
            TopicError::CoordinatorNotAvailable(_) => ResponseError::CoordinatorNotAvailable.code(),
            TopicError::Controller { code, .. } => *code,
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

/// Called (during the reconcile, before the new image is published) with each partition this broker has just
/// become the leader of, to load what it coordinates before any request can reach it. What it returns runs once
/// the image naming this broker leader is published: work that needs the leadership visible (a resumed
/// transaction's markers) goes there.
pub type LeadershipHook = Arc<dyn Fn(&Arc<Partition>) -> Option<AfterPublish> + Send + Sync>;

/// Work a [`LeadershipHook`] leaves for after the publication of the new image.
pub type AfterPublish = Box<dyn FnOnce() + Send>;

pub struct Topics {
    config: Arc<BrokerConfig>,
    leadership_hook: std::sync::OnceLock<LeadershipHook>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Serialises reconciles, so logs are opened and removed in metadata order.
    reconciling: Mutex<()>,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl Topics {
    /// An empty registry; the first [`Topics::reconcile`] fills it from the metadata image.
    pub fn new(config: Arc<BrokerConfig>) -> Result<Self, TopicError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| TopicError::Storage(e.to_string()))?;
        Ok(Self {
            config,
            topics: RwLock::new(HashMap::new()),
            leadership_hook: std::sync::OnceLock::new(),
            reconciling: Mutex::new(()),
        })
    }

    /// Sets the hook called for each partition this broker becomes the leader of (once).
    pub fn on_new_leadership(&self, hook: LeadershipHook) {
        let _ = self.leadership_hook.set(hook);
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Runs `f` with no reconcile running meanwhile (so no leadership hook either).
    pub fn serialized<T>(&self, f: impl FnOnce() -> T) -> T {
        let _serial = self.reconciling.lock();
        f()
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

    /// Brings this broker's topics and logs in line with the committed image.
    pub fn reconcile(&self, image: &MetadataImage) {
        let _serial = self.reconciling.lock();
        let node = self.config.node_id;
        let current = self.topics.read().clone();
        let mut next: HashMap<Arc<str>, Arc<Topic>> = HashMap::with_capacity(image.topics.len());
        let mut after_publish: Vec<AfterPublish> = Vec::new();
        for (name, t) in &image.topics {
            let Ok(id) = Uuid::parse_str(&t.topic_id) else {
                tracing::error!(topic = %name, topic_id = %t.topic_id, "topic id is not a UUID; topic skipped");
                continue;
            };
            let existing = current.get(name.as_str()).filter(|e| e.id == id);
            if let Some(old) = current.get(name.as_str()).filter(|e| e.id != id) {
                // Deleted and created again while we were not looking: the old data goes first.
                remove_local(old);
            }
            let settings = TopicSettings::resolve(&self.config, &t.configs).unwrap_or_else(|e| {
                tracing::error!(topic = %name, error = %e, "topic config not valid on this broker; using defaults");
                TopicSettings::resolve(&self.config, &BTreeMap::new()).expect("defaults are valid")
            });
            let name: Arc<str> = Arc::from(name.as_str());
            let configs_changed = existing.is_some_and(|e| e.overrides != t.configs);
            let mut slots = Vec::with_capacity(t.partitions.len());
            for (index, p) in &t.partitions {
                let old = existing
                    .and_then(|e| e.slot(*index))
                    .and_then(|s| s.local.clone());
                let local = if p.replicas.contains(&node) {
                    match old {
                        Some(local) => {
                            if configs_changed {
                                local.set_config(settings.log.clone());
                            }
                            Some(local)
                        }
                        None => match open_partition(
                            &self.config.data_dir,
                            &name,
                            id,
                            *index,
                            &settings,
                        ) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                tracing::error!(partition = %format!("{name}-{index}"), error = %e, "cannot open partition log");
                                None
                            }
                        },
                    }
                } else {
                    if let Some(old) = old {
                        // Moved to other brokers: this copy is no longer part of the partition.
                        let _ = old.delete();
                    }
                    None
                };
                if let Some(local) = &local {
                    if p.leader == node {
                        let newly = local.become_leader(
                            node,
                            p.leader_epoch,
                            p.partition_epoch,
                            &p.replicas,
                            &p.isr,
                            self.config.replica_lag_time_max_ms,
                            settings.min_insync_replicas.max(1) as usize,
                            crate::replication::now_ms(),
                        );
                        if newly {
                            if let Some(hook) = self.leadership_hook.get() {
                                after_publish.extend(hook(local));
                            }
                        }
                    } else {
                        local.become_follower(p.leader, p.leader_epoch);
                    }
                }
                slots.push(Slot {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    local,
                });
            }
            let local: Vec<Arc<Partition>> = slots.iter().filter_map(|s| s.local.clone()).collect();
            let led = slots
                .iter()
                .filter(|s| s.leader == node)
                .filter_map(|s| s.local.clone())
                .collect();
            if existing.is_none() {
                tracing::info!(topic = %name, partitions = slots.len(), hosted = local.len(), "topic created");
            }
            next.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id,
                    slots,
                    led,
                    local,
                    overrides: t.configs.clone(),
                    settings,
                    node_id: node,
                }),
            );
        }
        for (name, old) in &current {
            if !image.topics.contains_key(name.as_ref()) {
                remove_local(old);
                tracing::info!(topic = %name, "topic deleted");
            }
        }
        *self.topics.write() = next;
        for work in after_publish {
            work();
        }
    }

    /// Clean shutdown of every partition log.
    pub fn close_all(&self) {
        for topic in self.all() {
            for p in &topic.local {
                if let Err(e) = p.close() {
                    tracing::error!(partition = %p.name(), error = %e, "could not close partition log cleanly");
                }
            }
        }
    }
}

fn remove_local(topic: &Topic) {
    for p in &topic.local {
        if let Err(e) = p.delete() {
            tracing::warn!(partition = %p.name(), error = %e, "could not remove partition data");
        }
    }
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

const PARTITION_METADATA: &str = "partition.metadata";

/// Opens a partition's log, after making sure its directory belongs to this topic id: a directory whose
/// `partition.metadata` names another id is what a deleted topic of the same name left, and is removed.
fn open_partition(
    data_dir: &Path,
    topic: &Arc<str>,
    id: Uuid,
    index: i32,
    settings: &TopicSettings,
) -> Result<Arc<Partition>, TopicError> {
    let storage = |e: std::io::Error| TopicError::Storage(format!("{topic}-{index}: {e}"));
    let dir = partition_dir(data_dir, topic, index);
    let marker = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {id}\n");
    match std::fs::read_to_string(&marker) {
        Ok(found) if found == expected => {}
        Ok(found) => {
            tracing::warn!(dir = %dir.display(), found = %found.trim().replace('\n', " "), topic_id = %id, "removing a stray partition directory of a deleted topic");
            std::fs::remove_dir_all(&dir).map_err(storage)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(e)),
    }
    let partition = Partition::open(
        topic.clone(),
        id,
        index,
        dir.clone(),
        settings.log.clone(),
        now_ms(),
    )
    .map(Arc::new)
    .map_err(|e| TopicError::Storage(format!("cannot open {topic}-{index}: {e}")))?;
    if !marker.exists() {
        let tmp = dir.join("partition.metadata.tmp");
        std::fs::write(&tmp, expected.as_bytes()).map_err(storage)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(storage)?;
        std::fs::rename(&tmp, &marker).map_err(storage)?;
        std::fs::File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(storage)?;
    }
    Ok(partition)
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
