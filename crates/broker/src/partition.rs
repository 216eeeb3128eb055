//! One partition hosted by this broker: its log, its replica role (leader or follower, from the metadata), its
//! offsets, and the signals that wake waiting fetches and acknowledgements.
//!
//! The log sits behind this partition's own mutex, so appends to different partitions never contend; there is
//! no broker-wide lock on the produce path. The mutex is a plain blocking one because every operation under it
//! is a bounded piece of file I/O (an append into the page cache, a pread), never an await.
//!
//! The role has its own mutex, taken before the log's: a leader's append and a follower's replicated append
//! both check the role under it, so once the metadata makes this replica a follower no client write lands in
//! its log, and once it makes it the leader no late fetch response from the old leader does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strom_log::{
    AppendError, AppendOptions, AppendOutcome, Log, LogConfig, LogError, ReadResult,
    ReplicatedAppend,
};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::replication::leader::{Effects, LeaderState};

/// Why a partition operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition was deleted or the broker is shutting down.
    #[error("partition {0} is no longer hosted here")]
    Closed(String),
    /// The metadata no longer (or not yet) gives this replica the role the operation needs.
    #[error("{0}")]
    NotLeader(String),
}

impl PartitionError {
    /// The Kafka error code a response carries for it.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            PartitionError::Append(e) => e.kafka_error_code(),
            PartitionError::Log(_) => {
                strom_protocol::kafka::ResponseError::KafkaStorageError.code()
            }
            PartitionError::Closed(_) | PartitionError::NotLeader(_) => {
                strom_protocol::kafka::ResponseError::NotLeaderOrFollower.code()
            }
        }
    }
}

/// A leader's append: what it did, whether its ack must wait for an fsync (`flush.messages` reached), and the
/// leader epoch it was written at, which an acks=all ack waits on (`Partition::wait_replicated`).
#[derive(Debug)]
pub struct LeaderAppend {
    pub outcome: AppendOutcome,
    pub must_flush: bool,
    pub leader_epoch: i32,
}

/// What the metadata makes this replica.
#[derive(Debug)]
pub enum Role {
    /// Opened and not yet told (before the first reconcile).
    Unassigned,
    Leader {
        state: LeaderState,
        /// The partition epoch the leader's ISR view is from (changes are checked against it).
        partition_epoch: i32,
    },
    /// Copies the log of `leader` (-1: the partition has no leader now) at `leader_epoch`.
    Follower { leader: i32, leader_epoch: i32 },
}

/// A leader's ISR change to send to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// Whether `proposal` is the pending ISR change of a leader at `partition_epoch`.
fn is_pending(state: &LeaderState, partition_epoch: i32, proposal: &IsrProposal) -> bool {
    state.leader_epoch() == proposal.leader_epoch
        && partition_epoch == proposal.partition_epoch
        && state.pending_isr().is_some_and(|p| {
            let mut proposed = proposal.isr.clone();
            proposed.sort_unstable();
            p == proposed
        })
}

pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    pub dir: PathBuf,
    role: Mutex<Role>,
    /// The partition's leader epoch from the metadata: stamped on appended batches and checked against the
    /// epochs clients send.
    leader_epoch: AtomicI32,
    log: Mutex<Option<Log>>,
    /// Offsets below the high watermark are on every in-sync replica and visible to consumers. The leader's
    /// comes from its `LeaderState`; a follower's is the leader's, capped at its own log end offset.
    high_watermark: AtomicI64,
    /// The high watermark and the leader epoch this replica leads at (`None` when it does not lead), as a watch
    /// for acks=all producers. Its high watermark mirrors `high_watermark`: every change of that goes through
    /// [`Partition::mirror_high_watermark`].
    replicated: watch::Sender<(i64, Option<i32>)>,
    log_start_offset: AtomicI64,
    /// When the last flush began, on `replication::now_ms`'s monotonic clock (for `flush.ms`).
    last_flush_ms: AtomicU64,
    /// Records appended since the last fsync (for `flush.messages`).
    unflushed_records: AtomicI64,
    /// Woken on every append, so long-polling fetches answer at once instead of on a timer.
    appended: Notify,
    /// When `appended` was last woken (`metrics::now_us`), for the fetch wake-up delay.
    woken_at_us: AtomicU64,
    /// Offsets below this value are fsynced; acks=all producers wait on it.
    flushed: watch::Sender<i64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl Partition {
    /// Opens (recovering if needed) the log of `topic`-`index` under `dir`.
    pub fn open(
        topic: Arc<str>,
        topic_id: Uuid,
        index: i32,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let mut log = Log::open(&dir, config, now_ms)?;
        if log.recovered_on_open() {
            tracing::info!(partition = %format!("{topic}-{index}"), log_end_offset = log.log_end_offset(), "recovered log after unclean shutdown");
        }
        let leo = log.log_end_offset();
        let lso = log.log_start_offset();
        let flushed = log.flushed_offset();
        // No checkpoint: a new partition (its log is empty) or data from before replication, when the single
        // broker was the whole ISR and everything in its log was committed.
        let hw = match log.persisted_high_watermark() {
            Some(hw) => hw.min(leo),
            None => {
                log.write_high_watermark(leo)?;
                leo
            }
        };
        Ok(Self {
            topic,
            topic_id,
            index,
            dir,
            role: Mutex::new(Role::Unassigned),
            leader_epoch: AtomicI32::new(0),
            high_watermark: AtomicI64::new(hw),
            replicated: watch::channel((hw, None)).0,
            log_start_offset: AtomicI64::new(lso),
            unflushed_records: AtomicI64::new(0),
            last_flush_ms: AtomicU64::new(crate::replication::now_ms()),
            log: Mutex::new(Some(log)),
            appended: Notify::new(),
            woken_at_us: AtomicU64::new(0),
            flushed: watch::channel(flushed).0,
        })
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Release);
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// Kafka's check of a client's `current_leader_epoch` (-1: no check): a newer epoch than ours means this broker
    /// is behind (UNKNOWN_LEADER_EPOCH), an older one means the client is (FENCED_LEADER_EPOCH).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), i16> {
        use strom_protocol::kafka::ResponseError;
        let leader_epoch = self.leader_epoch();
        if current_leader_epoch < 0 || current_leader_epoch == leader_epoch {
            Ok(())
        } else if current_leader_epoch > leader_epoch {
            Err(ResponseError::UnknownLeaderEpoch.code())
        } else {
            Err(ResponseError::FencedLeaderEpoch.code())
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// Runs `f` on the open log.
    pub fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, PartitionError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard
            .as_mut()
            .ok_or_else(|| PartitionError::Closed(self.name()))?;
        f(log)
    }

    /// Appends one produce request's records, as the leader. Returns the outcome, whether the append pushed the
    /// unflushed record count to `flush_messages` (the ack must then wait for an fsync), and the leader epoch it
    /// was written at (an acks=all ack waits for the high watermark of that epoch).
    pub fn append(
        &self,
        records: Bytes,
        now_ms: i64,
        flush_messages: i64,
    ) -> Result<LeaderAppend, PartitionError> {
        let mut role = self.role.lock();
        let Role::Leader { state, .. } = &mut *role else {
            return Err(PartitionError::NotLeader(format!(
                "this broker does not lead {}",
                self.name()
            )));
        };
        let opts = AppendOptions {
            leader_epoch: state.leader_epoch(),
            now_ms,
        };
        let (outcome, leo) =
            self.with_log(|log| Ok((log.append(records, opts)?, log.log_end_offset())))?;
        let mut must_flush = false;
        if let AppendOutcome::Appended {
            base_offset,
            last_offset,
            log_start_offset,
            ..
        } = outcome
        {
            let effects = state.on_append(leo);
            drop(role);
            self.log_start_offset
                .store(log_start_offset, Ordering::Release);
            let records = last_offset - base_offset + 1;
            must_flush = self.unflushed_records.fetch_add(records, Ordering::AcqRel) + records
                >= flush_messages;
            self.publish(effects.high_watermark);
            self.wake_fetches();
        }
        Ok(LeaderAppend {
            outcome,
            must_flush,
            leader_epoch: opts.leader_epoch,
        })
    }

    /// Appends the marker that ends `producer_id`'s transaction here, as the leader (WriteTxnMarkers). Returns
    /// its offset and the leader epoch it was written at; like any append it is then flushed and replicated
    /// before the coordinator is answered.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: strom_log::txn::Marker,
        now_ms: i64,
    ) -> Result<(i64, i32), PartitionError> {
        let mut role = self.role.lock();
        let Role::Leader { state, .. } = &mut *role else {
            return Err(PartitionError::NotLeader(format!(
                "this broker does not lead {}",
                self.name()
            )));
        };
        let opts = AppendOptions {
            leader_epoch: state.leader_epoch(),
            now_ms,
        };
        let (offset, leo) = self.with_log(|log| {
            let offset = log.append_marker(producer_id, producer_epoch, marker, opts)?;
            Ok((offset, log.log_end_offset()))
        })?;
        let effects = state.on_append(leo);
        drop(role);
        self.unflushed_records.fetch_add(1, Ordering::AcqRel);
        self.publish(effects.high_watermark);
        self.wake_fetches();
        Ok((offset, opts.leader_epoch))
    }

    /// The last stable offset: the high watermark, or the first offset of the earliest transaction still open
    /// if that is lower. `read_committed` consumers read below it.
    /// Whether `producer_id` at `epoch` has a transaction open on this partition.
    pub fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.with_log(|log| Ok(log.in_transaction(producer_id, epoch)))
            .unwrap_or(false)
    }

    pub fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.last_stable_offset(hw)))
    }

    /// Reads for a `read_committed` fetch: below the last stable offset, with the aborted transactions whose
    /// records the read may hold (the client drops those records). Returns the read and the last stable offset.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(ReadResult, i64, Vec<strom_log::txn::AbortedTxn>), PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| {
            let lso = log.last_stable_offset(hw);
            let read = log.read(offset, max_bytes, lso, min_one_batch)?;
            let aborted = if read.records.is_empty() {
                Vec::new()
            } else {
                log.aborted_transactions(offset, lso)
            };
            Ok((read, lso, aborted))
        })
    }

    /// The size of the ISR as the leader sees it (for min.insync.replicas), or `None` when not the leader.
    pub fn isr_size(&self) -> Option<usize> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => Some(state.isr().len()),
            _ => None,
        }
    }

    /// Publishes a new high watermark (if any) and wakes whoever waits for it.
    fn publish(&self, high_watermark: Option<i64>) {
        if let Some(hw) = high_watermark {
            let previous = self.high_watermark.fetch_max(hw, Ordering::AcqRel);
            if hw > previous {
                self.mirror_high_watermark();
                // Consumers long-polling at the old high watermark have new records to read.
                self.wake_fetches();
            }
        }
    }

    /// Copies the high watermark as it is now into the watch acks=all producers wait on. A copy left behind would
    /// be wrong both ways: one left low (a follower's high watermark moves without a leader's `publish`) holds an
    /// acknowledgement until the high watermark moves again, which an idempotent producer waiting for that very
    /// acknowledgement never makes happen; one left high (after a truncation) would acknowledge records the ISR
    /// may not have.
    fn mirror_high_watermark(&self) {
        self.replicated.send_if_modified(|(hw, _)| {
            let now = self.high_watermark();
            let changed = *hw != now;
            *hw = now;
            changed
        });
    }

    /// Tells acks=all waiters the leader epoch this replica now leads at, or that it does not lead.
    fn mirror_leadership(&self, leading: Option<i32>) {
        self.replicated.send_if_modified(|(hw, led)| {
            let now = self.high_watermark();
            let changed = *hw != now || *led != leading;
            *hw = now;
            *led = leading;
            changed
        });
    }

    fn apply(&self, effects: Effects) -> Option<IsrProposal> {
        self.publish(effects.high_watermark);
        let isr = effects.propose_isr?;
        match &*self.role.lock() {
            Role::Leader {
                state,
                partition_epoch,
            } => Some(IsrProposal {
                leader_epoch: state.leader_epoch(),
                partition_epoch: *partition_epoch,
                isr,
            }),
            _ => None,
        }
    }

    /// The metadata makes this broker the leader at `leader_epoch` (or, already leader at that epoch, tells it the
    /// committed ISR of `partition_epoch`). True when it was not leading at that epoch before.
    #[allow(clippy::too_many_arguments)]
    pub fn become_leader(
        &self,
        node_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        lag_time_max_ms: u64,
        min_isr: usize,
        now_ms: u64,
    ) -> bool {
        let mut role = self.role.lock();
        let mut newly = false;
        // Each branch leaves the state's high watermark where the metadata and min.insync.replicas let it be (a
        // leader alone in its ISR commits its whole log); publishing it is a no-op unless it moved.
        let high_watermark = match &mut *role {
            Role::Leader {
                state,
                partition_epoch: current,
            } if state.leader_epoch() == leader_epoch => {
                // A changed min.insync.replicas (topic config) applies at once.
                state.set_min_isr(min_isr);
                if *current != partition_epoch {
                    *current = partition_epoch;
                    if state.replicas() != replicas {
                        state.set_replicas(replicas.to_vec(), now_ms);
                    }
                    state.on_isr_committed(isr.to_vec());
                }
                state.high_watermark()
            }
            _ => {
                let Ok(leo) = self.with_log(|log| Ok(log.log_end_offset())) else {
                    return false;
                };
                newly = true;
                let mut state = LeaderState::new(
                    node_id,
                    leader_epoch,
                    replicas.to_vec(),
                    isr.to_vec(),
                    leo,
                    self.high_watermark(),
                    lag_time_max_ms,
                    now_ms,
                );
                self.set_leader_epoch(leader_epoch);
                state.set_min_isr(min_isr);
                let high_watermark = state.high_watermark();
                tracing::info!(partition = %self.name(), leader_epoch, log_end_offset = leo, high_watermark, isr = ?isr, "leading partition");
                *role = Role::Leader {
                    state,
                    partition_epoch,
                };
                self.mirror_leadership(Some(leader_epoch));
                high_watermark
            }
        };
        drop(role);
        self.publish(Some(high_watermark));
        newly
    }

    /// The metadata makes this broker a follower of `leader` (-1: none yet) at `leader_epoch`.
    pub fn become_follower(&self, leader: i32, leader_epoch: i32) {
        let mut role = self.role.lock();
        if matches!(&*role, Role::Follower { leader: l, leader_epoch: e } if *l == leader && *e == leader_epoch)
        {
            return;
        }
        if matches!(&*role, Role::Leader { .. }) {
            tracing::info!(partition = %self.name(), leader, leader_epoch, "no longer leading partition");
        }
        self.set_leader_epoch(leader_epoch);
        *role = Role::Follower {
            leader,
            leader_epoch,
        };
        // acks=all producers waiting here learn that this replica no longer leads.
        self.mirror_leadership(None);
    }

    /// The leader this replica follows and at which epoch, if it is a follower.
    pub fn following(&self) -> Option<(i32, i32)> {
        match &*self.role.lock() {
            Role::Follower {
                leader,
                leader_epoch,
            } => Some((*leader, *leader_epoch)),
            _ => None,
        }
    }

    /// A follower's fetch reached the leader: `fetch_offset` is its log end offset. Returns an ISR change to send
    /// to the controller, if the fetch calls for one; `Err` when this broker does not lead the partition.
    pub fn on_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: u64,
    ) -> Result<Option<IsrProposal>, PartitionError> {
        let effects = match &mut *self.role.lock() {
            Role::Leader { state, .. } => {
                let effects = state.on_follower_fetch(replica, fetch_offset, now_ms);
                tracing::trace!(
                    target: "strom_broker::replication::leader",
                    partition = %self.name(),
                    replica,
                    fetch_offset,
                    high_watermark = state.high_watermark(),
                    isr = ?state.isr(),
                    pending_isr = ?state.pending_isr(),
                    "follower fetched"
                );
                effects
            }
            _ => {
                return Err(PartitionError::NotLeader(format!(
                    "this broker does not lead {}",
                    self.name()
                )))
            }
        };
        Ok(self.apply(effects))
    }

    /// Time passes for a leader: followers lagging too long are proposed for removal from the ISR.
    pub fn tick(&self, now_ms: u64) -> Option<IsrProposal> {
        let effects = match &mut *self.role.lock() {
            Role::Leader { state, .. } => state.tick(now_ms),
            _ => return None,
        };
        self.apply(effects)
    }

    /// The controller refused `proposal` at its partition epoch: if it is still this leader's pending change, the
    /// leader drops it and keeps the ISR committed at that epoch (the one it holds), so the next fetch or tick can
    /// propose again. Decided here, under the role lock, from the leader's own partition epoch: this broker's topic
    /// table is published after the roles, so a refusal looked up there could see the previous epoch and leave the
    /// proposal pending for good, and with it every later ISR change (a restarted follower never rejoined).
    pub fn isr_proposal_refused(&self, proposal: &IsrProposal) {
        self.settle_isr_proposal(proposal, |state| state.isr());
    }

    /// The controller answered `proposal` with nothing to change: the ISR it holds at the proposal's partition
    /// epoch already is the proposed one, which the leader takes if the proposal is still pending.
    pub fn isr_proposal_unchanged(&self, proposal: &IsrProposal) {
        self.settle_isr_proposal(proposal, |_| proposal.isr.clone());
    }

    fn settle_isr_proposal(
        &self,
        proposal: &IsrProposal,
        committed: impl FnOnce(&LeaderState) -> Vec<i32>,
    ) {
        let effects = match &mut *self.role.lock() {
            Role::Leader {
                state,
                partition_epoch,
            } if is_pending(state, *partition_epoch, proposal) => {
                let isr = committed(state);
                tracing::info!(partition = %self.name(), isr = ?isr, proposed = ?proposal.isr, "ISR proposal settled without a new partition epoch");
                state.on_isr_committed(isr)
            }
            _ => return,
        };
        self.publish(effects.high_watermark);
    }

    /// Whether `proposal` is still this leader's pending ISR change (same leader epoch, partition epoch and ISR):
    /// until the metadata commits or refuses it, the leader keeps sending it.
    pub fn isr_proposal_pending(&self, proposal: &IsrProposal) -> bool {
        match &*self.role.lock() {
            Role::Leader {
                state,
                partition_epoch,
            } => is_pending(state, *partition_epoch, proposal),
            _ => false,
        }
    }

    /// The ISR as the leader sees it, with each follower's last fetched offset (for describe tools).
    pub fn leader_view(&self) -> Option<(Vec<i32>, i64)> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => Some((state.isr(), state.high_watermark())),
            _ => None,
        }
    }

    /// A follower appends batches fetched from its leader at `leader_epoch`; refused if the role changed since
    /// the fetch was sent.
    pub fn append_replicated(
        &self,
        leader_epoch: i32,
        records: Bytes,
        now_ms: i64,
    ) -> Result<Option<ReplicatedAppend>, PartitionError> {
        let role = self.role.lock();
        self.check_following(&role, leader_epoch)?;
        let appended = self.with_log(|log| Ok(log.append_replicated(records, now_ms)?))?;
        drop(role);
        if let Some(a) = &appended {
            let records = a.last_offset - a.first_offset + 1;
            self.unflushed_records.fetch_add(records, Ordering::AcqRel);
        }
        Ok(appended)
    }

    /// A follower truncates a divergent tail (KIP-279): everything at or above `offset` goes.
    pub fn truncate_replica(&self, leader_epoch: i32, offset: i64) -> Result<i64, PartitionError> {
        let role = self.role.lock();
        self.check_following(&role, leader_epoch)?;
        let leo = self.with_log(|log| {
            log.truncate_to(offset)?;
            Ok(log.log_end_offset())
        })?;
        self.high_watermark.fetch_min(leo, Ordering::AcqRel);
        self.mirror_high_watermark();
        self.forget_flushed_above(leo);
        tracing::info!(partition = %self.name(), leader_epoch, log_end_offset = leo, "truncated divergent log tail");
        Ok(leo)
    }

    /// A follower whose log ends below the leader's log start offset starts over there.
    pub fn reset_replica(&self, leader_epoch: i32, offset: i64) -> Result<(), PartitionError> {
        let role = self.role.lock();
        self.check_following(&role, leader_epoch)?;
        self.with_log(|log| Ok(log.reset_to(offset)?))?;
        self.log_start_offset.store(offset, Ordering::Release);
        self.high_watermark.store(offset, Ordering::Release);
        self.mirror_high_watermark();
        self.forget_flushed_above(offset);
        tracing::info!(partition = %self.name(), offset, "log restarted at the leader's log start offset");
        Ok(())
    }

    /// After a truncation the offsets above the new log end offset are new records, not yet fsynced: the durable
    /// offset comes down with the log, so an acks=all write there later waits for its own fsync.
    fn forget_flushed_above(&self, log_end_offset: i64) {
        self.flushed.send_if_modified(|current| {
            let lowered = *current > log_end_offset;
            *current = (*current).min(log_end_offset);
            lowered
        });
    }

    /// A follower learns the leader's high watermark and log start offset from a fetch response sent at
    /// `leader_epoch`; ignored if this replica no longer follows at that epoch (a late answer from a deposed
    /// leader must not move the high watermark of a replica that leads now).
    pub fn follow_leader_offsets(
        &self,
        leader_epoch: i32,
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), PartitionError> {
        let role = self.role.lock();
        self.check_following(&role, leader_epoch)?;
        let Ok((leo, lso)) =
            self.with_log(|log| Ok((log.log_end_offset(), log.log_start_offset())))
        else {
            return Ok(());
        };
        let hw = leader_high_watermark.min(leo);
        if hw >= 0 {
            self.high_watermark.store(hw, Ordering::Release);
            self.mirror_high_watermark();
        }
        if leader_log_start > lso {
            if let Ok(lso) = self.delete_records_before(leader_log_start.min(leo)) {
                self.log_start_offset.store(lso, Ordering::Release);
            }
        }
        Ok(())
    }

    fn check_following(&self, role: &Role, leader_epoch: i32) -> Result<(), PartitionError> {
        match role {
            Role::Follower {
                leader_epoch: e, ..
            } if *e == leader_epoch => Ok(()),
            _ => Err(PartitionError::NotLeader(format!(
                "{} is no longer a follower at leader epoch {leader_epoch}",
                self.name()
            ))),
        }
    }

    /// The log end offset, the latest leader epoch in the log, and the log start offset: what a follower's fetch
    /// sends.
    pub fn fetch_position(&self) -> Result<(i64, i32, i64), PartitionError> {
        self.with_log(|log| {
            Ok((
                log.log_end_offset(),
                log.latest_epoch().unwrap_or(-1),
                log.log_start_offset(),
            ))
        })
    }

    /// Kafka's OffsetForLeaderEpoch answer from this replica's log: the largest epoch <= `epoch` and where it
    /// ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64), PartitionError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    pub fn log_end_offset(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_end_offset()))
    }

    /// Persists the high watermark (Kafka's replication-offset-checkpoint), so a restarted replica that becomes
    /// leader does not expose records the ISR may not hold.
    pub fn checkpoint_high_watermark(&self) -> Result<(), PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.write_high_watermark(hw)?))
    }

    /// Waits until the high watermark of `leader_epoch` reaches `offset` (every ISR member has the records below
    /// it); false if this replica stops leading at that epoch first. Bound to the epoch the records were written
    /// at: a replica that lost leadership may truncate them, take other records at those offsets from the new
    /// leader and lead again, all before a waiter looks, and a high watermark past `offset` then says nothing
    /// about the waiter's records.
    pub async fn wait_replicated(&self, leader_epoch: i32, offset: i64) -> bool {
        let mut rx = self.replicated.subscribe();
        let reached = match rx
            .wait_for(|(hw, led)| *led != Some(leader_epoch) || *hw >= offset)
            .await
        {
            Ok(state) => state.1 == Some(leader_epoch) && state.0 >= offset,
            Err(_) => false,
        };
        reached
    }

    /// Reads batches for a consumer's fetch, bounded by the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.read(offset, max_bytes, hw, min_one_batch)?))
    }

    /// Calls `f` with every record of the log from its start to its end, decoded (control records too): how an
    /// internal topic's state (`__consumer_offsets`, `__transaction_state`) is rebuilt. Errors name the partition.
    pub fn replay_records(
        &self,
        mut f: impl FnMut(&strom_protocol::kafka::records::Record),
    ) -> Result<(), String> {
        let mut offset = self.log_start_offset();
        let end = self
            .log_end_offset()
            .map_err(|e| format!("reading {}: {e}", self.name()))?;
        while offset < end {
            let read = self
                .read_for_replica(offset, 1 << 20)
                .map_err(|e| format!("reading {}: {e}", self.name()))?;
            if read.records.is_empty() {
                break;
            }
            // Advance by batch headers, not records: a compacted batch may hold no records at all.
            let batches = strom_log::split_batches(&read.records)
                .map_err(|e| format!("reading {}: {e}", self.name()))?;
            if let Some((last, _)) = batches.last() {
                offset = offset.max(last.last_offset() + 1);
            }
            let mut bytes = read.records;
            let sets = strom_protocol::kafka::records::RecordBatchDecoder::decode_all(&mut bytes)
                .map_err(|e| format!("decoding {}: {e:#}", self.name()))?;
            for record in sets.iter().flat_map(|s| s.records.iter()) {
                offset = offset.max(record.offset + 1);
                f(record);
            }
        }
        Ok(())
    }

    /// Reads batches for a follower's fetch, up to the log end offset.
    pub fn read_for_replica(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, PartitionError> {
        self.with_log(|log| Ok(log.read(offset, max_bytes, i64::MAX, true)?))
    }

    /// A future that completes after the next append. Create it *before* checking for data, then await it, so an
    /// append in between is not missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// New records to read (an append, or the high watermark moved): wakes long-polling fetches.
    fn wake_fetches(&self) {
        self.woken_at_us
            .store(crate::metrics::now_us(), Ordering::Release);
        self.appended.notify_waiters();
    }

    /// When fetches waiting here were last woken, on `metrics::now_us`'s clock.
    pub fn woken_at_us(&self) -> u64 {
        self.woken_at_us.load(Ordering::Acquire)
    }

    /// fsyncs the log (blocking: call from a blocking thread) and publishes the new durable offset. The fsync
    /// itself runs without the partition lock, so appends continue meanwhile.
    pub fn flush(&self) -> Result<(), PartitionError> {
        self.unflushed_records.store(0, Ordering::Release);
        self.last_flush_ms
            .store(crate::replication::now_ms(), Ordering::Release);
        let pending = self.with_log(|log| Ok(log.begin_flush()?))?;
        let synced = pending.sync();
        let flushed = self.with_log(|log| match synced {
            Ok(()) => {
                log.complete_flush(pending)?;
                Ok(log.flushed_offset())
            }
            Err(e) => {
                log.abort_flush(pending);
                self.unflushed_records.fetch_add(1, Ordering::AcqRel);
                Err(e.into())
            }
        })?;
        self.flushed.send_if_modified(|current| {
            let advanced = flushed > *current;
            *current = (*current).max(flushed);
            advanced
        });
        Ok(())
    }

    /// Whether anything appended is not yet fsynced.
    pub fn is_dirty(&self) -> bool {
        self.unflushed_records.load(Ordering::Acquire) > 0
    }

    /// Milliseconds since the last flush began, at `now_ms` on `replication::now_ms`'s clock.
    pub fn ms_since_flush(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_flush_ms.load(Ordering::Acquire))
    }

    /// Waits until every offset below `offset` is fsynced.
    pub async fn wait_flushed(&self, offset: i64) -> bool {
        let mut rx = self.flushed.subscribe();
        let reached = rx.wait_for(|flushed| *flushed >= offset).await.is_ok();
        reached
    }

    /// Moves the log start offset (DeleteRecords).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let lso = self.with_log(|log| Ok(log.delete_records_before(offset)?))?;
        self.log_start_offset.store(lso, Ordering::Release);
        Ok(lso)
    }

    /// Retention and compaction; returns (segments deleted, records compacted away).
    pub fn run_cleanup(&self, now_ms: i64) -> Result<usize, PartitionError> {
        let (deleted, lso) = self.with_log(|log| {
            let deleted = log.enforce_retention(now_ms)?;
            Ok((deleted, log.log_start_offset()))
        })?;
        self.log_start_offset.store(lso, Ordering::Release);
        Ok(deleted)
    }

    /// One turn of the log cleaner for this partition: rolls the active segment if its time has come (segment.ms,
    /// or max.compaction.lag.ms), then compacts if [`strom_log::Log::cleaning_due`] says so. Returns why and what it removed.
    pub fn clean(
        &self,
        now_ms: i64,
    ) -> Result<Option<(strom_log::CleaningDue, strom_log::CompactionStats)>, PartitionError> {
        self.with_log(|log| {
            if !log.config().cleanup_policy.compact {
                return Ok(None);
            }
            log.roll_if_due(now_ms)?;
            let Some(due) = log.cleaning_due(now_ms) else {
                return Ok(None);
            };
            Ok(Some((due, log.compact(now_ms)?)))
        })
    }

    pub fn set_config(&self, config: LogConfig) {
        let _ = self.with_log(|log| {
            log.set_config(config);
            Ok(())
        });
    }

    /// Clean shutdown of this partition's log (flush, indexes, clean-shutdown marker).
    pub fn close(&self) -> Result<(), LogError> {
        match self.log.lock().take() {
            Some(mut log) => {
                log.write_high_watermark(self.high_watermark())?;
                log.close()
            }
            None => Ok(()),
        }
    }

    /// Deletes the partition's data (topic deletion); waiters see it as closed.
    pub fn delete(&self) -> Result<(), LogError> {
        *self.role.lock() = Role::Unassigned;
        self.replicated.send_modify(|(_, leading)| *leading = None);
        let log = self.log.lock().take();
        self.appended.notify_waiters();
        match log {
            Some(log) => log.delete(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::{Bytes, BytesMut};
    use std::future::Future;

    use futures::FutureExt;
    use strom_log::LogConfig;
    use strom_protocol::kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::{IsrProposal, Partition};

    /// One batch of `n` records at offsets `base..base + n`, stamped with `leader_epoch`, as a leader stores it.
    pub(crate) fn batch(base: i64, n: i64, leader_epoch: i32) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: leader_epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: -1,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
        out.freeze()
    }

    fn open(dir: &tempfile::TempDir) -> Partition {
        Partition::open(
            "t".into(),
            uuid::Uuid::nil(),
            0,
            dir.path().join("t-0"),
            LogConfig::default(),
            0,
        )
        .unwrap()
    }

    /// A refused ISR expansion is dropped by the leader itself, at its own partition epoch, so the follower's next
    /// fetch proposes it again; a refusal of an older proposal leaves the current one alone (found under load: a
    /// restarted follower refused while still fenced never rejoined the ISR).
    #[test]
    fn a_refused_isr_proposal_is_dropped_and_proposed_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        assert!(p.become_leader(1, 3, 7, &[1, 2, 3], &[1, 2], 30_000, 1, 0));
        let proposal = p
            .on_follower_fetch(3, 0, 1)
            .unwrap()
            .expect("a caught-up follower outside the ISR is proposed");
        assert_eq!(
            proposal,
            IsrProposal {
                leader_epoch: 3,
                partition_epoch: 7,
                isr: vec![1, 2, 3]
            }
        );
        assert_eq!(p.on_follower_fetch(3, 0, 2).unwrap(), None, "one at a time");

        let stale = IsrProposal {
            partition_epoch: 6,
            ..proposal.clone()
        };
        p.isr_proposal_refused(&stale);
        assert!(p.isr_proposal_pending(&proposal));

        p.isr_proposal_refused(&proposal);
        assert!(!p.isr_proposal_pending(&proposal));
        assert_eq!(p.leader_view().unwrap().0, vec![1, 2], "the committed ISR");
        assert_eq!(
            p.on_follower_fetch(3, 0, 3).unwrap(),
            Some(proposal.clone())
        );

        // Nothing to change at the controller: the proposal is the committed ISR.
        p.isr_proposal_unchanged(&proposal);
        assert_eq!(p.leader_view().unwrap().0, vec![1, 2, 3]);
        assert_eq!(p.on_follower_fetch(3, 0, 4).unwrap(), None);
    }

    /// A follower takes its leader's high watermark without a leader's publish; once it leads, a retried
    /// acks=all batch below that high watermark is acknowledged at once (it used to wait on a stale copy until
    /// the high watermark moved again, which the waiting idempotent producer never made happen).
    #[test]
    fn a_new_leader_acknowledges_at_the_high_watermark_it_had_as_a_follower() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        p.become_follower(1, 0);
        p.append_replicated(0, batch(0, 10, 0), 0).unwrap();
        p.follow_leader_offsets(0, 10, 0).unwrap();
        assert_eq!(p.high_watermark(), 10);

        assert!(p.become_leader(2, 1, 1, &[1, 2, 3], &[1, 2, 3], 30_000, 1, 0));
        assert_eq!(p.high_watermark(), 10);
        assert_eq!(p.wait_replicated(1, 10).now_or_never(), Some(true));
        // Records above it wait for the followers.
        assert_eq!(p.wait_replicated(1, 11).now_or_never(), None);
    }

    /// After a truncation the acks=all watch comes down with the high watermark: records appended again at
    /// the truncated offsets wait for the ISR.
    #[test]
    fn after_a_truncation_acks_all_waits_for_the_isr_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        assert!(p.become_leader(1, 0, 0, &[1, 2], &[1], 30_000, 1, 0));
        let appended = p.append(batch(0, 10, 0), 0, i64::MAX).unwrap();
        assert!(matches!(
            appended.outcome,
            strom_log::AppendOutcome::Appended { .. }
        ));
        assert_eq!(
            p.high_watermark(),
            10,
            "a leader alone in the ISR commits at once"
        );

        p.become_follower(2, 1);
        p.truncate_replica(1, 5).unwrap();
        assert_eq!(p.high_watermark(), 5);

        assert!(p.become_leader(1, 2, 2, &[1, 2], &[1, 2], 30_000, 1, 0));
        p.append(batch(0, 5, 0), 0, i64::MAX).unwrap();
        assert_eq!(
            p.wait_replicated(2, 10).now_or_never(),
            None,
            "acknowledged before the follower has the records"
        );
        p.on_follower_fetch(2, 10, 0).unwrap();
        assert_eq!(p.wait_replicated(2, 10).now_or_never(), Some(true));
    }

    /// An acks=all waiter that is not looked at while its leader is deposed, truncates its records, takes other
    /// records at those offsets from the new leader, sees the high watermark pass them and leads again: it must
    /// answer that its records are gone, not acknowledge them (found under load: 70 acknowledged records lost
    /// in `replication::acknowledged_records_survive_five_leader_kills...`).
    #[test]
    fn a_waiter_that_sleeps_through_a_lost_leadership_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        assert!(p.become_leader(1, 0, 0, &[1, 2], &[1, 2], 30_000, 1, 0));
        let appended = p.append(batch(0, 10, 0), 0, i64::MAX).unwrap();
        assert_eq!(appended.leader_epoch, 0);
        let waiter = p.wait_replicated(appended.leader_epoch, 10);
        futures::pin_mut!(waiter);
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());

        // Deposed before follower 2 fetched the records: they are truncated, the new leader's records take
        // their offsets and its high watermark passes them, and this replica leads again. The waiter was not
        // polled in between (a busy worker thread).
        p.become_follower(2, 1);
        p.truncate_replica(1, 0).unwrap();
        p.append_replicated(1, batch(0, 12, 1), 0).unwrap();
        p.follow_leader_offsets(1, 12, 0).unwrap();
        assert!(p.become_leader(1, 2, 2, &[1, 2], &[1, 2], 30_000, 1, 0));
        assert_eq!(p.high_watermark(), 12);

        assert_eq!(
            waiter.as_mut().poll(&mut cx),
            std::task::Poll::Ready(false),
            "records truncated while deposed were acknowledged"
        );
        // A waiter deposed and not leading again sees the same.
        let p2_dir = tempfile::tempdir().unwrap();
        let p2 = open(&p2_dir);
        assert!(p2.become_leader(1, 0, 0, &[1, 2], &[1, 2], 30_000, 1, 0));
        p2.append(batch(0, 10, 0), 0, i64::MAX).unwrap();
        let waiter = p2.wait_replicated(0, 10);
        futures::pin_mut!(waiter);
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        p2.become_follower(2, 1);
        p2.truncate_replica(1, 0).unwrap();
        p2.append_replicated(1, batch(0, 12, 1), 0).unwrap();
        p2.follow_leader_offsets(1, 12, 0).unwrap();
        assert_eq!(waiter.as_mut().poll(&mut cx), std::task::Poll::Ready(false));
    }

    /// A leader alone in its ISR whose checkpointed high watermark lags its log (a restart after kill -9) commits
    /// its whole log at once, and consumers read it.
    #[test]
    fn a_restarted_sole_leader_publishes_the_high_watermark_of_its_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        p.become_follower(1, 0);
        p.append_replicated(0, batch(0, 10, 0), 0).unwrap();
        assert_eq!(p.high_watermark(), 0, "nothing known committed yet");
        assert!(p.become_leader(1, 1, 1, &[1], &[1], 30_000, 1, 0));
        assert_eq!(p.high_watermark(), 10);
        assert!(!p.read(0, 1 << 20, true).unwrap().records.is_empty());
    }

    /// A truncation lowers the durable offset too: records written again at those offsets wait for their own
    /// fsync.
    #[test]
    fn after_a_truncation_acks_wait_for_a_new_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(&dir);
        p.become_follower(1, 0);
        p.append_replicated(0, batch(0, 10, 0), 0).unwrap();
        p.flush().unwrap();
        assert_eq!(p.wait_flushed(10).now_or_never(), Some(true));
        p.truncate_replica(0, 4).unwrap();
        p.append_replicated(0, batch(4, 6, 0), 0).unwrap();
        assert_eq!(p.wait_flushed(10).now_or_never(), None);
        p.flush().unwrap();
        assert_eq!(p.wait_flushed(10).now_or_never(), Some(true));
    }
}
