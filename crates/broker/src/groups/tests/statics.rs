//! Static membership (KIP-345) and the static leader rejoin (KIP-814).

use super::*;

/// Two static members "a" (leader) and "b", Stable at generation 1 with assignments "A" and "B".
fn static_pair(h: &mut Harness) -> (String, String) {
    static_pair_with(h, &[("range", b"")])
}

fn static_pair_with(h: &mut Harness, protocols: &[(&str, &'static [u8])]) -> (String, String) {
    let (ra, _) = h.join(0, J::new("").instance("a").protocols(protocols));
    let (rb, _) = h.join(0, J::new("").instance("b").protocols(protocols));
    h.tick(3000);
    let out = h.tick(6000);
    let a = join_answer(&out, ra).unwrap().member_id;
    let b = join_answer(&out, rb).unwrap().member_id;
    h.sync_full(6000, G, &b, Some("b"), 1, None, &[]);
    h.sync_full(6000, G, &a, Some("a"), 1, None, &[(&a, b"A"), (&b, b"B")]);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    (a, b)
}

#[test]
fn static_follower_restart_gets_current_generation_without_rebalance() {
    let mut h = Harness::new(config(3000));
    let (a, old_b) = static_pair(&mut h);
    let (r, out) = h.join(10_000, J::new("").instance("b"));
    assert_eq!(out.len(), 1, "no rebalance, no state change: {out:?}");
    let j = join_answer(&out, r).unwrap();
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (error::NONE, 1, a.as_str())
    );
    assert!(j.members.is_empty() && !j.skip_assignment);
    assert_ne!(j.member_id, old_b);
    assert!(j.member_id.starts_with("b-"));
    let (s, out) = h.sync_full(10_100, G, &j.member_id, Some("b"), 1, None, &[]);
    assert_eq!(
        sync_answer(&out, s),
        Some((error::NONE, Bytes::from_static(b"B"))),
        "keeps its assignment"
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
}

#[test]
fn replaced_static_member_id_is_fenced() {
    let mut h = Harness::new(config(3000));
    let (_, old_b) = static_pair(&mut h);
    let (r, out) = h.join(10_000, J::new("").instance("b"));
    let new_b = join_answer(&out, r).unwrap().member_id;
    assert_eq!(
        h.heartbeat(10_100, &old_b, Some("b"), 1),
        error::FENCED_INSTANCE_ID
    );
    assert_eq!(
        h.heartbeat(10_100, &old_b, None, 1),
        error::UNKNOWN_MEMBER_ID
    );
    let (s, out) = h.sync_full(10_100, G, &old_b, Some("b"), 1, None, &[]);
    assert_eq!(sync_answer(&out, s).unwrap().0, error::FENCED_INSTANCE_ID);
    let (j, out) = h.join(10_100, J::new(&old_b).instance("b"));
    assert_eq!(
        join_answer(&out, j).unwrap().error,
        error::FENCED_INSTANCE_ID
    );
    assert_eq!(
        h.c.validate_commit(G, &old_b, Some("b"), 1),
        Err(error::FENCED_INSTANCE_ID)
    );
    assert_eq!(h.c.validate_commit(G, &new_b, Some("b"), 1), Ok(()));
    assert_eq!(h.heartbeat(10_100, &new_b, Some("b"), 1), error::NONE);
    assert_eq!(
        h.c.group_state(G),
        Some(GroupState::Stable),
        "a fenced zombie cannot disturb the group"
    );
}

#[test]
fn static_member_replaced_while_parked_fences_the_parked_request() {
    let mut h = Harness::new(config(3000));
    let (ra, _) = h.join(0, J::new("").instance("a"));
    let (ra2, out) = h.join(100, J::new("").instance("a"));
    assert!(join_answer(&out, ra2).is_none());
    let j = join_answer(&out, ra).unwrap();
    assert_eq!(j.error, error::FENCED_INSTANCE_ID);
    let out = h.tick(3000);
    assert_eq!(join_answer(&out, ra2).unwrap().members.len(), 1);
}

#[test]
fn static_leader_restart_follows_kip_814() {
    let mut h = Harness::new(config(3000));
    let (old_a, b) = static_pair(&mut h);
    // JoinGroup v9+: the leader is told the members but asked to skip the assignment.
    let (r, out) = h.join(10_000, J::new("").instance("a").version(9));
    assert_eq!(out.len(), 1);
    let j = join_answer(&out, r).unwrap();
    assert_eq!(
        (j.generation, j.leader.as_str(), j.skip_assignment),
        (1, j.member_id.as_str(), true)
    );
    assert_eq!(
        j.members,
        vec![j.member_id.clone(), b.clone()],
        "the replaced member keeps its place"
    );
    assert_eq!(h.c.leader(G), Some(j.member_id.clone()));
    // Before v9: answered as a follower, naming the previous leader id, so it does not run the assignor.
    let new_a = j.member_id;
    let (r, out) = h.join(11_000, J::new("").instance("a").version(5));
    let j = join_answer(&out, r).unwrap();
    assert_eq!(
        (j.generation, j.leader.as_str(), j.skip_assignment),
        (1, new_a.as_str(), false)
    );
    assert!(j.members.is_empty());
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    assert_ne!(old_a, new_a);
}

#[test]
fn static_restart_rebalances_only_if_the_chosen_protocol_changes() {
    let mut h = Harness::new(config(3000));
    static_pair_with(&mut h, &[("range", b""), ("roundrobin", b"")]);
    // New preferences, same outcome of the vote (a tie goes to the first member's preference): no rebalance.
    let (r, out) = h.join(
        10_000,
        J::new("")
            .instance("b")
            .protocols(&[("roundrobin", b""), ("range", b"")]),
    );
    assert_eq!(join_answer(&out, r).unwrap().generation, 1);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    // Only roundrobin left in common: the group must move to it.
    let (r, out) = h.join(
        11_000,
        J::new("").instance("b").protocols(&[("roundrobin", b"")]),
    );
    assert!(join_answer(&out, r).is_none());
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
}

#[test]
fn static_member_that_does_not_rejoin_stays_until_its_session_expires() {
    let mut h = Harness::new(config(3000));
    let (a, b) = static_pair(&mut h);
    let (rc, _) = h.join(7000, J::new(""));
    let (ra, _) = h.join(7000, J::new(&a).instance("a"));
    for t in [10_000, 16_000, 22_000, 28_000, 34_000] {
        assert_eq!(
            h.heartbeat(t, &b, Some("b"), 1),
            error::REBALANCE_IN_PROGRESS
        );
    }
    let out = h.tick(37_000);
    let j = join_answer(&out, ra).unwrap();
    assert_eq!(j.generation, 2);
    assert!(
        j.members.contains(&b),
        "static members are not dropped at the rebalance timeout"
    );
    assert!(join_answer(&out, rc).is_some());
}
