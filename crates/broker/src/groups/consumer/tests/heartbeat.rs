//! Joining, reconciling, leaving, fencing and timers, one scenario per test.

use super::*;
use crate::groups::error as classic;

#[test]
fn a_first_member_gets_every_partition_at_epoch_one() {
    let mut h = H::new();
    let r = h.hb(join("a", &["t"]));
    assert_eq!(r.error, 0);
    assert_eq!(r.member_id, "a");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 1000);
    assert_eq!(parts(&r.assignment), (0..6).collect());
    assert_eq!(h.state(), ConsumerGroupState::Stable);
    // A steady heartbeat carries no assignment.
    let r = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    assert_eq!((r.error, r.member_epoch, r.assignment), (0, 1, None));
}

#[test]
fn a_second_member_waits_for_exactly_the_partitions_that_move() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    let b = h.hb(join("b", &["t"]));
    // b is at the new epoch but its partitions are still a's.
    assert_eq!(b.member_epoch, 2);
    assert_eq!(parts(&b.assignment), BTreeSet::new());
    assert_eq!(h.state(), ConsumerGroupState::Reconciling);
    // a is asked to give up three partitions, keeping its epoch until it confirms.
    let a = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    assert_eq!(a.member_epoch, 1);
    let kept = parts(&a.assignment);
    assert_eq!(kept.len(), 3);
    let moving: Vec<i32> = (0..6).filter(|p| !kept.contains(p)).collect();
    // Until a confirms, b gets nothing.
    let b = h.hb(beat("b", 2, &on_t(&[])));
    assert_eq!(b.assignment, None);
    let kept_list: Vec<i32> = kept.iter().copied().collect();
    let a = h.hb(beat("a", 1, &on_t(&kept_list)));
    assert_eq!(a.member_epoch, 2);
    let b = h.hb(beat("b", 2, &on_t(&[])));
    assert_eq!(parts(&b.assignment), moving.iter().copied().collect());
    assert_eq!(h.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_leaving_member_hands_its_partitions_over() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    let a = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    let kept: Vec<i32> = parts(&a.assignment).into_iter().collect();
    h.hb(beat("a", 1, &on_t(&kept)));
    let b = h.hb(beat("b", 2, &on_t(&[])));
    assert_eq!(parts(&b.assignment).len(), 3);
    let left = h.hb(leave("a", LEAVE_EPOCH));
    assert_eq!((left.error, left.member_epoch), (0, LEAVE_EPOCH));
    let owned: Vec<i32> = parts(&b.assignment).into_iter().collect();
    let b = h.hb(beat("b", 2, &on_t(&owned)));
    assert_eq!(b.member_epoch, 3);
    assert_eq!(parts(&b.assignment), (0..6).collect());
}

#[test]
fn wrong_epochs_are_fenced_and_a_lost_response_is_forgiven() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    let r = h.hb(beat("a", 7, &on_t(&[])));
    assert_eq!(r.error, error::FENCED_MEMBER_EPOCH);
    h.hb(join("b", &["t"]));
    let a = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    let kept: Vec<i32> = parts(&a.assignment).into_iter().collect();
    let a = h.hb(beat("a", 1, &on_t(&kept)));
    assert_eq!(a.member_epoch, 2);
    // The member missed the epoch-2 answer: epoch 1 with a subset of its assignment is accepted...
    let r = h.hb(beat("a", 1, &on_t(&kept)));
    assert_eq!((r.error, r.member_epoch), (0, 2));
    // ...but not while claiming partitions it no longer has.
    let r = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    assert_eq!(r.error, error::FENCED_MEMBER_EPOCH);
    // A fenced member rejoins with epoch 0 and gets its partitions back.
    let r = h.hb(join("a", &["t"]));
    assert_eq!(r.error, 0);
    assert_eq!(parts(&r.assignment), kept.iter().copied().collect());
}

#[test]
fn unknown_members_and_groups() {
    let mut h = H::new();
    let r = h.hb(beat("ghost", 3, &on_t(&[])));
    assert_eq!(r.error, classic::UNKNOWN_MEMBER_ID);
    let r = h.hb(leave("ghost", LEAVE_EPOCH));
    assert_eq!(r.error, classic::GROUP_ID_NOT_FOUND);
    h.hb(join("a", &["t"]));
    let r = h.hb(beat("ghost", 1, &on_t(&[])));
    assert_eq!(r.error, classic::UNKNOWN_MEMBER_ID);
    let r = h.hb(leave("ghost", LEAVE_EPOCH));
    assert_eq!(r.error, classic::UNKNOWN_MEMBER_ID);
}

#[test]
fn bad_requests_are_invalid_with_a_reason() {
    let mut h = H::new();
    let cases: Vec<(Heartbeat, &str)> = vec![
        (
            Heartbeat {
                group_id: "".into(),
                ..join("a", &["t"])
            },
            "GroupId",
        ),
        (
            Heartbeat {
                rebalance_timeout_ms: -1,
                ..join("a", &["t"])
            },
            "RebalanceTimeoutMs",
        ),
        (
            Heartbeat {
                owned: None,
                ..join("a", &["t"])
            },
            "TopicPartitions",
        ),
        (join("a", &[]), "SubscribedTopicNames"),
        (
            Heartbeat {
                subscribed_topic_regex: Some("t.*".into()),
                ..join("a", &["t"])
            },
            "SubscribedTopicRegex",
        ),
        (
            Heartbeat {
                instance_id: Some("".into()),
                ..join("a", &["t"])
            },
            "InstanceId",
        ),
        (leave("a", -3), "MemberEpoch"),
        (leave("", 4), "MemberId"),
        (leave("a", STATIC_LEAVE_EPOCH), "InstanceId"),
    ];
    for (request, field) in cases {
        let r = h.hb(request);
        assert_eq!(r.error, error::INVALID_REQUEST, "{field}");
        assert!(r.error_message.unwrap().contains(field), "{field}");
    }
    let r = h.hb(Heartbeat {
        server_assignor: Some("sticky".into()),
        ..join("a", &["t"])
    });
    assert_eq!(r.error, error::UNSUPPORTED_ASSIGNOR);
    assert!(
        h.c.describe_group(G).is_none(),
        "no group created by bad requests"
    );
}

#[test]
fn the_session_timeout_removes_a_silent_member() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.advance(SESSION / 2);
    h.hb(join("b", &["t"]));
    assert_eq!(h.c.next_deadline(), Some(SESSION));
    let out = h.advance(SESSION / 2);
    assert!(out
        .iter()
        .any(|o| matches!(o, ConsumerOutput::MemberRemoved { member_id, .. } if member_id == "a")));
    let b = h.hb(beat("b", 2, &on_t(&[])));
    assert_eq!(b.member_epoch, 3);
    assert_eq!(parts(&b.assignment), (0..6).collect());
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_removed() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    // a keeps heartbeating but never lets go.
    for _ in 0..5 {
        h.advance(REBALANCE as u64 / 5 - 1);
        let r = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
        assert_eq!(r.error, 0);
        h.hb(beat("b", 2, &on_t(&[])));
    }
    h.advance(10);
    assert!(!h.c.group(G).unwrap().members.contains_key("a"));
    let b = h.hb(beat("b", 2, &on_t(&[])));
    assert_eq!(parts(&b.assignment), (0..6).collect());
}

#[test]
fn static_members_leave_temporarily_and_come_back_with_their_partitions() {
    let mut h = H::new();
    let a = h.hb(Heartbeat {
        instance_id: Some("i-a".into()),
        ..join("a1", &["t"])
    });
    assert_eq!(parts(&a.assignment).len(), 6);
    // Another process with the same instance id cannot take it while a1 is live.
    let r = h.hb(Heartbeat {
        instance_id: Some("i-a".into()),
        ..join("a2", &["t"])
    });
    assert_eq!(r.error, error::UNRELEASED_INSTANCE_ID);
    let r = h.hb(Heartbeat {
        instance_id: Some("i-a".into()),
        ..leave("a1", STATIC_LEAVE_EPOCH)
    });
    assert_eq!((r.error, r.member_epoch), (0, STATIC_LEAVE_EPOCH));
    // Nobody else gets its partitions meanwhile.
    let b = h.hb(join("b", &["t"]));
    let b = h.hb(beat("b", b.member_epoch, &on_t(&[])));
    assert!(parts(&Some(b.assignment.unwrap_or_default())).len() <= 3);
    let r = h.hb(Heartbeat {
        instance_id: Some("i-a".into()),
        ..join("a2", &["t"])
    });
    assert_eq!(r.error, 0);
    assert_eq!(r.member_id, "a2");
    assert!(!parts(&r.assignment).is_empty());
    // The old member id is fenced by the new one.
    let r = h.hb(Heartbeat {
        instance_id: Some("i-a".into()),
        ..beat("a1", 1, &on_t(&[]))
    });
    assert_eq!(r.error, classic::FENCED_INSTANCE_ID);
}

#[test]
fn new_partitions_and_topics_created_later_lead_to_a_new_target() {
    let mut h = H::new();
    let a = h.hb(join("a", &["t", "later"]));
    assert_eq!(a.member_epoch, 1);
    h.set_partitions("t", 1, 8);
    let a = h.hb(beat("a", 1, &on_t(&[0, 1, 2, 3, 4, 5])));
    assert_eq!(a.member_epoch, 2);
    assert_eq!(parts(&a.assignment), (0..8).collect());
    h.set_partitions("later", 2, 2);
    let a = h.hb(beat("a", 2, &on_t(&[0, 1, 2, 3, 4, 5, 6, 7])));
    assert_eq!(a.member_epoch, 3);
    let assignment = a.assignment.unwrap();
    assert_eq!(assignment[&topic_id(2)], BTreeSet::from([0, 1]));
    // A deleted topic's partitions must be revoked.
    h.topics.remove("later");
    let mut owned = on_t(&[0, 1, 2, 3, 4, 5, 6, 7]);
    owned.insert(topic_id(2), BTreeSet::from([0, 1]));
    let a = h.hb(beat("a", 3, &owned));
    assert_eq!(a.member_epoch, 3);
    assert!(!a.assignment.unwrap().contains_key(&topic_id(2)));
}

#[test]
fn the_range_assignor_can_be_chosen_by_the_members() {
    let mut h = H::new();
    h.hb(Heartbeat {
        server_assignor: Some("range".into()),
        ..join("b", &["t"])
    });
    h.hb(Heartbeat {
        server_assignor: Some("range".into()),
        ..join("a", &["t"])
    });
    let d = h.c.describe_group(G).unwrap();
    assert_eq!(d.assignor, "range");
    let a = d.members.iter().find(|m| m.member_id == "a").unwrap();
    assert_eq!(a.target_assignment[0].partitions, vec![0, 1, 2]);
    assert_eq!(a.target_assignment[0].topic_name, "t");
}

#[test]
fn offset_commits_need_the_current_member_epoch() {
    let mut h = H::new();
    assert_eq!(
        h.c.validate_commit(G, "", -1),
        None,
        "unknown group: classic rules"
    );
    h.hb(join("a", &["t"]));
    assert_eq!(h.c.validate_commit(G, "a", 1), Some(Ok(())));
    assert_eq!(
        h.c.validate_commit(G, "a", 0),
        Some(Err(error::STALE_MEMBER_EPOCH))
    );
    assert_eq!(
        h.c.validate_commit(G, "x", 1),
        Some(Err(classic::UNKNOWN_MEMBER_ID))
    );
    assert_eq!(
        h.c.validate_commit(G, "", -1),
        Some(Err(classic::UNKNOWN_MEMBER_ID))
    );
    h.hb(leave("a", LEAVE_EPOCH));
    assert_eq!(
        h.c.validate_commit(G, "", -1),
        Some(Ok(())),
        "empty group: simple commits"
    );
    assert_eq!(h.state(), ConsumerGroupState::Empty);
    assert_eq!(
        h.c.list_groups(),
        vec![(G.to_string(), ConsumerGroupState::Empty)]
    );
    assert_eq!(h.c.delete_group(G), Ok(()));
}

#[test]
fn describe_shows_epochs_members_and_assignments() {
    let mut h = H::new();
    h.hb(join("a", &["t"]));
    h.hb(join("b", &["t"]));
    let d = h.c.describe_group(G).unwrap();
    assert_eq!(d.state, ConsumerGroupState::Reconciling);
    assert_eq!((d.group_epoch, d.assignment_epoch), (2, 2));
    assert_eq!(d.assignor, "uniform");
    let a = &d.members[0];
    assert_eq!((a.member_id.as_str(), a.member_epoch), ("a", 1));
    assert_eq!(a.assignment[0].partitions.len(), 6);
    assert_eq!(a.target_assignment[0].partitions.len(), 3);
    assert_eq!(a.subscribed_topic_names, vec!["t".to_string()]);
}
