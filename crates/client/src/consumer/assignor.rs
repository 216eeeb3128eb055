//! The classic group protocol's client side, without I/O: the subscription and assignment blobs every Kafka
//! client exchanges through JoinGroup/SyncGroup, and the range assignor the group leader runs.
//!
//! Both blobs are a 2-byte version followed by the message at that version. A newer member may send a version
//! this client does not know; newer versions only add fields at the end, so it is read at the highest known one.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use strom_protocol::kafka::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use strom_protocol::kafka::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use strom_protocol::kafka::protocol::{Decodable, Encodable, StrBytes};

/// The assignor strategy name this client offers (the Java client's `RangeAssignor`).
pub const RANGE: &str = "range";

/// The version of the blobs this client writes: v0 carries everything the range assignor needs, and every
/// Kafka client reads it.
const WRITE_VERSION: i16 = 0;
const MAX_READ_VERSION: i16 = 3;

fn encode_versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    message
        .encode(&mut buf, WRITE_VERSION)
        .expect("v0 consumer protocol messages always encode");
    buf.freeze()
}

fn decode_versioned<M: Decodable>(mut data: Bytes) -> Result<M, String> {
    if data.len() < 2 {
        return Err(format!("{} bytes, no version", data.len()));
    }
    let version = data.get_i16();
    if version < 0 {
        return Err(format!("negative version {version}"));
    }
    M::decode(&mut data, version.min(MAX_READ_VERSION)).map_err(|e| format!("{e:#}"))
}

/// A member's JoinGroup metadata: the topics it subscribes to, and the application's user data (Kafka Streams
/// shares each instance's `application.server` this way).
pub fn encode_subscription(topics: &[String], user_data: Option<Bytes>) -> Bytes {
    encode_versioned(
        &ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_user_data(user_data),
    )
}

/// The user data of a member's JoinGroup metadata.
pub fn decode_subscription_user_data(data: Bytes) -> Result<Option<Bytes>, String> {
    let s: ConsumerProtocolSubscription = decode_versioned(data)?;
    Ok(s.user_data)
}

pub fn decode_subscription(data: Bytes) -> Result<Vec<String>, String> {
    let s: ConsumerProtocolSubscription = decode_versioned(data)?;
    Ok(s.topics.iter().map(|t| t.to_string()).collect())
}

/// A member's SyncGroup assignment: partitions per topic.
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Bytes {
    encode_versioned(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(
            partitions
                .iter()
                .map(|(t, ps)| {
                    AssignedTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.clone())))
                        .with_partitions(ps.clone())
                })
                .collect(),
        ),
    )
}

/// An empty SyncGroup assignment (a member that got nothing) decodes to no partitions.
pub fn decode_assignment(data: Bytes) -> Result<Vec<(String, i32)>, String> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(data)?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
        .collect())
}

/// The range assignor: for each topic, its subscribers sorted by member id each get a contiguous range of
/// partitions, the first `partitions % members` one extra. Returns member id → topic → partitions, with an
/// entry (maybe empty) for every member.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if take > 0 {
                out.get_mut(m)
                    .unwrap()
                    .insert(topic.clone(), (next..next + take).collect());
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_splits_each_topic_in_contiguous_ranges() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("b".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("a".to_string(), vec!["t".to_string()]),
        ]
        .into();
        let counts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let a = range_assign(&subs, &counts);
        assert_eq!(a["a"]["t"], vec![0, 1, 2]);
        assert_eq!(a["b"]["t"], vec![3, 4]);
        assert_eq!(a["b"]["u"], vec![0, 1]);
        assert!(!a["a"].contains_key("u"));
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty() {
        let subs: BTreeMap<String, Vec<String>> = (0..3)
            .map(|i| (format!("m{i}"), vec!["t".to_string()]))
            .collect();
        let a = range_assign(&subs, &[("t".to_string(), 2)].into());
        assert_eq!(a["m0"]["t"], vec![0]);
        assert_eq!(a["m1"]["t"], vec![1]);
        assert!(a["m2"].is_empty());
    }

    #[test]
    fn blobs_roundtrip_and_truncations_fail_cleanly() {
        let s = encode_subscription(&["a".into(), "b".into()], Some(Bytes::from_static(b"u")));
        assert_eq!(
            decode_subscription_user_data(s.clone()).unwrap().as_deref(),
            Some(&b"u"[..])
        );
        assert_eq!(decode_subscription(s.clone()).unwrap(), vec!["a", "b"]);
        let a = encode_assignment(&[("a".to_string(), vec![0, 2])].into());
        assert_eq!(
            decode_assignment(a.clone()).unwrap(),
            vec![("a".to_string(), 0), ("a".to_string(), 2)]
        );
        for cut in 0..s.len() {
            assert!(decode_subscription(s.slice(..cut)).is_err());
        }
        for cut in 1..a.len() {
            assert!(decode_assignment(a.slice(..cut)).is_err());
        }
    }
}
