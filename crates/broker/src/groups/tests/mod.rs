//! Unit tests: the coordinator driven with explicit times, asserting outputs. No sleeps, no sockets.

mod admin;
mod invariants;
mod join;
mod lifecycle;
mod prop;
mod statics;

use bytes::Bytes;

use super::{error, Event, GroupConfig, GroupCoordinator, GroupState, Output, ReplyId};

pub(super) const G: &str = "g";
pub(super) const SESSION: u64 = 10_000;
pub(super) const REBALANCE: u64 = 30_000;

pub(super) fn config(initial_delay_ms: u64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupConfig::default()
    }
}

/// A JoinGroup with sensible defaults, adjusted by the builder methods.
#[derive(Clone)]
pub(super) struct J {
    pub group: String,
    pub member: String,
    pub instance: Option<String>,
    pub session: u64,
    pub rebalance: u64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub version: i16,
}

impl J {
    pub fn new(member: &str) -> Self {
        Self {
            group: G.into(),
            member: member.into(),
            instance: None,
            session: SESSION,
            rebalance: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            version: 3,
        }
    }
    pub fn instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.into());
        self
    }
    pub fn protocols(mut self, protocols: &[(&str, &'static [u8])]) -> Self {
        self.protocols = protocols
            .iter()
            .map(|(n, m)| (n.to_string(), Bytes::from_static(m)))
            .collect();
        self
    }
    pub fn version(mut self, version: i16) -> Self {
        self.version = version;
        self
    }
    pub fn session(mut self, session: u64) -> Self {
        self.session = session;
        self
    }
    pub fn rebalance(mut self, rebalance: u64) -> Self {
        self.rebalance = rebalance;
        self
    }
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.into();
        self
    }
}

/// A successful or failed JoinGroup answer, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JoinAnswer {
    pub error: i16,
    pub generation: i32,
    pub leader: String,
    pub member_id: String,
    pub protocol_name: Option<String>,
    pub skip_assignment: bool,
    pub members: Vec<String>,
}

pub(super) struct Harness {
    pub c: GroupCoordinator,
    next_reply: ReplyId,
}

impl Harness {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            c: GroupCoordinator::new(config),
            next_reply: 0,
        }
    }

    fn reply(&mut self) -> ReplyId {
        self.next_reply += 1;
        self.next_reply
    }

    pub fn handle(&mut self, now: u64, event: Event) -> Vec<Output> {
        let out = self.c.handle(now, event);
        self.c.check_invariants();
        out
    }

    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let out = self.c.tick(now);
        self.c.check_invariants();
        out
    }

    pub fn join(&mut self, now: u64, j: J) -> (ReplyId, Vec<Output>) {
        let reply = self.reply();
        let event = Event::Join {
            reply,
            group_id: j.group,
            member_id: j.member,
            group_instance_id: j.instance,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: j.session,
            rebalance_timeout_ms: j.rebalance,
            protocol_type: j.protocol_type,
            protocols: j.protocols,
            version: j.version,
            reason: None,
        };
        (reply, self.handle(now, event))
    }

    pub fn sync(
        &mut self,
        now: u64,
        member: &str,
        generation: i32,
        assignments: &[(&str, &'static [u8])],
    ) -> (ReplyId, Vec<Output>) {
        self.sync_full(now, G, member, None, generation, None, assignments)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync_full(
        &mut self,
        now: u64,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        protocol_name: Option<&str>,
        assignments: &[(&str, &'static [u8])],
    ) -> (ReplyId, Vec<Output>) {
        let reply = self.reply();
        let event = Event::Sync {
            reply,
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            generation_id: generation,
            protocol_type: protocol_name.map(|_| "consumer".to_string()),
            protocol_name: protocol_name.map(String::from),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from_static(a)))
                .collect(),
        };
        (reply, self.handle(now, event))
    }

    pub fn heartbeat(
        &mut self,
        now: u64,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let reply = self.reply();
        let event = Event::Heartbeat {
            reply,
            group_id: G.into(),
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            generation_id: generation,
        };
        let out = self.handle(now, event);
        match out.as_slice() {
            [Output::Heartbeat { reply: r, error }] if *r == reply => *error,
            other => panic!("unexpected heartbeat outputs {other:?}"),
        }
    }

    pub fn leave(&mut self, now: u64, members: &[(&str, Option<&str>)]) -> (ReplyId, Vec<Output>) {
        let reply = self.reply();
        let event = Event::Leave {
            reply,
            group_id: G.into(),
            members: members
                .iter()
                .map(|(m, i)| (m.to_string(), i.map(String::from)))
                .collect(),
        };
        (reply, self.handle(now, event))
    }

    /// Joins `n` dynamic members at time 0 with the default 3 s initial delay and completes the first
    /// generation (the delay is extended once because members kept arriving). Returns the member ids in join
    /// order; the first is the leader.
    pub fn form_group(&mut self, n: usize) -> Vec<String> {
        let mut replies = Vec::new();
        for _ in 0..n {
            let (reply, out) = self.join(0, J::new(""));
            assert!(
                join_answer(&out, reply).is_none(),
                "first rebalance waits for the initial delay"
            );
            replies.push(reply);
        }
        let mut out = self.tick(3000);
        if n > 1 {
            assert!(
                replies.iter().all(|r| join_answer(&out, *r).is_none()),
                "delay extended"
            );
            out = self.tick(6000);
        }
        replies
            .iter()
            .map(|r| join_answer(&out, *r).expect("join answered").member_id)
            .collect()
    }

    /// `form_group`, then everybody syncs (the leader last) so the group is Stable at generation 1.
    pub fn stable_group(&mut self, n: usize, now: u64) -> Vec<String> {
        let ids = self.form_group(n);
        for id in &ids[1..] {
            self.sync(now, id, 1, &[]);
        }
        let assignments: Vec<(&str, &'static [u8])> = ids
            .iter()
            .map(|id| (id.as_str(), &b"assigned"[..]))
            .collect();
        let (reply, out) = self.sync(now, &ids[0], 1, &assignments);
        assert_eq!(
            sync_answer(&out, reply),
            Some((error::NONE, Bytes::from_static(b"assigned")))
        );
        assert_eq!(self.c.group_state(G), Some(GroupState::Stable));
        ids
    }
}

pub(super) fn join_answer(out: &[Output], reply: ReplyId) -> Option<JoinAnswer> {
    out.iter().find_map(|o| match o {
        Output::Join {
            reply: r,
            error,
            generation_id,
            protocol_name,
            leader,
            member_id,
            skip_assignment,
            members,
            ..
        } if *r == reply => Some(JoinAnswer {
            error: *error,
            generation: *generation_id,
            leader: leader.clone(),
            member_id: member_id.clone(),
            protocol_name: protocol_name.clone(),
            skip_assignment: *skip_assignment,
            members: members.iter().map(|m| m.member_id.clone()).collect(),
        }),
        _ => None,
    })
}

pub(super) fn sync_answer(out: &[Output], reply: ReplyId) -> Option<(i16, Bytes)> {
    out.iter().find_map(|o| match o {
        Output::Sync {
            reply: r,
            error,
            assignment,
            ..
        } if *r == reply => Some((*error, assignment.clone())),
        _ => None,
    })
}

/// Top-level error and per-member answers of a LeaveGroup.
pub(super) type LeaveAnswer = (i16, Vec<(String, Option<String>, i16)>);

pub(super) fn leave_answer(out: &[Output], reply: ReplyId) -> Option<LeaveAnswer> {
    out.iter().find_map(|o| match o {
        Output::Leave {
            reply: r,
            error,
            members,
        } if *r == reply => Some((*error, members.clone())),
        _ => None,
    })
}
