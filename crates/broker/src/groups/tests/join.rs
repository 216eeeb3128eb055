//! JoinGroup: forming generations, KIP-394, the initial delay, validation and the protocol vote.

use super::*;

#[test]
fn three_members_form_one_generation_then_sync_to_stable() {
    let mut h = Harness::new(config(3000));
    let replies: Vec<ReplyId> = (0..3).map(|i| h.join(i * 100, J::new("")).0).collect();
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    assert!(
        h.tick(3000).is_empty(),
        "members kept arriving: the delay is extended"
    );
    let out = h.tick(6000);
    let answers: Vec<JoinAnswer> = replies
        .iter()
        .map(|r| join_answer(&out, *r).unwrap())
        .collect();
    let leader = answers[0].member_id.clone();
    for a in &answers {
        assert_eq!(
            (a.error, a.generation, a.leader.as_str()),
            (error::NONE, 1, leader.as_str())
        );
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        assert!(a.member_id.starts_with("client-"));
    }
    let ids: Vec<String> = answers.iter().map(|a| a.member_id.clone()).collect();
    assert_eq!(answers[0].members, ids, "the leader sees every member");
    assert!(answers[1].members.is_empty() && answers[2].members.is_empty());
    assert!(out.contains(&Output::GroupChanged {
        group_id: G.into(),
        state: GroupState::CompletingRebalance,
        generation_id: 1
    }));

    // Followers sync first and wait; the leader's assignment releases everybody.
    let (f1, out) = h.sync(7000, &ids[1], 1, &[]);
    assert!(out.is_empty());
    let (f2, _) = h.sync(7000, &ids[2], 1, &[]);
    let (l, out) = h.sync(7100, &ids[0], 1, &[(&ids[0], b"a0"), (&ids[1], b"a1")]);
    assert_eq!(
        sync_answer(&out, l),
        Some((error::NONE, Bytes::from_static(b"a0")))
    );
    assert_eq!(
        sync_answer(&out, f1),
        Some((error::NONE, Bytes::from_static(b"a1")))
    );
    assert_eq!(
        sync_answer(&out, f2),
        Some((error::NONE, Bytes::new())),
        "left out by the leader: empty"
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    // A late SyncGroup in Stable gets the stored assignment at once.
    let (again, out) = h.sync(8000, &ids[1], 1, &[]);
    assert_eq!(
        sync_answer(&out, again),
        Some((error::NONE, Bytes::from_static(b"a1")))
    );
}

#[test]
fn kip394_member_id_required_round_trip() {
    let mut h = Harness::new(config(3000));
    let (r, out) = h.join(0, J::new("").version(4));
    let a = join_answer(&out, r).unwrap();
    assert_eq!(a.error, error::MEMBER_ID_REQUIRED);
    assert!(a.member_id.starts_with("client-") && a.member_id.len() > "client-".len() + 30);
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
    assert_eq!(
        h.c.next_deadline(),
        Some(SESSION),
        "the pending id expires after the session timeout"
    );

    let (r2, out) = h.join(500, J::new(&a.member_id).version(4));
    assert!(
        join_answer(&out, r2).is_none(),
        "parked for the initial delay"
    );
    let out = h.tick(3500);
    let joined = join_answer(&out, r2).unwrap();
    assert_eq!((joined.error, joined.generation), (error::NONE, 1));
    assert_eq!(
        (joined.member_id.as_str(), joined.leader.as_str()),
        (a.member_id.as_str(), a.member_id.as_str())
    );
}

#[test]
fn kip394_unused_member_id_expires() {
    let mut h = Harness::new(config(3000));
    let (r, out) = h.join(0, J::new("").version(5));
    let id = join_answer(&out, r).unwrap().member_id;
    assert!(h.tick(SESSION - 1).is_empty());
    assert!(h.tick(SESSION).is_empty());
    assert_eq!(
        h.c.group_state(G),
        None,
        "a group that never formed is forgotten"
    );
    assert_eq!(h.c.next_deadline(), None);
    let (r, out) = h.join(SESSION + 1, J::new(&id).version(5));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn old_versions_join_directly_with_a_new_id() {
    let mut h = Harness::new(config(0));
    let (r, out) = h.join(0, J::new("").version(3));
    let a = join_answer(&out, r).unwrap();
    assert_eq!(
        (a.error, a.generation),
        (error::NONE, 1),
        "no initial delay configured: completes at once"
    );
    assert!(a.member_id.starts_with("client-"));
    assert_eq!(a.members, vec![a.member_id.clone()]);
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::new(config(0));
    let (r, out) = h.join(0, J::new("").group(""));
    assert_eq!(join_answer(&out, r).unwrap().error, error::INVALID_GROUP_ID);
    let (r, out) = h.join(0, J::new("").session(5999));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::INVALID_SESSION_TIMEOUT
    );
    let (r, out) = h.join(0, J::new("").session(1_800_001));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::INVALID_SESSION_TIMEOUT
    );
    let (r, out) = h.join(0, J::new("someone"));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::UNKNOWN_MEMBER_ID,
        "group does not exist"
    );
    assert_eq!(h.c.group_state(G), None);
    let (r, out) = h.join(0, J::new("").protocols(&[]));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        h.c.group_state(G),
        None,
        "a failed first join leaves no group behind"
    );

    let ids = h.stable_group_delay0(1);
    let (r, out) = h.join(10, J::new("someone"));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::UNKNOWN_MEMBER_ID
    );
    let mut other_type = J::new("");
    other_type.protocol_type = "connect".into();
    let (r, out) = h.join(10, other_type);
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    let (r, out) = h.join(10, J::new("").protocols(&[("roundrobin", b"")]));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        h.c.group_state(G),
        Some(GroupState::Stable),
        "rejected joins change nothing"
    );
    // The lone member itself may switch assignors (a documented deviation).
    let (r, out) = h.join(20, J::new(&ids[0]).protocols(&[("roundrobin", b"")]));
    let a = join_answer(&out, r).unwrap();
    assert_eq!(
        (a.error, a.generation, a.protocol_name.as_deref()),
        (error::NONE, 2, Some("roundrobin"))
    );
}

#[test]
fn protocol_vote_picks_what_most_members_prefer_among_common_protocols() {
    let mut h = Harness::new(config(3000));
    let (ra, _) = h.join(
        0,
        J::new("").protocols(&[("sticky", b"a"), ("range", b"a"), ("roundrobin", b"a")]),
    );
    let (_, _) = h.join(
        0,
        J::new("").protocols(&[("roundrobin", b"b"), ("range", b"b")]),
    );
    let (_, _) = h.join(
        0,
        J::new("").protocols(&[("roundrobin", b"c"), ("range", b"c"), ("sticky", b"c")]),
    );
    h.tick(3000);
    let out = h.tick(6000);
    let a = join_answer(&out, ra).unwrap();
    // sticky is not supported by everybody; roundrobin gets 2 votes, range 1.
    assert_eq!(a.protocol_name.as_deref(), Some("roundrobin"));
    let metadata: Vec<Bytes> = out
        .iter()
        .find_map(|o| match o {
            Output::Join { reply, members, .. } if *reply == ra => {
                Some(members.iter().map(|m| m.metadata.clone()).collect())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        metadata,
        vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c")
        ]
    );
}

#[test]
fn initial_delay_waits_and_extends_up_to_the_rebalance_timeout() {
    let mut h = Harness::new(config(3000));
    let (r0, _) = h.join(0, J::new("").rebalance(10_000));
    assert_eq!(h.c.next_deadline(), Some(3000));
    assert!(h.tick(2999).is_empty());
    h.join(1000, J::new("").rebalance(10_000));
    assert!(join_answer(&h.tick(3000), r0).is_none());
    assert_eq!(h.c.next_deadline(), Some(6000));
    h.join(4000, J::new("").rebalance(10_000));
    assert!(join_answer(&h.tick(6000), r0).is_none());
    assert_eq!(h.c.next_deadline(), Some(9000));
    h.join(7000, J::new("").rebalance(10_000));
    assert!(join_answer(&h.tick(9000), r0).is_none());
    assert_eq!(
        h.c.next_deadline(),
        Some(10_000),
        "the last step is cut to the rebalance timeout"
    );
    h.join(9500, J::new("").rebalance(10_000));
    let out = h.tick(10_000);
    let a = join_answer(&out, r0).unwrap();
    assert_eq!((a.generation, a.members.len()), (1, 5));
}

#[test]
fn initial_delay_completes_after_one_step_without_new_members() {
    let mut h = Harness::new(config(3000));
    let (r, _) = h.join(0, J::new(""));
    let (r2, _) = h.join(0, J::new("").group("other"));
    let out = h.tick(3000);
    assert_eq!(join_answer(&out, r).unwrap().generation, 1);
    assert_eq!(
        join_answer(&out, r2).unwrap().generation,
        1,
        "groups keep separate state"
    );
}

#[test]
fn follower_rejoin_in_stable_returns_current_generation_leader_rejoin_rebalances() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(2, 6000);
    let (r, out) = h.join(7000, J::new(&ids[1]));
    let a = join_answer(&out, r).unwrap();
    assert_eq!(
        (a.error, a.generation, a.leader.as_str()),
        (error::NONE, 1, ids[0].as_str())
    );
    assert!(a.members.is_empty());
    assert_eq!(out.len(), 1, "no state change");
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));

    // Changed metadata from a follower rebalances.
    let (r, out) = h.join(8000, J::new(&ids[1]).protocols(&[("range", b"new")]));
    assert!(join_answer(&out, r).is_none());
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let (rl, out) = h.join(8100, J::new(&ids[0]));
    let a = join_answer(&out, rl).unwrap();
    assert_eq!((a.generation, a.members.len()), (2, 2));
    assert_eq!(join_answer(&out, r).unwrap().generation, 2);
    for id in &ids {
        h.sync(8200, id, 2, &[]);
    }
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));

    // The leader rejoining Stable starts a rebalance even with unchanged metadata.
    let (_, out) = h.join(9000, J::new(&ids[0]));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::GroupChanged {
            state: GroupState::PreparingRebalance,
            ..
        }
    )));
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::new(GroupConfig {
        max_size: 2,
        ..config(3000)
    });
    let _ids = h.stable_group(2, 6000);
    let (r, out) = h.join(7000, J::new(""));
    assert_eq!(
        join_answer(&out, r).unwrap().error,
        error::GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
}

impl Harness {
    /// With no initial delay, `n` members joining one after the other each finish a generation alone: this
    /// joins one member and syncs it (for tests that need a simple Stable group).
    pub fn stable_group_delay0(&mut self, n: usize) -> Vec<String> {
        assert_eq!(n, 1);
        let (r, out) = self.join(0, J::new(""));
        let id = join_answer(&out, r).unwrap().member_id;
        let (_, out) = self.sync(0, &id, 1, &[(&id, b"x")]);
        assert!(!out.is_empty());
        vec![id]
    }
}
