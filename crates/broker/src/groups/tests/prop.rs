//! Random event sequences: nothing panics, every request is answered exactly once (or is still parked), and
//! the group invariants hold after every step.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Who {
    Empty,
    Known(usize),
    Bogus,
}

#[derive(Debug, Clone)]
enum Op {
    Join {
        group: u8,
        who: Who,
        instance: Option<u8>,
        protocols: u8,
        version: i16,
        session: u64,
    },
    Sync {
        group: u8,
        who: Who,
        instance: Option<u8>,
        generation: Option<i32>,
        assign: bool,
    },
    Heartbeat {
        group: u8,
        who: Who,
        instance: Option<u8>,
        generation: Option<i32>,
    },
    Leave {
        group: u8,
        who: Who,
        instance: Option<u8>,
    },
    Delete {
        group: u8,
    },
    Advance {
        ms: u64,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        Just(Who::Empty),
        (0usize..16).prop_map(Who::Known),
        (0usize..16).prop_map(Who::Known),
        Just(Who::Bogus)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let group = 0u8..2;
    let instance = proptest::option::weighted(0.3, 0u8..3);
    let generation = proptest::option::weighted(0.2, -1i32..4);
    prop_oneof![
        3 => (group.clone(), who(), instance.clone(), 0u8..4, prop_oneof![Just(3i16), Just(4), Just(9)], prop_oneof![Just(6000u64), Just(20_000)])
            .prop_map(|(group, who, instance, protocols, version, session)| Op::Join { group, who, instance, protocols, version, session }),
        3 => (group.clone(), prop_oneof![4 => (0usize..16).prop_map(Who::Known), 1 => Just(Who::Bogus)], instance.clone(), generation.clone(), any::<bool>())
            .prop_map(|(group, who, instance, generation, assign)| Op::Sync { group, who, instance, generation, assign }),
        2 => (group.clone(), who(), instance.clone(), generation)
            .prop_map(|(group, who, instance, generation)| Op::Heartbeat { group, who, instance, generation }),
        1 => (group.clone(), who(), instance).prop_map(|(group, who, instance)| Op::Leave { group, who, instance }),
        1 => group.prop_map(|group| Op::Delete { group }),
        3 => prop_oneof![0u64..50, 0u64..5000, 0u64..40_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

const PROTOCOL_SETS: [&[&str]; 4] = [
    &["range"],
    &["roundrobin", "range"],
    &["sticky"],
    &["range", "sticky"],
];

struct Model {
    h: GroupCoordinator,
    now: u64,
    next_reply: ReplyId,
    known: Vec<String>,
    generation_of: HashMap<String, i32>,
    issued: HashSet<ReplyId>,
    answered: HashSet<ReplyId>,
    generations: HashMap<String, i32>,
}

impl Model {
    fn member(&self, who: &Who) -> String {
        match who {
            Who::Empty => String::new(),
            Who::Known(i) if !self.known.is_empty() => self.known[i % self.known.len()].clone(),
            Who::Known(_) | Who::Bogus => "bogus".into(),
        }
    }

    fn reply(&mut self) -> ReplyId {
        self.next_reply += 1;
        self.issued.insert(self.next_reply);
        self.next_reply
    }

    fn apply(&mut self, op: Op) {
        let group = |g: u8| format!("g{g}");
        let instance = |i: Option<u8>| i.map(|i| format!("inst{i}"));
        let out = match op {
            Op::Advance { ms } => {
                self.now += ms;
                if let Some(deadline) = self.h.next_deadline() {
                    assert!(deadline > self.now - ms, "a deadline was left in the past");
                }
                self.h.tick(self.now)
            }
            Op::Delete { group: g } => {
                if self.h.delete_group(&group(g)).is_ok() {
                    self.generations.remove(&group(g));
                }
                Vec::new()
            }
            Op::Join {
                group: g,
                who,
                instance: i,
                protocols,
                version,
                session,
            } => {
                let reply = self.reply();
                let event = Event::Join {
                    reply,
                    group_id: group(g),
                    member_id: self.member(&who),
                    group_instance_id: instance(i),
                    client_id: "c".into(),
                    client_host: "h".into(),
                    session_timeout_ms: session,
                    rebalance_timeout_ms: session * 2,
                    protocol_type: "consumer".into(),
                    protocols: PROTOCOL_SETS[protocols as usize]
                        .iter()
                        .map(|p| (p.to_string(), Bytes::from(p.as_bytes().to_vec())))
                        .collect(),
                    version,
                    reason: None,
                };
                self.h.handle(self.now, event)
            }
            Op::Sync {
                group: g,
                who,
                instance: i,
                generation,
                assign,
            } => {
                let member = self.member(&who);
                let reply = self.reply();
                let generation =
                    generation.unwrap_or(*self.generation_of.get(&member).unwrap_or(&0));
                let assignments = if assign {
                    self.known
                        .iter()
                        .map(|m| (m.clone(), Bytes::from_static(b"x")))
                        .collect()
                } else {
                    Vec::new()
                };
                let event = Event::Sync {
                    reply,
                    group_id: group(g),
                    member_id: member,
                    group_instance_id: instance(i),
                    generation_id: generation,
                    protocol_type: None,
                    protocol_name: None,
                    assignments,
                };
                self.h.handle(self.now, event)
            }
            Op::Heartbeat {
                group: g,
                who,
                instance: i,
                generation,
            } => {
                let member = self.member(&who);
                let reply = self.reply();
                let generation_id =
                    generation.unwrap_or(*self.generation_of.get(&member).unwrap_or(&0));
                let event = Event::Heartbeat {
                    reply,
                    group_id: group(g),
                    member_id: member,
                    group_instance_id: instance(i),
                    generation_id,
                };
                self.h.handle(self.now, event)
            }
            Op::Leave {
                group: g,
                who,
                instance: i,
            } => {
                let reply = self.reply();
                let event = Event::Leave {
                    reply,
                    group_id: group(g),
                    members: vec![(self.member(&who), instance(i))],
                };
                self.h.handle(self.now, event)
            }
        };
        for o in &out {
            if let Some(reply) = o.reply() {
                assert!(
                    self.issued.contains(&reply),
                    "answer to a reply never issued"
                );
                assert!(self.answered.insert(reply), "reply {reply} answered twice");
            }
            if let Output::Join {
                member_id,
                generation_id,
                ..
            } = o
            {
                if !member_id.is_empty() && !self.known.contains(member_id) {
                    self.known.push(member_id.clone());
                }
                if *generation_id >= 0 {
                    self.generation_of.insert(member_id.clone(), *generation_id);
                }
            }
        }
        self.h.check_invariants();
        for (group, generation) in self.h.generations() {
            let before = self
                .generations
                .insert(group.clone(), generation)
                .unwrap_or(0);
            assert!(
                generation >= before,
                "generation of {group} went back from {before} to {generation}"
            );
        }
        // Every request is answered once, or still parked in a group.
        let parked: HashSet<ReplyId> = self.h.parked_replies().into_iter().collect();
        assert!(parked.is_disjoint(&self.answered));
        let mut accounted: HashSet<ReplyId> = parked;
        accounted.extend(self.answered.iter().copied());
        assert_eq!(
            accounted, self.issued,
            "a request was dropped without an answer"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..120), delay in prop_oneof![Just(0u64), Just(3000)]) {
        let mut model = Model {
            h: GroupCoordinator::new(config(delay)),
            now: 0,
            next_reply: 0,
            known: Vec::new(),
            generation_of: HashMap::new(),
            issued: HashSet::new(),
            answered: HashSet::new(),
            generations: HashMap::new(),
        };
        for op in ops {
            model.apply(op);
        }
        // Eventually every parked request is answered: let all timers run out.
        for _ in 0..64 {
            let Some(deadline) = model.h.next_deadline() else { break };
            model.apply(Op::Advance { ms: deadline - model.now });
        }
    }
}
