//! One consumer-protocol group: members, the group epoch and the target assignment, and who currently owns
//! each partition.
//!
//! The group epoch is bumped whenever the inputs of the assignment change (a member joins or goes, a
//! subscription or the preferred assignor changes, or a subscribed topic appears, disappears or grows); the
//! target assignment is then recomputed at once, so the assignment epoch always equals the group epoch. Each
//! member then reconciles towards its target on its own heartbeats (see `reconcile`).
//!
//! Invariant kept by [`ConsumerGroup::set_reconciliation`], the only place ownership changes: `owners` maps each
//! partition that some member holds (assigned or pending revocation) to that one member.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::api::{
    error, Assignment, AssignorName, ConsumerGroupConfig, ConsumerGroupDescription,
    ConsumerGroupState, ConsumerMemberDescription, ConsumerOutput, DescribedPartitions, Heartbeat,
    HeartbeatResponse, TopicInfo, TopicLookup, JOIN_EPOCH, STATIC_LEAVE_EPOCH,
};
use super::assignors::{assign, Subscriptions};
use super::member::ConsumerMember;
use super::reconcile::{reconcile, MemberState, Reconciliation};
use crate::groups::error as classic_error;

#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics that exist, as of the last refresh.
    pub metadata: BTreeMap<String, TopicInfo>,
    pub owners: HashMap<(Uuid, i32), String>,
    pub assignor: AssignorName,
    pub state: ConsumerGroupState,
    /// The deadline under which the coordinator currently indexes this group.
    pub indexed_deadline: Option<u64>,
}

fn to_partitions(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

/// Whether `owned` holds nothing outside `assigned`.
fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned
        .iter()
        .all(|(t, ps)| assigned.get(t).is_some_and(|a| ps.is_subset(a)))
}

impl ConsumerGroup {
    pub fn new(id: String, config: &ConsumerGroupConfig) -> Self {
        Self {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            owners: HashMap::new(),
            assignor: config.assignors[0],
            state: ConsumerGroupState::Empty,
            indexed_deadline: None,
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        // A scan rather than an index: groups are small and every heartbeat touches the group anyway.
        self.members
            .values()
            .map(ConsumerMember::next_deadline)
            .min()
    }

    /// A heartbeat with epoch >= 0 (joining, rejoining or steady). The request is already validated.
    pub fn heartbeat(
        &mut self,
        now: u64,
        config: &ConsumerGroupConfig,
        request: Heartbeat,
        owned: Option<Assignment>,
        topics: &dyn TopicLookup,
        out: &mut Vec<ConsumerOutput>,
    ) -> HeartbeatResponse {
        let member_id = request.member_id.clone();
        let epoch = request.member_epoch;
        let mut bump = false;
        if epoch == JOIN_EPOCH {
            if let Some(instance) = &request.instance_id {
                if let Some(existing) = self.static_members.get(instance).cloned() {
                    if existing != member_id {
                        if self.members[&existing].epoch() != STATIC_LEAVE_EPOCH {
                            return HeartbeatResponse::error_for(
                                error::UNRELEASED_INSTANCE_ID,
                                format!(
                                    "Static member {member_id} with instance id {instance} cannot join the \
                                     group because the instance id is owned by member {existing}."
                                ),
                                &member_id,
                            );
                        }
                        self.replace_static_member(&existing, &member_id);
                    }
                }
            }
            match self.members.get(&member_id) {
                None => {
                    if self.members.len() >= config.max_size {
                        return HeartbeatResponse::error_for(
                            classic_error::GROUP_MAX_SIZE_REACHED,
                            format!(
                                "The consumer group has reached its maximum capacity of {} members.",
                                config.max_size
                            ),
                            &member_id,
                        );
                    }
                    self.members.insert(
                        member_id.clone(),
                        ConsumerMember::new(member_id.clone(), now),
                    );
                    bump = true;
                }
                // A known member joining with epoch 0 has dropped everything it owned (a fenced member, a join
                // whose answer was lost, or a static member that just took its old place): start it over; its
                // target is unchanged, so it gets the same partitions back. Deviation: Kafka 3.7 fences such a rejoin unless
                // it repeats the join it just made; starting over is what the client means and avoids a loop
                // of fenced rejoins until the session expires.
                Some(_) => {
                    self.set_reconciliation(&member_id, Reconciliation::joining());
                    let m = self.members.get_mut(&member_id).expect("member");
                    m.previous_epoch = JOIN_EPOCH;
                    m.rebalance_deadline = None;
                }
            }
        } else {
            let found = match &request.instance_id {
                Some(instance) => match self.static_members.get(instance) {
                    None => Err((
                        classic_error::UNKNOWN_MEMBER_ID,
                        format!("Instance id {instance} is unknown."),
                    )),
                    Some(id) if *id != member_id => Err((
                        classic_error::FENCED_INSTANCE_ID,
                        format!(
                            "Static member {member_id} with instance id {instance} was fenced by member {id}."
                        ),
                    )),
                    Some(_) => Ok(()),
                },
                None if self.members.contains_key(&member_id) => Ok(()),
                None => Err((
                    classic_error::UNKNOWN_MEMBER_ID,
                    format!("Member {member_id} is not a member of group {}.", self.id),
                )),
            };
            if let Err((code, message)) = found {
                return HeartbeatResponse::error_for(code, message, &member_id);
            }
            let m = &self.members[&member_id];
            let known = m.epoch();
            if epoch > known
                || (epoch < known
                    && (epoch != m.previous_epoch
                        || !is_subset(owned.as_ref(), &m.reconciliation.assigned)))
            {
                return HeartbeatResponse::error_for(
                    error::FENCED_MEMBER_EPOCH,
                    format!(
                        "The consumer group member has a member epoch ({epoch}) that does not match the one \
                         known by the group coordinator ({known}). The member must abandon all its \
                         partitions and rejoin."
                    ),
                    &member_id,
                );
            }
        }

        let member = self.members.get_mut(&member_id).expect("member");
        let assigned_before = member.reconciliation.assigned.clone();
        if let Some(instance) = &request.instance_id {
            member.instance_id = Some(instance.clone());
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms as u64;
        }
        if let Some(names) = &request.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.subscribed {
                member.subscribed = names;
                bump = true;
            }
        }
        if let Some(assignor) = &request.server_assignor {
            member.server_assignor = AssignorName::parse(assignor);
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_deadline = now.saturating_add(config.session_timeout_ms.max(1));

        self.refresh_target(config, topics, bump);
        self.reconcile_member(now, &member_id, owned.as_ref());
        self.update_state(out);

        let member = &self.members[&member_id];
        let full_request = epoch == JOIN_EPOCH
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && owned.is_some());
        let assignment = (full_request || member.reconciliation.assigned != assigned_before)
            .then(|| member.reconciliation.assigned.clone());
        HeartbeatResponse {
            error: classic_error::NONE,
            error_message: None,
            member_id,
            member_epoch: member.epoch(),
            heartbeat_interval_ms: config.heartbeat_interval_ms.min(i32::MAX as u64) as i32,
            assignment,
        }
    }

    /// Leave (-1) or static leave (-2).
    pub fn leave(
        &mut self,
        config: &ConsumerGroupConfig,
        request: &Heartbeat,
        topics: &dyn TopicLookup,
        out: &mut Vec<ConsumerOutput>,
    ) -> HeartbeatResponse {
        let member_id = request.member_id.clone();
        let found = match &request.instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err((
                    classic_error::UNKNOWN_MEMBER_ID,
                    format!("Instance id {instance} is unknown."),
                )),
                Some(id) if *id != member_id => Err((
                    classic_error::FENCED_INSTANCE_ID,
                    format!(
                        "Static member {member_id} with instance id {instance} was fenced by member {id}."
                    ),
                )),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(&member_id) => Ok(()),
            None => Err((
                classic_error::UNKNOWN_MEMBER_ID,
                format!("Member {member_id} is not a member of group {}.", self.id),
            )),
        };
        if let Err((code, message)) = found {
            return HeartbeatResponse::error_for(code, message, &member_id);
        }
        if request.member_epoch == STATIC_LEAVE_EPOCH {
            // The static member keeps its partitions (nobody else gets them) until it comes back with a new
            // member id or its session expires; what it was revoking is released now.
            let mut r = self.members[&member_id].reconciliation.clone();
            r.epoch = STATIC_LEAVE_EPOCH;
            r.state = MemberState::Stable;
            r.pending_revocation.clear();
            self.set_reconciliation(&member_id, r);
            self.members
                .get_mut(&member_id)
                .expect("member")
                .rebalance_deadline = None;
            self.update_state(out);
        } else {
            self.remove_member(&member_id, config, topics, "left the group", out);
        }
        HeartbeatResponse {
            error: classic_error::NONE,
            error_message: None,
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    /// Removes members whose session or revocation deadline passed.
    pub fn on_timers(
        &mut self,
        now: u64,
        config: &ConsumerGroupConfig,
        topics: &dyn TopicLookup,
        out: &mut Vec<ConsumerOutput>,
    ) {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.id.clone(), "session timeout"))
                } else if m.rebalance_deadline.is_some_and(|d| d <= now) {
                    Some((
                        m.id.clone(),
                        "did not revoke partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (member, reason) in expired {
            self.remove_member(&member, config, topics, reason, out);
        }
    }

    pub fn remove_member(
        &mut self,
        member_id: &str,
        config: &ConsumerGroupConfig,
        topics: &dyn TopicLookup,
        reason: &'static str,
        out: &mut Vec<ConsumerOutput>,
    ) {
        let r = Reconciliation::joining();
        self.set_reconciliation(member_id, r);
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.target.remove(member_id);
        out.push(ConsumerOutput::MemberRemoved {
            group_id: self.id.clone(),
            member_id: member_id.to_string(),
            reason,
        });
        self.refresh_target(config, topics, true);
        self.update_state(out);
    }

    /// A static member coming back under a new member id takes the place (and the partitions) of the one that
    /// left with epoch -2.
    fn replace_static_member(&mut self, old_id: &str, new_id: &str) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        member.id = new_id.to_string();
        member.reconciliation.epoch = JOIN_EPOCH;
        member.previous_epoch = JOIN_EPOCH;
        for partition in to_partitions(&member.reconciliation.assigned) {
            self.owners.insert(partition, new_id.to_string());
        }
        if let Some(target) = self.target.remove(old_id) {
            self.target.insert(new_id.to_string(), target);
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        self.members.insert(new_id.to_string(), member);
    }

    /// Recomputes the subscribed topics' metadata and the preferred assignor; bumps the group epoch and
    /// computes a new target when they (or, with `bump`, the members) changed.
    pub fn refresh_target(
        &mut self,
        config: &ConsumerGroupConfig,
        topics: &dyn TopicLookup,
        bump: bool,
    ) {
        let subscribed: BTreeSet<&String> =
            self.members.values().flat_map(|m| &m.subscribed).collect();
        let metadata: BTreeMap<String, TopicInfo> = subscribed
            .into_iter()
            .filter_map(|name| topics.topic(name).map(|info| (name.clone(), info)))
            .collect();
        let assignor = self.preferred_assignor(config);
        if !bump && metadata == self.metadata && assignor == self.assignor {
            return;
        }
        self.metadata = metadata;
        self.assignor = assignor;
        self.group_epoch += 1;
        let subscriptions: Subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscribed.clone()))
            .collect();
        self.target = assign(assignor, &subscriptions, &self.metadata, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// The assignor most members ask for, else the configured default (Kafka's rule).
    fn preferred_assignor(&self, config: &ConsumerGroupConfig) -> AssignorName {
        let mut votes: BTreeMap<AssignorName, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))
            .map_or(config.assignors[0], |(a, _)| a)
    }

    fn reconcile_member(&mut self, now: u64, member_id: &str, owned: Option<&Assignment>) {
        let empty = Assignment::new();
        let member = &self.members[member_id];
        let target = self.target.get(member_id).unwrap_or(&empty);
        let owners = &self.owners;
        let next = reconcile(
            &member.reconciliation,
            self.assignment_epoch,
            target,
            owned,
            |topic, p| {
                owners
                    .get(&(*topic, p))
                    .is_some_and(|owner| owner != member_id)
            },
        );
        let before = member.reconciliation.clone();
        let rebalance_timeout = member.rebalance_timeout_ms;
        self.set_reconciliation(member_id, next.clone());
        let member = self.members.get_mut(member_id).expect("member");
        if next.epoch != before.epoch {
            member.previous_epoch = before.epoch;
        }
        if next.state != MemberState::UnrevokedPartitions {
            member.rebalance_deadline = None;
        } else if before.state != MemberState::UnrevokedPartitions
            || before.epoch != next.epoch
            || member.rebalance_deadline.is_none()
        {
            member.rebalance_deadline = Some(now.saturating_add(rebalance_timeout.max(1)));
        }
    }

    /// Replaces a member's reconciliation and moves partition ownership accordingly. A partition another
    /// member owns is never taken over here: reconciliation only assigns partitions nobody owns.
    fn set_reconciliation(&mut self, member_id: &str, next: Reconciliation) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let old = &member.reconciliation;
        for partition in to_partitions(&old.assigned).chain(to_partitions(&old.pending_revocation))
        {
            if self.owners.get(&partition).map(String::as_str) == Some(member_id) {
                self.owners.remove(&partition);
            }
        }
        for partition in
            to_partitions(&next.assigned).chain(to_partitions(&next.pending_revocation))
        {
            let previous = self.owners.insert(partition, member_id.to_string());
            debug_assert!(
                previous.is_none() || previous.as_deref() == Some(member_id),
                "partition {partition:?} taken from {previous:?}"
            );
        }
        member.reconciliation = next;
    }

    fn update_state(&mut self, out: &mut Vec<ConsumerOutput>) {
        let state = if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .all(|m| m.reconciliation.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Stable
        } else {
            ConsumerGroupState::Reconciling
        };
        if state != self.state {
            self.state = state;
            out.push(ConsumerOutput::GroupChanged {
                group_id: self.id.clone(),
                state,
                group_epoch: self.group_epoch,
            });
        }
    }

    pub fn member_epoch(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(ConsumerMember::epoch)
    }

    pub fn describe(&self) -> ConsumerGroupDescription {
        let names: HashMap<Uuid, &String> = self
            .metadata
            .iter()
            .map(|(name, info)| (info.id, name))
            .collect();
        let described = |a: &Assignment| -> Vec<DescribedPartitions> {
            a.iter()
                .map(|(topic, ps)| DescribedPartitions {
                    topic_id: *topic,
                    topic_name: names.get(topic).map(|n| n.to_string()).unwrap_or_default(),
                    partitions: ps.iter().copied().collect(),
                })
                .collect()
        };
        let empty = Assignment::new();
        ConsumerGroupDescription {
            state: self.state,
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.as_str().to_string(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.iter().cloned().collect(),
                    assignment: described(&m.reconciliation.assigned),
                    target_assignment: described(self.target.get(&m.id).unwrap_or(&empty)),
                })
                .collect(),
        }
    }

    /// The group's invariants; the tests check them after every step.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let mut seen: HashMap<(Uuid, i32), &str> = HashMap::new();
        for m in self.members.values() {
            let r = &m.reconciliation;
            for p in to_partitions(&r.assigned).chain(to_partitions(&r.pending_revocation)) {
                if let Some(other) = seen.insert(p, &m.id) {
                    panic!("{p:?} owned by {other} and {}", m.id);
                }
                assert_eq!(self.owners.get(&p).map(String::as_str), Some(m.id.as_str()));
            }
            assert!(r.epoch <= self.assignment_epoch || r.epoch == STATIC_LEAVE_EPOCH);
            assert_eq!(
                r.pending_revocation.is_empty(),
                r.state != MemberState::UnrevokedPartitions
            );
        }
        assert_eq!(seen.len(), self.owners.len(), "stale owners");
        assert_eq!(self.group_epoch, self.assignment_epoch);
        for (member, target) in &self.target {
            assert!(
                self.members.contains_key(member),
                "target for a gone member"
            );
            for (t, ps) in target {
                let info = self.metadata.values().find(|i| i.id == *t).expect("topic");
                assert!(ps.iter().all(|p| *p < info.partitions));
            }
        }
        for (instance, member) in &self.static_members {
            assert_eq!(
                self.members[member].instance_id.as_deref(),
                Some(instance.as_str())
            );
        }
    }
}
