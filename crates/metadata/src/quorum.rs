//! One node of the metadata quorum, without I/O: raft-rs's `RawNode` over [`QuorumLog`], applying committed
//! entries to the [`MetadataImage`].
//!
//! The driver (the broker's controller task, or the simulator) calls [`QuorumNode::tick`] on its clock,
//! [`QuorumNode::step`] with each message received and [`QuorumNode::propose`] for new records, then
//! [`QuorumNode::poll`], and must, in this order: make every [`PersistOp`] durable, then send the messages.
//! Nothing leaves the node before what it promises is on disk, which is what lets a crashed node restart from
//! its disk alone ([`QuorumNode::restart`]).
//!
//! Randomness: Raft needs randomised election timeouts. raft-rs draws them from the thread's RNG; this node
//! redraws each one from its own RNG (seeded by the driver) whenever the election timer restarts, so a
//! simulation run is a pure function of its seed.

use std::collections::BTreeMap;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::image::{Applied, MetadataImage, Rejected};
use crate::records::RecordBatch;
use crate::storage::QuorumLog;

/// Kafka node ids start at 0; raft-rs reserves 0 for "none".
pub fn raft_id(node_id: i32) -> u64 {
    node_id as u64 + 1
}

pub fn node_id(raft_id: u64) -> i32 {
    raft_id as i32 - 1
}

#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    pub voters: Vec<i32>,
    /// Ticks without hearing from a leader before a follower stands for election (randomised in [n, 2n)).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries kept in the log before they are compacted into a snapshot.
    pub snapshot_after_entries: u64,
    /// Seeds the election-timeout RNG.
    pub seed: u64,
}

impl QuorumConfig {
    pub fn new(node_id: i32, voters: Vec<i32>, seed: u64) -> Self {
        Self {
            node_id,
            voters,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_after_entries: 1024,
            seed,
        }
    }
}

/// What the disk holds for one node: the latest snapshot, the entries after it and the hard state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurableState {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// A node that has never run: an empty image at index 0 with the configured voters.
    pub fn initial(voters: &[i32]) -> Self {
        Self::from_image(voters, &MetadataImage::default())
    }

    /// A node whose log starts from `image` at index 0 (an upgraded single-node data directory).
    pub fn from_image(voters: &[i32], image: &MetadataImage) -> Self {
        let mut snapshot = Snapshot::default();
        snapshot.set_data(serde_json::to_vec(image).expect("image encodes").into());
        snapshot.mut_metadata().set_conf_state(ConfState::from((
            voters.iter().map(|v| raft_id(*v)).collect::<Vec<_>>(),
            vec![],
        )));
        Self {
            hard_state: HardState::default(),
            snapshot,
            entries: Vec::new(),
        }
    }

    /// Applies one persist operation, exactly as a disk would (the simulator's disk, and the tests' model of
    /// the file format).
    pub fn persist(&mut self, op: &PersistOp) {
        match op {
            PersistOp::Entries(entries) => {
                let mut log = QuorumLog::new(
                    self.hard_state.clone(),
                    self.snapshot.clone(),
                    std::mem::take(&mut self.entries),
                );
                log.append(entries);
                self.entries = log.entries;
            }
            PersistOp::HardState(hs) => self.hard_state = hs.clone(),
            PersistOp::InstallSnapshot(snapshot) => {
                self.entries.clear();
                self.snapshot = snapshot.clone();
            }
            PersistOp::Compact(snapshot) => {
                let index = snapshot.get_metadata().index;
                self.entries.retain(|e| e.index > index);
                self.snapshot = snapshot.clone();
            }
        }
    }

    pub fn voters(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .snapshot
            .get_metadata()
            .get_conf_state()
            .voters
            .iter()
            .map(|id| node_id(*id))
            .collect();
        v.sort_unstable();
        v
    }
}

/// A change the driver must make durable before sending the messages of the same [`Output`].
#[derive(Debug, Clone, PartialEq)]
pub enum PersistOp {
    /// Append, replacing entries at and after the first one's index.
    Entries(Vec<Entry>),
    HardState(HardState),
    /// A snapshot from the leader replaces the whole log.
    InstallSnapshot(Snapshot),
    /// Our own snapshot: entries up to its index are dropped.
    Compact(Snapshot),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    #[error("proposal dropped: {0}")]
    Dropped(String),
    /// Leadership changed before the entry committed; it was replaced and will never apply.
    #[error("leadership changed before the proposal was committed")]
    Lost,
    /// The node installed a snapshot past the entry: it may or may not have applied.
    #[error("the proposal's outcome is unknown (a snapshot replaced the log)")]
    Unknown,
    #[error(transparent)]
    Rejected(#[from] Rejected),
}

/// Everything one [`QuorumNode::poll`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Make these durable, in order, before sending `messages`.
    pub persist: Vec<PersistOp>,
    pub messages: Vec<Message>,
    pub applied: Vec<Applied>,
    /// Proposals whose fate is now known: the log index they applied at, or why not.
    pub proposals: Vec<(ProposalId, Result<u64, ProposalError>)>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.applied.is_empty()
            && self.proposals.is_empty()
    }
}

/// A voter's replication progress, as the leader sees it (for DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoterStatus {
    pub node_id: i32,
    /// The highest log index known to be on that voter.
    pub matched_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub commit_index: u64,
    pub last_index: u64,
    /// Only known on the leader.
    pub voters: Vec<VoterStatus>,
}

pub struct QuorumNode {
    raw: RawNode<QuorumLog>,
    image: MetadataImage,
    config: QuorumConfig,
    rng: StdRng,
    pending: BTreeMap<u64, (u64, ProposalId)>,
    next_proposal: u64,
}

/// The node could not (re)start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("the configured voters {configured:?} differ from the voters {on_disk:?} this node's metadata log was created with")]
    VotersDisagree {
        configured: Vec<i32>,
        on_disk: Vec<i32>,
    },
    #[error("node {0} is not one of the voters {1:?}")]
    NotAVoter(i32, Vec<i32>),
    #[error("the metadata snapshot does not decode: {0}")]
    BadSnapshot(String),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

impl QuorumNode {
    /// Starts (or restarts) a node from what its disk holds.
    pub fn restart(config: QuorumConfig, durable: DurableState) -> Result<Self, QuorumError> {
        let mut configured = config.voters.clone();
        configured.sort_unstable();
        configured.dedup();
        if durable.voters() != configured {
            return Err(QuorumError::VotersDisagree {
                configured,
                on_disk: durable.voters(),
            });
        }
        if !configured.contains(&config.node_id) {
            return Err(QuorumError::NotAVoter(config.node_id, configured));
        }
        let image: MetadataImage = serde_json::from_slice(durable.snapshot.get_data())
            .map_err(|e| QuorumError::BadSnapshot(e.to_string()))?;
        let applied = durable.snapshot.get_metadata().index;
        let log = QuorumLog::new(durable.hard_state, durable.snapshot, durable.entries);
        let raft_config = raft::Config {
            id: raft_id(config.node_id),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            // A leader that cannot hear from a majority steps down, so a minority side stops taking writes.
            check_quorum: true,
            // A node that was cut off does not disrupt a healthy leader when it comes back.
            pre_vote: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, log, &logger)?;
        let mut node = Self {
            raw,
            image,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            pending: BTreeMap::new(),
            next_proposal: 0,
        };
        node.redraw_election_timeout();
        if node.raw.raft.prs().is_singleton() {
            // The only voter needs no one's vote: lead at once instead of after an election timeout.
            node.raw.campaign()?;
        }
        Ok(node)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Leader with every entry of earlier terms committed and applied: the image is then the state its own
    /// proposals will apply to, in order, so a controller may decide against it (plus its pending proposals).
    pub fn is_settled_leader(&self) -> bool {
        self.is_leader()
            && self.raw.raft.commit_to_current_term()
            && self.image.applied_index >= self.raw.raft.raft_log.committed
    }

    pub fn leader(&self) -> Option<i32> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(node_id(id)),
        }
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn log(&self) -> &QuorumLog {
        self.raw.store()
    }

    pub fn status(&self) -> QuorumStatus {
        let voters = if self.is_leader() {
            let mut v: Vec<VoterStatus> = self
                .raw
                .raft
                .prs()
                .iter()
                .map(|(id, pr)| VoterStatus {
                    node_id: node_id(*id),
                    matched_index: pr.matched,
                })
                .collect();
            v.sort_by_key(|v| v.node_id);
            v
        } else {
            Vec::new()
        };
        QuorumStatus {
            leader: self.leader(),
            term: self.term(),
            commit_index: self.commit_index(),
            last_index: self.raw.raft.raft_log.last_index(),
            voters,
        }
    }

    /// One tick of the driver's clock.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.redraw_election_timeout();
    }

    /// A message from another voter. Messages for another node or from outside the voters are ignored.
    pub fn step(&mut self, message: Message) {
        if message.to != raft_id(self.config.node_id) {
            return;
        }
        // Errors here are messages raft-rs chose to drop (a stale term, a peer it does not know): dropping them
        // is the protocol's answer, and the sender retries on its own clock.
        let _ = self.raw.step(message);
        self.redraw_election_timeout();
    }

    /// Proposes a batch of records. Only the leader accepts proposals.
    pub fn propose(&mut self, batch: &RecordBatch) -> Result<ProposalId, ProposalError> {
        if !self.is_leader() {
            return Err(ProposalError::NotLeader {
                leader: self.leader(),
            });
        }
        self.raw
            .propose(Vec::new(), batch.encode())
            .map_err(|e| ProposalError::Dropped(e.to_string()))?;
        let index = self.raw.raft.raft_log.last_index();
        let id = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        self.pending.insert(index, (self.raw.raft.term, id));
        Ok(id)
    }

    /// Asks this node to hand leadership to `to` (controlled shutdown of the active controller).
    pub fn transfer_leadership(&mut self, to: i32) {
        self.raw.transfer_leader(raft_id(to));
    }

    /// Collects what the last ticks, steps and proposals produced.
    pub fn poll(&mut self) -> Output {
        let mut out = Output::default();
        while self.raw.has_ready() {
            let sent_before = out.messages.len();
            let mut ready = self.raw.ready();
            out.messages.extend(ready.take_messages());
            if ready.snapshot().get_metadata().index > 0 {
                self.install_snapshot(ready.snapshot().clone(), &mut out);
            }
            self.apply(ready.take_committed_entries(), &mut out);
            if !ready.entries().is_empty() {
                let entries = ready.take_entries();
                self.raw.mut_store().append(&entries);
                out.persist.push(PersistOp::Entries(entries));
            }
            if let Some(hs) = ready.hs() {
                self.raw.mut_store().hard_state = hs.clone();
                out.persist.push(PersistOp::HardState(hs.clone()));
            }
            out.messages.extend(ready.take_persisted_messages());
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.raw.mut_store().set_commit(commit);
                out.persist
                    .push(PersistOp::HardState(self.raw.store().hard_state.clone()));
            }
            out.messages.extend(light.take_messages());
            self.apply(light.take_committed_entries(), &mut out);
            self.raw.advance_apply();
            // A snapshot handed to the network is reported sent at once, as etcd's transport does: the leader
            // then probes the follower, and if the snapshot was lost on the way, the next heartbeat response
            // brings a retry. Without the report the follower would wait forever for a snapshot that never came.
            for to in out.messages[sent_before..]
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to)
                .collect::<Vec<_>>()
            {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
        self.maybe_snapshot(&mut out);
        out
    }

    fn install_snapshot(&mut self, snapshot: Snapshot, out: &mut Output) {
        let image: MetadataImage = match serde_json::from_slice(snapshot.get_data()) {
            Ok(image) => image,
            // The leader built it from its own image; an undecodable one is a bug there, not input to survive.
            Err(e) => panic!("metadata snapshot from the leader does not decode: {e}"),
        };
        let index = snapshot.get_metadata().index;
        self.image = image;
        self.raw.mut_store().install_snapshot(snapshot.clone());
        out.persist.push(PersistOp::InstallSnapshot(snapshot));
        out.persist
            .push(PersistOp::HardState(self.raw.store().hard_state.clone()));
        while let Some((&at, &(_, id))) = self.pending.first_key_value() {
            if at > index {
                break;
            }
            self.pending.pop_first();
            out.proposals.push((id, Err(ProposalError::Unknown)));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for entry in entries {
            if entry.index <= self.image.applied_index {
                continue;
            }
            let (batch, outcome) =
                if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                    // A new leader's empty entry (or a configuration change, which Strom does not propose).
                    self.image.skip(entry.index);
                    (RecordBatch::default(), None)
                } else {
                    match RecordBatch::decode(&entry.data) {
                        Ok(batch) => {
                            let outcome = self.image.apply_batch(entry.index, &batch);
                            (batch, Some(outcome))
                        }
                        Err(e) => (
                            RecordBatch::default(),
                            Some(Err(Rejected::Undecodable {
                                index: entry.index,
                                reason: e.to_string(),
                            })),
                        ),
                    }
                };
            if !matches!(outcome, Some(Ok(()))) {
                self.image.skip(entry.index);
            }
            out.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                batch,
                outcome: outcome.clone().unwrap_or(Ok(())),
            });
            while let Some((&at, &(term, id))) = self.pending.first_key_value() {
                if at > entry.index {
                    break;
                }
                self.pending.pop_first();
                let result = match &outcome {
                    Some(outcome) if at == entry.index && term == entry.term => outcome
                        .clone()
                        .map(|()| entry.index)
                        .map_err(ProposalError::Rejected),
                    _ => Err(ProposalError::Lost),
                };
                out.proposals.push((id, result));
            }
        }
    }

    fn maybe_snapshot(&mut self, out: &mut Output) {
        let applied = self.image.applied_index;
        let log = self.raw.store();
        if applied < log.snapshot_index() + self.config.snapshot_after_entries {
            return;
        }
        let term = raft::Storage::term(log, applied).expect("applied entries are in the log");
        let mut snapshot = Snapshot::default();
        snapshot.set_data(
            serde_json::to_vec(&self.image)
                .expect("image encodes")
                .into(),
        );
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(log.conf_state().clone());
        self.raw.mut_store().compact(snapshot.clone());
        out.persist.push(PersistOp::Compact(snapshot));
    }

    fn redraw_election_timeout(&mut self) {
        let raft = &mut self.raw.raft;
        if raft.election_elapsed == 0 {
            let base = raft.election_timeout();
            let timeout = self.rng.gen_range(base..2 * base);
            raft.set_randomized_election_timeout(timeout);
        }
    }
}
