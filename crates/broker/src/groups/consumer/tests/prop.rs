//! Random heartbeat sequences from simulated clients that follow the protocol (and sometimes misbehave: stale
//! epochs, omitted owned partitions, silence), checking after every step that
//! - the coordinator's own invariants hold (one owner per partition in the current assignments, the owner
//!   index matches, targets only name live members and existing partitions);
//! - no two live clients believe they own the same partition, and a client never owns what the coordinator
//!   does not count as its (assigned or pending revocation);
//! - group epochs never decrease, and a member's epoch never decreases unless it rejoins or leaves;
//! - right after a member's heartbeat, what it owns is within its target unless it is still revoking.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::groups::consumer::reconcile::MemberState;

#[derive(Debug, Clone)]
enum Op {
    Join { client: u8, instance: bool },
    Beat { client: u8, how: u8 },
    Leave { client: u8 },
    StaticLeave { client: u8 },
    Advance { ms: u64 },
    Grow { partitions: i32 },
    CreateTopic,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4, any::<bool>()).prop_map(|(client, instance)| Op::Join { client, instance }),
        8 => (0u8..4, 0u8..10).prop_map(|(client, how)| Op::Beat { client, how }),
        1 => (0u8..4).prop_map(|client| Op::Leave { client }),
        1 => (0u8..4).prop_map(|client| Op::StaticLeave { client }),
        2 => prop_oneof![0u64..2000, 20_000u64..50_000].prop_map(|ms| Op::Advance { ms }),
        1 => (1i32..12).prop_map(|partitions| Op::Grow { partitions }),
        1 => Just(Op::CreateTopic),
    ]
}

#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    instance: Option<String>,
    epoch: i32,
    owned: Assignment,
    joins: u32,
}

fn run(ops: Vec<Op>) {
    let mut h = H::new();
    let mut clients: HashMap<u8, Client> = HashMap::new();
    let mut last_group_epoch = 0;
    let mut last_member_epochs: HashMap<String, i32> = HashMap::new();
    for op in ops {
        let mut reset: Option<String> = None;
        match op {
            Op::Join { client, instance } => {
                let c = clients.entry(client).or_default();
                c.joins += 1;
                if c.member_id.is_empty() || instance {
                    c.member_id = format!("m{client}-{}", c.joins);
                }
                c.instance = instance.then(|| format!("i{client}"));
                c.owned.clear();
                let mut request = join(&c.member_id, &["t", "u"]);
                request.instance_id = c.instance.clone();
                reset = Some(c.member_id.clone());
                let r = h.hb(request);
                apply(c, &r);
            }
            Op::Beat { client, how } => {
                let Some(c) = clients.get_mut(&client) else {
                    continue;
                };
                // A client without an epoch (never joined, fenced, left) must join first.
                if c.member_id.is_empty() || c.epoch <= 0 {
                    continue;
                }
                let mut request = beat(&c.member_id, c.epoch, &c.owned);
                request.instance_id = c.instance.clone();
                match how {
                    0 if c.epoch > 1 => request.member_epoch = c.epoch - 1,
                    1 => request.owned = None,
                    2 => request.member_epoch = c.epoch + 1,
                    _ => {}
                }
                let r = h.hb(request);
                apply(c, &r);
                if r.error == 0 {
                    let m = &h.c.group(G).unwrap().members[&c.member_id];
                    if m.state() != MemberState::UnrevokedPartitions {
                        let target =
                            h.c.group(G)
                                .unwrap()
                                .target
                                .get(&c.member_id)
                                .cloned()
                                .unwrap_or_default();
                        for (t, ps) in &m.reconciliation.assigned {
                            assert!(
                                ps.is_subset(&target.get(t).cloned().unwrap_or_default()),
                                "owned outside target"
                            );
                        }
                    }
                }
            }
            Op::Leave { client } => {
                let Some(c) = clients.get_mut(&client) else {
                    continue;
                };
                let mut request = leave(&c.member_id, LEAVE_EPOCH);
                request.instance_id = c.instance.clone();
                h.hb(request);
                reset = Some(c.member_id.clone());
                c.owned.clear();
                c.epoch = 0;
            }
            Op::StaticLeave { client } => {
                let Some(c) = clients.get_mut(&client) else {
                    continue;
                };
                if c.instance.is_none() {
                    continue;
                }
                let mut request = leave(&c.member_id, STATIC_LEAVE_EPOCH);
                request.instance_id = c.instance.clone();
                h.hb(request);
                reset = Some(c.member_id.clone());
                c.owned.clear();
                c.epoch = 0;
            }
            Op::Advance { ms } => {
                h.advance(ms);
            }
            Op::Grow { partitions } => {
                let current = h.topics["t"].partitions;
                h.set_partitions("t", 1, current.max(partitions));
            }
            Op::CreateTopic => h.set_partitions("u", 2, 3),
        }
        let Some(group) = h.c.group(G) else { continue };
        assert!(
            group.group_epoch >= last_group_epoch,
            "group epoch went back"
        );
        last_group_epoch = group.group_epoch;
        for (id, m) in &group.members {
            if let Some(before) = last_member_epochs.get(id) {
                if reset.as_deref() != Some(id.as_str()) && m.epoch() >= 0 {
                    assert!(m.epoch() >= *before, "member {id} epoch went back");
                }
            }
        }
        last_member_epochs = group
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.epoch()))
            .collect();
        let mut seen: HashMap<(uuid::Uuid, i32), &str> = HashMap::new();
        for c in clients.values() {
            let Some(m) = group.members.get(&c.member_id) else {
                continue;
            };
            for (t, ps) in &c.owned {
                for p in ps {
                    let held = m
                        .reconciliation
                        .assigned
                        .get(t)
                        .is_some_and(|s| s.contains(p))
                        || m.reconciliation
                            .pending_revocation
                            .get(t)
                            .is_some_and(|s| s.contains(p));
                    assert!(
                        held,
                        "client {} owns {t}/{p} unknown to the coordinator",
                        c.member_id
                    );
                    if let Some(other) = seen.insert((*t, *p), &c.member_id) {
                        panic!("{t}/{p} owned by clients {other} and {}", c.member_id);
                    }
                }
            }
        }
    }
}

/// What a client does with a response: adopt the epoch and assignment, or drop everything on an error.
fn apply(c: &mut Client, r: &HeartbeatResponse) {
    if r.error != 0 {
        c.owned.clear();
        c.epoch = 0;
        return;
    }
    c.epoch = r.member_epoch;
    if let Some(a) = &r.assignment {
        c.owned = a.clone();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_heartbeats_keep_ownership_exclusive_and_epochs_monotonic(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
