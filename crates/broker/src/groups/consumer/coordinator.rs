//! The consumer-protocol coordinator: validates each heartbeat, routes it to its group, keeps one deadline index
//! over all groups, and answers the admin questions (describe, list, offset commit validation).

use std::collections::{BTreeSet, HashMap};

use super::api::AssignorName;
use super::api::{
    error, Assignment, ConsumerEvent, ConsumerGroupConfig, ConsumerGroupDescription,
    ConsumerGroupState, ConsumerOutput, Heartbeat, HeartbeatResponse, TopicLookup, JOIN_EPOCH,
    LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
};
use super::group::ConsumerGroup;
use crate::groups::error as classic_error;

/// Every consumer-protocol group this broker coordinates, as a state machine without I/O: `handle` and `tick`
/// take the current time and a view of the topics, and return what the driver must send.
#[derive(Debug)]
pub struct ConsumerGroupCoordinator {
    config: ConsumerGroupConfig,
    groups: HashMap<String, ConsumerGroup>,
    deadlines: BTreeSet<(u64, String)>,
    /// For member ids the broker generates (ConsumerGroupHeartbeat v0; v1 clients generate their own).
    generated_ids: u64,
}

impl ConsumerGroupCoordinator {
    pub fn new(config: ConsumerGroupConfig) -> Self {
        assert!(
            !config.assignors.is_empty(),
            "group.consumer.assignors must name at least one assignor"
        );
        Self {
            config,
            groups: HashMap::new(),
            deadlines: BTreeSet::new(),
            generated_ids: 0,
        }
    }

    pub fn config(&self) -> &ConsumerGroupConfig {
        &self.config
    }

    pub fn handle(
        &mut self,
        now_ms: u64,
        event: ConsumerEvent,
        topics: &dyn TopicLookup,
    ) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        let ConsumerEvent::Heartbeat { reply, request } = event;
        let group_id = request.group_id.clone();
        let response = self.heartbeat(now_ms, request, topics, &mut out);
        out.push(ConsumerOutput::Heartbeat { reply, response });
        self.refresh(&group_id);
        out
    }

    fn heartbeat(
        &mut self,
        now: u64,
        mut request: Heartbeat,
        topics: &dyn TopicLookup,
        out: &mut Vec<ConsumerOutput>,
    ) -> HeartbeatResponse {
        if let Err(message) = self.validate(&request) {
            let code = if message.starts_with("ServerAssignor") {
                error::UNSUPPORTED_ASSIGNOR
            } else {
                error::INVALID_REQUEST
            };
            return HeartbeatResponse::error_for(code, message, &request.member_id);
        }
        let owned: Option<Assignment> = request.owned.as_ref().map(|list| {
            let mut a = Assignment::new();
            for (topic, partitions) in list {
                if !partitions.is_empty() {
                    a.entry(*topic)
                        .or_default()
                        .extend(partitions.iter().copied());
                }
            }
            a
        });
        let epoch = request.member_epoch;
        if epoch == LEAVE_EPOCH || epoch == STATIC_LEAVE_EPOCH {
            let Some(group) = self.groups.get_mut(&request.group_id) else {
                return HeartbeatResponse::error_for(
                    classic_error::GROUP_ID_NOT_FOUND,
                    format!("Group {} not found.", request.group_id),
                    &request.member_id,
                );
            };
            return group.leave(&self.config, &request, topics, out);
        }
        if epoch != JOIN_EPOCH && !self.groups.contains_key(&request.group_id) {
            // Deviation: Kafka answers GROUP_ID_NOT_FOUND, but it would still know the group after a restart.
            // Strom keeps membership in memory only, so a member of a group lost in a restart must be told to
            // rejoin; librdkafka retries GROUP_ID_NOT_FOUND forever without rejoining.
            return HeartbeatResponse::error_for(
                classic_error::UNKNOWN_MEMBER_ID,
                format!(
                    "Member {} is not a member of group {}.",
                    request.member_id, request.group_id
                ),
                &request.member_id,
            );
        }
        if request.member_id.is_empty() {
            self.generated_ids += 1;
            request.member_id = format!("strom-member-{}", self.generated_ids);
        }
        let config = &self.config;
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(request.group_id.clone(), config));
        group.heartbeat(now, config, request, owned, topics, out)
    }

    /// Kafka's request checks, with its messages. An `Err` starting with "ServerAssignor" is
    /// UNSUPPORTED_ASSIGNOR, any other INVALID_REQUEST.
    fn validate(&self, r: &Heartbeat) -> Result<(), String> {
        if r.group_id.is_empty() {
            return Err("GroupId can't be empty.".into());
        }
        if r.instance_id.as_deref() == Some("") {
            return Err("InstanceId can't be empty.".into());
        }
        if r.rack_id.as_deref() == Some("") {
            return Err("RackId can't be empty.".into());
        }
        // librdkafka sends "" for "no regex" alongside topic names.
        if r.subscribed_topic_regex
            .as_deref()
            .is_some_and(|re| !re.is_empty())
        {
            return Err(
                "SubscribedTopicRegex is not supported by this broker; subscribe by topic names."
                    .into(),
            );
        }
        match r.member_epoch {
            JOIN_EPOCH => {
                if r.rebalance_timeout_ms < 0 {
                    return Err("RebalanceTimeoutMs must be provided in first request.".into());
                }
                if r.owned
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|(_, ps)| !ps.is_empty()))
                {
                    return Err("TopicPartitions must be empty when (re-)joining.".into());
                }
                if r.subscribed_topic_names.as_ref().is_none_or(Vec::is_empty) {
                    return Err("SubscribedTopicNames must be set in first request.".into());
                }
            }
            STATIC_LEAVE_EPOCH => {
                if r.member_id.is_empty() {
                    return Err("MemberId can't be empty.".into());
                }
                if r.instance_id.is_none() {
                    return Err("InstanceId can't be null.".into());
                }
            }
            e if e > 0 || e == LEAVE_EPOCH => {
                if r.member_id.is_empty() {
                    return Err("MemberId can't be empty.".into());
                }
            }
            _ => return Err("MemberEpoch is invalid.".into()),
        }
        if r.subscribed_topic_names
            .as_ref()
            .is_some_and(|names| names.iter().any(String::is_empty))
        {
            return Err("SubscribedTopicNames can't contain an empty topic name.".into());
        }
        if let Some(name) = &r.server_assignor {
            if !AssignorName::parse(name).is_some_and(|a| self.config.assignors.contains(&a)) {
                let supported: Vec<&str> =
                    self.config.assignors.iter().map(|a| a.as_str()).collect();
                return Err(format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    supported.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn refresh(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if let Some(old) = group.indexed_deadline.take() {
            self.deadlines.remove(&(old, group_id.to_string()));
        }
        group.indexed_deadline = group.next_deadline();
        if let Some(deadline) = group.indexed_deadline {
            self.deadlines.insert((deadline, group_id.to_string()));
        }
    }

    /// Removes members whose session or rebalance timeout passed. Timers are strictly in the future after a
    /// heartbeat, so one call settles everything due.
    pub fn tick(&mut self, now_ms: u64, topics: &dyn TopicLookup) -> Vec<ConsumerOutput> {
        let mut out = Vec::new();
        while let Some((deadline, group_id)) = self.deadlines.first().cloned() {
            if deadline > now_ms {
                break;
            }
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.on_timers(now_ms, &self.config, topics, &mut out);
            } else {
                self.deadlines.remove(&(deadline, group_id.clone()));
            }
            self.refresh(&group_id);
        }
        out
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    pub fn has_group(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether the group exists and has members (a classic request for it must then be refused).
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// OffsetCommit validation for a consumer-protocol group; `None` when this coordinator does not hold the
    /// group (the classic rules apply then). A commit without a member (epoch < 0) is accepted while the group
    /// is empty; otherwise the member must exist (UNKNOWN_MEMBER_ID) and send its current epoch
    /// (STALE_MEMBER_EPOCH).
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Option<Result<(), i16>> {
        let group = self.groups.get(group_id)?;
        if member_epoch < 0 && group.members.is_empty() {
            return Some(Ok(()));
        }
        Some(match group.member_epoch(member_id) {
            None => Err(classic_error::UNKNOWN_MEMBER_ID),
            Some(epoch) if epoch != member_epoch => Err(error::STALE_MEMBER_EPOCH),
            Some(_) => Ok(()),
        })
    }

    /// (group id, state) of every group, sorted by id.
    pub fn list_groups(&self) -> Vec<(String, ConsumerGroupState)> {
        let mut groups: Vec<_> = self
            .groups
            .values()
            .map(|g| (g.id.clone(), g.state))
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups
    }

    pub fn describe_group(&self, group_id: &str) -> Option<ConsumerGroupDescription> {
        self.groups.get(group_id).map(ConsumerGroup::describe)
    }

    /// Forgets an empty group (DeleteGroups, or a classic group taking over the id): NON_EMPTY_GROUP if it has
    /// members, GROUP_ID_NOT_FOUND if unknown.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), i16> {
        let group = self
            .groups
            .get(group_id)
            .ok_or(classic_error::GROUP_ID_NOT_FOUND)?;
        if !group.members.is_empty() {
            return Err(classic_error::NON_EMPTY_GROUP);
        }
        if let Some(deadline) = group.indexed_deadline {
            self.deadlines.remove(&(deadline, group_id.to_string()));
        }
        self.groups.remove(group_id);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for group in self.groups.values() {
            group.check_invariants();
            assert_eq!(group.indexed_deadline, group.next_deadline());
            if let Some(d) = group.indexed_deadline {
                assert!(self.deadlines.contains(&(d, group.id.clone())));
            }
        }
        assert_eq!(
            self.deadlines.len(),
            self.groups
                .values()
                .filter(|g| g.indexed_deadline.is_some())
                .count()
        );
    }

    #[cfg(test)]
    pub(crate) fn group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group_id)
    }
}
