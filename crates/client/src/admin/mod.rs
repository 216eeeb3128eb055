//! The admin client: topics, configs, groups, offsets, records, transactions and the cluster, over the public
//! Kafka protocol.
//!
//! [`Admin`] is a thin layer over [`Cluster`]: every method builds one kind of request, sends it to the broker
//! that must answer it (the controller for topic changes, the group coordinator for group operations, the
//! transaction coordinator for a transactional id, the partition leader for offsets, records and producers) and
//! turns the response into plain Rust values.
//!
//! Errors come in two layers, as in the protocol: a request that fails as a whole (no broker, a bad response,
//! a top-level error code) is the method's `Err`; an error the broker reports for one topic, group or
//! partition is that item's `Result`, so one bad name in a batch does not hide what happened to the others.

mod configs;
mod groups;
mod offsets;
mod topics;
mod transactions;

use std::sync::Arc;

use strom_protocol::kafka::messages::{
    ApiKey, DescribeClusterRequest, MetadataRequest, MetadataResponse, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;

use crate::cluster::{BrokerInfo, Cluster, ClusterConfig};
use crate::connection::Connection;
use crate::error::Error;

pub use configs::{AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource};
pub use groups::{GroupDescription, GroupListing, GroupType, MemberDescription, TopicPartitions};
pub use offsets::{
    GroupOffset, ListedOffset, OffsetSpec, PartitionResult, ResetEntry, ResetSpec, TopicSelection,
};
pub use topics::{
    CreatedTopic, NewTopic, PartitionDescription, TopicDescription, TopicListing, TopicResult,
};
pub use transactions::{
    ProducerDescription, TransactionDescription, TransactionFilter, TransactionList,
    TransactionListing,
};

/// Timeout the broker is asked to honour for topic and record operations (`timeout_ms` in the requests). Shorter
/// than the connection's 30 s request timeout, so a broker that cannot finish in time (a cluster without a
/// quorum) answers with its own error, which says why, before the client gives up on the request.
const OPERATION_TIMEOUT_MS: i32 = 25_000;

/// The admin client. Cheap to share: it holds the cluster view and its connection pool.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

/// The cluster as DescribeCluster (or Metadata, on brokers without it) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    /// -1 when the broker does not say.
    pub controller_id: i32,
    /// Sorted by id.
    pub brokers: Vec<BrokerInfo>,
    /// Registered brokers the controller has fenced (stopped heartbeating or shut down), sorted by id; only
    /// brokers with DescribeCluster v2 report them.
    pub fenced_brokers: Vec<BrokerInfo>,
}

/// The metadata quorum as the active controller reports it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    pub leader_id: i32,
    /// The Raft term of the active controller.
    pub leader_epoch: i32,
    /// The highest committed log offset.
    pub high_watermark: i64,
    pub voters: Vec<QuorumVoter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: i32,
    pub log_end_offset: i64,
    /// How far behind the high watermark this voter's log is.
    pub lag: i64,
}

/// A partition reassignment in progress (ListPartitionReassignments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// The target replicas followed by those leaving.
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Admin {
    /// Connects to the first reachable of the comma-separated bootstrap servers. An admin client never
    /// creates topics by asking about them, so auto creation is off for its metadata requests.
    pub async fn connect(bootstrap: &str) -> Result<Self, Error> {
        let mut config = ClusterConfig::new(bootstrap);
        config.allow_auto_topic_creation = false;
        Self::with_config(config).await
    }

    pub async fn with_config(config: ClusterConfig) -> Result<Self, Error> {
        Ok(Self {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// An admin client sharing an existing cluster view (a producer's or consumer's).
    pub fn from_cluster(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, Error> {
        let connection = self.cluster.any_connection().await?;
        if connection
            .broker_versions(ApiKey::DescribeCluster)
            .is_some()
        {
            let response = connection
                .request(&DescribeClusterRequest::default().with_include_fenced_brokers(true))
                .await?;
            check(
                response.error_code,
                response.error_message.as_ref(),
                "describe cluster",
            )?;
            let (mut brokers, mut fenced_brokers) = (Vec::new(), Vec::new());
            for b in response.brokers {
                let info = BrokerInfo {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                };
                if b.is_fenced {
                    fenced_brokers.push(info);
                } else {
                    brokers.push(info);
                }
            }
            brokers.sort_by_key(|b| b.id);
            fenced_brokers.sort_by_key(|b| b.id);
            return Ok(ClusterDescription {
                cluster_id: Some(response.cluster_id.to_string()),
                controller_id: response.controller_id.0,
                brokers,
                fenced_brokers,
            });
        }
        let response = self.metadata(Some(Vec::new())).await?;
        let mut brokers: Vec<BrokerInfo> = response
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            fenced_brokers: Vec::new(),
        })
    }

    /// The metadata quorum: active controller, its epoch, the committed offset and each voter's lag.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription, Error> {
        use strom_protocol::kafka::messages::describe_quorum_request::{PartitionData, TopicData};
        use strom_protocol::kafka::messages::DescribeQuorumRequest;
        let connection = self.cluster.any_connection().await?;
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let response = connection.request(&request).await?;
        check(
            response.error_code,
            response.error_message.as_ref(),
            "describe quorum",
        )?;
        let partition = response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| Error::Decode {
                addr: connection.addr().to_string(),
                api: ApiKey::DescribeQuorum,
                reason: "no partition in the response".into(),
            })?;
        check(
            partition.error_code,
            partition.error_message.as_ref(),
            "describe quorum",
        )?;
        let hw = partition.high_watermark;
        Ok(QuorumDescription {
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            high_watermark: hw,
            voters: partition
                .current_voters
                .into_iter()
                .map(|v| QuorumVoter {
                    id: v.replica_id.0,
                    log_end_offset: v.log_end_offset,
                    lag: (hw - v.log_end_offset).max(0),
                })
                .collect(),
        })
    }

    /// Moves each partition's leadership to its preferred replica (Kafka's PREFERRED ElectLeaders); `None`
    /// asks for every partition. Returns each partition's outcome: `Ok` when it is led (or about to be) by its
    /// preferred replica, or the broker's error (ELECTION_NOT_NEEDED when it already was).
    pub async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<((String, i32), Result<(), Error>)>, Error> {
        use strom_protocol::kafka::messages::elect_leaders_request::TopicPartitions;
        use strom_protocol::kafka::messages::ElectLeadersRequest;
        let topic_partitions = partitions.map(|parts| {
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (t, p) in parts {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect()
        });
        let request = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let response = self
            .controller_connection()
            .await?
            .request(&request)
            .await?;
        check(response.error_code, None, "elect leaders")?;
        let mut out = Vec::new();
        for topic in response.replica_election_results {
            for p in topic.partition_result {
                let result = check(p.error_code, p.error_message.as_ref(), "elect leaders");
                out.push(((topic.topic.0.to_string(), p.partition_id), result));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Moves partitions to `replicas` (KIP-455; `None` cancels the partition's reassignment in progress). With
    /// `allow_replication_factor_change` false a target of another size is refused (KIP-860). Returns each
    /// partition's outcome; an accepted reassignment completes once the new replicas have caught up (see
    /// [`Admin::list_partition_reassignments`]).
    pub async fn alter_partition_reassignments(
        &self,
        partitions: &[(String, i32, Option<Vec<i32>>)],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<((String, i32), Result<(), Error>)>, Error> {
        use strom_protocol::kafka::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use strom_protocol::kafka::messages::{AlterPartitionReassignmentsRequest, BrokerId};
        let mut by_topic: std::collections::BTreeMap<&str, Vec<ReassignablePartition>> =
            Default::default();
        for (t, p, replicas) in partitions {
            by_topic.entry(t.as_str()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(
                        replicas
                            .as_ref()
                            .map(|rs| rs.iter().map(|r| BrokerId(*r)).collect()),
                    ),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_allow_replication_factor_change(allow_replication_factor_change)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let response = self
            .controller_connection()
            .await?
            .request(&request)
            .await?;
        check(
            response.error_code,
            response.error_message.as_ref(),
            "reassign partitions",
        )?;
        let mut out = Vec::new();
        for topic in response.responses {
            for p in topic.partitions {
                let what = format!("reassign {}-{}", topic.name.0.as_str(), p.partition_index);
                let result = check(p.error_code, p.error_message.as_ref(), what);
                out.push(((topic.name.0.to_string(), p.partition_index), result));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The partition reassignments in progress (`None`: in every topic), sorted by topic and partition.
    pub async fn list_partition_reassignments(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Vec<Reassignment>, Error> {
        use strom_protocol::kafka::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
        use strom_protocol::kafka::messages::ListPartitionReassignmentsRequest;
        let topics = match topics {
            None => None,
            Some(names) => {
                let described = self.describe_topics(names).await?;
                let mut out = Vec::new();
                for d in described {
                    let t = d.result?;
                    out.push(
                        ListPartitionReassignmentsTopics::default()
                            .with_name(topic_name(&d.topic))
                            .with_partition_indexes(
                                t.partitions.iter().map(|p| p.partition).collect(),
                            ),
                    );
                }
                Some(out)
            }
        };
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(topics);
        let response = self
            .controller_connection()
            .await?
            .request(&request)
            .await?;
        check(
            response.error_code,
            response.error_message.as_ref(),
            "list partition reassignments",
        )?;
        let ids = |b: Vec<strom_protocol::kafka::messages::BrokerId>| {
            b.into_iter().map(|b| b.0).collect()
        };
        let mut out: Vec<Reassignment> = response
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| Reassignment {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    replicas: ids(p.replicas),
                    adding: ids(p.adding_replicas),
                    removing: ids(p.removing_replicas),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// A raw Metadata request (None = every topic), never creating topics.
    async fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse, Error> {
        use strom_protocol::kafka::messages::metadata_request::MetadataRequestTopic;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.cluster.any_connection().await?.request(&request).await
    }

    /// The controller, which must receive topic changes (a KRaft broker forwards them, Strom is its own).
    async fn controller_connection(&self) -> Result<Connection, Error> {
        let controller = self.cluster.metadata().controller_id;
        if controller >= 0 {
            if let Ok(c) = self.cluster.broker_connection(controller).await {
                return Ok(c);
            }
        }
        self.cluster.any_connection().await
    }
}

/// `Err(Error::Kafka)` for a non-zero code; `what` names the item, the broker's message (if any) follows it.
fn check(code: i16, message: Option<&StrBytes>, what: impl std::fmt::Display) -> Result<(), Error> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(code) => {
            let what = what.to_string();
            // Brokers' messages usually name the item already ("topic 'x' already exists"); don't repeat it.
            let context = match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
                Some(m) if m.to_lowercase().contains(&what.to_lowercase()) => m.to_string(),
                Some(m) => format!("{what} ({m})"),
                None => what,
            };
            Err(Error::Kafka { code, context })
        }
    }
}

fn kafka_error(code: ResponseError, context: impl Into<String>) -> Error {
    Error::Kafka {
        code,
        context: context.into(),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The negotiated version of `api` on `connection`, but at most `cap`: OffsetCommit and OffsetFetch v10
/// address topics by id only, which this client does not track.
fn capped_version(connection: &Connection, api: ApiKey, cap: i16) -> Result<i16, Error> {
    let negotiated = connection.version(api)?;
    if negotiated <= cap {
        return Ok(negotiated);
    }
    match connection.broker_versions(api) {
        Some((min, _)) if min <= cap => Ok(cap),
        broker => Err(Error::UnsupportedVersion {
            addr: connection.addr().to_string(),
            api,
            broker,
            client_min: crate::connection::client_versions(api).0,
            client_max: cap,
        }),
    }
}
