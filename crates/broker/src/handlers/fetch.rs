//! Fetch: read whole batches below the high watermark, and long-poll until `min_bytes` are available or
//! `max_wait_ms` passes. The wait is woken by appends to any requested partition (never by a polling timer), so a
//! consumer sees a record as soon as it is in the log.
//!
//! `isolation_level=1` (read_committed) reads below the last stable offset instead, and lists the aborted
//! transactions whose records the response may hold, for the client to drop (issue 12).
//!
//! Strom creates no incremental fetch sessions (KIP-227): every response carries session id 0, which tells the
//! client to keep sending full fetch requests.
//!
//! A fetch with a replica id comes from a follower (`replication/fetcher.rs`): it reads up to the log end offset
//! instead of the high watermark, tells the leader's replication state how far the follower has got (which moves
//! the high watermark and the ISR), and is answered with a diverging epoch (KIP-320) when the follower's last
//! fetched epoch does not end where the leader's log says it does.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_log::LogError;
use strom_protocol::kafka::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use strom_protocol::kafka::messages::{
    FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName,
};
use strom_protocol::kafka::ResponseError;
use tokio::time::Instant;

use super::Handled;
use crate::partition::{Partition, PartitionError};
use crate::replication::follower::diverging_epoch;
use crate::server::BrokerState;

struct Target {
    topic_slot: usize,
    partition_index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    /// Where the leader's log diverges from a follower's: (epoch, end offset).
    diverging: Option<(i32, i64)>,
    /// The partition when this broker leads it, or the error code that says why not.
    partition: Result<Arc<Partition>, i16>,
    /// A follower's fetch of a replica its topic's `leader.replication.throttled.replicas` names: its bytes count
    /// against `leader.replication.throttled.rate`, and while that is exceeded an out-of-sync one gets none.
    throttled: Throttle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Throttle {
    No,
    InSync,
    OutOfSync,
}

pub fn handle(state: Arc<BrokerState>, request: FetchRequest, version: i16) -> Handled {
    Box::pin(async move {
        if request.session_id != 0 {
            let response = FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code());
            return Some(ResponseKind::Fetch(response));
        }
        let mut topic_names: Vec<TopicName> = Vec::with_capacity(request.topics.len());
        let mut targets = Vec::new();
        let replica = if version >= 15 {
            request.replica_state.replica_id.0
        } else {
            request.replica_id.0
        };
        let replica = (replica >= 0).then_some(replica);
        for topic in &request.topics {
            let hosted = state.topics.get(topic.topic.0.as_str());
            topic_names.push(topic.topic.clone());
            for p in &topic.partitions {
                targets.push(Target {
                    topic_slot: topic_names.len() - 1,
                    partition_index: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    diverging: None,
                    throttled: match (&hosted, replica) {
                        (Some(t), Some(replica))
                            if t.settings.leader_throttled.covers(p.partition, replica) =>
                        {
                            let in_sync = t
                                .slot(p.partition)
                                .is_some_and(|s| s.isr.contains(&replica));
                            if in_sync {
                                Throttle::InSync
                            } else {
                                Throttle::OutOfSync
                            }
                        }
                        _ => Throttle::No,
                    },
                    partition: match &hosted {
                        Some(t) => t
                            .partition(p.partition)
                            .cloned()
                            .ok_or_else(|| t.partition_error(p.partition)),
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    },
                });
            }
        }
        let reader = match replica {
            Some(_) => Reader::Replica,
            None if request.isolation_level == 1 => Reader::ReadCommitted,
            None => Reader::ReadUncommitted,
        };
        if let Some(replica) = replica {
            follower_fetched(&state, replica, &mut targets);
        }
        let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
        let deadline = Instant::now() + max_wait;
        let min_bytes = request.min_bytes.max(0) as usize;
        let response_max_bytes = if request.max_bytes <= 0 {
            state.config.fetch_max_bytes
        } else {
            (request.max_bytes as usize).min(state.config.fetch_max_bytes)
        };

        let mut woken = false;
        loop {
            // Register for wake-ups before reading, so an append between the read and the wait is not missed.
            let mut wakeups: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = targets
                .iter()
                .filter_map(|t| t.partition.as_ref().ok())
                .map(|p| {
                    let mut notified = Box::pin(p.appended());
                    notified.as_mut().enable();
                    notified
                })
                .collect();
            let quota = &state.replication.quotas.leader;
            let held_back = |t: &Target| {
                t.throttled == Throttle::OutOfSync
                    && quota.is_exceeded(crate::replication::now_ms())
            };
            let (partitions, bytes, any_error) =
                read_all(&targets, response_max_bytes, version, reader, held_back);
            if bytes >= min_bytes || any_error || Instant::now() >= deadline {
                let throttled_bytes: usize = targets
                    .iter()
                    .zip(&partitions)
                    .filter(|(t, _)| t.throttled != Throttle::No)
                    .map(|(_, (_, data))| data.records.as_ref().map_or(0, Bytes::len))
                    .sum();
                quota.record(crate::replication::now_ms(), throttled_bytes as u64);
                if woken && bytes > 0 {
                    // A long poll that new records ended: how long after the last wake-up its read ran.
                    let last = targets
                        .iter()
                        .filter_map(|t| t.partition.as_ref().ok())
                        .map(|p| p.woken_at_us())
                        .max()
                        .unwrap_or(0);
                    state.metrics.record_fetch_wakeup(Duration::from_micros(
                        crate::metrics::now_us().saturating_sub(last),
                    ));
                }
                return Some(ResponseKind::Fetch(build_response(
                    &topic_names,
                    partitions,
                )));
            }
            if wakeups.is_empty() {
                tokio::time::sleep_until(deadline).await;
            } else {
                tokio::select! {
                    _ = futures::future::select_all(wakeups.iter_mut()) => woken = true,
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    })
}

/// Reads every target once. Returns per-target partition data, the record bytes gathered, and whether any
/// partition answered with an error (which, as in Kafka, ends the long poll at once).
/// Who reads, which bounds the read: a follower up to the log end offset, a consumer up to the high watermark
/// (read_uncommitted) or the last stable offset (read_committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Replica,
    ReadUncommitted,
    ReadCommitted,
}

fn read_all(
    targets: &[Target],
    response_max_bytes: usize,
    version: i16,
    reader: Reader,
    held_back: impl Fn(&Target) -> bool,
) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        // A throttled replica over its rate: no records this time, as Kafka answers it (its position and the
        // watermarks still go back).
        let budget = (!held_back(t)).then(|| response_max_bytes.saturating_sub(total));
        let data = read_one(t, budget, total == 0, version, reader);
        if data.error_code != 0
            || data.diverging_epoch.epoch >= 0
            || data.diverging_epoch.end_offset >= 0
        {
            any_error = true;
        }
        total += data.records.as_ref().map_or(0, Bytes::len);
        out.push((t.topic_slot, data));
    }
    (out, total, any_error)
}

/// A follower's fetch reached this leader: record its position once (it does not change while the fetch waits),
/// send any ISR change that calls for, and turn partitions whose log diverges from the follower's into a
/// diverging-epoch answer.
fn follower_fetched(state: &Arc<BrokerState>, replica: i32, targets: &mut [Target]) {
    let now = crate::replication::now_ms();
    for t in targets.iter_mut() {
        let Ok(p) = &t.partition else { continue };
        if p.check_leader_epoch(t.current_leader_epoch).is_err() {
            continue;
        }
        if t.last_fetched_epoch >= 0 {
            match p.end_offset_for_epoch(t.last_fetched_epoch) {
                Ok(end) => {
                    t.diverging = diverging_epoch(t.last_fetched_epoch, t.fetch_offset, end);
                    if t.diverging.is_some() {
                        continue;
                    }
                }
                Err(e) => {
                    t.partition = Err(super::produce::error_code(&e));
                    continue;
                }
            }
        }
        match p.on_follower_fetch(replica, t.fetch_offset, now) {
            Ok(Some(proposal)) => state.replication.propose_isr(p.clone(), proposal),
            Ok(None) => {}
            Err(e) => t.partition = Err(super::produce::error_code(&e)),
        }
    }
}

/// `budget`: the bytes left in the response, or None for a throttled replica held back this time.
fn read_one(
    t: &Target,
    budget: Option<usize>,
    first_with_data: bool,
    version: i16,
    reader: Reader,
) -> PartitionData {
    let for_replica = reader == Reader::Replica;
    let data = PartitionData::default().with_partition_index(t.partition_index);
    let p = match &t.partition {
        Ok(p) => p,
        Err(code) => return data.with_error_code(*code).with_high_watermark(-1),
    };
    let hw = p.high_watermark();
    let mut data = data
        .with_high_watermark(hw)
        .with_last_stable_offset(hw)
        .with_aborted_transactions(Some(Vec::new()));
    if version >= 5 {
        data = data.with_log_start_offset(p.log_start_offset());
    }
    if let Err(code) = p.check_leader_epoch(t.current_leader_epoch) {
        return data.with_error_code(code);
    }
    if let Some((epoch, end_offset)) = t.diverging {
        return data
            .with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end_offset),
            )
            .with_records(Some(Bytes::new()));
    }
    let Some(budget) = budget else {
        return data.with_records(Some(Bytes::new()));
    };
    let max_bytes = t.max_bytes.min(budget);
    let read = match reader {
        Reader::Replica => p.read_for_replica(t.fetch_offset, max_bytes),
        Reader::ReadUncommitted => p.read(t.fetch_offset, max_bytes, first_with_data),
        Reader::ReadCommitted => match p.read_committed(t.fetch_offset, max_bytes, first_with_data)
        {
            Ok((read, lso, aborted)) => {
                let aborted = aborted
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect();
                data = data
                    .with_last_stable_offset(lso)
                    .with_aborted_transactions(Some(aborted));
                Ok(read)
            }
            Err(e) => Err(e),
        },
    };
    if reader == Reader::ReadUncommitted {
        if let Ok(lso) = p.last_stable_offset() {
            data = data.with_last_stable_offset(lso);
        }
    }
    match read {
        Ok(read) => data.with_records(Some(read.records)),
        // A follower below the leader's log start offset restarts there: it needs the real offsets.
        Err(PartitionError::Log(LogError::OffsetOutOfRange {
            log_start_offset, ..
        })) if for_replica => data
            .with_error_code(ResponseError::OffsetOutOfRange.code())
            .with_log_start_offset(log_start_offset)
            .with_records(Some(Bytes::new())),
        // Kafka answers an out-of-range fetch with unknown (-1) watermarks; the client then asks ListOffsets.
        Err(PartitionError::Log(LogError::OffsetOutOfRange { .. })) => data
            .with_error_code(ResponseError::OffsetOutOfRange.code())
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Bytes::new())),
        Err(e) => data
            .with_error_code(super::produce::error_code(&e))
            .with_records(Some(Bytes::new())),
    }
}

fn build_response(
    topic_names: &[TopicName],
    partitions: Vec<(usize, PartitionData)>,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = topic_names
        .iter()
        .map(|name| FetchableTopicResponse::default().with_topic(name.clone()))
        .collect();
    for (slot, data) in partitions {
        topics[slot].partitions.push(data);
    }
    FetchResponse::default().with_responses(topics)
}
