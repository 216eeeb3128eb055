//! Idempotent-producer state of one partition: per producer id, its epoch and the last five batches it wrote; for
//! transactional producers also the transaction open on the partition (its first offset, which holds the last
//! stable offset) and the epoch of the coordinator that wrote the producer's last marker. A marker that aborts a
//! transaction gives the entry for its segment's aborted-transaction index (`txn_index.rs`).
//!
//! The state is derived from the log: every batch with a producer id carries epoch and sequences in its header,
//! so replaying headers in offset order rebuilds the state exactly. Replay is what unclean open does; a clean
//! close saves the replay with a snapshot:
//!
//! ```text
//! producer-state.snapshot (big-endian), written with checkpoint::write_atomic
//!   magic "SPS2" | crc u32 (CRC-32C of everything after it) | end_offset i64 | producers u32
//!   per producer: producer_id i64 | epoch i16 | coordinator_epoch i32 | txn_first_offset i64 (-1: none)
//!                 | batches u8 (<= 5)
//!     per batch: first_seq i32 | last_seq i32 | first_offset i64 | last_offset i64
//! ```
//! Older snapshots ("SPS0" from before transactions, "SPS1" that also listed the aborted transactions, now in the
//! segments' indexes) are not read: the open replays the log instead.
//! A snapshot is used only if its CRC matches and `end_offset` equals the log end offset found at open; the open
//! deletes it after reading, so a later truncate-and-refill can never make a stale snapshot look current.
//! Anything else (missing, damaged, wrong offset) falls back to replaying the log.
//!
//! Pruning follows the data: when segments are deleted, batch entries below the first remaining segment go, and a
//! producer with none left is forgotten, which is exactly what a replay of the remaining log would produce.
//! Compaction is the exception: it can remove a producer's older batches from the middle of the log, so after
//! compaction and a restart the duplicate window may hold fewer than five entries. Compaction keeps every
//! producer's last batch (as an empty batch if need be), so epoch and next expected sequence always survive.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use crate::batch::{increment_sequence, BatchHeader};
use crate::checkpoint::write_atomic;
use crate::error::{AppendError, IoContext, LogError};
use crate::txn::{AbortedTxn, ControlType, Marker};

pub(crate) const SNAPSHOT_FILE: &str = "producer-state.snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SPS2";
/// The base sequence of a batch a coordinator writes for a producer (Kafka's NO_SEQUENCE): transactional offset
/// commits carry the producer's id and epoch, for fencing and for the transaction, but no sequence.
const NO_SEQUENCE: i32 = -1;
/// Kafka's `max.in.flight.requests.per.connection` limit for idempotence: a retry can only be one of these.
const DEDUP_WINDOW: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMetadata>,
    /// The first offset of the transaction open on this partition.
    pub(crate) txn_first_offset: Option<i64>,
    /// The epoch of the coordinator that wrote this producer's last marker (-1: none yet).
    pub(crate) coordinator_epoch: i32,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            batches: VecDeque::new(),
            txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }
}

/// One producer with state on a partition (Kafka's DescribeProducers entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The last sequence of its last batch; -1 when it has none in the duplicate window (a producer seen only
    /// through coordinator-written batches or markers).
    pub last_sequence: i32,
    /// The last offset of that batch.
    pub last_offset: Option<i64>,
    /// The max timestamp of that batch; -1 when unknown.
    pub last_timestamp: i64,
    /// The epoch of the coordinator that wrote its last marker here; -1 when none.
    pub coordinator_epoch: i32,
    /// The first offset of its transaction open here.
    pub txn_start_offset: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

enum Check {
    Accept,
    Duplicate(BatchMetadata),
}

fn metadata(h: &BatchHeader) -> BatchMetadata {
    BatchMetadata {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
    }
}

fn tracked(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Kafka's rules for one batch against the producer's current entry.
fn check(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Result<Check, AppendError> {
    // Unknown producer: its state was lost (retention, or the broker never saw it), so accept any sequence.
    let Some(entry) = entry else {
        return Ok(Check::Accept);
    };
    if h.producer_epoch < entry.epoch {
        return Err(AppendError::InvalidProducerEpoch {
            producer_id: h.producer_id,
            current: entry.epoch,
            received: h.producer_epoch,
        });
    }
    if entry.txn_first_offset.is_some() && !h.is_transactional() && h.producer_epoch == entry.epoch
    {
        return Err(AppendError::InvalidTxnState(format!(
            "producer {} wrote a non-transactional batch while its transaction is open",
            h.producer_id
        )));
    }
    if h.base_sequence == NO_SEQUENCE {
        // Written by a coordinator (transactional offset commits): fenced by epoch, never sequenced.
        return Ok(Check::Accept);
    }
    if h.producer_epoch > entry.epoch {
        if h.base_sequence != 0 {
            return Err(AppendError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected: 0,
                received: h.base_sequence,
            });
        }
        return Ok(Check::Accept);
    }
    let last_seq = h.last_sequence();
    if let Some(m) = entry
        .batches
        .iter()
        .find(|m| m.first_seq == h.base_sequence && m.last_seq == last_seq)
    {
        return Ok(Check::Duplicate(*m));
    }
    match entry.batches.back() {
        Some(last) if h.base_sequence != increment_sequence(last.last_seq, 1) => {
            Err(AppendError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected: increment_sequence(last.last_seq, 1),
                received: h.base_sequence,
            })
        }
        _ => Ok(Check::Accept),
    }
}

fn apply(entry: &mut ProducerEntry, h: &BatchHeader) {
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
    }
    if h.is_transactional() && entry.txn_first_offset.is_none() {
        entry.txn_first_offset = Some(h.base_offset);
    }
    if h.base_sequence == NO_SEQUENCE {
        return;
    }
    entry.batches.push_back(metadata(h));
    while entry.batches.len() > DEDUP_WINDOW {
        entry.batches.pop_front();
    }
}

impl ProducerStateManager {
    /// Checks a whole request's batches (offsets already assigned) without changing state. `Ok(Some(m))`: the
    /// request is a retry of the batch `m` already in the log. A duplicate inside a multi-batch request cannot
    /// be answered with one offset range, so it is reported as out of order (clients send one batch per
    /// partition, so this does not happen in practice).
    pub(crate) fn validate(
        &self,
        headers: &[BatchHeader],
    ) -> Result<Option<BatchMetadata>, AppendError> {
        let mut staged: HashMap<i64, ProducerEntry> = HashMap::new();
        for h in headers.iter().filter(|h| tracked(h)) {
            let current = staged
                .get(&h.producer_id)
                .or_else(|| self.producers.get(&h.producer_id));
            match check(current, h)? {
                Check::Duplicate(m) if headers.len() == 1 => return Ok(Some(m)),
                Check::Duplicate(m) => {
                    return Err(AppendError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        expected: increment_sequence(m.last_seq, 1),
                        received: h.base_sequence,
                    })
                }
                Check::Accept => {
                    let mut next = current
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
                    apply(&mut next, h);
                    staged.insert(h.producer_id, next);
                }
            }
        }
        Ok(None)
    }

    /// Records a batch that is now in the log (append, or replay at open); `marker` is what a control batch says.
    /// Returns the transaction an abort marker ended, for the aborted-transaction index of its segment.
    #[must_use = "an aborted transaction goes into its segment's index"]
    pub(crate) fn update(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<AbortedTxn> {
        if let (true, Some(marker)) = (h.is_control(), marker) {
            return self.end_txn(h, marker);
        }
        if !tracked(h) {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        apply(entry, h);
        None
    }

    /// Checks a marker before it is written: not from a fenced producer epoch, nor from an older coordinator.
    pub(crate) fn validate_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), AppendError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                received: producer_epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(AppendError::TransactionCoordinatorFenced {
                producer_id,
                current: entry.coordinator_epoch,
                received: coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Ends the producer's open transaction with the marker `h` (in the log); returns it if it was aborted.
    fn end_txn(&mut self, h: &BatchHeader, marker: Marker) -> Option<AbortedTxn> {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = entry.txn_first_offset.take().unwrap_or(h.base_offset);
        (marker.control == ControlType::Abort).then(|| AbortedTxn {
            producer_id: h.producer_id,
            first_offset,
            last_offset: h.base_offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(h.base_offset + 1),
        })
    }

    /// The first offset of the earliest transaction still open: the last stable offset, if below the high
    /// watermark.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.txn_first_offset)
            .min()
    }

    /// Whether `producer_id` at `epoch` has a transaction open here.
    pub(crate) fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.epoch == epoch && e.txn_first_offset.is_some())
    }

    /// Producer id and first offset of every open transaction.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producers
            .iter()
            .filter_map(|(pid, e)| e.txn_first_offset.map(|o| (*pid, o)))
            .collect()
    }

    /// Every producer this partition has state for, as DescribeProducers shows it (`last_timestamp` is left
    /// unknown: the state keeps offsets, the log has the times).
    pub(crate) fn active_producers(&self) -> Vec<ActiveProducer> {
        self.producers
            .iter()
            .map(|(pid, e)| {
                let last = e.batches.back();
                ActiveProducer {
                    producer_id: *pid,
                    producer_epoch: e.epoch,
                    last_sequence: last.map_or(NO_SEQUENCE, |m| m.last_seq),
                    last_offset: last.map(|m| m.last_offset),
                    last_timestamp: -1,
                    coordinator_epoch: e.coordinator_epoch,
                    txn_start_offset: e.txn_first_offset,
                }
            })
            .collect()
    }

    /// Forgets batches that start below `offset` (their segment was deleted), and producers left with none and no
    /// open transaction.
    pub(crate) fn prune_below(&mut self, offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|m| m.first_offset >= offset);
            !e.batches.is_empty() || e.txn_first_offset.is_some()
        });
    }

    /// Producer id -> last offset of its newest batch; compaction keeps those batches.
    pub(crate) fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(pid, e)| e.batches.back().map(|m| (*pid, m.last_offset)))
            .collect()
    }

    pub(crate) fn write_snapshot(&self, dir: &Path, end_offset: i64) -> Result<(), LogError> {
        let mut body = Vec::new();
        body.extend_from_slice(&end_offset.to_be_bytes());
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(e.batches.len() as u8);
            for m in &e.batches {
                body.extend_from_slice(&m.first_seq.to_be_bytes());
                body.extend_from_slice(&m.last_seq.to_be_bytes());
                body.extend_from_slice(&m.first_offset.to_be_bytes());
                body.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        let mut file = Vec::with_capacity(body.len() + 8);
        file.extend_from_slice(SNAPSHOT_MAGIC);
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        write_atomic(dir, SNAPSHOT_FILE, &file)
    }

    /// Reads a snapshot; `None` if it is missing, damaged or not for `end_offset`.
    pub(crate) fn read_snapshot(dir: &Path, end_offset: i64) -> Result<Option<Self>, LogError> {
        let path = dir.join(SNAPSHOT_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let parsed = parse_snapshot(&data);
        match parsed {
            Some((offset, state)) if offset == end_offset => Ok(Some(state)),
            Some((offset, _)) => {
                tracing::info!(
                    snapshot_offset = offset,
                    end_offset,
                    "producer snapshot is stale; replaying the log"
                );
                Ok(None)
            }
            None => {
                tracing::warn!(path = %path.display(), "producer snapshot is damaged; replaying the log");
                Ok(None)
            }
        }
    }
}

/// A cursor over snapshot bytes that fails softly: any short read means "damaged".
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

fn parse_snapshot(data: &[u8]) -> Option<(i64, ProducerStateManager)> {
    let (magic, rest) = data.split_first_chunk::<4>()?;
    let (crc, body) = rest.split_first_chunk::<4>()?;
    if magic != SNAPSHOT_MAGIC || u32::from_be_bytes(*crc) != crc32c::crc32c(body) {
        return None;
    }
    let mut r = Reader(body);
    let end_offset = i64::from_be_bytes(r.take()?);
    let count = u32::from_be_bytes(r.take()?);
    let mut producers = BTreeMap::new();
    for _ in 0..count {
        let pid = i64::from_be_bytes(r.take()?);
        let epoch = i16::from_be_bytes(r.take()?);
        let coordinator_epoch = i32::from_be_bytes(r.take()?);
        let txn_first_offset = Some(i64::from_be_bytes(r.take()?)).filter(|o| *o >= 0);
        let n = r.take::<1>()?[0];
        let mut batches = VecDeque::new();
        for _ in 0..n {
            batches.push_back(BatchMetadata {
                first_seq: i32::from_be_bytes(r.take()?),
                last_seq: i32::from_be_bytes(r.take()?),
                first_offset: i64::from_be_bytes(r.take()?),
                last_offset: i64::from_be_bytes(r.take()?),
            });
        }
        producers.insert(
            pid,
            ProducerEntry {
                epoch,
                batches,
                txn_first_offset,
                coordinator_epoch,
            },
        );
    }
    Some((end_offset, ProducerStateManager { producers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, base_seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: base_seq,
            records_count: count,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStateManager::default();
        assert!(s.validate(&[header(1, 0, 7, 2, 0)]).unwrap().is_none());
        assert_eq!(s.update(&header(1, 0, 7, 2, 0), None), None);
        assert!(matches!(
            s.validate(&[header(1, 0, 10, 1, 2)]),
            Err(AppendError::OutOfOrderSequence {
                expected: 9,
                received: 10,
                ..
            })
        ));
        let dup = s.validate(&[header(1, 0, 7, 2, 2)]).unwrap().unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (0, 1));
        assert!(matches!(
            s.validate(&[header(1, 1, 3, 1, 2)]),
            Err(AppendError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.update(&header(1, 1, 0, 1, 2), None), None);
        assert!(matches!(
            s.validate(&[header(1, 0, 9, 1, 3)]),
            Err(AppendError::InvalidProducerEpoch {
                current: 1,
                received: 0,
                ..
            })
        ));
        // Two batches in one request: the second must follow the first.
        assert!(s
            .validate(&[header(1, 1, 1, 1, 3), header(1, 1, 2, 1, 4)])
            .is_ok());
        assert!(s
            .validate(&[header(1, 1, 1, 1, 3), header(1, 1, 1, 1, 4)])
            .is_err());
    }

    #[test]
    fn snapshot_roundtrip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::default();
        for i in 0..8 {
            assert_eq!(s.update(&header(5, 2, i, 1, i64::from(i)), None), None);
        }
        assert_eq!(s.update(&header(6, 0, 0, 3, 8), None), None);
        s.write_snapshot(dir.path(), 11).unwrap();
        assert_eq!(
            ProducerStateManager::read_snapshot(dir.path(), 11).unwrap(),
            Some(s.clone())
        );
        assert_eq!(
            ProducerStateManager::read_snapshot(dir.path(), 12).unwrap(),
            None
        );
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            ProducerStateManager::read_snapshot(dir.path(), 11).unwrap(),
            None
        );
    }
}
