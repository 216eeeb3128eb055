//! The coordinator's vocabulary: configuration, the events the driver feeds in and the outputs it must act on.
//!
//! Every type here is plain data so the driver can translate it to and from the wire messages without the
//! state machine knowing about versions or encodings (the few version-dependent rules are noted where they
//! apply).

use bytes::Bytes;

/// The driver's handle for a pending request. Every event that needs an answer carries one, and the coordinator
/// answers each exactly once, possibly much later (a parked JoinGroup or SyncGroup).
pub type ReplyId = u64;

/// Kafka error codes the coordinator produces. A Kafka error code is data in a response, not a Rust error.
pub mod error {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

/// How long a brand-new member's parked JoinGroup may wait before the member is dropped (Kafka's
/// `group.new.member.join.timeout`, 5 minutes). A new member cannot heartbeat (it has no member id yet) and a
/// client that gave up and retried would otherwise leave a defunct member in every rebalance.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;

/// Broker settings for classic groups, named after Kafka's broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an Empty group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: u64,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: usize::MAX,
        }
    }
}

/// A group's state, as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Never held by a live group here (a deleted group is simply gone); the driver reports it for groups the
    /// coordinator does not know, as Kafka's DescribeGroups does.
    Dead,
}

impl GroupState {
    pub fn as_kafka_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A request from a client, already decoded by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// JoinGroup. For v0 (no rebalance timeout on the wire) the driver passes the session timeout as
    /// `rebalance_timeout_ms`, as Kafka does. `version` decides KIP-394 (v4+: a new dynamic member must first
    /// be given a member id) and KIP-814 (v9+: a rejoining static leader may be told to skip assignment).
    Join {
        reply: ReplyId,
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        client_id: String,
        client_host: String,
        session_timeout_ms: u64,
        rebalance_timeout_ms: u64,
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
        version: i16,
        /// The client's reason (v8+). Not kept: the driver may log it.
        reason: Option<String>,
    },
    /// SyncGroup. `protocol_type` / `protocol_name` are only sent from v5; when present they must match.
    Sync {
        reply: ReplyId,
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation_id: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        reply: ReplyId,
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation_id: i32,
    },
    /// LeaveGroup. v0-2 carry one member id: pass it as a single `(member_id, None)`. v3+ carry a batch of
    /// identities; an empty member id with an instance id removes that static member (administrative removal).
    Leave {
        reply: ReplyId,
        group_id: String,
        members: Vec<(String, Option<String>)>,
    },
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// What the driver must do: answer a request, or note a group change.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// `protocol_type` / `protocol_name` are `None` on errors; JoinGroup before v7 cannot encode a null
    /// protocol name, so the driver writes "" there. `members` is filled for the leader only.
    Join {
        reply: ReplyId,
        error: i16,
        generation_id: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        leader: String,
        member_id: String,
        skip_assignment: bool,
        members: Vec<JoinMember>,
    },
    Sync {
        reply: ReplyId,
        error: i16,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignment: Bytes,
    },
    Heartbeat {
        reply: ReplyId,
        error: i16,
    },
    /// `members` echoes each requested identity with its own error. For LeaveGroup v0-2 the wire response has a
    /// single error: use [`leave_error_v0`].
    Leave {
        reply: ReplyId,
        error: i16,
        members: Vec<(String, Option<String>, i16)>,
    },
    /// The group moved to a new generation or state; the driver may log it.
    GroupChanged {
        group_id: String,
        state: GroupState,
        generation_id: i32,
    },
}

impl Output {
    /// The reply this output answers, if it answers one.
    pub fn reply(&self) -> Option<ReplyId> {
        match self {
            Output::Join { reply, .. }
            | Output::Sync { reply, .. }
            | Output::Heartbeat { reply, .. }
            | Output::Leave { reply, .. } => Some(*reply),
            Output::GroupChanged { .. } => None,
        }
    }
}

/// The single error of a LeaveGroup v0-2 response: the top-level error, else the first member's error (what
/// Kafka's `LeaveGroupResponse` does for old versions).
pub fn leave_error_v0(error: i16, members: &[(String, Option<String>, i16)]) -> i16 {
    if error != error::NONE {
        return error;
    }
    members
        .iter()
        .map(|(_, _, e)| *e)
        .find(|e| *e != error::NONE)
        .unwrap_or(error::NONE)
}

/// One row of ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// Empty when the group never had a member.
    pub protocol_type: String,
    pub state: GroupState,
}

/// DescribeGroups for one group. As in Kafka, metadata, assignments and the protocol name are only filled in
/// while the group is Stable; in other states they are empty.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}
