//! Membership in a consumer group with the classic protocol, and the offset APIs the group coordinator serves.
//!
//! The consumer's own task does the rebalance (JoinGroup, then SyncGroup) when it polls; a background task only
//! heartbeats and, when the coordinator answers that the group is rebalancing or no longer knows this member,
//! raises the rejoin flag the next poll acts on. Kafka's Java consumer splits the work the same way: a rebalance
//! changes what the application reads, so it happens inside the application's poll, never behind its back.
//!
//! The coordinator gets its own connection whose request timeout covers a whole rebalance: a JoinGroup is
//! answered only once every member has rejoined, which may take up to the rebalance timeout
//! (`max.poll.interval.ms`), far beyond an ordinary request timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_protocol::kafka::messages::join_group_request::JoinGroupRequestProtocol;
use strom_protocol::kafka::messages::leave_group_request::MemberIdentity;
use strom_protocol::kafka::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use strom_protocol::kafka::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use strom_protocol::kafka::messages::sync_group_request::SyncGroupRequestAssignment;
use strom_protocol::kafka::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::assignor::{self, RANGE};
use super::config::{millis, ConsumerConfig};
use super::records::{OffsetAndMetadata, TopicPartition};
use crate::cluster::Cluster;
use crate::connection::{Connection, ConnectionConfig};
use crate::error::Error;

const PROTOCOL_TYPE: &str = "consumer";

/// This member's identity in the group; `generation` is -1 while not (or no longer) a member.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub member_id: String,
    pub generation: i32,
}

/// State shared between the consumer and its heartbeat task.
pub(crate) struct GroupShared {
    pub group_id: String,
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    coordinator: tokio::sync::Mutex<Option<Connection>>,
    membership: Mutex<Membership>,
    rejoin: AtomicBool,
    /// Woken when the rejoin flag is raised, so a poll with nothing to fetch reacts at once.
    pub rejoin_raised: Notify,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn is_coordinator_error(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
    )
}

impl GroupShared {
    pub fn new(group_id: String, cluster: Arc<Cluster>, config: ConsumerConfig) -> Self {
        Self {
            group_id,
            cluster,
            config,
            coordinator: tokio::sync::Mutex::new(None),
            membership: Mutex::new(Membership {
                member_id: String::new(),
                generation: -1,
            }),
            rejoin: AtomicBool::new(false),
            rejoin_raised: Notify::new(),
        }
    }

    pub fn membership(&self) -> Membership {
        self.membership.lock().unwrap().clone()
    }

    /// Sets the identity commits are sent with; the consumer protocol's member epoch takes the generation's
    /// place (-1 while not a member).
    pub(crate) fn set_membership(&self, member_id: &str, generation: i32) {
        *self.membership.lock().unwrap() = Membership {
            member_id: member_id.to_string(),
            generation,
        };
    }

    pub fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire)
    }

    pub fn request_rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
        self.rejoin_raised.notify_waiters();
    }

    /// Reacts to a group error code from a request sent as `generation`; returns whether it was one.
    fn on_member_error(&self, code: i16, generation: i32) -> bool {
        let error = ResponseError::try_from_code(code);
        let stale = matches!(
            error,
            Some(
                ResponseError::RebalanceInProgress
                    | ResponseError::IllegalGeneration
                    | ResponseError::UnknownMemberId
                    | ResponseError::FencedInstanceId
            )
        );
        if !stale {
            return false;
        }
        let mut m = self.membership.lock().unwrap();
        // An answer to a request sent before the latest join says nothing about the current generation.
        if m.generation == generation {
            if error == Some(ResponseError::UnknownMemberId) {
                m.member_id.clear();
            }
            drop(m);
            self.request_rejoin();
        }
        true
    }

    /// The coordinator's connection, found with FindCoordinator on first use or after it moved.
    pub(crate) async fn coordinator(&self) -> Result<Connection, Error> {
        let mut slot = self.coordinator.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let any = self.cluster.any_connection().await?;
        let version = any.version(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        if version >= 4 {
            request.coordinator_keys = vec![str_bytes(&self.group_id)];
        } else {
            request.key = str_bytes(&self.group_id);
        }
        let response = any.request_at(&request, version).await?;
        let (code, host, port) = if version >= 4 {
            let c = response.coordinators.first().ok_or_else(|| Error::Decode {
                addr: any.addr().to_string(),
                api: ApiKey::FindCoordinator,
                reason: "no coordinator in the response".into(),
            })?;
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (
                response.error_code,
                response.host.to_string(),
                response.port,
            )
        };
        if let Some(e) = Error::kafka(code, format!("FindCoordinator for group {}", self.group_id))
        {
            return Err(e);
        }
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let connection = Connection::connect(
            &addr,
            ConnectionConfig {
                client_id: self.config.client_id.clone(),
                request_timeout: self.config.max_poll_interval + Duration::from_secs(5),
                ..self.cluster.config().connection.clone()
            },
        )
        .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    pub(crate) async fn forget_coordinator(&self) {
        *self.coordinator.lock().await = None;
    }

    /// Retries `attempt` while it fails with a retriable error, rediscovering the coordinator when it moved.
    async fn with_coordinator<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            let result = match self.coordinator().await {
                Ok(c) => attempt(c).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(group = %self.group_id, error = %e, "{what} failed; retrying");
                    if e.kafka_code()
                        .is_none_or(|c| is_coordinator_error(c.code()))
                    {
                        self.forget_coordinator().await;
                    }
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Joins (or rejoins) the group subscribed to `topics` and returns this member's assignment.
    pub async fn join(&self, topics: &[String]) -> Result<Vec<TopicPartition>, Error> {
        self.rejoin.store(false, Ordering::Release);
        self.membership.lock().unwrap().generation = -1;
        loop {
            match self.join_once(topics).await {
                Ok(Some(assignment)) => return Ok(assignment),
                Ok(None) => continue,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(group = %self.group_id, error = %e, "join failed; retrying");
                    if e.kafka_code()
                        .is_none_or(|c| is_coordinator_error(c.code()))
                    {
                        self.forget_coordinator().await;
                    }
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One JoinGroup + SyncGroup round; `None` when the group asks for another round right away.
    async fn join_once(&self, topics: &[String]) -> Result<Option<Vec<TopicPartition>>, Error> {
        let connection = self.coordinator().await?;
        let member_id = self.membership.lock().unwrap().member_id.clone();
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_session_timeout_ms(millis(self.config.session_timeout))
            .with_rebalance_timeout_ms(millis(self.config.max_poll_interval))
            .with_member_id(str_bytes(&member_id))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(RANGE))
                .with_metadata(assignor::encode_subscription(
                    topics,
                    self.config.subscription_user_data.clone(),
                ))]);
        let join = connection.request(&request).await?;
        match ResponseError::try_from_code(join.error_code) {
            None => {}
            // KIP-394: a first join gets its member id back and must join again with it.
            Some(ResponseError::MemberIdRequired) => {
                self.membership.lock().unwrap().member_id = join.member_id.to_string();
                return Ok(None);
            }
            Some(ResponseError::UnknownMemberId) => {
                self.membership.lock().unwrap().member_id.clear();
                return Ok(None);
            }
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(None)
            }
            Some(_) => {
                return Err(
                    Error::kafka(join.error_code, format!("JoinGroup {}", self.group_id))
                        .expect("non-zero code"),
                )
            }
        }
        let member_id = join.member_id.to_string();
        let generation = join.generation_id;
        self.membership.lock().unwrap().member_id = member_id.clone();
        let assignments = if join.leader.as_str() == member_id && !join.skip_assignment {
            self.assign(&join.members).await?
        } else {
            Vec::new()
        };
        let version = connection.version(ApiKey::SyncGroup)?;
        let mut sync = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(&member_id))
            .with_assignments(assignments);
        if version >= 5 {
            sync.protocol_type = Some(StrBytes::from_static_str(PROTOCOL_TYPE));
            sync.protocol_name = Some(StrBytes::from_static_str(RANGE));
        }
        let response = connection.request_at(&sync, version).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(ResponseError::UnknownMemberId) => {
                self.membership.lock().unwrap().member_id.clear();
                return Ok(None);
            }
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(None)
            }
            Some(_) => {
                return Err(Error::kafka(
                    response.error_code,
                    format!("SyncGroup {}", self.group_id),
                )
                .expect("non-zero code"))
            }
        }
        let assigned =
            assignor::decode_assignment(response.assignment).map_err(|reason| Error::Decode {
                addr: connection.addr().to_string(),
                api: ApiKey::SyncGroup,
                reason: format!("assignment: {reason}"),
            })?;
        self.membership.lock().unwrap().generation = generation;
        tracing::debug!(group = %self.group_id, %member_id, generation, ?assigned, "joined");
        Ok(Some(
            assigned
                .into_iter()
                .map(|(t, p)| TopicPartition::new(t, p))
                .collect(),
        ))
    }

    /// The leader's job: the range assignment over every member's subscription.
    async fn assign(
        &self,
        members: &[strom_protocol::kafka::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, Error> {
        let mut subscriptions = BTreeMap::new();
        for m in members {
            let topics = assignor::decode_subscription(m.metadata.clone()).map_err(|reason| {
                Error::Decode {
                    addr: "group coordinator".into(),
                    api: ApiKey::JoinGroup,
                    reason: format!("subscription of member {}: {reason}", m.member_id),
                }
            })?;
            subscriptions.insert(m.member_id.to_string(), topics);
        }
        let all: Vec<&str> = subscriptions
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        self.cluster.add_topics(all.iter().copied());
        let metadata = self.cluster.refresh().await?;
        let counts: BTreeMap<String, i32> = all
            .iter()
            .filter_map(|t| {
                metadata
                    .topics
                    .get(*t)
                    .map(|i| (t.to_string(), i.partition_count() as i32))
            })
            .collect();
        Ok(assignor::range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(assignor::encode_assignment(&partitions))
            })
            .collect())
    }

    /// One heartbeat for the current generation (skipped while not a member).
    pub async fn heartbeat(&self) -> Result<(), Error> {
        let Membership {
            member_id,
            generation,
        } = self.membership();
        if generation < 0 {
            return Ok(());
        }
        let connection = self.coordinator().await?;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(&member_id));
        let response = connection.request(&request).await?;
        if self.on_member_error(response.error_code, generation) {
            return Ok(());
        }
        if is_coordinator_error(response.error_code) {
            self.forget_coordinator().await;
            self.request_rejoin();
        }
        match Error::kafka(response.error_code, format!("Heartbeat {}", self.group_id)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Commits `offsets` (the next offset to read per partition) as this member's generation.
    pub async fn commit(&self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), Error> {
        let offsets = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect();
        self.commit_with_metadata(&offsets).await
    }

    /// Commits offsets with a metadata string each (kept by the broker and returned by OffsetFetch).
    pub async fn commit_with_metadata(
        &self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), Error> {
        if offsets.is_empty() {
            return Ok(());
        }
        let Membership {
            member_id,
            generation,
        } = self.membership();
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, committed) in offsets {
            topics.entry(&tp.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(committed.offset)
                    .with_committed_metadata(Some(str_bytes(&committed.metadata))),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(str_bytes(if generation < 0 { "" } else { &member_id }))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let response = self
            .with_coordinator("OffsetCommit", |c| {
                let request = &request;
                async move {
                    let r = c.request(request).await?;
                    let code = r
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|c| is_coordinator_error(*c));
                    match code {
                        Some(code) => Err(Error::kafka(code, "OffsetCommit").expect("error code")),
                        None => Ok(r),
                    }
                }
            })
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                if p.error_code == 0 {
                    continue;
                }
                self.on_member_error(p.error_code, generation);
                return Err(Error::kafka(
                    p.error_code,
                    format!(
                        "commit of {}-{} for group {}",
                        t.name.0, p.partition_index, self.group_id
                    ),
                )
                .expect("non-zero code"));
            }
        }
        Ok(())
    }

    /// The group's committed offsets for `partitions` (`None`: nothing committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
        Ok(self
            .committed_with_metadata(partitions)
            .await?
            .into_iter()
            .map(|(tp, c)| (tp, c.map(|c| c.offset)))
            .collect())
    }

    /// The group's committed offsets for `partitions` with their metadata (`None`: nothing committed).
    pub async fn committed_with_metadata(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, Error> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let group = &self.group_id;
        // A read_committed consumer asks for stable offsets only (KIP-447): an offset a transaction is still
        // committing is answered UNSTABLE_OFFSET_COMMIT, retried until the transaction completes, so a consumer
        // taking over from a transactional producer's consumer starts where that transaction left off.
        let require_stable = self.config.isolation_level == super::IsolationLevel::ReadCommitted;
        let found = self
            .with_coordinator("OffsetFetch", |c| {
                let by_topic = &by_topic;
                async move {
                    let version = c.version(ApiKey::OffsetFetch)?;
                    let mut request = OffsetFetchRequest::default();
                    if version >= 7 {
                        request.require_stable = require_stable;
                    }
                    if version >= 8 {
                        request.groups = vec![OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(str_bytes(group)))
                            .with_topics(Some(
                                by_topic
                                    .iter()
                                    .map(|(t, ps)| {
                                        OffsetFetchRequestTopics::default()
                                            .with_name(TopicName(str_bytes(t)))
                                            .with_partition_indexes(ps.clone())
                                    })
                                    .collect(),
                            ))];
                    } else {
                        request.group_id = GroupId(str_bytes(group));
                        request.topics = Some(
                            by_topic
                                .iter()
                                .map(|(t, ps)| {
                                    OffsetFetchRequestTopic::default()
                                        .with_name(TopicName(str_bytes(t)))
                                        .with_partition_indexes(ps.clone())
                                })
                                .collect(),
                        );
                    }
                    let r = c.request_at(&request, version).await?;
                    let mut found = Vec::new();
                    let code = if version >= 8 {
                        let g = r.groups.into_iter().next();
                        let code = g.as_ref().map_or(0, |g| g.error_code);
                        for t in g.into_iter().flat_map(|g| g.topics) {
                            for p in t.partitions {
                                found.push((
                                    t.name.0.to_string(),
                                    p.partition_index,
                                    p.committed_offset,
                                    p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                                    p.error_code,
                                ));
                            }
                        }
                        code
                    } else {
                        for t in r.topics {
                            for p in t.partitions {
                                found.push((
                                    t.name.0.to_string(),
                                    p.partition_index,
                                    p.committed_offset,
                                    p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                                    p.error_code,
                                ));
                            }
                        }
                        r.error_code
                    };
                    if let Some(e) = Error::kafka(code, format!("OffsetFetch for group {group}")) {
                        return Err(e);
                    }
                    let unstable = ResponseError::UnstableOffsetCommit.code();
                    if let Some((topic, partition, ..)) =
                        found.iter().find(|(.., code)| *code == unstable)
                    {
                        // Retried (with the backoff) until the transaction's markers are written.
                        return Err(Error::kafka(
                            unstable,
                            format!("OffsetFetch {topic}-{partition}"),
                        )
                        .expect("a known code"));
                    }
                    Ok(found)
                }
            })
            .await?;
        let mut out: BTreeMap<TopicPartition, Option<OffsetAndMetadata>> =
            partitions.iter().map(|tp| (tp.clone(), None)).collect();
        for (topic, partition, offset, metadata, code) in found {
            if let Some(e) = Error::kafka(code, format!("OffsetFetch {topic}-{partition}")) {
                return Err(e);
            }
            if offset >= 0 {
                out.insert(
                    TopicPartition::new(topic, partition),
                    Some(OffsetAndMetadata { offset, metadata }),
                );
            }
        }
        Ok(out)
    }

    /// Leaves the group so its partitions move to the other members at once instead of after the session timeout.
    pub async fn leave(&self) -> Result<(), Error> {
        let Membership { member_id, .. } = self.membership();
        self.membership.lock().unwrap().generation = -1;
        if member_id.is_empty() {
            return Ok(());
        }
        let connection = self.coordinator().await?;
        let version = connection.version(ApiKey::LeaveGroup)?;
        let mut request =
            LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&self.group_id)));
        if version >= 3 {
            let mut member = MemberIdentity::default().with_member_id(str_bytes(&member_id));
            if version >= 5 {
                member.reason = Some(StrBytes::from_static_str("the consumer is closing"));
            }
            request.members = vec![member];
        } else {
            request.member_id = str_bytes(&member_id);
        }
        let response = connection.request_at(&request, version).await?;
        self.membership.lock().unwrap().member_id.clear();
        match Error::kafka(response.error_code, format!("LeaveGroup {}", self.group_id)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Heartbeats every `heartbeat.interval.ms` until aborted.
pub(crate) fn spawn_heartbeat(shared: Arc<GroupShared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = shared.config.heartbeat_interval;
        let timeout = shared.config.session_timeout;
        loop {
            tokio::time::sleep(interval).await;
            match tokio::time::timeout(timeout, shared.heartbeat()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(group = %shared.group_id, error = %e, "heartbeat failed")
                }
                Err(_) => tracing::debug!(group = %shared.group_id, "heartbeat timed out"),
            }
        }
    })
}
