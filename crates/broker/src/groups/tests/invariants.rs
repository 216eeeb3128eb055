//! Structural invariants of a group, checked by the tests after every step.

use crate::groups::api::GroupState;
use crate::groups::group::{Group, Timer};

impl Group {
    /// Checks the structural invariants; used by the tests after every step.
    pub fn check_invariants(&self) {
        if let Some(leader) = &self.leader {
            assert!(
                self.has_member(leader),
                "leader {leader} is not a member of {}",
                self.id
            );
        }
        assert_eq!(
            self.leader.is_some(),
            !self.members.is_empty(),
            "a non-empty group has a leader"
        );
        assert_eq!(self.members.len(), self.seq_of.len());
        for (seq, m) in &self.members {
            assert_eq!(self.seq_of.get(&m.id), Some(seq));
            assert!(self
                .timers
                .contains(&(m.session_deadline, Timer::Session(m.id.clone()))));
            if let Some(instance) = &m.instance_id {
                assert_eq!(self.static_members.get(instance), Some(&m.id));
            }
        }
        assert_eq!(
            self.static_members.len(),
            self.members
                .values()
                .filter(|m| m.instance_id.is_some())
                .count()
        );
        for (id, deadline) in &self.pending {
            assert!(self
                .timers
                .contains(&(*deadline, Timer::Pending(id.clone()))));
        }
        let expected = self.members.len()
            + self.pending.len()
            + usize::from(self.join_deadline.is_some())
            + usize::from(self.sync_deadline.is_some());
        assert_eq!(
            self.timers.len(),
            expected,
            "timer index out of step in {}",
            self.id
        );
        match self.state {
            GroupState::Empty => assert!(self.members.is_empty()),
            GroupState::Stable => {
                assert!(
                    self.members.values().all(|m| m.assignment.is_some()),
                    "Stable without assignments"
                );
                assert!(self
                    .members
                    .values()
                    .all(|m| m.join_reply.is_none() && m.sync_reply.is_none()));
            }
            GroupState::CompletingRebalance => {
                assert!(self.members.values().all(|m| m.join_reply.is_none()))
            }
            GroupState::PreparingRebalance => {
                assert!(self.members.values().all(|m| m.sync_reply.is_none()))
            }
            GroupState::Dead => {}
        }
        assert!(self.join_deadline.is_none() || self.state == GroupState::PreparingRebalance);
        for id in &self.pending_sync {
            assert!(self.has_member(id));
        }
    }
}
