//! The rebalance core of a group, shared by every request type and timer: state transitions, the join phase
//! (initial delay, rebalance timeout, completion with leader and protocol choice) and assignment propagation.

use std::collections::HashMap;

use bytes::Bytes;

use super::api::{error, GroupConfig, GroupState, Output};
use super::group::{after, sync_error, Group, InitialDelay};
use super::protocol;

impl Group {
    pub fn transition(&mut self, state: GroupState, out: &mut Vec<Output>) {
        if self.state == GroupState::PreparingRebalance && state != GroupState::PreparingRebalance {
            self.set_join_deadline(None);
            self.initial = None;
            self.new_member_added = false;
        }
        if matches!(state, GroupState::PreparingRebalance | GroupState::Empty) {
            self.pending_sync.clear();
            self.set_sync_deadline(None);
        }
        self.state = state;
        out.push(Output::GroupChanged {
            group_id: self.id.clone(),
            state,
            generation_id: self.generation,
        });
    }

    /// Something changed membership: start a rebalance if the group is settled, else see whether the current
    /// join phase can finish (Kafka's `maybePrepareRebalanceOrCompleteJoin`).
    pub fn rebalance_or_complete_join(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(now, cfg, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Dead => {}
        }
    }

    /// After members were removed: a settled group rebalances; a joining one may now be complete.
    pub fn after_removal(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Output>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, cfg, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub fn prepare_rebalance(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            // Members parked in SyncGroup must rejoin; the assignment they wait for will never come.
            self.reset_assignments_with_error(now, error::REBALANCE_IN_PROGRESS, out);
        }
        let initial = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, out);
        if initial && cfg.initial_rebalance_delay_ms > 0 {
            let delay_ms = cfg.initial_rebalance_delay_ms;
            let remaining_ms = self.rebalance_timeout_ms().saturating_sub(delay_ms);
            self.initial = Some(InitialDelay {
                delay_ms,
                remaining_ms,
            });
            self.new_member_added = false;
            self.set_join_deadline(Some(after(now, delay_ms)));
        } else if initial {
            // Kafka schedules a 0 ms initial delay timer that completes the join with whoever is there.
            self.complete_join(now, out);
        } else if self.all_members_joined() {
            self.complete_join(now, out);
        } else {
            self.set_join_deadline(Some(after(now, self.rebalance_timeout_ms())));
        }
    }

    /// Kafka's `maybeCompleteJoinPhase`: the initial delay is never cut short.
    pub fn maybe_complete_join(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.state == GroupState::PreparingRebalance
            && self.initial.is_none()
            && self.all_members_joined()
        {
            self.complete_join(now, out);
        }
    }

    /// The join timer fired.
    pub fn on_join_timer(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        match self.initial {
            Some(step) if self.new_member_added && step.remaining_ms > 0 => {
                self.new_member_added = false;
                let delay_ms = cfg.initial_rebalance_delay_ms.min(step.remaining_ms);
                let remaining_ms = step.remaining_ms.saturating_sub(step.delay_ms);
                self.initial = Some(InitialDelay {
                    delay_ms,
                    remaining_ms,
                });
                self.set_join_deadline(Some(after(now, delay_ms)));
            }
            _ => self.complete_join(now, out),
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, picks the leader and protocol, bumps
    /// the generation and answers every parked JoinGroup.
    pub fn complete_join(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        self.initial = None;
        self.new_member_added = false;
        self.set_join_deadline(None);
        // Static members keep their place until their session expires (KIP-345): a restarting static member
        // must not cost the group a rebalance.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_reply.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, out);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only static members that stayed away): wait another round for their sessions
            // to expire.
            self.set_join_deadline(Some(after(now, self.rebalance_timeout_ms())));
            return;
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, out);
            return;
        }
        self.protocol_name = protocol::select_protocol(self.members.values());
        self.transition(GroupState::CompletingRebalance, out);
        let leader_view = self.join_members();
        let ids: Vec<String> = self.members.values().map(|m| m.id.clone()).collect();
        for id in ids {
            let members = if self.is_leader(&id) {
                leader_view.clone()
            } else {
                Vec::new()
            };
            if let Some(reply) = self.member_mut(&id).and_then(|m| m.join_reply.take()) {
                out.push(self.join_success(reply, &id, members));
            }
            if let Some(member) = self.member_mut(&id) {
                member.is_new = false;
            }
            self.touch(now, &id);
            self.pending_sync.insert(id);
        }
        self.set_sync_deadline(Some(after(now, self.rebalance_timeout_ms())));
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keep the leader if it rejoined, else the first member that did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self.member(&leader).is_some_and(|m| m.join_reply.is_some()) {
            return true;
        }
        match self.members.values().find(|m| m.join_reply.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Clears every assignment and answers parked SyncGroups with `error`.
    fn reset_assignments_with_error(&mut self, now: u64, error: i16, out: &mut Vec<Output>) {
        let ids: Vec<String> = self.members.values().map(|m| m.id.clone()).collect();
        for id in ids {
            let Some(member) = self.member_mut(&id) else {
                continue;
            };
            member.assignment = None;
            if let Some(reply) = member.sync_reply.take() {
                out.push(sync_error(reply, error));
                self.touch(now, &id);
            }
        }
    }

    /// Stores the leader's assignment (empty for members it left out) and answers every parked SyncGroup.
    pub fn propagate_assignment(
        &mut self,
        now: u64,
        assignments: Vec<(String, Bytes)>,
        out: &mut Vec<Output>,
    ) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        let ids: Vec<String> = self.members.values().map(|m| m.id.clone()).collect();
        for id in ids {
            let assignment = by_member.remove(&id).unwrap_or_default();
            let (protocol_type, protocol_name) =
                (self.protocol_type.clone(), self.protocol_name.clone());
            let Some(member) = self.member_mut(&id) else {
                continue;
            };
            member.assignment = Some(assignment.clone());
            if let Some(reply) = member.sync_reply.take() {
                out.push(Output::Sync {
                    reply,
                    error: error::NONE,
                    protocol_type,
                    protocol_name,
                    assignment,
                });
                self.touch(now, &id);
            }
        }
    }

    /// Members that never sent SyncGroup for this generation are removed and the group rebalances.
    pub fn on_sync_timer(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Output>) {
        if !matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            return;
        }
        let mut late: Vec<String> = self.pending_sync.iter().cloned().collect();
        late.sort();
        for id in late {
            self.remove_member(&id, out);
        }
        self.prepare_rebalance(now, cfg, out);
    }

    /// A session deadline passed.
    pub fn on_session_timer(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        member_id: &str,
        out: &mut Vec<Output>,
    ) {
        let Some(member) = self.member(member_id) else {
            return;
        };
        if member.session_deadline > now {
            return;
        }
        if member.session_exempt() {
            // Parked in a rebalance; look again one session later (Kafka re-arms on completion instead).
            self.touch(now, member_id);
            return;
        }
        self.remove_member(member_id, out);
        self.after_removal(now, cfg, out);
    }

    /// A KIP-394 member id was never used. Deviation: Kafka also starts a rebalance of a Stable group here;
    /// a client that never joined changes nothing, so only a waiting join phase is re-checked.
    pub fn on_pending_timer(&mut self, now: u64, member_id: &str, out: &mut Vec<Output>) {
        match self.pending.get(member_id) {
            Some(deadline) if *deadline <= now => {}
            _ => return,
        }
        self.remove_pending(member_id);
        self.maybe_complete_join(now, out);
    }
}
