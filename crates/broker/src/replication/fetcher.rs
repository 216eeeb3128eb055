//! A follower's fetcher: one task per leader broker, fetching every partition this broker follows from it with
//! Kafka's Fetch (v12, `replica_id` = this broker), as a Kafka follower does.
//!
//! Each round sends every followed partition at its log end offset with the epoch of its last batch, waits at
//! the leader up to `replica.fetch.wait.max.ms` for new records, and applies each partition's answer
//! (`follower::decide`). The partition checks under its role lock that it still follows at the epoch the fetch
//! was sent with, so a response that arrives after a leadership change is dropped.

use std::sync::Arc;
use std::time::Duration;

use strom_client::{Connection, ConnectionConfig};
use strom_protocol::kafka::messages::fetch_request::{FetchPartition, FetchTopic};
use strom_protocol::kafka::messages::{BrokerId, FetchRequest, TopicName};
use strom_protocol::kafka::protocol::StrBytes;
use tokio::sync::watch;

use super::follower::{self, Action, FetchedPartition, FollowerLog};
use super::ReplicaManager;
use crate::partition::Partition;

/// The Fetch version followers send: the newest that names topics (v13 names them by id only).
const FETCH_VERSION: i16 = 12;

struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    fetch_offset: i64,
    /// Named by its topic's `follower.replication.throttled.replicas`: its bytes count against
    /// `follower.replication.throttled.rate`.
    throttled: bool,
}

/// A partition's log, read once per decision.
struct LocalLog<'a>(&'a Partition);

impl FollowerLog for LocalLog<'_> {
    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset().unwrap_or(0)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.0.end_offset_for_epoch(epoch).unwrap_or((-1, -1))
    }
}

pub async fn run(manager: Arc<ReplicaManager>, leader: i32, mut shutdown: watch::Receiver<bool>) {
    let config = manager.config();
    let node_id = config.node_id;
    let backoff = Duration::from_millis(config.replica_fetch_backoff_ms.max(50));
    let mut image = manager.cluster().image_watch();
    let mut connection: Option<(String, Connection)> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let followed: Vec<(i32, Arc<Partition>)> = manager
            .followed()
            .into_iter()
            .filter(|(l, _, _)| *l == leader)
            .map(|(_, epoch, p)| (epoch, p))
            .collect();
        let endpoint = manager
            .cluster()
            .image()
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .map(|b| format!("{}:{}", b.endpoint.host, b.endpoint.port));
        let Some(endpoint) = endpoint.filter(|_| !followed.is_empty()) else {
            // Nothing to fetch, or the leader is fenced: wait for the metadata to change.
            tokio::select! {
                _ = image.changed() => {}
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            continue;
        };
        if connection
            .as_ref()
            .is_none_or(|(addr, c)| *addr != endpoint || c.is_closed())
        {
            let settings = ConnectionConfig {
                client_id: format!("strom-replica-{node_id}"),
                request_timeout: Duration::from_millis(config.replica_fetch_wait_max_ms + 30_000),
                connect_timeout: Duration::from_secs(5),
                max_response_bytes: config.replica_fetch_response_max_bytes + 1024 * 1024,
            };
            match Connection::connect(&endpoint, settings).await {
                Ok(c) => connection = Some((endpoint.clone(), c)),
                Err(e) => {
                    tracing::debug!(leader, endpoint = %endpoint, error = %e, "cannot connect to the leader to fetch");
                    connection = None;
                    pause(backoff, &mut image, &mut shutdown).await;
                    continue;
                }
            }
        }
        let Some((_, conn)) = connection.as_ref() else {
            continue;
        };
        let mut partitions = Vec::with_capacity(followed.len());
        let mut request = FetchRequest::default()
            .with_replica_id(BrokerId(node_id))
            .with_max_wait_ms(config.replica_fetch_wait_max_ms as i32)
            .with_min_bytes(1)
            .with_max_bytes(config.replica_fetch_response_max_bytes as i32)
            .with_session_epoch(-1);
        let quota = &manager.quotas.follower;
        for (leader_epoch, p) in followed {
            let Ok((leo, last_epoch, log_start)) = p.fetch_position() else {
                continue;
            };
            // Kafka's follower throttle: a throttled replica out of the ISR is left out of the fetch while the
            // rate is exceeded (an in-sync one never is, so acks=all writes do not wait on it).
            let (throttled, in_sync) = manager.topics.get(&p.topic).map_or((false, true), |t| {
                (
                    t.settings.follower_throttled.covers(p.index, node_id),
                    t.slot(p.index).is_some_and(|s| s.isr.contains(&node_id)),
                )
            });
            if throttled && !in_sync && quota.is_exceeded(super::now_ms()) {
                continue;
            }
            let topic = TopicName(StrBytes::from_string(p.topic.to_string()));
            let fetch = FetchPartition::default()
                .with_partition(p.index)
                .with_current_leader_epoch(leader_epoch)
                .with_fetch_offset(leo)
                .with_last_fetched_epoch(last_epoch)
                .with_log_start_offset(log_start)
                .with_partition_max_bytes(config.replica_fetch_max_bytes as i32);
            match request.topics.iter_mut().find(|t| t.topic == topic) {
                Some(t) => t.partitions.push(fetch),
                None => request.topics.push(
                    FetchTopic::default()
                        .with_topic(topic)
                        .with_partitions(vec![fetch]),
                ),
            }
            partitions.push(Followed {
                partition: p,
                leader_epoch,
                fetch_offset: leo,
                throttled,
            });
        }
        tracing::trace!(
            leader,
            partitions = ?partitions
                .iter()
                .map(|f| (f.partition.name(), f.leader_epoch, f.fetch_offset))
                .collect::<Vec<_>>(),
            "fetching from the leader"
        );
        let response = tokio::select! {
            r = conn.request_at(&request, FETCH_VERSION) => r,
            _ = shutdown.changed() => return,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, error = %e, "follower fetch failed");
                connection = None;
                pause(backoff, &mut image, &mut shutdown).await;
                continue;
            }
        };
        if response.error_code != 0 {
            tracing::debug!(
                leader,
                error_code = response.error_code,
                "follower fetch refused"
            );
            pause(backoff, &mut image, &mut shutdown).await;
            continue;
        }
        let mut retry = false;
        for topic in response.responses {
            for data in topic.partitions {
                let Some(f) = partitions.iter().find(|f| {
                    *f.partition.topic == *topic.topic.0.as_str()
                        && f.partition.index == data.partition_index
                }) else {
                    continue;
                };
                let fetched = FetchedPartition {
                    error_code: data.error_code,
                    high_watermark: data.high_watermark,
                    log_start_offset: data.log_start_offset,
                    diverging_epoch: (data.diverging_epoch.epoch >= 0
                        || data.diverging_epoch.end_offset >= 0)
                        .then_some((data.diverging_epoch.epoch, data.diverging_epoch.end_offset)),
                    records: data.records,
                };
                if f.throttled {
                    let bytes = fetched.records.as_ref().map_or(0, |r| r.len());
                    quota.record(super::now_ms(), bytes as u64);
                }
                let (hw, log_start) = (fetched.high_watermark, fetched.log_start_offset);
                tracing::trace!(
                    leader,
                    partition = %f.partition.name(),
                    leader_epoch = f.leader_epoch,
                    fetch_offset = f.fetch_offset,
                    error_code = fetched.error_code,
                    high_watermark = hw,
                    bytes = fetched.records.as_ref().map_or(0, |r| r.len()),
                    "fetched from the leader"
                );
                if !apply(f, fetched, hw, log_start) {
                    retry = true;
                }
            }
        }
        if retry {
            pause(
                backoff.min(Duration::from_millis(200)),
                &mut image,
                &mut shutdown,
            )
            .await;
        }
    }
}

/// Applies one partition's answer; false when the leader could not serve it (the round pauses before the next).
fn apply(f: &Followed, fetched: FetchedPartition, hw: i64, log_start: i64) -> bool {
    let p = &f.partition;
    let action = follower::decide(&LocalLog(p), f.fetch_offset, fetched);
    let result = match action {
        Action::Append(records) => p
            .append_replicated(f.leader_epoch, records, crate::clock::now_ms())
            .map(|_| ()),
        Action::Truncate(offset) => p.truncate_replica(f.leader_epoch, offset).map(|_| ()),
        Action::Reset(offset) => p.reset_replica(f.leader_epoch, offset),
        Action::CaughtUp => Ok(()),
        Action::Retry(code) => {
            tracing::debug!(partition = %p.name(), error_code = code, "leader cannot serve this follower now");
            return false;
        }
    };
    // CaughtUp too: only while this replica still follows at the fetch's leader epoch.
    match result.and_then(|()| p.follow_leader_offsets(f.leader_epoch, hw, log_start)) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(partition = %p.name(), error = %e, "fetched data not applied");
            false
        }
    }
}

async fn pause(
    backoff: Duration,
    image: &mut watch::Receiver<Arc<strom_metadata::MetadataImage>>,
    shutdown: &mut watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = image.changed() => {}
        _ = shutdown.changed() => {}
    }
}
