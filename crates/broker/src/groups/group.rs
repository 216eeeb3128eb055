//! One classic group: members, generation, state, and the rebalance core shared by every request type.
//!
//! The group never reads a clock. Every entry point takes `now` (ms) and records *deadlines* in `timers`, an
//! ordered index the coordinator consults for [`super::GroupCoordinator::next_deadline`]. Each deadline also
//! lives next to what it belongs to (a member's `session_deadline`, `pending`, `join_deadline`,
//! `sync_deadline`), and every change goes through one setter that keeps the two in step.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;

use super::api::{error, GroupState, JoinMember, Output, ReplyId};
use super::member::Member;

/// What a deadline in the group's timer index stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// End of the join phase: the initial delay step or the rebalance timeout.
    Join,
    /// Members that got their JoinGroup answer must send SyncGroup by then.
    Sync,
    /// A member's session.
    Session(String),
    /// A KIP-394 member id handed out but not yet used to join.
    Pending(String),
}

/// The first rebalance of an Empty group waits `delay_ms`, then again while members keep arriving, until
/// `remaining_ms` runs out (Kafka's `group.initial.rebalance.delay.ms` scheme).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    pub delay_ms: u64,
    pub remaining_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// Members in join order (the key is a sequence number), so "the first member" is well defined.
    pub(super) members: BTreeMap<u64, Member>,
    pub(super) seq_of: HashMap<String, u64>,
    pub(super) next_seq: u64,
    /// group.instance.id -> its current member id.
    pub static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out, with the time they expire if unused.
    pub pending: HashMap<String, u64>,
    /// Members that got a JoinGroup answer for this generation but have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    pub initial: Option<InitialDelay>,
    pub new_member_added: bool,
    pub(super) join_deadline: Option<u64>,
    pub(super) sync_deadline: Option<u64>,
    pub(super) timers: BTreeSet<(u64, Timer)>,
    /// The deadline under which the coordinator currently indexes this group.
    pub indexed_deadline: Option<u64>,
}

/// `now + delay`, never `now` itself: a timer that fires must leave the next one strictly later, so `tick`
/// always terminates and the driver never spins.
pub(crate) fn after(now: u64, delay_ms: u64) -> u64 {
    now.saturating_add(delay_ms.max(1))
}

pub(crate) fn join_error(reply: ReplyId, error: i16, member_id: String) -> Output {
    Output::Join {
        reply,
        error,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id,
        skip_assignment: false,
        members: Vec::new(),
    }
}

pub(crate) fn sync_error(reply: ReplyId, error: i16) -> Output {
    Output::Sync {
        reply,
        error,
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

impl Group {
    pub fn new(id: String) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            seq_of: HashMap::new(),
            next_seq: 0,
            static_members: HashMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            initial: None,
            new_member_added: false,
            join_deadline: None,
            sync_deadline: None,
            timers: BTreeSet::new(),
            indexed_deadline: None,
        }
    }

    // ---- membership primitives ----

    pub fn members(&self) -> impl Iterator<Item = &Member> + Clone {
        self.members.values()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.seq_of.get(id).and_then(|seq| self.members.get(seq))
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        let seq = self.seq_of.get(id)?;
        self.members.get_mut(seq)
    }

    pub fn has_member(&self, id: &str) -> bool {
        self.seq_of.contains_key(id)
    }

    pub fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// Inserts a member at the end of the join order, or at `seq` to keep a replaced static member's place.
    pub fn insert_member(&mut self, member: Member, seq: Option<u64>) {
        if self.members.is_empty() {
            // The first member of an empty group decides its protocol type, as in Kafka.
            self.protocol_type = Some(member.protocol_type.clone());
        }
        let seq = seq.unwrap_or_else(|| {
            self.next_seq += 1;
            self.next_seq
        });
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.set_timer(
            None,
            Some(member.session_deadline),
            Timer::Session(member.id.clone()),
        );
        self.seq_of.insert(member.id.clone(), seq);
        self.members.insert(seq, member);
    }

    /// Takes a member out of every structure, without answering its parked requests. Returns it and its
    /// place in the join order.
    pub fn take_member(&mut self, id: &str) -> Option<(Member, u64)> {
        let seq = self.seq_of.remove(id)?;
        let member = self.members.remove(&seq)?;
        self.set_timer(
            Some(member.session_deadline),
            None,
            Timer::Session(member.id.clone()),
        );
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance) == Some(&member.id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if self.is_leader(id) {
            self.leader = self.members.values().next().map(|m| m.id.clone());
        }
        Some((member, seq))
    }

    /// Removes a member for good; its parked requests are answered with UNKNOWN_MEMBER_ID so a client that is
    /// still alive rejoins with a fresh identity.
    pub fn remove_member(&mut self, id: &str, out: &mut Vec<Output>) {
        if let Some((member, _)) = self.take_member(id) {
            if let Some(reply) = member.join_reply {
                out.push(join_error(reply, error::UNKNOWN_MEMBER_ID, String::new()));
            }
            if let Some(reply) = member.sync_reply {
                out.push(sync_error(reply, error::UNKNOWN_MEMBER_ID));
            }
        }
    }

    /// Kafka's `validateMember`: with an instance id the static mapping decides (another member id holds it:
    /// FENCED_INSTANCE_ID); without one the member id must be known.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(error::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => Err(error::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            },
            None if self.has_member(member_id) => Ok(()),
            None => Err(error::UNKNOWN_MEMBER_ID),
        }
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol set; otherwise the type must
    /// match and one of the protocols must be supported by every member. Deviation: the member asking
    /// (`excluding`, a rejoining or replaced member) does not count itself, so a lone member may switch
    /// assignors; Kafka would answer INCONSISTENT_GROUP_PROTOCOL until its session expired.
    pub fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        excluding: Option<&str>,
    ) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| Some(m.id.as_str()) != excluding)
                .all(|m| m.supports(name))
        })
    }

    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    pub fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.join_reply.is_some())
            .count()
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_reply.is_some())
    }

    pub fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The current generation as a successful JoinGroup answer for `member_id`.
    pub fn join_success(
        &self,
        reply: ReplyId,
        member_id: &str,
        members: Vec<JoinMember>,
    ) -> Output {
        Output::Join {
            reply,
            error: error::NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members,
        }
    }

    // ---- timers ----

    fn set_timer(&mut self, old: Option<u64>, new: Option<u64>, timer: Timer) {
        if let Some(old) = old {
            self.timers.remove(&(old, timer.clone()));
        }
        if let Some(new) = new {
            self.timers.insert((new, timer));
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|(deadline, _)| *deadline)
    }

    /// Pops the earliest timer if it is due.
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        let (deadline, _) = self.timers.first()?;
        if *deadline > now {
            return None;
        }
        let (_, timer) = self.timers.pop_first()?;
        match &timer {
            Timer::Join => self.join_deadline = None,
            Timer::Sync => self.sync_deadline = None,
            // Members and pending ids keep their (now past) deadline; whoever handles the timer sets a new
            // one or removes them, and `set_timer` tolerates the entry being gone.
            Timer::Session(_) | Timer::Pending(_) => {}
        }
        Some(timer)
    }

    pub fn set_join_deadline(&mut self, deadline: Option<u64>) {
        let old = std::mem::replace(&mut self.join_deadline, deadline);
        self.set_timer(old, deadline, Timer::Join);
    }

    pub fn set_sync_deadline(&mut self, deadline: Option<u64>) {
        let old = std::mem::replace(&mut self.sync_deadline, deadline);
        self.set_timer(old, deadline, Timer::Sync);
    }

    pub fn set_session_deadline(&mut self, member_id: &str, deadline: u64) {
        let Some(member) = self.member_mut(member_id) else {
            return;
        };
        let old = std::mem::replace(&mut member.session_deadline, deadline);
        self.set_timer(
            Some(old),
            Some(deadline),
            Timer::Session(member_id.to_string()),
        );
    }

    /// The member was heard from: its session restarts.
    pub fn touch(&mut self, now: u64, member_id: &str) {
        if let Some(timeout) = self.member(member_id).map(|m| m.session_timeout_ms) {
            self.set_session_deadline(member_id, after(now, timeout));
        }
    }

    pub fn add_pending(&mut self, member_id: String, deadline: u64) {
        self.set_timer(None, Some(deadline), Timer::Pending(member_id.clone()));
        self.pending.insert(member_id, deadline);
    }

    pub fn remove_pending(&mut self, member_id: &str) -> bool {
        match self.pending.remove(member_id) {
            Some(deadline) => {
                self.set_timer(Some(deadline), None, Timer::Pending(member_id.to_string()));
                true
            }
            None => false,
        }
    }

    pub fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.set_sync_deadline(None);
        }
    }

    /// The group holds nothing worth keeping: never formed a generation and nobody is on the way.
    pub fn is_unused(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending.is_empty()
    }
}
