//! The consumer-protocol coordinator's vocabulary: configuration, the topic view it reads, the heartbeat it is
//! fed and what it answers. Plain data, so the driver translates to and from the wire without the state machine
//! knowing about encodings.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::groups::ReplyId;

/// Partitions by topic id: a member's current assignment, its partitions pending revocation, or its target.
/// Topic ids, not names, as on the wire: a deleted and re-created topic is a different topic.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Kafka error codes specific to the consumer protocol (the shared ones are in [`crate::groups::error`]).
pub mod error {
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
}

/// Member epoch sentinels of ConsumerGroupHeartbeat.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The server-side assignors Strom implements (`group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignorName {
    /// Balanced and sticky: every member gets its fair share, moving as few partitions as possible.
    Uniform,
    /// Per topic, contiguous ranges of partitions over the members sorted by member id.
    Range,
}

impl AssignorName {
    pub fn as_str(&self) -> &'static str {
        match self {
            AssignorName::Uniform => "uniform",
            AssignorName::Range => "range",
        }
    }

    /// The assignor for a configured or requested name (Kafka's short names; the Java class names are
    /// accepted in the config only).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(AssignorName::Uniform),
            "range" => Some(AssignorName::Range),
            _ => None,
        }
    }
}

/// Broker settings for consumer-protocol groups, named after Kafka's broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`: how often members heartbeat (told in every response).
    pub heartbeat_interval_ms: u64,
    /// `group.consumer.session.timeout.ms`: a member that does not heartbeat for this long is removed.
    pub session_timeout_ms: u64,
    /// `group.consumer.assignors`: the assignors members may name; the first is the default.
    pub assignors: Vec<AssignorName>,
    /// `group.consumer.max.size`.
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45_000,
            assignors: vec![AssignorName::Uniform, AssignorName::Range],
            max_size: usize::MAX,
        }
    }
}

/// What the coordinator needs to know of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: i32,
}

/// The topic view the coordinator reads on every heartbeat and timer, so a new topic, new partitions or a
/// deleted topic lead to a new target assignment without the state machine doing I/O: the driver implements
/// it over the broker's in-memory topic registry, tests over a map.
pub trait TopicLookup {
    fn topic(&self, name: &str) -> Option<TopicInfo>;
}

impl TopicLookup for BTreeMap<String, TopicInfo> {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.get(name).copied()
    }
}

/// A ConsumerGroupHeartbeat, decoded. `None` fields mean "unchanged since the last heartbeat", as on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns, by topic id.
    pub owned: Option<Vec<(Uuid, Vec<i32>)>>,
    pub client_id: String,
    pub client_host: String,
}

/// The ConsumerGroupHeartbeat answer. `assignment` is only set when the member must (re)learn it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatResponse {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<Assignment>,
}

impl HeartbeatResponse {
    /// An error answer: no epoch, no assignment.
    pub fn error_for(code: i16, message: impl Into<String>, member_id: &str) -> Self {
        Self {
            error: code,
            error_message: Some(message.into()),
            member_id: member_id.to_string(),
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// A request from a client, already decoded by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumerEvent {
    Heartbeat { reply: ReplyId, request: Heartbeat },
}

/// What the driver must do: answer a request, or note a change (for the log).
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumerOutput {
    Heartbeat {
        reply: ReplyId,
        response: HeartbeatResponse,
    },
    /// The group moved to a new group epoch or state.
    GroupChanged {
        group_id: String,
        state: ConsumerGroupState,
        group_epoch: i32,
    },
    /// A member was removed by a timer (session or rebalance timeout) or left.
    MemberRemoved {
        group_id: String,
        member_id: String,
        reason: &'static str,
    },
}

impl ConsumerOutput {
    pub fn reply(&self) -> Option<ReplyId> {
        match self {
            ConsumerOutput::Heartbeat { reply, .. } => Some(*reply),
            _ => None,
        }
    }
}

/// A consumer group's state, as KIP-848 names it in ConsumerGroupDescribe and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerGroupState {
    Empty,
    /// The group epoch is ahead of the target assignment (never observable here: targets are computed
    /// synchronously when the epoch is bumped).
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    Stable,
    /// Reported for unknown groups only.
    Dead,
}

impl ConsumerGroupState {
    pub fn as_kafka_str(&self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
            ConsumerGroupState::Dead => "Dead",
        }
    }
}

/// Partitions of one topic, with its name for display (empty if the topic no longer exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedPartitions {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partitions: Vec<i32>,
}

/// ConsumerGroupDescribe for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroupDescription {
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    /// The member's current assignment (without partitions pending revocation), as in Kafka.
    pub assignment: Vec<DescribedPartitions>,
    pub target_assignment: Vec<DescribedPartitions>,
}
