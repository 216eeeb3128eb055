//! Sessions, rebalance and sync timeouts, stale or unknown members, LeaveGroup.

use super::*;
use crate::groups::leave_error_v0;

#[test]
fn session_expiry_removes_member_and_survivors_rejoin_into_new_generation() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(3, 6000);
    // Everybody's session restarted at the SyncGroup (6000 + 10000).
    assert_eq!(h.c.next_deadline(), Some(16_000));
    assert_eq!(h.heartbeat(12_000, &ids[0], None, 1), error::NONE);
    assert_eq!(h.heartbeat(12_000, &ids[1], None, 1), error::NONE);
    let out = h.tick(16_000);
    assert!(out.contains(&Output::GroupChanged {
        group_id: G.into(),
        state: GroupState::PreparingRebalance,
        generation_id: 1
    }));
    assert_eq!(
        h.heartbeat(16_500, &ids[0], None, 1),
        error::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        h.heartbeat(16_500, &ids[2], None, 1),
        error::UNKNOWN_MEMBER_ID
    );
    let (r0, out) = h.join(17_000, J::new(&ids[0]));
    assert!(out.is_empty());
    let (r1, out) = h.join(17_100, J::new(&ids[1]));
    let leader = join_answer(&out, r0).unwrap();
    assert_eq!(
        (leader.generation, leader.members.clone()),
        (2, vec![ids[0].clone(), ids[1].clone()])
    );
    assert_eq!(join_answer(&out, r1).unwrap().generation, 2);
}

#[test]
fn rebalance_timeout_removes_member_that_does_not_rejoin() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(3, 6000);
    let (rd, _) = h.join(7000, J::new(""));
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let (r0, _) = h.join(7100, J::new(&ids[0]));
    let (r1, _) = h.join(7100, J::new(&ids[1]));
    // ids[2] keeps heartbeating (told to rejoin) but never rejoins, like a consumer stuck in processing.
    for t in [10_000, 20_000, 30_000] {
        assert_eq!(
            h.heartbeat(t, &ids[2], None, 1),
            error::REBALANCE_IN_PROGRESS
        );
    }
    assert!(join_answer(&h.tick(7000 + REBALANCE - 1), r0).is_none());
    let out = h.tick(7000 + REBALANCE);
    let leader = join_answer(&out, r0).unwrap();
    assert_eq!(leader.generation, 2);
    assert_eq!(leader.members.len(), 3);
    assert!(!leader.members.contains(&ids[2]));
    assert!(join_answer(&out, r1).is_some() && join_answer(&out, rd).is_some());
    assert_eq!(
        h.heartbeat(37_001, &ids[2], None, 1),
        error::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn leader_that_never_syncs_is_removed_and_group_rebalances() {
    let mut h = Harness::new(config(3000));
    let ids = h.form_group(3); // completes at 6000, sync deadline 6000 + 30000
    let (f1, out) = h.sync(7000, &ids[1], 1, &[]);
    assert!(out.is_empty());
    let (f2, _) = h.sync(7000, &ids[2], 1, &[]);
    for t in [10_000, 20_000, 30_000] {
        assert_eq!(
            h.heartbeat(t, &ids[0], None, 1),
            error::NONE,
            "CompletingRebalance accepts heartbeats"
        );
    }
    let out = h.tick(35_999);
    assert!(
        sync_answer(&out, f1).is_none(),
        "parked members are not expired by their session"
    );
    let out = h.tick(36_000);
    assert_eq!(
        sync_answer(&out, f1),
        Some((error::REBALANCE_IN_PROGRESS, Bytes::new()))
    );
    assert_eq!(
        sync_answer(&out, f2),
        Some((error::REBALANCE_IN_PROGRESS, Bytes::new()))
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat(36_001, &ids[0], None, 1),
        error::UNKNOWN_MEMBER_ID
    );
    let (r1, _) = h.join(36_100, J::new(&ids[1]));
    let (_, out) = h.join(36_100, J::new(&ids[2]));
    let a = join_answer(&out, r1).unwrap();
    assert_eq!(
        (a.generation, a.leader.as_str(), a.members.len()),
        (2, ids[1].as_str(), 2)
    );
}

#[test]
fn follower_that_never_syncs_after_stable_is_removed() {
    let mut h = Harness::new(config(3000));
    let ids = h.form_group(2);
    h.sync(7000, &ids[0], 1, &[]);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    assert_eq!(h.heartbeat(15_000, &ids[1], None, 1), error::NONE);
    assert_eq!(h.heartbeat(15_000, &ids[0], None, 1), error::NONE);
    assert_eq!(h.heartbeat(25_000, &ids[1], None, 1), error::NONE);
    assert_eq!(h.heartbeat(25_000, &ids[0], None, 1), error::NONE);
    assert_eq!(h.heartbeat(33_000, &ids[1], None, 1), error::NONE);
    assert_eq!(h.heartbeat(33_000, &ids[0], None, 1), error::NONE);
    h.tick(36_000);
    assert_eq!(
        h.heartbeat(36_001, &ids[1], None, 1),
        error::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.heartbeat(36_001, &ids[0], None, 1),
        error::REBALANCE_IN_PROGRESS
    );
}

#[test]
fn stale_generation_and_unknown_members_are_rejected() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(2, 6000);
    assert_eq!(
        h.heartbeat(7000, &ids[0], None, 0),
        error::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.heartbeat(7000, &ids[0], None, 2),
        error::ILLEGAL_GENERATION
    );
    let (r, out) = h.sync(7000, &ids[1], 0, &[]);
    assert_eq!(sync_answer(&out, r).unwrap().0, error::ILLEGAL_GENERATION);
    assert_eq!(
        h.heartbeat(7000, "nobody", None, 1),
        error::UNKNOWN_MEMBER_ID
    );
    let (r, out) = h.sync(7000, "nobody", 1, &[]);
    assert_eq!(sync_answer(&out, r).unwrap().0, error::UNKNOWN_MEMBER_ID);
    let (r, out) = h.sync_full(7000, "no-such-group", &ids[0], None, 1, None, &[]);
    assert_eq!(
        sync_answer(&out, r).unwrap().0,
        error::UNKNOWN_MEMBER_ID,
        "cannot reach into another group"
    );
    let (r, out) = h.sync_full(7000, "", &ids[0], None, 1, None, &[]);
    assert_eq!(sync_answer(&out, r).unwrap().0, error::INVALID_GROUP_ID);
    let (r, out) = h.sync_full(7000, G, &ids[1], None, 1, Some("roundrobin"), &[]);
    assert_eq!(
        sync_answer(&out, r).unwrap().0,
        error::INCONSISTENT_GROUP_PROTOCOL
    );
    let (r, out) = h.sync_full(7000, G, &ids[1], None, 1, Some("range"), &[]);
    assert_eq!(
        sync_answer(&out, r),
        Some((error::NONE, Bytes::from_static(b"assigned")))
    );
    assert_eq!(
        h.c.group_state(G),
        Some(GroupState::Stable),
        "errors never change the group"
    );
}

#[test]
fn sync_during_preparing_rebalance_asks_to_rejoin() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(2, 6000);
    h.join(7000, J::new(&ids[0]));
    let (r, out) = h.sync(7100, &ids[1], 1, &[]);
    assert_eq!(
        sync_answer(&out, r).unwrap().0,
        error::REBALANCE_IN_PROGRESS
    );
}

#[test]
fn leave_v0_single_member() {
    let mut h = Harness::new(config(3000));
    let ids = h.stable_group(2, 6000);
    let (r, out) = h.leave(7000, &[(&ids[1], None)]);
    let (error, members) = leave_answer(&out, r).unwrap();
    assert_eq!(leave_error_v0(error, &members), error::NONE);
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let (r, out) = h.leave(7000, &[("nobody", None)]);
    let (error, members) = leave_answer(&out, r).unwrap();
    assert_eq!(error, error::NONE);
    assert_eq!(leave_error_v0(error, &members), error::UNKNOWN_MEMBER_ID);
    // The remaining member rejoins alone; when it leaves too the group is Empty at a new generation.
    let (rj, out) = h.join(7100, J::new(&ids[0]));
    assert_eq!(join_answer(&out, rj).unwrap().generation, 2);
    let (_, out) = h.leave(7200, &[(&ids[0], None)]);
    assert!(out.contains(&Output::GroupChanged {
        group_id: G.into(),
        state: GroupState::Empty,
        generation_id: 3
    }));
    assert_eq!(h.c.next_deadline(), None);
}

#[test]
fn leave_v3_batch_with_per_member_errors() {
    let mut h = Harness::new(config(3000));
    let (ra, _) = h.join(0, J::new(""));
    let (rs, _) = h.join(0, J::new("").instance("inst-s"));
    let (rt, _) = h.join(0, J::new("").instance("inst-t"));
    h.tick(3000);
    let out = h.tick(6000);
    let a = join_answer(&out, ra).unwrap().member_id;
    let s = join_answer(&out, rs).unwrap().member_id;
    let t = join_answer(&out, rt).unwrap().member_id;
    assert!(
        s.starts_with("inst-s-"),
        "static member ids derive from the instance id"
    );
    let (r, out) = h.leave(
        7000,
        &[
            (&a, None),
            ("", Some("inst-s")),
            ("bogus", None),
            ("wrong-id", Some("inst-t")),
            ("", Some("inst-x")),
        ],
    );
    let (error, members) = leave_answer(&out, r).unwrap();
    assert_eq!(error, error::NONE);
    let codes: Vec<i16> = members.iter().map(|m| m.2).collect();
    assert_eq!(
        codes,
        vec![
            error::NONE,
            error::NONE,
            error::UNKNOWN_MEMBER_ID,
            error::FENCED_INSTANCE_ID,
            error::UNKNOWN_MEMBER_ID
        ]
    );
    assert_eq!(
        members[1],
        (String::new(), Some("inst-s".into()), error::NONE)
    );
    // One rebalance for the batch; the static member that is left is the only one.
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let (rj, out) = h.join(7100, J::new(&t).instance("inst-t"));
    let a = join_answer(&out, rj).unwrap();
    assert_eq!((a.generation, a.members.clone()), (2, vec![t.clone()]));
}

#[test]
fn removed_member_parked_request_is_answered() {
    let mut h = Harness::new(config(3000));
    let ids = h.form_group(2);
    let (parked, out) = h.sync(6500, &ids[1], 1, &[]);
    assert!(out.is_empty());
    let (_, out) = h.leave(6600, &[(&ids[1], None)]);
    assert_eq!(
        sync_answer(&out, parked),
        Some((error::UNKNOWN_MEMBER_ID, Bytes::new()))
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
}
