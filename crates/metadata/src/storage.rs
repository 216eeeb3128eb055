//! The Raft log as raft-rs reads it: the latest snapshot (with the metadata image as its data) and the entries
//! after it, all in memory. The metadata log is small (a few records per admin operation or broker change) and
//! compacted into a snapshot every [`crate::QuorumConfig::snapshot_after_entries`] entries, so memory is bounded.
//!
//! Durability is not this type's job: every change made here is also returned to the driver as a
//! [`crate::PersistOp`], which writes it to disk before any message that depends on it leaves the node
//! (see `crate::disk` for the file format). After a restart the node is rebuilt from what the disk holds.

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::records::RecordBatch;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuorumLog {
    pub(crate) hard_state: HardState,
    /// Entries up to and including `snapshot.metadata.index` are compacted into the snapshot.
    pub(crate) snapshot: Snapshot,
    /// `entries[i].index == snapshot_index() + 1 + i`.
    pub(crate) entries: Vec<Entry>,
}

impl QuorumLog {
    pub fn new(hard_state: HardState, snapshot: Snapshot, entries: Vec<Entry>) -> Self {
        Self {
            hard_state,
            snapshot,
            entries,
        }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn conf_state(&self) -> &ConfState {
        self.snapshot.get_metadata().get_conf_state()
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The record batches of entries `from + 1 ..= to` still in the log, at most `max` of them, for a node that
    /// follows the log without voting. A new leader's empty entry is an empty batch, so the follower's position
    /// still moves past it.
    pub fn batches(&self, from: u64, to: u64, max: usize) -> Vec<(u64, RecordBatch)> {
        self.entries
            .iter()
            .filter(|e| e.index > from && e.index <= to)
            .take(max)
            .map(|e| {
                let batch = if e.get_entry_type() == EntryType::EntryNormal {
                    RecordBatch::decode(&e.data).unwrap_or_default()
                } else {
                    RecordBatch::default()
                };
                (e.index, batch)
            })
            .collect()
    }

    pub(crate) fn last(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Appends entries, replacing any entries at or after the first one's index (a new leader's log wins).
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.snapshot_index() && first.index <= self.last() + 1,
            "append at {} outside ({}, {}]",
            first.index,
            self.snapshot_index(),
            self.last() + 1
        );
        self.entries
            .truncate((first.index - self.snapshot_index() - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Drops the entries a snapshot of our own applied state now covers.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index > self.snapshot_index() && index <= self.last());
        self.entries
            .drain(..(index - self.snapshot_index()) as usize);
        self.snapshot = snapshot;
    }

    pub(crate) fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }
}

impl raft::Storage for QuorumLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.snapshot_index() + 1;
        let mut entries = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snapshot = self.snapshot.get_metadata();
        if idx == snapshot.index {
            return Ok(snapshot.term);
        }
        if idx < snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - snapshot.index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
