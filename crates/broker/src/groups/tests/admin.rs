//! The admin side: OffsetCommit validation, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete topics, and
//! the deadline the driver sleeps until.

use bytes::BytesMut;
use strom_protocol::kafka::messages::ConsumerProtocolSubscription;
use strom_protocol::kafka::protocol::{Encodable, StrBytes};

use super::*;
use crate::groups::subscription_topics;

fn subscription(topics: &[&str], version: i16) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        )
        .with_generation_id(3);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    subscription.encode(&mut buf, version).unwrap();
    buf.freeze()
}

#[test]
fn subscribed_topics_decodes_consumer_subscriptions() {
    assert_eq!(
        subscription_topics(&subscription(&["a", "b"], 0)),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        subscription_topics(&subscription(&["c"], 3)),
        Some(vec!["c".into()])
    );
    assert_eq!(subscription_topics(&Bytes::from_static(b"\x00")), None);

    let mut h = Harness::new(config(3000));
    let mut j1 = J::new("");
    j1.protocols = vec![("range".into(), subscription(&["orders", "payments"], 1))];
    let mut j2 = J::new("");
    j2.protocols = vec![("range".into(), subscription(&["orders", "refunds"], 3))];
    h.join(0, j1);
    h.join(0, j2);
    assert_eq!(h.c.subscribed_topics(G), None, "no protocol chosen yet");
    h.tick(3000);
    h.tick(6000);
    let topics: Vec<String> = h.c.subscribed_topics(G).unwrap().into_iter().collect();
    assert_eq!(topics, vec!["orders", "payments", "refunds"]);
    assert_eq!(h.c.subscribed_topics("unknown"), None);

    let mut h = Harness::new(config(0));
    let mut connect = J::new("");
    connect.protocol_type = "connect".into();
    h.join(0, connect);
    assert_eq!(h.c.subscribed_topics(G), None, "not a consumer group");
    let mut h = Harness::new(config(0));
    h.join(0, J::new("").protocols(&[("range", b"\x00\x01garbage")]));
    assert_eq!(h.c.subscribed_topics(G), None, "undecodable metadata");
}

#[test]
fn delete_group_only_when_empty() {
    let mut h = Harness::new(config(3000));
    assert_eq!(h.c.delete_group(G), Err(error::GROUP_ID_NOT_FOUND));
    let ids = h.stable_group(2, 6000);
    assert_eq!(h.c.delete_group(G), Err(error::NON_EMPTY_GROUP));
    let pairs: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    h.leave(7000, &pairs);
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
    assert_eq!(h.c.delete_group(G), Ok(()));
    h.c.check_invariants();
    assert_eq!(h.c.group_state(G), None);
    assert!(h.c.list_groups().is_empty());
    assert_eq!(h.c.next_deadline(), None);
}

#[test]
fn validate_commit_rules() {
    let mut h = Harness::new(config(3000));
    // Standalone consumers and admin clients: unknown group or Empty group, generation -1.
    assert_eq!(h.c.validate_commit("simple", "", None, -1), Ok(()));
    assert_eq!(
        h.c.validate_commit("simple", "", None, 0),
        Err(error::ILLEGAL_GENERATION)
    );
    assert_eq!(
        h.c.validate_commit("", "", None, -1),
        Err(error::INVALID_GROUP_ID)
    );
    let ids = h.form_group(2);
    assert_eq!(
        h.c.validate_commit(G, &ids[0], None, 1),
        Err(error::REBALANCE_IN_PROGRESS),
        "CompletingRebalance"
    );
    h.sync(6000, &ids[1], 1, &[]);
    h.sync(6000, &ids[0], 1, &[]);
    assert_eq!(h.c.validate_commit(G, &ids[0], None, 1), Ok(()));
    assert_eq!(
        h.c.validate_commit(G, "nobody", None, 1),
        Err(error::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        h.c.validate_commit(G, &ids[0], None, 0),
        Err(error::ILLEGAL_GENERATION)
    );
    assert_eq!(
        h.c.validate_commit(G, "", None, -1),
        Err(error::UNKNOWN_MEMBER_ID),
        "group is not Empty"
    );
    assert_eq!(
        h.c.validate_commit(G, &ids[0], Some("unknown-instance"), 1),
        Err(error::UNKNOWN_MEMBER_ID)
    );
    // PreparingRebalance: an eager consumer commits before it rejoins, with the generation it still has.
    h.join(7000, J::new(""));
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    assert_eq!(h.c.validate_commit(G, &ids[1], None, 1), Ok(()));
    let pairs: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    h.leave(7100, &pairs);
}

#[test]
fn validate_commit_on_empty_group() {
    let mut h = Harness::new(config(0));
    let ids = h.stable_group_delay0(1);
    h.leave(10, &[(&ids[0], None)]);
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
    assert_eq!(h.c.validate_commit(G, "", None, -1), Ok(()));
    assert_eq!(h.c.validate_commit(G, "whoever", None, -1), Ok(()));
    assert_eq!(
        h.c.validate_commit(G, &ids[0], None, 2),
        Err(error::UNKNOWN_MEMBER_ID)
    );
}

#[test]
fn a_valid_commit_restarts_the_member_s_session_like_a_heartbeat() {
    let mut h = Harness::new(config(0));
    let ids = h.stable_group_delay0(1);
    assert_eq!(h.c.next_deadline(), Some(SESSION));
    // A rejected commit is not a sign of life.
    assert_eq!(
        h.c.commit(5_000, G, &ids[0], None, 0),
        Err(error::ILLEGAL_GENERATION)
    );
    assert_eq!(h.c.next_deadline(), Some(SESSION));
    assert_eq!(h.c.commit(9_000, G, &ids[0], None, 1), Ok(()));
    assert_eq!(h.c.next_deadline(), Some(9_000 + SESSION));
    assert!(
        h.tick(SESSION).is_empty(),
        "no heartbeat since 0, yet alive"
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    h.tick(9_000 + SESSION);
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
    // A standalone commit to the now empty group touches nobody.
    assert_eq!(h.c.commit(20_000, G, "", None, -1), Ok(()));
    assert_eq!(h.c.next_deadline(), None);
}

#[test]
fn describe_and_list_groups() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(2, 6000);
    let d = h.c.describe_group(G).unwrap();
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.protocol_name.as_str()),
        (GroupState::Stable, "consumer", "range")
    );
    let members: Vec<&str> = d.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members, vec![ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(d.members[1].assignment, Bytes::from_static(b"assigned"));
    assert_eq!(d.members[1].metadata, Bytes::from_static(b"meta"));
    assert_eq!(
        (
            d.members[0].client_id.as_str(),
            d.members[0].client_host.as_str()
        ),
        ("client", "/127.0.0.1")
    );
    h.join(7000, J::new(&ids[0]));
    let d = h.c.describe_group(G).unwrap();
    assert_eq!(
        (d.state, d.protocol_name.as_str()),
        (GroupState::PreparingRebalance, "")
    );
    assert!(d
        .members
        .iter()
        .all(|m| m.metadata.is_empty() && m.assignment.is_empty()));
    assert_eq!(
        GroupState::PreparingRebalance.as_kafka_str(),
        "PreparingRebalance"
    );
    h.join(7000, J::new("").group("b-group"));
    let listed: Vec<(String, GroupState)> =
        h.c.list_groups()
            .into_iter()
            .map(|g| (g.group_id, g.state))
            .collect();
    assert_eq!(
        listed,
        vec![
            ("b-group".into(), GroupState::PreparingRebalance),
            (G.into(), GroupState::PreparingRebalance)
        ]
    );
    assert_eq!(h.c.describe_group("missing"), None);
}

#[test]
fn next_deadline_tracks_the_earliest_timer() {
    let mut h = Harness::new(config(3000));
    assert_eq!(h.c.next_deadline(), None);
    h.join(100, J::new("").version(4));
    assert_eq!(
        h.c.next_deadline(),
        Some(100 + SESSION),
        "pending KIP-394 id"
    );
    h.join(200, J::new("").group("other"));
    assert_eq!(
        h.c.next_deadline(),
        Some(3200),
        "initial delay of the other group"
    );
    h.tick(3200);
    // other: generation 1 formed at 3200; its member's session and sync deadline are now the timers.
    assert_eq!(h.c.next_deadline(), Some(100 + SESSION));
    h.tick(100 + SESSION);
    assert_eq!(
        h.c.next_deadline(),
        Some(3200 + SESSION),
        "session of other's member"
    );
    assert_eq!(h.c.group_state(G), None);
    let heartbeat = |h: &mut Harness, now: u64| {
        let member = h.c.describe_group("other").unwrap().members[0]
            .member_id
            .clone();
        h.c.handle(
            now,
            Event::Heartbeat {
                reply: 99,
                group_id: "other".into(),
                member_id: member,
                group_instance_id: None,
                generation_id: 1,
            },
        )
    };
    heartbeat(&mut h, 12_000);
    assert_eq!(
        h.c.next_deadline(),
        Some(12_000 + SESSION),
        "the heartbeat moved the session"
    );
    assert!(h.tick(12_000 + SESSION - 1).is_empty());
    let out = h.tick(12_000 + SESSION);
    assert!(out.contains(&Output::GroupChanged {
        group_id: "other".into(),
        state: GroupState::Empty,
        generation_id: 2
    }));
    assert_eq!(h.c.next_deadline(), None);
}
