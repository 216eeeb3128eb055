//! Groups: find the coordinator, list, describe (classic DescribeGroups and KIP-848 ConsumerGroupDescribe),
//! delete.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Buf;
use strom_protocol::kafka::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
};
use strom_protocol::kafka::protocol::Decodable;
use strom_protocol::kafka::ResponseError;

use super::{check, kafka_error, str_bytes, Admin};
use crate::connection::Connection;
use crate::error::Error;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// "consumer" for consumer groups (either protocol), "" for groups that only store offsets.
    pub protocol_type: String,
    /// Empty when the broker's ListGroups version does not report it (v4+ does).
    pub state: String,
    /// "classic" or "consumer" (ListGroups v5+); empty when not reported.
    pub group_type: String,
}

/// Which group protocol the group runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    /// JoinGroup / SyncGroup with client-side assignment.
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat with server-side assignment.
    Consumer,
}

impl GroupType {
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        }
    }
}

/// A topic and some of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    /// Sorted.
    pub partitions: Vec<i32>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions the member owns now, sorted by topic. Empty for classic groups whose members do not
    /// use the consumer protocol (their assignment is opaque).
    pub assignment: Vec<TopicPartitions>,
    /// The user data of the member's subscription (classic consumer protocol only).
    pub user_data: Option<bytes::Bytes>,
}

/// A group's state and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead (classic);
    /// Empty, Assigning, Reconciling, Stable, Dead (consumer).
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor (classic: the protocol name; consumer: the server-side assignor).
    pub protocol: String,
    pub group_type: GroupType,
    /// Sorted by member id.
    pub members: Vec<MemberDescription>,
}

impl GroupDescription {
    /// Whether the group has no members and may have its offsets changed by an admin.
    pub fn is_inactive(&self) -> bool {
        self.members.is_empty() && matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// What a coordinator is looked up for: FindCoordinator's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoordinatorKey {
    Group = 0,
    Transaction = 1,
}

/// How long to keep asking for a coordinator that is still loading (the offsets topic is created on first use).
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);

impl Admin {
    /// The connection to `group`'s coordinator (FindCoordinator), waiting briefly while it loads.
    pub(super) async fn coordinator(&self, group: &str) -> Result<Connection, Error> {
        self.find_coordinator(CoordinatorKey::Group, group)
            .await
            .map(|(_, connection)| connection)
    }

    /// The id of and a connection to the coordinator of `key` (a group or a transactional id), waiting briefly
    /// while it loads.
    pub(super) async fn find_coordinator(
        &self,
        kind: CoordinatorKey,
        key: &str,
    ) -> Result<(i32, Connection), Error> {
        let deadline = tokio::time::Instant::now() + COORDINATOR_WAIT;
        let mut backoff = Duration::from_millis(20);
        let what = match kind {
            CoordinatorKey::Group => format!("coordinator of group '{key}'"),
            CoordinatorKey::Transaction => format!("coordinator of transactional id '{key}'"),
        };
        loop {
            let connection = self.cluster.any_connection().await?;
            let version = connection.version(ApiKey::FindCoordinator)?;
            // v4 batches keys in `coordinator_keys`; earlier versions take one `key`.
            let mut request = FindCoordinatorRequest::default().with_key_type(kind as i8);
            if version >= 4 {
                request.coordinator_keys = vec![str_bytes(key)];
            } else {
                request.key = str_bytes(key);
            }
            let response = connection.request_at(&request, version).await?;
            let (node, host, port, code, message) = if version >= 4 {
                let c = response.coordinators.into_iter().next().ok_or_else(|| {
                    kafka_error(
                        ResponseError::UnknownServerError,
                        format!("FindCoordinator named no {what}"),
                    )
                })?;
                (c.node_id.0, c.host, c.port, c.error_code, c.error_message)
            } else {
                (
                    response.node_id.0,
                    response.host,
                    response.port,
                    response.error_code,
                    response.error_message,
                )
            };
            match check(code, message.as_ref(), &what) {
                Ok(()) => {
                    if self.cluster.metadata().brokers.contains_key(&node) {
                        return Ok((node, self.cluster.broker_connection(node).await?));
                    }
                    let addr = crate::cluster::BrokerInfo {
                        id: node,
                        host: host.to_string(),
                        port,
                        rack: None,
                    }
                    .addr();
                    let connection =
                        Connection::connect(&addr, self.cluster.config().connection.clone())
                            .await?;
                    return Ok((node, connection));
                }
                Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                    // Nothing to wait on but the coordinator finishing its load.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every group on every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, Error> {
        let brokers: Vec<i32> = self.cluster.metadata().brokers.keys().copied().collect();
        let mut groups = BTreeMap::new();
        for id in brokers {
            let connection = self.cluster.broker_connection(id).await?;
            let response = connection.request(&ListGroupsRequest::default()).await?;
            check(
                response.error_code,
                None,
                format!("list groups on broker {id}"),
            )?;
            for g in response.groups {
                let id = g.group_id.0.to_string();
                groups.insert(
                    id.clone(),
                    GroupListing {
                        group_id: id,
                        protocol_type: g.protocol_type.to_string(),
                        state: g.group_state.to_string(),
                        group_type: g.group_type.to_string(),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes one group: KIP-848 groups through ConsumerGroupDescribe (when the broker serves it), classic
    /// groups through DescribeGroups. A group the coordinator does not know is described as Dead with no
    /// members, as Kafka does.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        let connection = self.coordinator(group).await?;
        if connection
            .broker_versions(ApiKey::ConsumerGroupDescribe)
            .is_some()
        {
            let request = ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(str_bytes(group))]);
            let response = connection.request(&request).await?;
            if let Some(d) = response.groups.into_iter().next() {
                // GROUP_ID_NOT_FOUND: not a KIP-848 group (or no group at all); DescribeGroups decides.
                if d.error_code != ResponseError::GroupIdNotFound.code() {
                    check(
                        d.error_code,
                        d.error_message.as_ref(),
                        format!("group '{group}'"),
                    )?;
                    let mut members: Vec<MemberDescription> = d
                        .members
                        .into_iter()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.to_string(),
                            instance_id: m.instance_id.map(|s| s.to_string()),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: sorted(
                                m.assignment
                                    .topic_partitions
                                    .into_iter()
                                    .map(|t| (t.topic_name.0.to_string(), t.partitions)),
                            ),
                            user_data: None,
                        })
                        .collect();
                    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
                    return Ok(GroupDescription {
                        group_id: group.to_string(),
                        state: d.group_state.to_string(),
                        protocol_type: "consumer".into(),
                        protocol: d.assignor_name.to_string(),
                        group_type: GroupType::Consumer,
                        members,
                    });
                }
            }
        }
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
        let response = connection.request(&request).await?;
        let d = response.groups.into_iter().next().ok_or_else(|| {
            kafka_error(
                ResponseError::UnknownServerError,
                format!("the DescribeGroups response does not mention group '{group}'"),
            )
        })?;
        if d.error_code == ResponseError::GroupIdNotFound.code() {
            // DescribeGroups v6 reports an unknown group as an error; earlier versions as Dead.
            return Ok(GroupDescription {
                group_id: group.to_string(),
                state: "Dead".into(),
                protocol_type: String::new(),
                protocol: String::new(),
                group_type: GroupType::Classic,
                members: Vec::new(),
            });
        }
        check(
            d.error_code,
            d.error_message.as_ref(),
            format!("group '{group}'"),
        )?;
        let consumer_protocol = d.protocol_type.as_str() == "consumer";
        let mut members: Vec<MemberDescription> = d
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                user_data: if consumer_protocol {
                    crate::consumer::decode_subscription_user_data(m.member_metadata)
                        .unwrap_or_default()
                } else {
                    None
                },
                assignment: if consumer_protocol {
                    decode_assignment(m.member_assignment)
                } else {
                    Vec::new()
                },
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: d.group_state.to_string(),
            protocol_type: d.protocol_type.to_string(),
            protocol: d.protocol_data.to_string(),
            group_type: GroupType::Classic,
            members,
        })
    }

    /// Deletes groups (their committed offsets with them); a group with active members is refused by the
    /// broker with NON_EMPTY_GROUP.
    pub async fn delete_groups(
        &self,
        groups: &[String],
    ) -> Result<Vec<(String, Result<(), Error>)>, Error> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let connection = self.coordinator(group).await?;
            let request =
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
            let response = connection.request(&request).await?;
            let result = match response
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group)
            {
                None => Err(kafka_error(
                    ResponseError::UnknownServerError,
                    format!("the DeleteGroups response does not mention group '{group}'"),
                )),
                Some(r) => check(r.error_code, None, format!("group '{group}'")),
            };
            out.push((group.clone(), result));
        }
        Ok(out)
    }
}

/// Decodes a classic consumer-protocol assignment: an i16 version, then `ConsumerProtocolAssignment` at that
/// version. Versions newer than this client knows only append fields, so they are read as the newest known.
/// An undecodable assignment shows as none rather than failing the whole description.
pub(crate) fn decode_assignment(bytes: bytes::Bytes) -> Vec<TopicPartitions> {
    let mut buf = bytes;
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => sorted(
            a.assigned_partitions
                .into_iter()
                .map(|t| (t.topic.0.to_string(), t.partitions)),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "undecodable consumer-protocol assignment");
            Vec::new()
        }
    }
}

fn sorted(topics: impl Iterator<Item = (String, Vec<i32>)>) -> Vec<TopicPartitions> {
    let mut merged: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partitions) in topics {
        merged.entry(topic).or_default().extend(partitions);
    }
    merged
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            partitions.dedup();
            TopicPartitions { topic, partitions }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use strom_protocol::kafka::messages::consumer_protocol_assignment::TopicPartition;
    use strom_protocol::kafka::messages::TopicName;
    use strom_protocol::kafka::protocol::Encodable;

    fn encoded(version: i16, a: &ConsumerProtocolAssignment) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.clamp(0, 3)).unwrap();
        buf.freeze()
    }

    #[test]
    fn assignment_is_decoded_after_its_version() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(str_bytes("b")))
                .with_partitions(vec![2, 0]),
            TopicPartition::default()
                .with_topic(TopicName(str_bytes("a")))
                .with_partitions(vec![1]),
        ]);
        for version in [0, 1, 3] {
            assert_eq!(
                decode_assignment(encoded(version, &a)),
                vec![
                    TopicPartitions {
                        topic: "a".into(),
                        partitions: vec![1]
                    },
                    TopicPartitions {
                        topic: "b".into(),
                        partitions: vec![0, 2]
                    },
                ]
            );
        }
    }

    #[test]
    fn garbage_assignment_shows_as_none() {
        assert!(decode_assignment(bytes::Bytes::from_static(&[0])).is_empty());
        assert!(decode_assignment(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_empty());
    }
}
