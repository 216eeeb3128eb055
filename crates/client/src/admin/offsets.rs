//! Offsets: partition offsets (ListOffsets), a group's committed offsets with lag (OffsetFetch), resetting a
//! group's offsets (OffsetCommit as an admin), deleting records (DeleteRecords).

use std::collections::{BTreeMap, BTreeSet};

use strom_protocol::kafka::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use strom_protocol::kafka::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use strom_protocol::kafka::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use strom_protocol::kafka::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use strom_protocol::kafka::messages::{
    ApiKey, BrokerId, DeleteRecordsRequest, GroupId, ListOffsetsRequest, OffsetCommitRequest,
    OffsetFetchRequest,
};
use strom_protocol::kafka::ResponseError;

use super::{
    capped_version, check, kafka_error, str_bytes, topic_name, Admin, OPERATION_TIMEOUT_MS,
};
use crate::error::Error;

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (log end offset as consumers see it).
    Latest,
    /// The last stable offset: the end a read_committed consumer reaches, below the first record of a
    /// transaction still open (the high watermark when none is).
    LastStable,
    /// The first offset whose timestamp is at or after this one (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Latest | OffsetSpec::LastStable => -1,
            OffsetSpec::Earliest => -2,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// One partition's outcome in a batch operation.
#[derive(Debug, Clone)]
pub struct PartitionResult<T> {
    pub topic: String,
    pub partition: i32,
    pub result: Result<T, Error>,
}

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// None when a timestamp lookup found no record at or after the timestamp.
    pub offset: Option<i64>,
    /// The record's timestamp for timestamp lookups; None otherwise.
    pub timestamp: Option<i64>,
}

/// A group's position in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    /// None when the group has committed nothing for this partition.
    pub committed: Option<i64>,
    /// The partition's high watermark; None if it could not be read (the partition is gone, no leader).
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - committed`, when both are known.
    pub lag: Option<i64>,
    pub metadata: String,
}

/// Which partitions of a topic a reset covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSelection {
    pub topic: String,
    /// None = every partition of the topic.
    pub partitions: Option<Vec<i32>>,
}

/// Where `reset_group_offsets` moves the group, as Kafka's `kafka-consumer-groups --reset-offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpec {
    ToEarliest,
    ToLatest,
    /// Clamped into [log start, log end].
    ToOffset(i64),
    /// The first offset at or after the timestamp (ms); the log end when no record is that recent.
    ToTimestamp(i64),
    /// Committed offset plus this (negative moves back), clamped into [log start, log end].
    ShiftBy(i64),
}

/// One line of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetEntry {
    pub topic: String,
    pub partition: i32,
    pub current: Option<i64>,
    pub new: i64,
}

/// Per leader broker, per topic, the items to send there.
pub(super) type ByLeader<T> = BTreeMap<i32, BTreeMap<String, Vec<T>>>;

/// Each (topic, partition)'s outcome, filled in as routing and responses come in.
pub(super) type Outcomes<R> = BTreeMap<(String, i32), Result<R, Error>>;

impl Admin {
    /// Refreshes metadata for the items' topics and groups each `(topic, partition, item)` under its partition's
    /// leader. Partitions that cannot be routed get their error right away: LEADER_NOT_AVAILABLE for an existing
    /// partition without a leader, UNKNOWN_TOPIC_OR_PARTITION otherwise.
    pub(super) async fn route_to_leaders<'a, T, R>(
        &self,
        items: impl Iterator<Item = (&'a str, i32, T)> + Clone,
    ) -> Result<(ByLeader<T>, Outcomes<R>), Error> {
        let topics: BTreeSet<&str> = items.clone().map(|(t, _, _)| t).collect();
        self.cluster.add_topics(topics.iter().copied());
        self.cluster.refresh().await?;
        let mut by_leader: ByLeader<T> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for (topic, partition, item) in items {
            let error = match self.cluster.topic(topic).map(|t| t.leader(partition)) {
                Some(Some(leader)) => {
                    by_leader
                        .entry(leader)
                        .or_default()
                        .entry(topic.to_string())
                        .or_default()
                        .push(item);
                    continue;
                }
                Some(None) if self.partition_exists(topic, partition) => {
                    ResponseError::LeaderNotAvailable
                }
                _ => ResponseError::UnknownTopicOrPartition,
            };
            errors.insert(
                (topic.to_string(), partition),
                Err(kafka_error(error, format!("{topic}-{partition}"))),
            );
        }
        Ok((by_leader, errors))
    }

    /// Looks up offsets of partitions at their leaders; each partition's result is its own.
    pub async fn list_offsets(
        &self,
        partitions: &[(String, i32)],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionResult<ListedOffset>>, Error> {
        let (by_leader, mut results): (_, Outcomes<ListedOffset>) = self
            .route_to_leaders(partitions.iter().map(|(t, p)| (t.as_str(), *p, *p)))
            .await?;
        for (leader, topics) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                // read_committed: the latest offset is the last stable offset.
                .with_isolation_level(i8::from(spec == OffsetSpec::LastStable))
                .with_timeout_ms(OPERATION_TIMEOUT_MS)
                .with_topics(
                    topics
                        .iter()
                        .map(|(topic, parts)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(
                                    parts
                                        .iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(*p)
                                                .with_current_leader_epoch(-1)
                                                .with_timestamp(spec.wire())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = self
                .cluster
                .broker_connection(leader)
                .await?
                .request(&request)
                .await?;
            for t in response.topics {
                for p in t.partitions {
                    let key = (t.name.0.to_string(), p.partition_index);
                    let result =
                        check(p.error_code, None, format!("{}-{}", key.0, key.1)).map(|()| {
                            ListedOffset {
                                offset: (p.offset >= 0).then_some(p.offset),
                                timestamp: (p.timestamp >= 0).then_some(p.timestamp),
                            }
                        });
                    results.insert(key, result);
                }
            }
        }
        Ok(partitions
            .iter()
            .map(|(topic, partition)| PartitionResult {
                topic: topic.clone(),
                partition: *partition,
                result: results
                    .get(&(topic.clone(), *partition))
                    .cloned()
                    .unwrap_or_else(|| {
                        Err(kafka_error(
                            ResponseError::UnknownServerError,
                            format!(
                                "the ListOffsets response does not mention {topic}-{partition}"
                            ),
                        ))
                    }),
            })
            .collect())
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.cluster
            .topic(topic)
            .is_some_and(|t| partition >= 0 && (partition as usize) < t.partition_count())
    }

    /// Every partition the group has committed an offset for, with the log end offset and lag, sorted.
    pub async fn list_group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, Error> {
        self.group_offsets(group, None).await
    }

    /// The group's position in the given partitions (None committed where it has none), with lag.
    pub async fn group_offsets_for(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<GroupOffset>, Error> {
        self.group_offsets(group, Some(partitions)).await
    }

    async fn group_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<GroupOffset>, Error> {
        let committed = self.committed(group, partitions).await?;
        let keys: Vec<(String, i32)> = committed.keys().cloned().collect();
        let ends = self.list_offsets(&keys, OffsetSpec::Latest).await?;
        Ok(ends
            .into_iter()
            .map(|end| {
                let (offset, metadata) = committed
                    .get(&(end.topic.clone(), end.partition))
                    .cloned()
                    .unwrap_or((None, String::new()));
                let log_end_offset = end.result.ok().and_then(|o| o.offset);
                GroupOffset {
                    lag: match (offset, log_end_offset) {
                        (Some(c), Some(e)) => Some((e - c).max(0)),
                        _ => None,
                    },
                    topic: end.topic,
                    partition: end.partition,
                    committed: offset,
                    log_end_offset,
                    metadata,
                }
            })
            .collect())
    }

    /// OffsetFetch at the coordinator: (topic, partition) → (committed offset, metadata), sorted.
    async fn committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<BTreeMap<(String, i32), (Option<i64>, String)>, Error> {
        let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions.unwrap_or_default() {
            wanted.entry(t.clone()).or_default().push(*p);
        }
        let connection = self.coordinator(group).await?;
        let version = capped_version(&connection, ApiKey::OffsetFetch, 9)?;
        let mut request = OffsetFetchRequest::default();
        // v8 batches groups; earlier versions name one group at the top level. Topics None = all committed.
        if version >= 8 {
            request.groups = vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_member_epoch(-1)
                .with_topics(partitions.map(|_| {
                    wanted
                        .iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(topic_name(t))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect()
                }))];
        } else {
            request.group_id = GroupId(str_bytes(group));
            request.topics = partitions.map(|_| {
                wanted
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect()
            });
        }
        let response = connection.request_at(&request, version).await?;
        let what = format!("offsets of group '{group}'");
        let mut out = BTreeMap::new();
        let mut add =
            |topic: String, partition: i32, offset: i64, code: i16, metadata: Option<String>| {
                check(code, None, format!("{what} in {topic}-{partition}"))?;
                out.insert(
                    (topic, partition),
                    (
                        (offset >= 0).then_some(offset),
                        metadata.unwrap_or_default(),
                    ),
                );
                Ok::<_, Error>(())
            };
        if version >= 8 {
            let g = response.groups.into_iter().next().ok_or_else(|| {
                kafka_error(
                    ResponseError::UnknownServerError,
                    format!("the OffsetFetch response does not mention group '{group}'"),
                )
            })?;
            check(g.error_code, None, &what)?;
            for t in g.topics {
                for p in t.partitions {
                    add(
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                        p.metadata.map(|m| m.to_string()),
                    )?;
                }
            }
        } else {
            check(response.error_code, None, &what)?;
            for t in response.topics {
                for p in t.partitions {
                    add(
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                        p.metadata.map(|m| m.to_string()),
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Computes where each selected partition would move, and with `execute` commits it. Executing needs an
    /// inactive group (no members: Empty or Dead), since live members would overwrite the offsets with their
    /// own commits; the error names the group's state otherwise. The plan is sorted by topic and partition.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        selection: &[TopicSelection],
        spec: ResetSpec,
        execute: bool,
    ) -> Result<Vec<ResetEntry>, Error> {
        let partitions = self.select_partitions(selection).await?;
        let committed = self.committed(group, Some(&partitions)).await?;
        let earliest = offsets_of(self.list_offsets(&partitions, OffsetSpec::Earliest).await?)?;
        let latest = offsets_of(self.list_offsets(&partitions, OffsetSpec::Latest).await?)?;
        let by_time = match spec {
            ResetSpec::ToTimestamp(ts) => Some(offsets_of(
                self.list_offsets(&partitions, OffsetSpec::Timestamp(ts))
                    .await?,
            )?),
            _ => None,
        };
        let mut plan = Vec::with_capacity(partitions.len());
        for key in &partitions {
            let low = earliest.get(key).copied().flatten().unwrap_or(0);
            let high = latest.get(key).copied().flatten().unwrap_or(low);
            let current = committed.get(key).and_then(|(o, _)| *o);
            let new = match spec {
                ResetSpec::ToEarliest => low,
                ResetSpec::ToLatest => high,
                ResetSpec::ToOffset(o) => o.clamp(low, high),
                ResetSpec::ToTimestamp(_) => by_time
                    .as_ref()
                    .and_then(|m| m.get(key).copied().flatten())
                    .unwrap_or(high),
                ResetSpec::ShiftBy(n) => {
                    let Some(c) = current else {
                        return Err(Error::Config(format!(
                            "cannot shift the offset of {}-{}: group '{group}' has no committed offset there",
                            key.0, key.1
                        )));
                    };
                    c.saturating_add(n).clamp(low, high)
                }
            };
            plan.push(ResetEntry {
                topic: key.0.clone(),
                partition: key.1,
                current,
                new,
            });
        }
        if execute {
            let description = self.describe_group(group).await?;
            if !description.is_inactive() {
                return Err(kafka_error(
                    ResponseError::NonEmptyGroup,
                    format!(
                        "cannot reset the offsets of group '{group}': it is {} with {} active member(s); \
                         stop its consumers first",
                        description.state,
                        description.members.len()
                    ),
                ));
            }
            self.commit_as_admin(group, &plan).await?;
        }
        Ok(plan)
    }

    /// The (topic, partition) pairs a selection names, checked against metadata, sorted.
    async fn select_partitions(
        &self,
        selection: &[TopicSelection],
    ) -> Result<Vec<(String, i32)>, Error> {
        self.cluster
            .add_topics(selection.iter().map(|s| s.topic.as_str()));
        self.cluster.refresh().await?;
        let mut out = BTreeSet::new();
        for s in selection {
            let topic = self.cluster.topic(&s.topic).ok_or_else(|| {
                kafka_error(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{}'", s.topic),
                )
            })?;
            match &s.partitions {
                None => {
                    out.extend((0..topic.partition_count() as i32).map(|p| (s.topic.clone(), p)))
                }
                Some(ps) => {
                    for p in ps {
                        if !self.partition_exists(&s.topic, *p) {
                            return Err(kafka_error(
                                ResponseError::UnknownTopicOrPartition,
                                format!(
                                    "topic '{}' has no partition {p} (it has {})",
                                    s.topic,
                                    topic.partition_count()
                                ),
                            ));
                        }
                        out.insert((s.topic.clone(), *p));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// OffsetCommit without membership (generation -1, empty member id), which a coordinator accepts only for
    /// a group without members.
    async fn commit_as_admin(&self, group: &str, plan: &[ResetEntry]) -> Result<(), Error> {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for e in plan {
            topics.entry(&e.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(e.partition)
                    .with_committed_offset(e.new)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let connection = self.coordinator(group).await?;
        let version = capped_version(&connection, ApiKey::OffsetCommit, 9)?;
        let response = connection.request_at(&request, version).await?;
        for t in response.topics {
            for p in t.partitions {
                check(
                    p.error_code,
                    None,
                    format!(
                        "committing the offset of group '{group}' in {}-{}",
                        t.name.0, p.partition_index
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// Deletes records before `offset` in each (topic, partition, offset): the log start offset moves there
    /// (-1 = the high watermark). Returns each partition's new low watermark.
    pub async fn delete_records(
        &self,
        targets: &[(String, i32, i64)],
    ) -> Result<Vec<PartitionResult<i64>>, Error> {
        let (by_leader, mut results): (_, Outcomes<i64>) = self
            .route_to_leaders(targets.iter().map(|(t, p, o)| (t.as_str(), *p, (*p, *o))))
            .await?;
        for (leader, topics) in by_leader {
            let request = DeleteRecordsRequest::default()
                .with_timeout_ms(OPERATION_TIMEOUT_MS)
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            DeleteRecordsTopic::default()
                                .with_name(topic_name(t))
                                .with_partitions(
                                    ps.iter()
                                        .map(|(p, o)| {
                                            DeleteRecordsPartition::default()
                                                .with_partition_index(*p)
                                                .with_offset(*o)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = self
                .cluster
                .broker_connection(leader)
                .await?
                .request(&request)
                .await?;
            for t in response.topics {
                for p in t.partitions {
                    let key = (t.name.0.to_string(), p.partition_index);
                    let result = check(p.error_code, None, format!("{}-{}", key.0, key.1))
                        .map(|()| p.low_watermark);
                    results.insert(key, result);
                }
            }
        }
        Ok(targets
            .iter()
            .map(|(topic, partition, _)| PartitionResult {
                topic: topic.clone(),
                partition: *partition,
                result: results
                    .remove(&(topic.clone(), *partition))
                    .unwrap_or_else(|| {
                        Err(kafka_error(
                            ResponseError::UnknownServerError,
                            format!(
                                "the DeleteRecords response does not mention {topic}-{partition}"
                            ),
                        ))
                    }),
            })
            .collect())
    }
}

/// Offsets by partition, or the first partition's error: a reset plan needs every partition's bounds.
#[allow(clippy::type_complexity)]
fn offsets_of(
    results: Vec<PartitionResult<ListedOffset>>,
) -> Result<BTreeMap<(String, i32), Option<i64>>, Error> {
    results
        .into_iter()
        .map(|r| r.result.map(|o| ((r.topic, r.partition), o.offset)))
        .collect()
}
