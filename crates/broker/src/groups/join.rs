//! JoinGroup on one group: new dynamic members (KIP-394), static members (KIP-345, KIP-814) and known members
//! rejoining.

use bytes::Bytes;
use uuid::Uuid;

use super::api::{error, GroupConfig, GroupState, Output, ReplyId, NEW_MEMBER_JOIN_TIMEOUT_MS};
use super::group::{after, join_error, Group};
use super::member::Member;
use super::protocol;

/// The parts of [`super::Event::Join`] the group needs (group id and reason are the coordinator's business).
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub reply: ReplyId,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub version: i16,
}

impl JoinRequest {
    fn new_member(&self, id: String, now: u64) -> Member {
        Member {
            id,
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocol_type: self.protocol_type.clone(),
            protocols: self.protocols.clone(),
            assignment: None,
            join_reply: Some(self.reply),
            sync_reply: None,
            is_new: true,
            session_deadline: after(now, NEW_MEMBER_JOIN_TIMEOUT_MS),
        }
    }
}

impl Group {
    pub fn join(&mut self, now: u64, cfg: &GroupConfig, req: JoinRequest, out: &mut Vec<Output>) {
        if !self.accepts_joining_member(&req, cfg.max_size) {
            if self.has_member(&req.member_id) {
                self.remove_member(&req.member_id, out);
                self.after_removal(now, cfg, out);
            }
            out.push(join_error(
                req.reply,
                error::GROUP_MAX_SIZE_REACHED,
                String::new(),
            ));
        } else if req.member_id.is_empty() {
            self.join_new_member(now, cfg, req, out);
        } else {
            self.join_existing_member(now, cfg, req, out);
        }
    }

    /// Kafka's `acceptJoiningMember`. While joining, the members already parked are counted (the group may be
    /// over a lowered limit, and the last to rejoin are the ones turned away); otherwise the member count.
    /// Deviation: a static member replacing its own previous member id never grows the group and is accepted.
    fn accepts_joining_member(&self, req: &JoinRequest, max_size: usize) -> bool {
        let replaces_static = req.member_id.is_empty()
            && req
                .instance_id
                .as_ref()
                .is_some_and(|i| self.static_members.contains_key(i));
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            _ if replaces_static => true,
            GroupState::PreparingRebalance => {
                self.member(&req.member_id)
                    .is_some_and(|m| m.join_reply.is_some())
                    || self.awaiting_join_count() < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.has_member(&req.member_id) || self.member_count() < max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        req: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let replaced = req
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i))
            .cloned();
        if !self.supports_protocols(&req.protocol_type, &req.protocols, replaced.as_deref()) {
            out.push(join_error(
                req.reply,
                error::INCONSISTENT_GROUP_PROTOCOL,
                req.member_id,
            ));
            return;
        }
        match (&req.instance_id, replaced) {
            (Some(instance), Some(old_id)) => {
                let new_id = format!("{instance}-{}", Uuid::new_v4());
                self.replace_static_member(now, cfg, old_id, new_id, req, out);
            }
            (Some(instance), None) => {
                let new_id = format!("{instance}-{}", Uuid::new_v4());
                self.add_member(now, cfg, new_id, req, out);
            }
            (None, _) if req.version >= 4 => {
                // KIP-394: hand out the id first, so a client that times out and retries does not leave a
                // defunct member behind. The id is held until it is used or its session timeout passes.
                let new_id = format!("{}-{}", req.client_id, Uuid::new_v4());
                self.add_pending(new_id.clone(), after(now, req.session_timeout_ms));
                out.push(join_error(req.reply, error::MEMBER_ID_REQUIRED, new_id));
            }
            (None, _) => {
                let new_id = format!("{}-{}", req.client_id, Uuid::new_v4());
                self.add_member(now, cfg, new_id, req, out);
            }
        }
    }

    fn join_existing_member(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        req: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let excluding = self
            .has_member(&req.member_id)
            .then_some(req.member_id.as_str());
        if !self.supports_protocols(&req.protocol_type, &req.protocols, excluding) {
            out.push(join_error(
                req.reply,
                error::INCONSISTENT_GROUP_PROTOCOL,
                req.member_id,
            ));
            return;
        }
        if req.instance_id.is_none() && self.remove_pending(&req.member_id) {
            let id = req.member_id.clone();
            self.add_member(now, cfg, id, req, out);
            return;
        }
        if let Err(code) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            out.push(join_error(req.reply, code, req.member_id));
            return;
        }
        self.touch(now, &req.member_id);
        let Some(member) = self.member(&req.member_id) else {
            return;
        };
        let unchanged = member.matches(&req.protocols);
        let is_leader = self.is_leader(&req.member_id);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(now, cfg, req, out),
            // Same metadata: the member probably lost our answer; give it the current generation again.
            GroupState::CompletingRebalance if unchanged => {
                let members = if is_leader {
                    self.join_members()
                } else {
                    Vec::new()
                };
                out.push(self.join_success(req.reply, &req.member_id, members));
            }
            // The leader rejoining a Stable group asks for a rebalance (it saw a change the metadata does not
            // show, such as new partitions); a follower with nothing new just gets the current generation.
            GroupState::Stable if unchanged && !is_leader => {
                out.push(self.join_success(req.reply, &req.member_id, Vec::new()));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(now, cfg, req, out)
            }
            GroupState::Empty | GroupState::Dead => out.push(join_error(
                req.reply,
                error::UNKNOWN_MEMBER_ID,
                req.member_id,
            )),
        }
    }

    fn add_member(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        id: String,
        req: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        if self.state == GroupState::PreparingRebalance && self.initial.is_some() {
            self.new_member_added = true;
        }
        let member = req.new_member(id, now);
        self.insert_member(member, None);
        self.rebalance_or_complete_join(now, cfg, out);
    }

    /// Parks a known member's JoinGroup with its new protocols and timeouts, then rebalances.
    fn update_member_and_rebalance(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        req: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(member) = self.member_mut(&req.member_id) else {
            return;
        };
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        // Kafka silently drops a superseded parked JoinGroup; every reply must be answered here, and
        // REBALANCE_IN_PROGRESS makes a client that still waits on it simply join again.
        if let Some(old) = member.join_reply.replace(req.reply) {
            out.push(join_error(
                old,
                error::REBALANCE_IN_PROGRESS,
                req.member_id.clone(),
            ));
        }
        self.rebalance_or_complete_join(now, cfg, out);
    }

    /// A static member restarted (known instance id, empty member id): the new member id takes over the old
    /// one's place, assignment and leadership, and the old member id is fenced.
    fn replace_static_member(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let was_pending_sync = self.pending_sync.contains(&old_id);
        let Some((old, seq)) = self.take_member(&old_id) else {
            return;
        };
        if let Some(reply) = old.join_reply {
            out.push(join_error(reply, error::FENCED_INSTANCE_ID, old_id.clone()));
        }
        if let Some(reply) = old.sync_reply {
            out.push(super::group::sync_error(reply, error::FENCED_INSTANCE_ID));
        }
        let was_leader = previous_leader == old_id;
        let member = Member {
            id: new_id.clone(),
            instance_id: old.instance_id,
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: old.assignment,
            join_reply: Some(req.reply),
            sync_reply: None,
            is_new: false,
            session_deadline: after(now, req.session_timeout_ms),
        };
        // `take_member` moved leadership to the next member; it belongs to the instance.
        let leader = if was_leader || self.leader.is_none() {
            Some(new_id.clone())
        } else {
            self.leader.clone()
        };
        self.insert_member(member, Some(seq));
        self.leader = leader;
        if was_pending_sync {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                let next_protocol = protocol::select_protocol(self.members());
                if next_protocol.is_some() && next_protocol == self.protocol_name {
                    self.answer_static_rejoin(&new_id, &old_id, was_leader, req.version, out);
                } else {
                    self.prepare_rebalance(now, cfg, out);
                }
            }
            // The leader may already be assigning with the old member id: only a new round is consistent.
            GroupState::CompletingRebalance => self.prepare_rebalance(now, cfg, out),
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// A static member restarted into a Stable group whose protocol would not change: no rebalance. It keeps
    /// its assignment (fetched with SyncGroup). Deviation from a plain reading of KIP-345, following Kafka
    /// (KIP-814): a restarted *leader* does not rebalance either. From JoinGroup v9 it gets the member list
    /// with `skip_assignment`, so it can watch metadata without reassigning; before v9 it is answered as a
    /// follower (no members, the old leader id), so it does not compute an assignment that would be ignored.
    fn answer_static_rejoin(
        &mut self,
        new_id: &str,
        old_id: &str,
        was_leader: bool,
        version: i16,
        out: &mut Vec<Output>,
    ) {
        let Some(reply) = self.member_mut(new_id).and_then(|m| m.join_reply.take()) else {
            return;
        };
        let mut answer = self.join_success(reply, new_id, Vec::new());
        if was_leader {
            if let Output::Join {
                members,
                skip_assignment,
                leader,
                ..
            } = &mut answer
            {
                if version >= 9 {
                    *members = self.join_members();
                    *skip_assignment = true;
                } else {
                    *leader = old_id.to_string();
                }
            }
        }
        out.push(answer);
    }
}
