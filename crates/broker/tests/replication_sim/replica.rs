//! One replica as the simulation keeps it: its log (records and leader epoch cache), and the broker process
//! around it with the state `Partition`, the fetcher and the produce handler hold in memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use strom_broker::replication::follower::FollowerLog;
use strom_broker::replication::leader::LeaderState;
use strom_log::LeaderEpochCache;
use strom_metadata::{ControllerRequest, MetadataImage};

/// splitmix64: tiny, fast and good enough to pick events; no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// A record: the leader epoch it was written in and a unique id (its offset is its place in a log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub epoch: i32,
    pub id: u64,
}

/// One replica's log: record `i` is at offset `i`.
#[derive(Debug, Default)]
pub struct SimLog {
    pub records: Vec<Rec>,
    pub epochs: LeaderEpochCache,
}

impl SimLog {
    pub fn leo(&self) -> i64 {
        self.records.len() as i64
    }

    /// `Log::append` as the leader: a newer epoch is recorded at its first offset.
    pub fn append_as_leader(&mut self, records: &[Rec]) {
        for r in records {
            self.epochs.assign(r.epoch, self.leo());
            self.records.push(*r);
        }
    }

    /// `Log::append_replicated`: the first batch must not start below the log end offset.
    pub fn append_replicated(&mut self, batch: &[(i64, Rec)]) -> Result<(), String> {
        let Some(&(first, _)) = batch.first() else {
            return Ok(());
        };
        if first < self.leo() {
            return Err(format!(
                "unexpected append offset {first} below log end offset {}",
                self.leo()
            ));
        }
        // The real log accepts gaps (compaction makes them); the simulated leaders never have any.
        assert_eq!(first, self.leo(), "fetched records skip offsets");
        for &(offset, rec) in batch {
            self.epochs.assign(rec.epoch, offset);
            self.records.push(rec);
        }
        Ok(())
    }

    /// `Log::truncate_to`.
    pub fn truncate_to(&mut self, offset: i64) {
        if offset >= self.leo() {
            return;
        }
        self.records.truncate(offset.max(0) as usize);
        self.epochs.truncate_from_end(self.leo());
    }
}

impl FollowerLog for SimLog {
    fn log_end_offset(&self) -> i64 {
        self.leo()
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.leo())
    }
}

/// Fetched records travel in the response's `Bytes` as this many bytes each: offset (i64), leader epoch (i32)
/// and id (u64). The simulation's own format: `decide` only passes the bytes through.
pub const RECORD_BYTES: usize = 20;

pub fn encode(records: &[Rec], first_offset: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(records.len() * RECORD_BYTES);
    for (i, r) in records.iter().enumerate() {
        out.put_i64(first_offset + i as i64);
        out.put_i32(r.epoch);
        out.put_u64(r.id);
    }
    out.freeze()
}

pub fn decode(mut bytes: Bytes) -> Vec<(i64, Rec)> {
    let mut out = Vec::with_capacity(bytes.len() / RECORD_BYTES);
    while bytes.has_remaining() {
        let offset = bytes.get_i64();
        let epoch = bytes.get_i32();
        let id = bytes.get_u64();
        out.push((offset, Rec { epoch, id }));
    }
    out
}

/// `partition::Role`.
#[derive(Debug)]
pub enum Role {
    Unassigned,
    Leader {
        state: LeaderState,
        partition_epoch: i32,
    },
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// A follower's fetch awaiting its answer, with what `fetcher.rs` keeps of it (`Followed`).
#[derive(Debug, Clone, Copy)]
pub struct InFlightFetch {
    pub call: u64,
    pub leader: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub sent_ms: u64,
}

/// An AlterPartition call awaiting the controller's answer.
#[derive(Debug)]
pub struct AlterCall {
    pub call: u64,
    pub sent_ms: u64,
    pub request: ControllerRequest,
}

/// An acks=all producer waiting for its batch (`Partition::wait_replicated`).
#[derive(Debug)]
pub struct AckWait {
    pub end: i64,
    pub first: i64,
    pub records: Vec<Rec>,
    pub deadline_ms: u64,
}

/// One broker: the replica's durable state and the process's memory.
#[derive(Debug)]
pub struct Broker {
    pub id: i32,
    // Durable: survives a crash.
    pub log: SimLog,
    pub checkpointed_hw: i64,
    // The process.
    pub up: bool,
    pub incarnation: u32,
    pub broker_epoch: Option<u64>,
    /// Unfenced once since it started (`BrokerLifecycle::join`): only then does it accept connections and
    /// run its fetchers and leader ticks. Metadata is applied from the start.
    pub joined: bool,
    /// Durable too: a restarted node replays its metadata log before anything else.
    pub image: Option<MetadataImage>,
    pub role: Role,
    /// `Partition::leader_epoch`: checked against the epoch a fetch names.
    pub leader_epoch: i32,
    /// `Partition::high_watermark`.
    pub hw: i64,
    /// `Partition::replicated`: (high watermark, leading), what acks=all producers wait on.
    pub replicated: (i64, bool),
    pub last_checkpoint_ms: u64,
    pub fetches: Vec<InFlightFetch>,
    /// (leader, leader epoch) of the last Append or CaughtUp applied while following it (invariant 4b).
    pub converged_with: Option<(i32, i32)>,
    pub alter_calls: Vec<AlterCall>,
    pub waits: Vec<AckWait>,
    pub isolated_until_ms: u64,
    // For the invariants.
    pub last_role_epoch: i32,
    pub leadership_hw: Option<(i32, i64)>,
}

impl Broker {
    pub fn new(id: i32) -> Self {
        Self {
            id,
            log: SimLog::default(),
            checkpointed_hw: 0,
            up: true,
            incarnation: 0,
            broker_epoch: None,
            joined: false,
            image: None,
            role: Role::Unassigned,
            leader_epoch: 0,
            hw: 0,
            replicated: (0, false),
            last_checkpoint_ms: 0,
            fetches: Vec::new(),
            converged_with: None,
            alter_calls: Vec::new(),
            waits: Vec::new(),
            isolated_until_ms: 0,
            last_role_epoch: -1,
            leadership_hw: None,
        }
    }

    pub fn isolated(&self, now: u64) -> bool {
        now < self.isolated_until_ms
    }

    /// Accepting connections and replicating (see `joined`).
    pub fn serving(&self) -> bool {
        self.up && self.joined
    }

    pub fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader { state, .. } => Some(state),
            _ => None,
        }
    }

    pub fn role_epoch(&self) -> Option<i32> {
        match &self.role {
            Role::Unassigned => None,
            Role::Leader { state, .. } => Some(state.leader_epoch()),
            Role::Follower { leader_epoch, .. } => Some(*leader_epoch),
        }
    }

    /// `Partition::publish`.
    pub fn publish(&mut self, high_watermark: Option<i64>) {
        if let Some(hw) = high_watermark {
            let previous = self.hw;
            self.hw = self.hw.max(hw);
            if hw > previous {
                self.replicated.0 = hw;
            }
        }
    }

    /// The high watermark this replica holds: its own while it runs, while it is down the one it will restart
    /// with.
    pub fn known_hw(&self) -> i64 {
        if self.up {
            self.hw
        } else {
            self.checkpointed_hw.min(self.log.leo())
        }
    }

    pub fn describe(&self) -> String {
        let role = match &self.role {
            Role::Unassigned => "unassigned".to_string(),
            Role::Leader { state, .. } => format!(
                "leader e{} isr {:?} hw {}",
                state.leader_epoch(),
                state.isr(),
                state.high_watermark()
            ),
            Role::Follower {
                leader,
                leader_epoch,
            } => format!("follower of {leader} e{leader_epoch}"),
        };
        let epochs: Vec<(i32, i64)> = self
            .log
            .epochs
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        format!(
            "broker {}: {} {role}, leo {} hw {} ckpt {}, epochs {epochs:?}",
            self.id,
            if self.up { "up" } else { "DOWN" },
            self.log.leo(),
            self.hw,
            self.checkpointed_hw
        )
    }
}
