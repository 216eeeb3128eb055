//! SyncGroup, Heartbeat, LeaveGroup and the read-only questions (OffsetCommit validation, DescribeGroups) on
//! one group.

use bytes::Bytes;

use super::api::{
    error, GroupConfig, GroupDescription, GroupState, MemberDescription, Output, ReplyId,
};
use super::group::{sync_error, Group};

/// The parts of [`super::Event::Sync`] the group needs.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    pub reply: ReplyId,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A given protocol type or name (SyncGroup v5+) must match the group's, when the group has one.
fn inconsistent(given: Option<&str>, group: Option<&str>) -> bool {
    matches!((given, group), (Some(g), Some(ours)) if g != ours)
}

impl Group {
    pub fn sync(&mut self, now: u64, req: SyncRequest, out: &mut Vec<Output>) {
        if let Err(code) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            out.push(sync_error(req.reply, code));
            return;
        }
        if req.generation_id != self.generation {
            out.push(sync_error(req.reply, error::ILLEGAL_GENERATION));
            return;
        }
        if inconsistent(req.protocol_type.as_deref(), self.protocol_type.as_deref())
            || inconsistent(req.protocol_name.as_deref(), self.protocol_name.as_deref())
        {
            out.push(sync_error(req.reply, error::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        self.touch(now, &req.member_id);
        match self.state {
            GroupState::PreparingRebalance => {
                out.push(sync_error(req.reply, error::REBALANCE_IN_PROGRESS))
            }
            GroupState::CompletingRebalance => {
                let Some(member) = self.member_mut(&req.member_id) else {
                    return;
                };
                if let Some(old) = member.sync_reply.replace(req.reply) {
                    // A superseded parked SyncGroup still gets an answer; the client will rejoin.
                    out.push(sync_error(old, error::REBALANCE_IN_PROGRESS));
                }
                self.remove_pending_sync(&req.member_id);
                if self.is_leader(&req.member_id) {
                    self.propagate_assignment(now, req.assignments, out);
                    self.transition(GroupState::Stable, out);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(&req.member_id);
                let assignment = self
                    .member(&req.member_id)
                    .and_then(|m| m.assignment.clone())
                    .unwrap_or_default();
                out.push(Output::Sync {
                    reply: req.reply,
                    error: error::NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                });
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(sync_error(req.reply, error::UNKNOWN_MEMBER_ID))
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        now: u64,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if let Err(code) = self.validate_member(member_id, instance_id) {
            return code;
        }
        if generation_id != self.generation {
            return error::ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => error::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                self.touch(now, member_id);
                // How a member learns that it must rejoin.
                error::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(now, member_id);
                error::NONE
            }
        }
    }

    /// Removes each identity it can and answers per member; then rebalances once for all of them.
    pub fn leave(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        identities: Vec<(String, Option<String>)>,
        out: &mut Vec<Output>,
    ) -> Vec<(String, Option<String>, i16)> {
        let mut answers = Vec::with_capacity(identities.len());
        let mut removed_any = false;
        for (member_id, instance_id) in identities {
            let result = if member_id.is_empty() {
                // Administrative removal of a static member by its instance id (KIP-345).
                match instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned()
                {
                    Some(current) => {
                        self.remove_member(&current, out);
                        Ok(())
                    }
                    None => Err(error::UNKNOWN_MEMBER_ID),
                }
            } else if self.remove_pending(&member_id) {
                Ok(())
            } else {
                self.validate_member(&member_id, instance_id.as_deref())
                    .map(|()| self.remove_member(&member_id, out))
            };
            removed_any |= result.is_ok();
            answers.push((member_id, instance_id, result.err().unwrap_or(error::NONE)));
        }
        if removed_any {
            self.after_removal(now, cfg, out);
        }
        answers
    }

    /// Kafka's classic-group `validateOffsetCommit`. Deviation from a literal reading of the brief, following
    /// Kafka: a commit with the current generation is accepted while the group is PreparingRebalance (eager
    /// consumers commit in `onJoinPrepare`, before rejoining) and refused with REBALANCE_IN_PROGRESS while it
    /// is CompletingRebalance (the member knows the new generation but not yet its assignment).
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if generation_id < 0 && self.state == GroupState::Empty {
            // Admin clients and consumers without group management commit this way.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation_id != self.generation {
                return Err(error::ILLEGAL_GENERATION);
            }
        } else if self.state != GroupState::Empty {
            return Err(error::UNKNOWN_MEMBER_ID);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(error::REBALANCE_IN_PROGRESS);
        }
        Ok(())
    }

    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol_name = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = self
            .members()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol_name)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone().unwrap_or_default()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name,
            members,
        }
    }
}
