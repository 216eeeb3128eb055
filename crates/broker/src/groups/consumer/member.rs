//! One member of a consumer-protocol group: what it subscribes to, where its reconciliation stands, and its
//! deadlines.

use std::collections::BTreeSet;

use super::api::AssignorName;
use super::reconcile::Reconciliation;

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<AssignorName>,
    /// The epoch before the last bump: a heartbeat with it is still accepted (the response with the new epoch
    /// may have been lost) if the member owns no more than its assignment.
    pub previous_epoch: i32,
    pub reconciliation: Reconciliation,
    pub session_deadline: u64,
    /// Set while the member is asked to revoke partitions: by then it must have confirmed, or it is removed.
    pub rebalance_deadline: Option<u64>,
}

impl ConsumerMember {
    pub fn new(id: String, session_deadline: u64) -> Self {
        Self {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed: BTreeSet::new(),
            server_assignor: None,
            previous_epoch: 0,
            reconciliation: Reconciliation::joining(),
            session_deadline,
            rebalance_deadline: None,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.reconciliation.epoch
    }

    #[cfg(test)]
    pub fn state(&self) -> super::reconcile::MemberState {
        self.reconciliation.state
    }

    pub fn next_deadline(&self) -> u64 {
        self.rebalance_deadline
            .map_or(self.session_deadline, |r| r.min(self.session_deadline))
    }
}
