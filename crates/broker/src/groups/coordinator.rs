//! The coordinator: routes each event to its group, keeps one deadline index over all groups, and answers the
//! admin questions.

use std::collections::{BTreeSet, HashMap};

use super::api::{error, Event, GroupConfig, GroupDescription, GroupListing, GroupState, Output};
use super::group::{join_error, sync_error, Group, Timer};
use super::join::JoinRequest;
use super::protocol;
use super::requests::SyncRequest;

/// Every classic group this broker coordinates, as a state machine without I/O: [`handle`](Self::handle) and
/// [`tick`](Self::tick) take the current time and return what the driver must send; nothing here sleeps,
/// reads a clock or touches a socket.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    /// Each group's earliest deadline, so `tick` and `next_deadline` cost O(log groups), not a scan.
    deadlines: BTreeSet<(u64, String)>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn handle(&mut self, now_ms: u64, event: Event) -> Vec<Output> {
        let mut out = Vec::new();
        let group_id = match event {
            Event::Join {
                reply,
                group_id,
                member_id,
                group_instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                protocols,
                version,
                reason: _,
            } => {
                if group_id.is_empty() {
                    out.push(join_error(reply, error::INVALID_GROUP_ID, member_id));
                    return out;
                }
                if session_timeout_ms < self.config.min_session_timeout_ms
                    || session_timeout_ms > self.config.max_session_timeout_ms
                {
                    out.push(join_error(reply, error::INVALID_SESSION_TIMEOUT, member_id));
                    return out;
                }
                if !member_id.is_empty() && !self.groups.contains_key(&group_id) {
                    out.push(join_error(reply, error::UNKNOWN_MEMBER_ID, member_id));
                    return out;
                }
                let request = JoinRequest {
                    reply,
                    member_id,
                    instance_id: group_instance_id,
                    client_id,
                    client_host,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    protocol_type,
                    protocols,
                    version,
                };
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id.clone()));
                group.join(now_ms, &self.config, request, &mut out);
                group_id
            }
            Event::Sync {
                reply,
                group_id,
                member_id,
                group_instance_id,
                generation_id,
                protocol_type,
                protocol_name,
                assignments,
            } => {
                let Some(group) = self.known_group(&group_id) else {
                    let code = if group_id.is_empty() {
                        error::INVALID_GROUP_ID
                    } else {
                        error::UNKNOWN_MEMBER_ID
                    };
                    out.push(sync_error(reply, code));
                    return out;
                };
                let request = SyncRequest {
                    reply,
                    member_id,
                    instance_id: group_instance_id,
                    generation_id,
                    protocol_type,
                    protocol_name,
                    assignments,
                };
                group.sync(now_ms, request, &mut out);
                group_id
            }
            Event::Heartbeat {
                reply,
                group_id,
                member_id,
                group_instance_id,
                generation_id,
            } => {
                let error = match self.known_group(&group_id) {
                    Some(group) => group.heartbeat(
                        now_ms,
                        &member_id,
                        group_instance_id.as_deref(),
                        generation_id,
                    ),
                    None if group_id.is_empty() => error::INVALID_GROUP_ID,
                    None => error::UNKNOWN_MEMBER_ID,
                };
                out.push(Output::Heartbeat { reply, error });
                group_id
            }
            Event::Leave {
                reply,
                group_id,
                members,
            } => {
                if group_id.is_empty() {
                    out.push(Output::Leave {
                        reply,
                        error: error::INVALID_GROUP_ID,
                        members: Vec::new(),
                    });
                    return out;
                }
                let config = self.config.clone();
                let answers = match self.groups.get_mut(&group_id) {
                    Some(group) => group.leave(now_ms, &config, members, &mut out),
                    // As Kafka: the request is fine, each member is unknown.
                    None => members
                        .into_iter()
                        .map(|(m, i)| (m, i, error::UNKNOWN_MEMBER_ID))
                        .collect(),
                };
                out.push(Output::Leave {
                    reply,
                    error: error::NONE,
                    members: answers,
                });
                group_id
            }
        };
        self.refresh(&group_id);
        out
    }

    fn known_group(&mut self, group_id: &str) -> Option<&mut Group> {
        if group_id.is_empty() {
            return None;
        }
        self.groups.get_mut(group_id)
    }

    /// Re-indexes a group after it changed, and forgets it if it holds nothing (a failed first join).
    fn refresh(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if let Some(old) = group.indexed_deadline.take() {
            self.deadlines.remove(&(old, group_id.to_string()));
        }
        if group.is_unused() {
            self.groups.remove(group_id);
            return;
        }
        group.indexed_deadline = group.next_deadline();
        if let Some(deadline) = group.indexed_deadline {
            self.deadlines.insert((deadline, group_id.to_string()));
        }
    }

    /// Fires every timer due at `now_ms`: session expiry, the join phase's end (rebalance timeout or initial
    /// delay step), the pending-sync timeout and unused KIP-394 member ids. Every timer it sets is strictly
    /// later than `now_ms`, so one call settles everything due.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some((deadline, group_id)) = self.deadlines.first().cloned() {
            if deadline > now_ms {
                break;
            }
            if let Some(group) = self.groups.get_mut(&group_id) {
                while let Some(timer) = group.pop_due(now_ms) {
                    match timer {
                        Timer::Join => group.on_join_timer(now_ms, &self.config, &mut out),
                        Timer::Sync => group.on_sync_timer(now_ms, &self.config, &mut out),
                        Timer::Session(member) => {
                            group.on_session_timer(now_ms, &self.config, &member, &mut out)
                        }
                        Timer::Pending(member) => group.on_pending_timer(now_ms, &member, &mut out),
                    }
                }
            } else {
                self.deadlines.remove(&(deadline, group_id.clone()));
            }
            self.refresh(&group_id);
        }
        out
    }

    /// The earliest time `tick` has work, so the driver can sleep exactly until then.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Whether an OffsetCommit may be applied. An unknown group accepts commits with a negative generation
    /// (a "simple" group; the driver stores the offsets, this coordinator does not create a group for them)
    /// and answers ILLEGAL_GENERATION otherwise (OffsetCommit v9+ reports GROUP_ID_NOT_FOUND instead: the
    /// driver maps it). See [`Group::validate_commit`] for the rest.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(error::INVALID_GROUP_ID);
        }
        match self.groups.get(group_id) {
            Some(group) => group.validate_commit(member_id, group_instance_id, generation_id),
            None if generation_id < 0 => Ok(()),
            None => Err(error::ILLEGAL_GENERATION),
        }
    }

    /// OffsetCommit: [`validate_commit`](Self::validate_commit), and a valid commit from a member counts as
    /// hearing from it, so its session restarts (Kafka's `doCommitOffsets` does the same). A consumer that commits
    /// every record keeps many OffsetCommits in flight on its coordinator connection, and its Heartbeat is read
    /// only after them: on a busy broker that can take longer than the session timeout, and without this the
    /// group would expire a member that is working and rebalance.
    pub fn commit(
        &mut self,
        now_ms: u64,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        self.validate_commit(group_id, member_id, group_instance_id, generation_id)?;
        if let Some(group) = self.groups.get_mut(group_id) {
            if group.has_member(member_id) {
                group.touch(now_ms, member_id);
                self.refresh(group_id);
            }
        }
        Ok(())
    }

    /// Every group this coordinator holds, by group id. Groups that exist only as committed offsets are the
    /// driver's to add.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let mut groups: Vec<GroupListing> = self
            .groups
            .values()
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// `None` for a group this coordinator does not hold; DescribeGroups reports it as Dead.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        self.groups.get(group_id).map(Group::describe)
    }

    /// DeleteGroups: only an Empty group may go (NON_EMPTY_GROUP otherwise); an unknown one is
    /// GROUP_ID_NOT_FOUND (the driver may still hold offsets for it and delete those).
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), i16> {
        let group = self.groups.get(group_id).ok_or(error::GROUP_ID_NOT_FOUND)?;
        if !matches!(group.state, GroupState::Empty | GroupState::Dead) {
            return Err(error::NON_EMPTY_GROUP);
        }
        if let Some(deadline) = group.indexed_deadline {
            self.deadlines.remove(&(deadline, group_id.to_string()));
        }
        self.groups.remove(group_id);
        Ok(())
    }

    /// The topics the group's members subscribe to, for OffsetDelete. `None` unless the protocol type is
    /// "consumer" and every member's metadata decodes.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        let group = self.groups.get(group_id)?;
        protocol::subscribed_topics(
            group.protocol_type.as_deref(),
            group.protocol_name.as_deref(),
            group.members(),
        )
    }

    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// Checks every group's invariants and the deadline index; used by the tests after every step.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(
            self.deadlines.len(),
            self.groups
                .values()
                .filter(|g| g.indexed_deadline.is_some())
                .count()
        );
        for group in self.groups.values() {
            group.check_invariants();
            assert_eq!(
                group.indexed_deadline,
                group.next_deadline(),
                "stale index for {}",
                group.id
            );
            if let Some(deadline) = group.indexed_deadline {
                assert!(self.deadlines.contains(&(deadline, group.id.clone())));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn generations(&self) -> HashMap<String, i32> {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), g.generation))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn leader(&self, group_id: &str) -> Option<String> {
        self.groups.get(group_id).and_then(|g| g.leader.clone())
    }

    /// Replies parked inside the groups (JoinGroup and SyncGroup waiting for the rebalance).
    #[cfg(test)]
    pub(crate) fn parked_replies(&self) -> Vec<super::api::ReplyId> {
        self.groups
            .values()
            .flat_map(|g| {
                g.members()
                    .flat_map(|m| m.join_reply.into_iter().chain(m.sync_reply))
            })
            .collect()
    }
}
