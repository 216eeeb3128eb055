//! One member of a classic group: what it told us in its last JoinGroup, and which of its requests are parked.

use bytes::Bytes;

use super::api::ReplyId;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// The protocols in the member's order of preference, with its metadata for each.
    pub protocols: Vec<(String, Bytes)>,
    /// Set by the leader's SyncGroup; `None` until the member's first generation is synced.
    pub assignment: Option<Bytes>,
    /// A parked JoinGroup, answered when the join phase completes.
    pub join_reply: Option<ReplyId>,
    /// A parked SyncGroup, answered when the leader's assignment arrives.
    pub sync_reply: Option<ReplyId>,
    /// Added by a JoinGroup that has not been answered yet. Such a member is expired after
    /// [`super::api::NEW_MEMBER_JOIN_TIMEOUT_MS`] even while parked.
    pub is_new: bool,
    /// When the member's session ends unless it is heard from again (mirrored in the group's timer index).
    pub session_deadline: u64,
}

impl Member {
    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// The member's metadata for `protocol`, empty if it does not support it.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Same protocols, same metadata, same order: a rejoin that changes nothing the leader would see.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates`.
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Members parked in a rebalance are exempt from session expiry: the rebalance (or pending-sync) timeout
    /// bounds how long they may wait, and they cannot heartbeat meanwhile. New members are the exception.
    pub fn session_exempt(&self) -> bool {
        !self.is_new && (self.join_reply.is_some() || self.sync_reply.is_some())
    }
}
