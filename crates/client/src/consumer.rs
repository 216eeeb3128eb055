//! The async consumer: `assign` partitions or `subscribe` to topics in a group (classic protocol with the range
//! assignor, or the KIP-848 consumer protocol with a server-side assignor: see [`kip848`]), `poll` records,
//! `seek` by offset or timestamp (replay), commit sync/async/auto, pause/resume, lag.
//!
//! Like Kafka's Java consumer it is driven by its owner: `poll` takes `&mut self`, does any pending rebalance,
//! resolves unknown positions (committed offset, else `auto.offset.reset`), then sends one long-poll Fetch per
//! partition leader. In the background run heartbeats (see [`group`] and [`kip848`]) and the fetch that `poll`
//! sends ahead when it returns records, decoded there, so that the broker's read, the network and the decoding
//! of the next records overlap the owner's processing of these ([`Prefetch`]).

mod assignor;
mod config;
mod group;
mod kip848;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use strom_protocol::kafka::messages::fetch_request::{FetchPartition, FetchTopic};
use strom_protocol::kafka::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use strom_protocol::kafka::messages::{FetchRequest, ListOffsetsRequest, TopicName};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use assignor::{decode_subscription_user_data, range_assign, RANGE};
pub use config::{ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};
pub use records::{ConsumerGroupMetadata, ConsumerRecord, OffsetAndMetadata, TopicPartition};
pub use strom_protocol::kafka::records::TimestampType;

use crate::cluster::{Cluster, ClusterConfig};
use crate::connection::ConnectionConfig;
use crate::error::{is_metadata_error, Error};
use config::millis;
use group::GroupShared;
use kip848::{Kip848, Update};

/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

#[derive(Debug, Default, Clone)]
struct PartitionState {
    /// The next offset to fetch; `None` until resolved.
    position: Option<i64>,
    /// Skip the committed offset when resolving: the position was out of range, so only the reset policy applies.
    reset_only: bool,
    paused: bool,
    /// From the last fetch response.
    high_watermark: Option<i64>,
}

/// The consumer. See the module documentation.
pub struct Consumer {
    config: ConsumerConfig,
    cluster: Arc<Cluster>,
    /// Topics of `subscribe`; empty when partitions are assigned by hand (or not at all).
    subscription: Vec<String>,
    assignment: BTreeMap<TopicPartition, PartitionState>,
    group: Option<Arc<GroupShared>>,
    /// Set with `group.protocol=consumer`: membership by ConsumerGroupHeartbeat instead of JoinGroup.
    kip848: Option<Arc<Kip848>>,
    heartbeat: Option<JoinHandle<()>>,
    next_auto_commit: Instant,
    /// `poll` returned early for the pending rejoin (`return_before_rejoin`): the next one rejoins.
    rejoin_announced: bool,
    /// The fetch `poll` sent ahead when it returned records.
    prefetch: Option<Prefetch>,
}

/// A Fetch in flight, from a background task that also decodes the answers. `poll` sends one ahead when it
/// returns records, for the partitions it reads at their new positions: the broker reads and the records are
/// decoded while the owner processes the last ones (as the Java consumer's fetcher and librdkafka's prefetch
/// do). The next `poll` takes it if it would ask for exactly the same; after a seek, a pause or a rebalance it
/// is dropped, which aborts it, and its records are never handed out.
struct Prefetch {
    fetchable: Vec<(TopicPartition, i64)>,
    handle: JoinHandle<FetchOutcome>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// What a fetch brought back: per leader, its partitions decoded, or why the request failed.
struct FetchOutcome {
    leaders: Vec<Result<Vec<FetchedPartition>, Error>>,
    /// Some partition had no known leader, so it was not asked for.
    leaderless: bool,
}

struct FetchedPartition {
    tp: TopicPartition,
    /// Where the fetch started.
    position: i64,
    error_code: i16,
    high_watermark: i64,
    decoded: Result<records::Decoded, String>,
}

/// Decodes one leader's Fetch response, for the partitions it was asked for.
fn decode_fetch(
    partitions: Vec<(TopicPartition, i64)>,
    response: Result<strom_protocol::kafka::messages::FetchResponse, Error>,
    read_committed: bool,
) -> Result<Vec<FetchedPartition>, Error> {
    let response = response?;
    if let Some(e) = Error::kafka(response.error_code, "Fetch") {
        return Err(e);
    }
    let requested: BTreeMap<TopicPartition, i64> = partitions.into_iter().collect();
    let mut out = Vec::new();
    for topic in response.responses {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.topic.0.to_string(), p.partition_index);
            let Some(&position) = requested.get(&tp) else {
                continue;
            };
            let decoded = match p.records.filter(|r| !r.is_empty()) {
                Some(data) if p.error_code == 0 => {
                    let aborted = read_committed.then(|| {
                        records::Aborted::new(
                            p.aborted_transactions
                                .iter()
                                .flatten()
                                .map(|a| (a.producer_id.0, a.first_offset)),
                        )
                    });
                    records::decode_partition(&tp.topic, tp.partition, data, position, aborted)
                }
                _ => Ok(records::Decoded::default()),
            };
            out.push(FetchedPartition {
                tp,
                position,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                decoded,
            });
        }
    }
    Ok(out)
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.config.group_id)
            .field("subscription", &self.subscription)
            .field("assignment", &self.assignment.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects to the cluster. Nothing is assigned yet: call [`assign`](Self::assign) or
    /// [`subscribe`](Self::subscribe).
    pub async fn new(config: ConsumerConfig) -> Result<Self, Error> {
        let config = config.validated()?;
        let cluster = Cluster::connect(ClusterConfig {
            bootstrap_servers: config.bootstrap_servers.clone(),
            connection: ConnectionConfig {
                client_id: config.client_id.clone(),
                // A fetch may be held by the broker for fetch.max.wait.ms before it answers.
                request_timeout: config.request_timeout + config.fetch_max_wait,
                ..ConnectionConfig::default()
            },
            allow_auto_topic_creation: config.allow_auto_create_topics,
        })
        .await?;
        let group = config
            .group_id
            .clone()
            .map(|g| Arc::new(GroupShared::new(g, cluster.clone(), config.clone())));
        let kip848 = group
            .as_ref()
            .filter(|_| config.group_protocol == GroupProtocol::Consumer)
            .map(|g| Arc::new(Kip848::new(g.clone(), cluster.clone(), config.clone())));
        Ok(Self {
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            config,
            cluster,
            subscription: Vec::new(),
            assignment: BTreeMap::new(),
            group,
            kip848,
            heartbeat: None,
            rejoin_announced: false,
            prefetch: None,
        })
    }

    /// The cluster view this consumer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Reads exactly these partitions, without group management. Positions of partitions already assigned are
    /// kept; new ones start from the committed offset (with a `group.id`) or `auto.offset.reset`.
    pub async fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        if !self.subscription.is_empty() {
            return Err(Error::Config(
                "assign after subscribe: call unsubscribe first".into(),
            ));
        }
        let partitions: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        for tp in &partitions {
            let topic = self.cluster.topic_or_fetch(&tp.topic).await?;
            if usize::try_from(tp.partition).map_or(true, |p| p >= topic.partition_count()) {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    count: topic.partition_count(),
                });
            }
        }
        self.set_assignment(partitions);
        Ok(())
    }

    /// Joins the group (`group.id`) subscribed to `topics`; the partitions come with the next `poll`.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<(), Error> {
        let Some(group) = &self.group else {
            return Err(Error::Config("subscribe needs a group.id".into()));
        };
        if topics.is_empty() {
            return Err(Error::Config(
                "subscribe to no topic: use unsubscribe".into(),
            ));
        }
        let topics: Vec<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        if self.subscription.is_empty() {
            self.assignment.clear();
        }
        self.cluster.add_topics(topics.iter().map(String::as_str));
        match &self.kip848 {
            Some(k) => k.subscribe(&topics),
            None => group.request_rejoin(),
        }
        self.subscription = topics;
        Ok(())
    }

    /// Leaves the group (if subscribed) and drops every assigned partition.
    pub async fn unsubscribe(&mut self) -> Result<(), Error> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let was_subscribed = !self.subscription.is_empty();
        self.subscription.clear();
        self.assignment.clear();
        match (&self.kip848, &self.group) {
            (Some(k), _) if was_subscribed => k.leave().await?,
            (None, Some(g)) if was_subscribed => g.leave().await?,
            _ => {}
        }
        Ok(())
    }

    /// The partitions assigned now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.keys().cloned().collect()
    }

    /// Whether the next `poll` will rejoin the group (a rebalance began, or the assignment changed): the moment
    /// for an owner that commits by hand to commit what it processed, before its partitions may move.
    pub fn rebalance_pending(&self) -> bool {
        match (&self.kip848, &self.group) {
            _ if self.subscription.is_empty() => false,
            (Some(k), _) => k.has_update(),
            (None, Some(g)) => g.needs_rejoin(),
            (None, None) => false,
        }
    }

    /// The topics of the current subscription.
    pub fn subscription(&self) -> &[String] {
        &self.subscription
    }

    fn set_assignment(&mut self, partitions: BTreeSet<TopicPartition>) {
        let mut old = std::mem::take(&mut self.assignment);
        self.assignment = partitions
            .into_iter()
            .map(|tp| {
                let state = old.remove(&tp).unwrap_or_default();
                (tp, state)
            })
            .collect();
    }

    /// Returns the records that arrived within `timeout` (possibly none). Does any pending group rebalance
    /// first, and commits in the background when auto-commit is due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.config.return_before_rejoin
                && !self.rejoin_announced
                && self.rebalance_pending()
            {
                self.rejoin_announced = true;
                return Ok(Vec::new());
            }
            let rejoining = self.rebalance_pending();
            self.ensure_membership().await?;
            if rejoining {
                self.rejoin_announced = false;
            }
            self.maybe_auto_commit();
            self.resolve_positions().await?;
            let now = Instant::now();
            let fetchable = self.fetchable();
            if fetchable.is_empty() {
                self.prefetch = None;
                // Nothing to read until a rebalance assigns something, or the caller resumes or assigns.
                if now >= deadline {
                    return Ok(Vec::new());
                }
                match (&self.group, &self.kip848) {
                    _ if self.subscription.is_empty() => tokio::time::sleep_until(deadline).await,
                    (_, Some(k)) => {
                        let changed = k.changed.notified();
                        if k.has_update() {
                            continue;
                        }
                        let _ = tokio::time::timeout_at(deadline, changed).await;
                    }
                    (Some(g), None) => {
                        let raised = g.rejoin_raised.notified();
                        if g.needs_rejoin() {
                            continue;
                        }
                        let _ = tokio::time::timeout_at(deadline, raised).await;
                    }
                    (None, None) => tokio::time::sleep_until(deadline).await,
                }
                continue;
            }
            // The fetch sent ahead serves only if it asked for exactly this; otherwise dropping it aborts it.
            let mut fetch = match self.prefetch.take() {
                Some(prefetch) if prefetch.fetchable == fetchable => prefetch,
                _ => {
                    let wait = self
                        .config
                        .fetch_max_wait
                        .min(deadline.saturating_duration_since(now));
                    self.send_fetch(fetchable, wait)
                }
            };
            let outcome = match tokio::time::timeout_at(deadline, &mut fetch.handle).await {
                Ok(joined) => joined.map_err(|e| Error::Decode {
                    addr: "the fetch task".into(),
                    api: strom_protocol::kafka::messages::ApiKey::Fetch,
                    reason: e.to_string(),
                })?,
                Err(_) => {
                    // Still in flight: the next poll takes it.
                    self.prefetch = Some(fetch);
                    return Ok(Vec::new());
                }
            };
            let (records, refresh) = self.apply_fetch(outcome)?;
            if refresh {
                if let Err(e) = self.cluster.refresh().await {
                    tracing::debug!(error = %e, "metadata refresh failed");
                }
                if records.is_empty() {
                    // Leadership is moving; nothing to wait on but time before the next attempt.
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
            if !records.is_empty() {
                // The next records are read and decoded while the owner processes these.
                let next = self.fetchable();
                if !next.is_empty() {
                    self.prefetch = Some(self.send_fetch(next, self.config.fetch_max_wait));
                }
                return Ok(records);
            }
            if Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    async fn ensure_membership(&mut self) -> Result<(), Error> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        if let Some(k) = self.kip848.clone() {
            return self.reconcile(&group, k).await;
        }
        if self.subscription.is_empty() || !group.needs_rejoin() {
            return Ok(());
        }
        if self.config.enable_auto_commit {
            // Hand over what was read: the next owner starts where this member stopped.
            if let Err(e) = group.commit(&self.positions()).await {
                tracing::debug!(error = %e, "commit before rejoining failed");
            }
        }
        let assigned = group.join(&self.subscription).await?;
        // Positions of partitions kept are valid; the others start from the group's committed offsets.
        self.set_assignment(assigned.into_iter().collect());
        if self.heartbeat.as_ref().is_none_or(|h| h.is_finished()) {
            self.heartbeat = Some(group::spawn_heartbeat(group));
        }
        Ok(())
    }

    /// The consumer protocol's counterpart of a rejoin: keeps the heartbeat running and applies the latest
    /// assignment the broker sent.
    async fn reconcile(&mut self, group: &Arc<GroupShared>, k: Arc<Kip848>) -> Result<(), Error> {
        if self.subscription.is_empty() {
            return Ok(());
        }
        if self.heartbeat.as_ref().is_none_or(|h| h.is_finished()) {
            self.heartbeat = Some(k.clone().spawn());
        }
        match k.next_update().await? {
            Update::None => {}
            Update::Lost => self.assignment.clear(),
            Update::Assign { partitions, ticket } => {
                if self.config.enable_auto_commit {
                    // Hand over what was read: the next owner starts where this member stopped. The broker
                    // gives the partitions to it only after the heartbeat that no longer lists them.
                    let revoked: BTreeMap<TopicPartition, i64> = self
                        .positions()
                        .into_iter()
                        .filter(|(tp, _)| !partitions.contains(tp))
                        .collect();
                    if let Err(e) = group.commit(&revoked).await {
                        tracing::debug!(error = %e, "commit of revoked partitions failed");
                    }
                }
                tracing::debug!(group = %group.group_id, ?partitions, "assignment");
                self.set_assignment(partitions);
                k.owned(ticket);
            }
        }
        Ok(())
    }

    fn maybe_auto_commit(&mut self) {
        let Some(group) = &self.group else {
            return;
        };
        if !self.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
        let offsets = self.positions();
        let group = group.clone();
        tokio::spawn(async move {
            if let Err(e) = group.commit(&offsets).await {
                tracing::debug!(error = %e, "auto-commit failed");
            }
        });
    }

    /// Gives every partition without a position one: the committed offset, else `auto.offset.reset`.
    async fn resolve_positions(&mut self) -> Result<(), Error> {
        let unknown: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut to_reset = Vec::new();
        let committed = match &self.group {
            Some(g) => {
                let ask: Vec<TopicPartition> = unknown
                    .iter()
                    .filter(|tp| !self.assignment[*tp].reset_only)
                    .cloned()
                    .collect();
                if ask.is_empty() {
                    BTreeMap::new()
                } else {
                    match g.committed(&ask).await {
                        Ok(committed) => committed,
                        // A transaction still commits offsets of these partitions (read_committed asks for stable
                        // offsets): they stay without a position, and the next poll asks again.
                        Err(e) if e.kafka_code() == Some(ResponseError::UnstableOffsetCommit) => {
                            tracing::debug!(error = %e, "committed offsets not stable yet");
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            None => BTreeMap::new(),
        };
        for tp in unknown {
            match committed.get(&tp).copied().flatten() {
                Some(offset) => {
                    if let Some(s) = self.assignment.get_mut(&tp) {
                        s.position = Some(offset);
                    }
                }
                None => to_reset.push(tp),
            }
        }
        if to_reset.is_empty() {
            return Ok(());
        }
        let timestamp = match self.config.auto_offset_reset {
            OffsetReset::Earliest => EARLIEST,
            OffsetReset::Latest => LATEST,
            OffsetReset::None => {
                return Err(Error::Config(format!(
                    "{} has no valid committed offset and auto.offset.reset=none",
                    to_reset[0]
                )))
            }
        };
        let found = self
            .list_offsets(to_reset.iter().map(|tp| (tp.clone(), timestamp)).collect())
            .await?;
        for (tp, offset) in found {
            if let Some(s) = self.assignment.get_mut(&tp) {
                s.position = Some(offset);
                s.reset_only = false;
            }
        }
        Ok(())
    }

    /// The partitions a fetch asks for now, with their positions: assigned, not paused, position known.
    fn fetchable(&self) -> Vec<(TopicPartition, i64)> {
        self.assignment
            .iter()
            .filter(|(_, s)| !s.paused)
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    /// Sends one Fetch per partition leader, in parallel, from a background task that also decodes the
    /// answers. A partition whose leader is unknown is left out and asks for a metadata refresh.
    fn send_fetch(&self, fetchable: Vec<(TopicPartition, i64)>, wait: Duration) -> Prefetch {
        let metadata = self.cluster.metadata();
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let mut leaderless = false;
        let read_committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
        for (tp, position) in &fetchable {
            match metadata
                .topics
                .get(&tp.topic)
                .and_then(|t| t.leader(tp.partition))
            {
                Some(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), *position)),
                None => leaderless = true,
            }
        }
        let requests: Vec<_> = by_leader
            .into_iter()
            .map(|(leader, partitions)| {
                let request = self.fetch_request(&partitions, wait);
                let cluster = self.cluster.clone();
                async move {
                    let response = async {
                        let connection = cluster.broker_connection(leader).await?;
                        connection.request(&request).await
                    }
                    .await;
                    decode_fetch(partitions, response, read_committed)
                }
            })
            .collect();
        let handle = tokio::spawn(async move {
            FetchOutcome {
                leaders: join_all(requests).await,
                leaderless,
            }
        });
        Prefetch { fetchable, handle }
    }

    /// Applies a fetch's answers: positions advance past the records returned. Returns the records in
    /// partition order and whether metadata needs a refresh.
    fn apply_fetch(&mut self, outcome: FetchOutcome) -> Result<(Vec<ConsumerRecord>, bool), Error> {
        let mut refresh = outcome.leaderless;
        let total = outcome
            .leaders
            .iter()
            .flatten()
            .flatten()
            .filter_map(|p| p.decoded.as_ref().ok())
            .map(|d| d.records.len())
            .sum();
        let mut records = Vec::with_capacity(total);
        for leader in outcome.leaders {
            let partitions = match leader {
                Ok(partitions) => partitions,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed; retrying after a metadata refresh");
                    refresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for p in partitions {
                refresh |= self.fetched(p, &mut records)?;
            }
        }
        Ok((records, refresh))
    }

    fn fetch_request(&self, partitions: &[(TopicPartition, i64)], wait: Duration) -> FetchRequest {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, position) in partitions {
            topics.entry(&tp.topic).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_fetch_offset(*position)
                    .with_partition_max_bytes(self.config.max_partition_fetch_bytes),
            );
        }
        FetchRequest::default()
            .with_max_wait_ms(millis(wait))
            .with_min_bytes(self.config.fetch_min_bytes)
            .with_max_bytes(self.config.fetch_max_bytes)
            .with_isolation_level(self.config.isolation_level.wire_value())
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
    }

    /// Applies one partition of a fetch response; returns whether metadata needs a refresh.
    fn fetched(
        &mut self,
        p: FetchedPartition,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<bool, Error> {
        let reset = self.config.auto_offset_reset;
        let FetchedPartition {
            tp,
            position,
            error_code,
            high_watermark,
            decoded,
        } = p;
        let Some(state) = self.assignment.get_mut(&tp) else {
            return Ok(false);
        };
        // The owner may have sought elsewhere, or paused the partition, since the request left.
        if state.position != Some(position) || state.paused {
            return Ok(false);
        }
        match ResponseError::try_from_code(error_code) {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                if reset == OffsetReset::None {
                    return Err(Error::kafka(
                        error_code,
                        format!("fetch of {tp} at offset {position} (auto.offset.reset=none)"),
                    )
                    .expect("error code"));
                }
                tracing::info!(%tp, position, "offset out of range; resetting per auto.offset.reset");
                state.position = None;
                state.reset_only = true;
                return Ok(false);
            }
            Some(_) if is_metadata_error(error_code) => return Ok(true),
            Some(e) if e.is_retriable() => return Ok(false),
            Some(_) => {
                return Err(Error::kafka(error_code, format!("fetch of {tp}")).expect("code"))
            }
        }
        state.high_watermark = Some(high_watermark);
        let decoded = decoded.map_err(|reason| Error::Decode {
            addr: format!("leader of {tp}"),
            api: strom_protocol::kafka::messages::ApiKey::Fetch,
            reason,
        })?;
        if let Some(next) = decoded.next_offset {
            state.position = Some(next.max(position));
        }
        out.extend(decoded.records);
        Ok(false)
    }

    /// ListOffsets for each partition at its timestamp (or EARLIEST/LATEST); a timestamp after the last record
    /// gives the log end offset.
    async fn list_offsets(
        &self,
        queries: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut pending = queries;
        let mut out = BTreeMap::new();
        loop {
            let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
            let mut missing_leader = false;
            for (tp, ts) in &pending {
                let topic = self.cluster.topic_or_fetch(&tp.topic).await?;
                match topic.leader(tp.partition) {
                    Some(l) => by_leader.entry(l).or_default().push((tp.clone(), *ts)),
                    None => missing_leader = true,
                }
            }
            let mut retry = missing_leader;
            let mut last_error = None;
            for (leader, partitions) in by_leader {
                let connection = self.cluster.broker_connection(leader).await?;
                let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
                for (tp, ts) in &partitions {
                    topics.entry(&tp.topic).or_default().push(
                        ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_timestamp(*ts),
                    );
                }
                let version =
                    connection.version(strom_protocol::kafka::messages::ApiKey::ListOffsets)?;
                let mut request = ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                ListOffsetsTopic::default()
                                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    );
                if version >= 2 {
                    request.isolation_level = self.config.isolation_level.wire_value();
                }
                let response = connection.request_at(&request, version).await?;
                for t in response.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        if p.error_code != 0 {
                            let e = Error::kafka(p.error_code, format!("ListOffsets {tp}"))
                                .expect("code");
                            if !e.is_retriable() {
                                return Err(e);
                            }
                            retry = true;
                            last_error = Some(e);
                            continue;
                        }
                        if pending.remove(&tp).is_some() {
                            out.insert(tp, p.offset);
                        }
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            if !retry || Instant::now() >= deadline {
                return Err(last_error.unwrap_or_else(|| Error::Timeout {
                    what: format!("ListOffsets for {} partitions", pending.len()),
                    timeout: self.config.request_timeout,
                }));
            }
            let _ = self.cluster.refresh().await;
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        // A timestamp after every record answers -1: the position is then the end of the log.
        let unresolved: Vec<TopicPartition> = out
            .iter()
            .filter(|(_, o)| **o < 0)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !unresolved.is_empty() {
            let ends = Box::pin(
                self.list_offsets(unresolved.into_iter().map(|tp| (tp, LATEST)).collect()),
            )
            .await?;
            out.extend(ends);
        }
        Ok(out)
    }

    fn assigned_or_all(&self, partitions: &[TopicPartition]) -> Result<Vec<TopicPartition>, Error> {
        if partitions.is_empty() {
            return Ok(self.assignment());
        }
        for tp in partitions {
            if !self.assignment.contains_key(tp) {
                return Err(Error::Config(format!(
                    "{tp} is not assigned to this consumer"
                )));
            }
        }
        Ok(partitions.to_vec())
    }

    /// The next offset `poll` reads from `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.assignment.get(tp).and_then(|s| s.position)
    }

    /// Reads `tp` from `offset` on the next poll.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
        let state = self
            .assignment
            .get_mut(tp)
            .ok_or_else(|| Error::Config(format!("{tp} is not assigned to this consumer")))?;
        state.position = Some(offset);
        state.reset_only = false;
        Ok(())
    }

    /// Moves `partitions` (all assigned ones when empty) to their log start offset.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(partitions, |_| EARLIEST).await
    }

    /// Moves `partitions` (all assigned ones when empty) to their log end offset.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(partitions, |_| LATEST).await
    }

    /// Moves `partitions` (all assigned ones when empty) to the first record whose timestamp is at or after
    /// `timestamp` (ms since the epoch), or to the end when there is none: a replay from that moment.
    pub async fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<(), Error> {
        if timestamp < 0 {
            return Err(Error::Config(format!("negative timestamp {timestamp}")));
        }
        self.seek_to(partitions, |_| timestamp).await
    }

    async fn seek_to(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: impl Fn(&TopicPartition) -> i64,
    ) -> Result<(), Error> {
        let partitions = self.assigned_or_all(partitions)?;
        let queries = partitions
            .iter()
            .map(|tp| (tp.clone(), timestamp(tp)))
            .collect();
        for (tp, offset) in self.list_offsets(queries).await? {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// The offsets of `partitions` (all assigned ones when empty) at the given timestamps, without moving.
    pub async fn offsets_for_times(
        &self,
        queries: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        self.list_offsets(queries).await
    }

    fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.assignment
            .iter()
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    fn group(&self) -> Result<&Arc<GroupShared>, Error> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::Config("committing offsets needs a group.id".into()))
    }

    /// This consumer's group, generation and member id now, for a transactional producer's
    /// `send_offsets_to_transaction`. Errors without a `group.id`.
    pub fn group_metadata(&self) -> Result<ConsumerGroupMetadata, Error> {
        let group = self.group()?;
        let membership = group.membership();
        let member = membership.generation >= 0;
        Ok(ConsumerGroupMetadata {
            group_id: group.group_id.clone(),
            generation_id: membership.generation,
            member_id: if member {
                membership.member_id
            } else {
                String::new()
            },
            group_instance_id: None,
        })
    }

    /// Commits the current positions (everything `poll` returned so far) and waits for the answer.
    pub async fn commit_sync(&self) -> Result<(), Error> {
        self.group()?.commit(&self.positions()).await
    }

    /// Commits explicit offsets (the next offset to read per partition) and waits for the answer.
    pub async fn commit_offsets_sync(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        self.group()?.commit(offsets).await
    }

    /// Commits the current positions in the background; await the returned future for the outcome, or drop it.
    pub fn commit_async(
        &self,
    ) -> Result<impl Future<Output = Result<(), Error>> + Send + 'static, Error> {
        let group = self.group()?.clone();
        let offsets = self.positions();
        let task = tokio::spawn(async move { group.commit(&offsets).await });
        Ok(async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::ConnectionClosed {
                    addr: "group coordinator".into(),
                    reason: format!("commit task ended: {e}"),
                })
            })
        })
    }

    /// The group's committed offsets for `partitions` (all assigned ones when empty); `None`: nothing committed.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
        let partitions = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.to_vec()
        };
        self.group()?.committed(&partitions).await
    }

    /// Commits explicit offsets with metadata and waits for the answer.
    pub async fn commit_offsets_with_metadata_sync(
        &self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), Error> {
        self.group()?.commit_with_metadata(offsets).await
    }

    /// The group's committed offsets and their metadata for `partitions` (all assigned ones when empty).
    pub async fn committed_with_metadata(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, Error> {
        let partitions = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.to_vec()
        };
        self.group()?.committed_with_metadata(&partitions).await
    }

    /// Stops fetching `partitions` until [`resume`](Self::resume); positions and assignment stay.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, true)
    }

    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, false)
    }

    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) -> Result<(), Error> {
        for tp in self.assigned_or_all(partitions)? {
            if let Some(s) = self.assignment.get_mut(&tp) {
                s.paused = paused;
            }
        }
        Ok(())
    }

    /// Records between the position and the high watermark, per assigned partition, as of the last fetch
    /// (partitions not fetched yet are absent).
    pub fn lag(&self) -> BTreeMap<TopicPartition, i64> {
        self.assignment
            .iter()
            .filter_map(|(tp, s)| match (s.position, s.high_watermark) {
                (Some(p), Some(hw)) => Some((tp.clone(), (hw - p).max(0))),
                _ => None,
            })
            .collect()
    }

    /// Commits (with auto-commit on), leaves the group and stops the heartbeat.
    pub async fn close(mut self) -> Result<(), Error> {
        let mut result = Ok(());
        if let Some(group) = self.group.clone() {
            if self.config.enable_auto_commit && !self.assignment.is_empty() {
                result = group.commit(&self.positions()).await;
            }
            if let Some(h) = self.heartbeat.take() {
                h.abort();
            }
            if !self.subscription.is_empty() {
                let left = match &self.kip848 {
                    Some(k) => k.leave().await,
                    None => group.leave().await,
                };
                if let Err(e) = left {
                    tracing::debug!(error = %e, "leaving the group failed");
                }
            }
        }
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}
