//! Membership in a consumer group with the KIP-848 consumer protocol (`group.protocol=consumer`).
//!
//! The broker assigns the partitions: a background task sends ConsumerGroupHeartbeat at the interval the broker
//! answers with, reporting the partitions this member owns, and stores any new assignment it receives. The
//! consumer's own task applies that assignment when it polls (commits and drops revoked partitions, adds new
//! ones) and then hands the new owned set back, which the next heartbeat, sent at once, reports: that report is
//! the acknowledgement of a revocation the broker waits for before giving the partitions to another member.
//! As with the classic protocol, what the application reads changes only inside its poll.
//!
//! Commits go through [`GroupShared`] with the member epoch in place of the generation.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_protocol::kafka::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use strom_protocol::kafka::messages::consumer_group_heartbeat_response::TopicPartitions as AssignedPartitions;
use strom_protocol::kafka::messages::metadata_request::MetadataRequestTopic;
use strom_protocol::kafka::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, GroupId, MetadataRequest, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::config::{millis, ConsumerConfig};
use super::group::{is_coordinator_error, GroupShared};
use super::records::TopicPartition;
use crate::cluster::Cluster;
use crate::error::Error;

const JOIN_EPOCH: i32 = 0;
const LEAVE_EPOCH: i32 = -1;

/// Metadata v10 added topic ids to requests; v12 lets a request name a topic by id alone.
const METADATA_BY_ID: i16 = 12;

/// What the consumer must do to its partitions, from [`Kip848::next_update`].
pub(crate) enum Update {
    None,
    /// The broker fenced this member or forgot it: everything it owned may already belong to another member, so
    /// it is dropped without a commit (which would be refused anyway) and the member rejoins with epoch 0.
    Lost,
    /// The new assignment, with topic names; hand `ticket` to [`Kip848::owned`] once applied.
    Assign {
        partitions: BTreeSet<TopicPartition>,
        ticket: Ticket,
    },
}

/// An assignment being applied, as the next heartbeats must report it.
pub(crate) struct Ticket {
    incarnation: u64,
    owned: Vec<OwnedPartitions>,
}

struct State {
    member_id: String,
    epoch: i32,
    subscription: Vec<String>,
    /// Send the subscription and rebalance timeout with the next heartbeat (join, or a new subscription).
    send_full: bool,
    /// What this member reports owning: the assignment the consumer last applied.
    owned: Vec<OwnedPartitions>,
    /// An assignment received and not applied by the consumer yet.
    target: Option<Vec<AssignedPartitions>>,
    lost: bool,
    /// Bumped whenever the member loses its partitions, so an assignment applied from before is not reported.
    incarnation: u64,
    /// A non-retriable heartbeat error, returned by the next poll.
    fatal: Option<(i16, String)>,
    interval: Duration,
}

/// State shared between the consumer and its heartbeat task.
pub(crate) struct Kip848 {
    group: Arc<GroupShared>,
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    state: Mutex<State>,
    /// Topic names by topic id (as bytes: the id type is not reachable by name from here).
    names: Mutex<HashMap<[u8; 16], String>>,
    /// Asks the heartbeat task for a heartbeat now (a revocation to acknowledge, a rejoin).
    wake: Notify,
    /// Woken when there is an update for the consumer, so a poll with nothing to fetch reacts at once.
    pub changed: Notify,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A random member id for ConsumerGroupHeartbeat v1+, where the client names itself (KIP-1082).
fn generate_member_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // RandomState is seeded from the OS per process and differs per instance: enough to keep ids apart without
    // a dependency on a random number generator.
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(salt);
        h.finish()
    };
    let (a, b) = (half(1), half(2));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl Kip848 {
    pub fn new(group: Arc<GroupShared>, cluster: Arc<Cluster>, config: ConsumerConfig) -> Self {
        let interval = config.heartbeat_interval;
        Self {
            group,
            cluster,
            config,
            state: Mutex::new(State {
                member_id: String::new(),
                epoch: JOIN_EPOCH,
                subscription: Vec::new(),
                send_full: true,
                owned: Vec::new(),
                target: None,
                lost: false,
                incarnation: 0,
                fatal: None,
                interval,
            }),
            names: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// Sets the topics the next heartbeat subscribes to.
    pub fn subscribe(&self, topics: &[String]) {
        let mut s = self.state.lock().unwrap();
        s.subscription = topics.to_vec();
        s.send_full = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Whether a poll has something to act on.
    pub fn has_update(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.lost || s.target.is_some() || s.fatal.is_some()
    }

    /// The change the consumer must apply, if any. An assignment naming topics whose names cannot be resolved
    /// yet stays pending for the next poll.
    pub async fn next_update(&self) -> Result<Update, Error> {
        let (target, incarnation) = {
            let mut s = self.state.lock().unwrap();
            if let Some((code, message)) = s.fatal.take() {
                return Err(Error::kafka(code, message).expect("non-zero code"));
            }
            if std::mem::take(&mut s.lost) {
                return Ok(Update::Lost);
            }
            match s.target.take() {
                Some(t) => (t, s.incarnation),
                None => return Ok(Update::None),
            }
        };
        match self.resolve(&target).await {
            Ok(partitions) => Ok(Update::Assign {
                partitions,
                ticket: Ticket {
                    incarnation,
                    owned: target
                        .iter()
                        .map(|t| {
                            OwnedPartitions::default()
                                .with_topic_id(t.topic_id)
                                .with_partitions(t.partitions.clone())
                        })
                        .collect(),
                },
            }),
            Err(e) => {
                {
                    let mut s = self.state.lock().unwrap();
                    if s.target.is_none() && s.incarnation == incarnation {
                        s.target = Some(target);
                    }
                }
                if !e.is_retriable() {
                    return Err(e);
                }
                tracing::debug!(
                    group = %self.group.group_id,
                    error = %e,
                    "resolving the assignment's topics failed; retrying"
                );
                // The pending assignment makes the next poll come straight back here.
                tokio::time::sleep(self.config.retry_backoff).await;
                Ok(Update::None)
            }
        }
    }

    /// The consumer applied `ticket`'s assignment: report it (at once, as it may acknowledge a revocation).
    pub fn owned(&self, ticket: Ticket) {
        let mut s = self.state.lock().unwrap();
        if s.incarnation != ticket.incarnation {
            return;
        }
        s.owned = ticket.owned;
        drop(s);
        self.wake.notify_one();
    }

    /// Topic names for the assignment's topic ids, from the cache or Metadata by topic id.
    async fn resolve(
        &self,
        target: &[AssignedPartitions],
    ) -> Result<BTreeSet<TopicPartition>, Error> {
        let missing: Vec<&AssignedPartitions> = {
            let names = self.names.lock().unwrap();
            target
                .iter()
                .filter(|t| !names.contains_key(t.topic_id.as_bytes()))
                .collect()
        };
        if !missing.is_empty() {
            let connection = self.cluster.any_connection().await?;
            let version = connection.version(ApiKey::Metadata)?;
            if version < METADATA_BY_ID {
                return Err(Error::UnsupportedVersion {
                    addr: connection.addr().to_string(),
                    api: ApiKey::Metadata,
                    broker: None,
                    client_min: METADATA_BY_ID,
                    client_max: METADATA_BY_ID,
                });
            }
            let request = MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(
                    missing
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_topic_id(t.topic_id)
                                .with_name(None)
                        })
                        .collect(),
                ));
            let response = connection.request_at(&request, version).await?;
            let mut names = self.names.lock().unwrap();
            for t in response.topics {
                if let (0, Some(name)) = (t.error_code, t.name) {
                    names.insert(*t.topic_id.as_bytes(), name.0.to_string());
                }
            }
        }
        let names = self.names.lock().unwrap();
        let mut out = BTreeSet::new();
        for t in target {
            // A topic deleted since the assignment: retriable, the broker sends a new assignment soon.
            let name = names.get(t.topic_id.as_bytes()).ok_or_else(|| {
                Error::kafka(
                    ResponseError::UnknownTopicId.code(),
                    format!("topic id {} in the assignment", t.topic_id),
                )
                .expect("non-zero code")
            })?;
            out.extend(
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(name.clone(), *p)),
            );
        }
        Ok(out)
    }

    /// Heartbeats until aborted: at the broker's interval, at once when woken, after a backoff on failure.
    pub fn spawn(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let wait = match tokio::time::timeout(self.config.session_timeout, self.heartbeat())
                    .await
                {
                    Ok(Ok(())) => self.state.lock().unwrap().interval,
                    Ok(Err(e)) => {
                        tracing::debug!(group = %self.group.group_id, error = %e, "heartbeat failed");
                        self.config.retry_backoff
                    }
                    Err(_) => {
                        tracing::debug!(group = %self.group.group_id, "heartbeat timed out");
                        self.config.retry_backoff
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                }
            }
        })
    }

    /// One ConsumerGroupHeartbeat, and what its answer means for the member.
    async fn heartbeat(&self) -> Result<(), Error> {
        let connection = self.group.coordinator().await?;
        let version = connection.version(ApiKey::ConsumerGroupHeartbeat)?;
        let (request, incarnation) = {
            let mut s = self.state.lock().unwrap();
            // v0: the broker names a new member; v1+: the client does (KIP-1082).
            if s.member_id.is_empty() && version >= 1 {
                s.member_id = generate_member_id();
            }
            let mut request = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(&self.group.group_id)))
                .with_member_id(str_bytes(&s.member_id))
                .with_member_epoch(s.epoch)
                .with_topic_partitions(Some(s.owned.clone()));
            if s.epoch == JOIN_EPOCH || s.send_full {
                request.rebalance_timeout_ms = millis(self.config.max_poll_interval);
                request.subscribed_topic_names = Some(
                    s.subscription
                        .iter()
                        .map(|t| TopicName(str_bytes(t)))
                        .collect(),
                );
                request.server_assignor =
                    self.config.group_remote_assignor.as_deref().map(str_bytes);
            }
            (request, s.incarnation)
        };
        let response = connection.request_at(&request, version).await?;
        let code = response.error_code;
        let mut s = self.state.lock().unwrap();
        match ResponseError::try_from_code(code) {
            None => {
                if s.incarnation != incarnation {
                    // Lost its partitions while this heartbeat was out: the rejoin comes next.
                    return Ok(());
                }
                if let Some(id) = response.member_id.filter(|m| !m.is_empty()) {
                    s.member_id = id.to_string();
                }
                s.epoch = response.member_epoch;
                s.send_full = false;
                if response.heartbeat_interval_ms > 0 {
                    s.interval = Duration::from_millis(response.heartbeat_interval_ms as u64);
                }
                self.group.set_membership(&s.member_id, s.epoch);
                if let Some(assignment) = response.assignment {
                    s.target = Some(assignment.topic_partitions);
                    drop(s);
                    self.changed.notify_waiters();
                }
                Ok(())
            }
            Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
                tracing::info!(
                    group = %self.group.group_id,
                    member = %s.member_id,
                    code,
                    "member fenced or unknown; dropping its partitions and rejoining"
                );
                s.epoch = JOIN_EPOCH;
                s.owned.clear();
                s.target = None;
                s.lost = true;
                s.incarnation += 1;
                s.send_full = true;
                self.group.set_membership(&s.member_id, -1);
                drop(s);
                self.changed.notify_waiters();
                self.wake.notify_one();
                Ok(())
            }
            Some(e) => {
                let message = format!(
                    "ConsumerGroupHeartbeat {}{}",
                    self.group.group_id,
                    response
                        .error_message
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                if is_coordinator_error(code) {
                    drop(s);
                    self.group.forget_coordinator().await;
                } else if !e.is_retriable() {
                    s.fatal = Some((code, message.clone()));
                    drop(s);
                    self.changed.notify_waiters();
                }
                Err(Error::kafka(code, message).expect("non-zero code"))
            }
        }
    }

    /// Leaves the group (epoch -1) so the broker hands this member's partitions to the others at once. The
    /// heartbeat task must be stopped first.
    pub async fn leave(&self) -> Result<(), Error> {
        let member_id = {
            let mut s = self.state.lock().unwrap();
            let joined = s.epoch > JOIN_EPOCH;
            s.epoch = JOIN_EPOCH;
            s.owned.clear();
            s.target = None;
            s.lost = false;
            s.incarnation += 1;
            s.send_full = true;
            if !joined || s.member_id.is_empty() {
                None
            } else {
                Some(s.member_id.clone())
            }
        };
        self.group.set_membership("", -1);
        let Some(member_id) = member_id else {
            return Ok(());
        };
        let connection = self.group.coordinator().await?;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group.group_id)))
            .with_member_id(str_bytes(&member_id))
            .with_member_epoch(LEAVE_EPOCH);
        let response = connection.request(&request).await?;
        match ResponseError::try_from_code(response.error_code) {
            // Already gone (session expired, or fenced): nothing to leave.
            None | Some(ResponseError::UnknownMemberId | ResponseError::GroupIdNotFound) => Ok(()),
            Some(_) => Err(Error::kafka(
                response.error_code,
                format!("leaving group {}", self.group.group_id),
            )
            .expect("non-zero code")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_member_ids_differ() {
        let a = generate_member_id();
        let b = generate_member_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36, "{a}");
    }
}
