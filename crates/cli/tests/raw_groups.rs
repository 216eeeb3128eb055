//! The classic group protocol at the wire level: the KIP-394 member-id round trip, Kafka's error codes for stale
//! generations and unknown members, one group's member unable to touch another group, and the admin APIs.

mod common;

use bytes::Bytes;
use common::raw::RawClient;
use common::TestBroker;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, RequestKind, ResponseKind, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(
    client: &mut RawClient,
    group: &str,
    member_id: &str,
    session_timeout_ms: i32,
) -> (i16, String, i32, String) {
    join_with(
        client,
        group,
        member_id,
        session_timeout_ms,
        Bytes::from_static(b"meta"),
    )
}

/// A consumer-protocol subscription (version prefix, then the struct), as consumers put in JoinGroup.
fn subscription(topics: &[&str]) -> Bytes {
    use bytes::BufMut;
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Encodable;
    let mut buf = bytes::BytesMut::new();
    buf.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .encode(&mut buf, 1)
        .unwrap();
    buf.freeze()
}

fn join_with(
    client: &mut RawClient,
    group: &str,
    member_id: &str,
    session_timeout_ms: i32,
    metadata: Bytes,
) -> (i16, String, i32, String) {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(metadata)]);
    let ResponseKind::JoinGroup(r) =
        client.request(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(request))
    else {
        panic!("wrong response type")
    };
    (
        r.error_code,
        r.member_id.to_string(),
        r.generation_id,
        r.leader.to_string(),
    )
}

fn sync(
    client: &mut RawClient,
    group: &str,
    member_id: &str,
    generation: i32,
    assignment: &'static [u8],
) -> (i16, Bytes) {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(member_id))
            .with_assignment(Bytes::from_static(assignment))]);
    let ResponseKind::SyncGroup(r) =
        client.request(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(request))
    else {
        panic!("wrong response type")
    };
    (r.error_code, r.assignment)
}

fn heartbeat(client: &mut RawClient, group: &str, member_id: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id));
    let ResponseKind::Heartbeat(r) =
        client.request(ApiKey::Heartbeat, 3, RequestKind::Heartbeat(request))
    else {
        panic!("wrong response type")
    };
    r.error_code
}

fn commit(
    client: &mut RawClient,
    group: &str,
    member_id: &str,
    generation: i32,
    topic: &str,
    offset: i64,
) -> i16 {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(s("note")));
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![partition])]);
    let ResponseKind::OffsetCommit(r) =
        client.request(ApiKey::OffsetCommit, 7, RequestKind::OffsetCommit(request))
    else {
        panic!("wrong response type")
    };
    r.topics[0].partitions[0].error_code
}

fn fetch_committed(client: &mut RawClient, group: &str, topic: &str) -> (i64, String) {
    let r = common::raw::offset_fetch(client, group, topic, 7);
    let p = &r.topics[0].partitions[0];
    (
        p.committed_offset,
        p.metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

fn describe(client: &mut RawClient, group: &str) -> (String, Vec<String>) {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let ResponseKind::DescribeGroups(r) = client.request(
        ApiKey::DescribeGroups,
        4,
        RequestKind::DescribeGroups(request),
    ) else {
        panic!("wrong response type")
    };
    let g = &r.groups[0];
    (
        g.group_state.to_string(),
        g.members.iter().map(|m| m.member_id.to_string()).collect(),
    )
}

/// Joins `group` as its only member and syncs it to Stable; returns (member id, generation).
fn form_group(client: &mut RawClient, group: &str) -> (String, i32) {
    let (code, member_id, _, _) = join(client, group, "", 10_000);
    assert_eq!(
        code, 79,
        "KIP-394: the first JoinGroup (v4+) asks for the member id"
    );
    assert!(!member_id.is_empty());
    let (code, again, generation, leader) = join(client, group, &member_id, 10_000);
    assert_eq!(
        (code, again.as_str(), leader.as_str()),
        (0, member_id.as_str(), member_id.as_str())
    );
    assert_eq!(
        sync(client, group, &member_id, generation, b"mine"),
        (0, Bytes::from_static(b"mine"))
    );
    (member_id, generation)
}

#[test]
fn stale_generations_and_unknown_members_get_kafka_error_codes() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    broker.create_topic("g-topic", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let (member, generation) = form_group(&mut client, "alpha");

    assert_eq!(heartbeat(&mut client, "alpha", &member, generation), 0);
    assert_eq!(
        heartbeat(&mut client, "alpha", &member, generation - 1),
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(
        heartbeat(&mut client, "alpha", "nobody", generation),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(
        sync(&mut client, "alpha", &member, generation + 5, b"x").0,
        22
    );
    assert_eq!(sync(&mut client, "alpha", "nobody", generation, b"x").0, 25);
    assert_eq!(join(&mut client, "alpha", "nobody", 10_000).0, 25);
    assert_eq!(
        join(&mut client, "beta", "", 1_000).0,
        26,
        "INVALID_SESSION_TIMEOUT below group.min.session.timeout.ms"
    );

    // A member of one group cannot act in another: its id means nothing there, and the other group is unchanged.
    let mut other = RawClient::connect(broker.addr);
    let (beta_member, beta_generation) = form_group(&mut other, "beta");
    assert_eq!(heartbeat(&mut client, "beta", &member, beta_generation), 25);
    assert_eq!(
        sync(&mut client, "beta", &member, beta_generation, b"stolen").0,
        25
    );
    assert_eq!(
        commit(&mut client, "beta", &member, beta_generation, "g-topic", 99),
        25
    );
    assert_eq!(
        describe(&mut other, "beta"),
        ("Stable".to_string(), vec![beta_member.clone()])
    );
    assert_eq!(
        heartbeat(&mut other, "beta", &beta_member, beta_generation),
        0
    );
    assert_eq!(fetch_committed(&mut other, "beta", "g-topic").0, -1);

    // Commits check the generation too.
    assert_eq!(
        commit(&mut client, "alpha", &member, generation - 1, "g-topic", 7),
        22
    );
    assert_eq!(
        commit(
            &mut client,
            "alpha",
            &member,
            generation,
            "no-such-topic",
            7
        ),
        3
    );
    assert_eq!(
        commit(&mut client, "alpha", &member, generation, "g-topic", 7),
        0
    );
    assert_eq!(
        fetch_committed(&mut client, "alpha", "g-topic"),
        (7, "note".to_string())
    );
}

#[test]
fn list_describe_leave_and_delete_groups() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    broker.create_topic("d-topic", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let (member, generation) = form_group(&mut client, "gamma");
    assert_eq!(
        commit(&mut client, "gamma", &member, generation, "d-topic", 3),
        0
    );
    // A standalone consumer (no member id, generation -1) commits for a group with no members.
    assert_eq!(commit(&mut client, "standalone", "", -1, "d-topic", 11), 0);

    let ResponseKind::ListGroups(listed) = client.request(
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    ) else {
        panic!("wrong response type")
    };
    let groups: Vec<(String, String)> = listed
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    assert!(
        groups.contains(&("gamma".to_string(), "Stable".to_string())),
        "{groups:?}"
    );
    assert!(
        groups.contains(&("standalone".to_string(), "Empty".to_string())),
        "{groups:?}"
    );

    let delete = |client: &mut RawClient, group: &str| -> i16 {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let ResponseKind::DeleteGroups(r) =
            client.request(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(request))
        else {
            panic!("wrong response type")
        };
        r.results[0].error_code
    };
    assert_eq!(
        delete(&mut client, "gamma"),
        68,
        "NON_EMPTY_GROUP while it has a member"
    );

    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("gamma")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
    let ResponseKind::LeaveGroup(left) =
        client.request(ApiKey::LeaveGroup, 3, RequestKind::LeaveGroup(leave))
    else {
        panic!("wrong response type")
    };
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(describe(&mut client, "gamma").0, "Empty");
    assert_eq!(delete(&mut client, "gamma"), 0);
    assert_eq!(
        fetch_committed(&mut client, "gamma", "d-topic").0,
        -1,
        "deleting a group deletes its offsets"
    );
    assert_eq!(
        delete(&mut client, "gamma"),
        69,
        "GROUP_ID_NOT_FOUND once gone"
    );
    assert_eq!(describe(&mut client, "never-existed").0, "Dead");
    assert_eq!(fetch_committed(&mut client, "standalone", "d-topic").0, 11);

    // Offsets and their deletion survive a restart.
    drop(client);
    let temp = broker.stop().unwrap();
    let broker = TestBroker::start_in(temp.path(), |c| c.group_initial_rebalance_delay_ms = 0);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        fetch_committed(&mut client, "standalone", "d-topic"),
        (11, "note".to_string())
    );
    assert_eq!(fetch_committed(&mut client, "gamma", "d-topic").0, -1);
}

#[test]
fn the_broker_computes_lag_from_committed_offsets_and_the_high_watermark() {
    let broker = TestBroker::start();
    broker.create_topic("lagging", 1, &[("segment.bytes", "1024")]);
    let mut client = RawClient::connect(broker.addr);
    for _ in 0..10 {
        common::raw::produce(
            &mut client,
            "lagging",
            0,
            common::raw::record_batch(3, None),
        );
    }
    assert_eq!(commit(&mut client, "lag-group", "", -1, "lagging", 12), 0);
    let state = broker.broker().state();
    let lag = strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "lag-group");
    assert_eq!(lag.len(), 1);
    assert_eq!(
        (lag[0].committed, lag[0].log_end_offset, lag[0].lag),
        (12, 30, 18)
    );

    // Records deleted below the committed offset do not count.
    let topic = state.topics.get("lagging").unwrap();
    topic.local[0].delete_records_before(21).unwrap();
    let lag = strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "lag-group");
    assert_eq!(lag[0].lag, 9);
    assert!(
        strom_broker::offsets::lag::group_lag(&state.topics, &state.offsets, "no-group").is_empty()
    );
}

#[test]
fn offset_delete_refuses_topics_an_active_member_subscribes_to() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::OffsetDeleteRequest;
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    broker.create_topic("subscribed", 1, &[]);
    broker.create_topic("abandoned", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let (code, member, _, _) =
        join_with(&mut client, "od", "", 10_000, subscription(&["subscribed"]));
    assert_eq!(code, 79);
    let (code, _, generation, _) = join_with(
        &mut client,
        "od",
        &member,
        10_000,
        subscription(&["subscribed"]),
    );
    assert_eq!(code, 0);
    assert_eq!(sync(&mut client, "od", &member, generation, b"a").0, 0);
    assert_eq!(
        commit(&mut client, "od", &member, generation, "subscribed", 5),
        0
    );
    assert_eq!(
        commit(&mut client, "od", &member, generation, "abandoned", 9),
        0
    );

    let delete = |client: &mut RawClient, topic: &str| -> (i16, i16) {
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("od")))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]);
        let ResponseKind::OffsetDelete(r) =
            client.request(ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(request))
        else {
            panic!("wrong response type")
        };
        (
            r.error_code,
            r.topics.first().map_or(-1, |t| t.partitions[0].error_code),
        )
    };
    assert_eq!(
        delete(&mut client, "subscribed"),
        (0, 86),
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    assert_eq!(fetch_committed(&mut client, "od", "subscribed").0, 5);
    assert_eq!(delete(&mut client, "abandoned"), (0, 0));
    assert_eq!(fetch_committed(&mut client, "od", "abandoned").0, -1);
    assert_eq!(delete_unknown_group(&mut client), 69, "GROUP_ID_NOT_FOUND");
}

fn delete_unknown_group(client: &mut RawClient) -> i16 {
    use kafka_protocol::messages::OffsetDeleteRequest;
    let request = OffsetDeleteRequest::default().with_group_id(GroupId(s("no-such-group")));
    let ResponseKind::OffsetDelete(r) =
        client.request(ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(request))
    else {
        panic!("wrong response type")
    };
    r.error_code
}
