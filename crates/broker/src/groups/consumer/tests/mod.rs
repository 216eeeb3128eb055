//! Unit tests: the consumer-protocol coordinator driven with explicit times and a map of topics, asserting
//! responses. No sleeps, no sockets.

mod heartbeat;
mod prop;

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;

pub(super) const G: &str = "g";
pub(super) const SESSION: u64 = 45_000;
pub(super) const REBALANCE: i32 = 30_000;

pub(super) fn topic_id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// The coordinator, a clock and a topic map.
pub(super) struct H {
    pub c: ConsumerGroupCoordinator,
    pub topics: BTreeMap<String, TopicInfo>,
    pub now: u64,
    next_reply: u64,
}

impl H {
    pub fn new() -> Self {
        Self::with(ConsumerGroupConfig {
            heartbeat_interval_ms: 1000,
            session_timeout_ms: SESSION,
            ..ConsumerGroupConfig::default()
        })
    }

    pub fn with(config: ConsumerGroupConfig) -> Self {
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_string(),
            TopicInfo {
                id: topic_id(1),
                partitions: 6,
            },
        );
        Self {
            c: ConsumerGroupCoordinator::new(config),
            topics,
            now: 0,
            next_reply: 0,
        }
    }

    pub fn hb(&mut self, request: Heartbeat) -> HeartbeatResponse {
        self.next_reply += 1;
        let reply = self.next_reply;
        let out = self.c.handle(
            self.now,
            ConsumerEvent::Heartbeat { reply, request },
            &self.topics,
        );
        self.c.check_invariants();
        let answers: Vec<_> = out.into_iter().filter(|o| o.reply().is_some()).collect();
        assert_eq!(answers.len(), 1, "exactly one answer");
        match answers.into_iter().next() {
            Some(ConsumerOutput::Heartbeat { reply: r, response }) => {
                assert_eq!(r, reply);
                response
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn advance(&mut self, ms: u64) -> Vec<ConsumerOutput> {
        self.now += ms;
        let out = self.c.tick(self.now, &self.topics);
        self.c.check_invariants();
        out
    }

    pub fn set_partitions(&mut self, topic: &str, id: u128, partitions: i32) {
        self.topics.insert(
            topic.to_string(),
            TopicInfo {
                id: topic_id(id),
                partitions,
            },
        );
    }

    pub fn state(&self) -> ConsumerGroupState {
        self.c.describe_group(G).expect("group").state
    }
}

pub(super) fn join(member: &str, topics: &[&str]) -> Heartbeat {
    Heartbeat {
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: REBALANCE,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: None,
        server_assignor: None,
        owned: Some(Vec::new()),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// A steady heartbeat reporting `owned`.
pub(super) fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
    Heartbeat {
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        owned: Some(
            owned
                .iter()
                .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                .collect(),
        ),
        ..join(member, &[])
    }
}

pub(super) fn leave(member: &str, epoch: i32) -> Heartbeat {
    Heartbeat {
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        owned: None,
        ..join(member, &[])
    }
}

pub(super) fn parts(a: &Option<Assignment>) -> BTreeSet<i32> {
    a.as_ref()
        .expect("assignment in response")
        .values()
        .flatten()
        .copied()
        .collect()
}

pub(super) fn on_t(ps: &[i32]) -> Assignment {
    let mut a = Assignment::new();
    if !ps.is_empty() {
        a.insert(topic_id(1), ps.iter().copied().collect());
    }
    a
}
