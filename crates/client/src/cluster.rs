//! The client's view of the cluster: which brokers exist, which partitions each topic has, who leads each
//! partition, and one pooled [`Connection`] per broker.
//!
//! The view is an immutable [`Metadata`] snapshot behind an `Arc`, replaced whole on every refresh, so a reader
//! never sees half an update and never holds a lock across an await. Refreshes are serialized by an async
//! mutex: callers that asked while one was running find the fresh snapshot when they get the lock.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use strom_protocol::kafka::messages::metadata_request::MetadataRequestTopic;
use strom_protocol::kafka::messages::{MetadataRequest, TopicName};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::Error;

/// Settings of the cluster view.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `bootstrap.servers`: host:port pairs tried in order until one answers.
    pub bootstrap_servers: Vec<String>,
    pub connection: ConnectionConfig,
    /// `allow.auto.create.topics`: whether a Metadata request for an unknown topic may create it.
    pub allow_auto_topic_creation: bool,
}

impl ClusterConfig {
    /// Parses a comma-separated `bootstrap.servers` value.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: parse_bootstrap(bootstrap_servers),
            connection: ConnectionConfig::default(),
            allow_auto_topic_creation: true,
        }
    }
}

/// Splits `a:1,b:2` into addresses, ignoring blanks.
pub fn parse_bootstrap(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One broker as the metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition's leadership as of the last refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    /// The partition-level error code of the last refresh (0 = none).
    pub error_code: i16,
}

/// One topic as of the last refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
    pub is_internal: bool,
}

impl TopicInfo {
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    pub fn leader(&self, partition: i32) -> Option<i32> {
        self.partitions
            .get(usize::try_from(partition).ok()?)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}

/// An immutable snapshot of cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: HashMap<i32, BrokerInfo>,
    /// Looked up per record by the producer: a fast hasher.
    pub topics: rustc_hash::FxHashMap<String, TopicInfo>,
    /// Topics the last refresh reported with a topic-level error (code), e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub topic_errors: HashMap<String, i16>,
}

/// The shared cluster view with its connection pool.
pub struct Cluster {
    config: ClusterConfig,
    metadata: RwLock<Arc<Metadata>>,
    /// Topics this client cares about; each refresh asks for all of them.
    interest: Mutex<BTreeSet<String>>,
    refresh_lock: tokio::sync::Mutex<u64>,
    pool: tokio::sync::Mutex<HashMap<i32, Connection>>,
    /// A connection to any broker (bootstrap or known), used for metadata.
    any: tokio::sync::Mutex<Option<Connection>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the first reachable bootstrap server and loads the broker list.
    pub async fn connect(config: ClusterConfig) -> Result<Arc<Self>, Error> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        let cluster = Arc::new(Self {
            config,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            interest: Mutex::new(BTreeSet::new()),
            refresh_lock: tokio::sync::Mutex::new(0),
            pool: tokio::sync::Mutex::new(HashMap::new()),
            any: tokio::sync::Mutex::new(None),
        });
        cluster.refresh().await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The current snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.read().unwrap().clone()
    }

    /// The topic as of the last refresh, if it is known and has partitions.
    pub fn topic(&self, topic: &str) -> Option<TopicInfo> {
        self.metadata().topics.get(topic).cloned()
    }

    /// The topic's partition count as of the last refresh, without copying its metadata (the producer asks for
    /// every record).
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        self.metadata
            .read()
            .unwrap()
            .topics
            .get(topic)
            .map(TopicInfo::partition_count)
            .filter(|n| *n > 0)
    }

    /// Fetches metadata for `topic` if it is not cached yet (creating it when auto creation is allowed).
    pub async fn topic_or_fetch(&self, topic: &str) -> Result<TopicInfo, Error> {
        if let Some(t) = self.topic(topic) {
            return Ok(t);
        }
        self.interest.lock().unwrap().insert(topic.to_string());
        let metadata = self.refresh().await?;
        if let Some(t) = metadata.topics.get(topic) {
            return Ok(t.clone());
        }
        let code = metadata
            .topic_errors
            .get(topic)
            .copied()
            .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
        Err(
            Error::kafka(code, format!("metadata for topic {topic}")).unwrap_or(Error::Kafka {
                code: ResponseError::UnknownTopicOrPartition,
                context: format!("metadata for topic {topic}"),
            }),
        )
    }

    /// Adds topics to the set every refresh asks about.
    pub fn add_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let mut interest = self.interest.lock().unwrap();
        interest.extend(topics.into_iter().map(str::to_string));
    }

    /// Refreshes metadata now (for every topic of interest) and returns the new snapshot. Callers that queued
    /// behind a refresh which completed meanwhile get that fresh snapshot without another round trip.
    pub async fn refresh(&self) -> Result<Arc<Metadata>, Error> {
        let generation_seen = *self.refresh_lock.lock().await;
        self.refresh_after(generation_seen).await
    }

    async fn refresh_after(&self, generation_seen: u64) -> Result<Arc<Metadata>, Error> {
        let mut generation = self.refresh_lock.lock().await;
        if *generation != generation_seen {
            return Ok(self.metadata());
        }
        let topics: Vec<String> = self.interest.lock().unwrap().iter().cloned().collect();
        let connection = self.any_connection().await?;
        let request = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(self.config.allow_auto_topic_creation);
        let response = match connection.request(&request).await {
            Ok(r) => r,
            Err(e) => {
                // Next refresh starts from another broker.
                *self.any.lock().await = None;
                return Err(e);
            }
        };
        let mut metadata = Metadata {
            cluster_id: response.cluster_id.map(|s| s.to_string()),
            controller_id: response.controller_id.0,
            ..Metadata::default()
        };
        for b in response.brokers {
            metadata.brokers.insert(
                b.node_id.0,
                BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                },
            );
        }
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 || t.partitions.is_empty() {
                // LEADER_NOT_AVAILABLE right after auto creation is normal; the next refresh finds the topic.
                metadata.topic_errors.insert(
                    name,
                    if t.error_code != 0 {
                        t.error_code
                    } else {
                        ResponseError::LeaderNotAvailable.code()
                    },
                );
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let dense = partitions
                .iter()
                .enumerate()
                .all(|(i, p)| usize::try_from(p.partition) == Ok(i));
            if !dense {
                tracing::warn!(topic = %name, "metadata lists non-contiguous partitions; ignoring topic");
                continue;
            }
            metadata.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    partitions,
                    is_internal: t.is_internal,
                },
            );
        }
        let metadata = Arc::new(metadata);
        *self.metadata.write().unwrap() = metadata.clone();
        *generation += 1;
        Ok(metadata)
    }

    /// Refreshes metadata if a response carried an error code meaning the view is stale; returns whether it did.
    pub async fn refresh_on_error(&self, code: i16) -> bool {
        if !crate::error::is_metadata_error(code) {
            return false;
        }
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %e, "metadata refresh after a stale-metadata error failed");
        }
        true
    }

    /// The pooled connection to broker `id`, opened on first use and replaced when it has failed.
    pub async fn broker_connection(&self, id: i32) -> Result<Connection, Error> {
        let mut pool = self.pool.lock().await;
        if let Some(c) = pool.get(&id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let addr = self
            .metadata()
            .brokers
            .get(&id)
            .map(BrokerInfo::addr)
            .ok_or_else(|| Error::Kafka {
                code: ResponseError::BrokerNotAvailable,
                context: format!("broker {id} is not in the cluster metadata"),
            })?;
        // Connecting under the pool lock keeps one connection per broker; connects are bounded by
        // connect_timeout and rare.
        let c = Connection::connect(&addr, self.config.connection.clone()).await?;
        pool.insert(id, c.clone());
        Ok(c)
    }

    /// The connection to the current leader of `topic`/`partition`.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Connection), Error> {
        let leader = self
            .topic(topic)
            .and_then(|t| t.leader(partition))
            .ok_or_else(|| Error::Kafka {
                code: ResponseError::LeaderNotAvailable,
                context: format!("{topic}-{partition}"),
            })?;
        Ok((leader, self.broker_connection(leader).await?))
    }

    /// Some live connection, for requests any broker can answer (Metadata, InitProducerId without
    /// transactions): a known broker first, then the bootstrap list.
    pub async fn any_connection(&self) -> Result<Connection, Error> {
        let mut any = self.any.lock().await;
        if let Some(c) = any.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut candidates: Vec<String> = self
            .metadata()
            .brokers
            .values()
            .map(BrokerInfo::addr)
            .collect();
        candidates.sort();
        candidates.extend(self.config.bootstrap_servers.iter().cloned());
        let mut last = String::from("no address to try");
        for addr in &candidates {
            match Connection::connect(addr, self.config.connection.clone()).await {
                Ok(c) => {
                    *any = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "cannot reach broker");
                    last = e.to_string();
                }
            }
        }
        Err(Error::NoBrokerAvailable {
            tried: candidates.join(","),
            last,
        })
    }

    /// Waits (refreshing with a short backoff) until `topic` has metadata, or `timeout` passes.
    pub async fn wait_for_topic(&self, topic: &str, timeout: Duration) -> Result<TopicInfo, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let last = match self.topic_or_fetch(topic).await {
                Ok(t) => return Ok(t),
                Err(e) if e.is_retriable() => e,
                Err(e) => return Err(e),
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(Error::Timeout {
                    what: format!("metadata for topic {topic} ({last})"),
                    timeout,
                });
            }
            // A topic just auto-created has no leader for a moment; there is nothing to wait on but time.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_list_is_split_and_trimmed() {
        assert_eq!(
            parse_bootstrap(" a:1, b:2 ,,"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let b = BrokerInfo {
            id: 1,
            host: "::1".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(b.addr(), "[::1]:9092");
    }

    #[test]
    fn leader_lookup_ignores_leaderless_partitions() {
        let t = TopicInfo {
            name: "t".into(),
            partitions: vec![
                PartitionInfo {
                    partition: 0,
                    leader: 3,
                    leader_epoch: 0,
                    error_code: 0,
                },
                PartitionInfo {
                    partition: 1,
                    leader: -1,
                    leader_epoch: 0,
                    error_code: 5,
                },
            ],
            is_internal: false,
        };
        assert_eq!(t.leader(0), Some(3));
        assert_eq!(t.leader(1), None);
        assert_eq!(t.leader(2), None);
        assert_eq!(t.leader(-1), None);
    }
}
