//! The log's side of partition replication: a follower's append of its leader's batches, the leader epoch
//! queries behind OffsetForLeaderEpoch (KIP-101/KIP-279/KIP-320), and the persisted high watermark.

use bytes::Bytes;

use super::Log;
use crate::batch::{split_whole_batches, BatchHeader};
use crate::checkpoint::{write_offset, HIGH_WATERMARK_FILE};
use crate::error::{AppendError, LogError};
use crate::leader_epoch::EpochEntry;
use crate::segment::MAX_SEGMENT_SPAN;

/// What [`Log::append_replicated`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicatedAppend {
    /// Base offset of the first batch appended.
    pub first_offset: i64,
    /// Last offset of the last batch appended; the log end offset is now `last_offset + 1`.
    pub last_offset: i64,
    /// Number of batches appended.
    pub batches: usize,
}

impl Log {
    /// A follower's append: `records` are batches exactly as the leader stored them (offsets and
    /// partitionLeaderEpoch assigned, any timestamp type, control batches included), written as they are.
    ///
    /// Each batch is checked for framing and CRC only: the leader validated the content, and its rules
    /// (timestamps, max.message.bytes, producer sequences) may have changed since. Offsets must increase: the
    /// first batch starts at or after the log end offset and each later one after the previous one's last offset;
    /// gaps are fine (a compacted leader has them), and the log end offset becomes one past the last batch's
    /// last offset. A trailing partial batch (a fetch response cut at its size limit) is left out; `Ok(None)` when not
    /// one whole batch remains.
    ///
    /// Every new leader epoch among the batches is recorded at its first batch and persisted before the data
    /// is written. All batches go into one segment, rolled at the first batch's base offset when needed; in the
    /// rare case that offset gaps make the batches span more offsets than a segment can index, only those that
    /// fit are appended and the rest is left for the next fetch, which starts at the new log end offset.
    pub fn append_replicated(
        &mut self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<Option<ReplicatedAppend>, AppendError> {
        let batches = split_whole_batches(&records)?;
        let mut next = self.log_end_offset();
        for (header, _) in &batches {
            if header.base_offset < next {
                return Err(AppendError::UnexpectedAppendOffset {
                    first_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    expected_at_least: next,
                });
            }
            next = header.last_offset() + 1;
        }
        let Some((first, _)) = batches.first() else {
            return Ok(None);
        };
        let first_offset = first.base_offset;

        let total: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
        let last = next - 1;
        let active = self.active();
        // should_roll lets an empty segment take anything, but an offset gap can put the batches past its span
        // too; a segment at the first batch's base offset then holds more of them (the empty one stays behind,
        // harmless: reads pass over it and retention deletes it).
        let past_empty_span =
            last - active.base_offset() > MAX_SEGMENT_SPAN && first_offset > active.base_offset();
        if active.should_roll(&self.config, total, batches.len(), last, now_ms) || past_empty_span {
            self.roll_at(first_offset, now_ms)?;
        }
        let base = self.active().base_offset();
        let fitting = batches
            .iter()
            .take_while(|(h, _)| h.last_offset() - base <= MAX_SEGMENT_SPAN)
            .count();
        let headers: Vec<BatchHeader> = batches[..fitting].iter().map(|(h, _)| *h).collect();

        let latest = self.epochs.latest_epoch();
        if headers.iter().any(|h| {
            h.partition_leader_epoch >= 0 && latest.is_none_or(|l| h.partition_leader_epoch > l)
        }) {
            self.update_epochs(|c| {
                let mut changed = false;
                for h in &headers {
                    changed |= c.assign(h.partition_leader_epoch, h.base_offset);
                }
                changed
            })?;
        }

        // The whole batches are one contiguous prefix of `records`: written with a single piece.
        let bytes: usize = batches[..fitting].iter().map(|(_, b)| b.len()).sum();
        self.active_mut()
            .append(&[&records[..bytes]], &headers, now_ms)?;
        for (h, batch) in &batches[..fitting] {
            self.track_appended(h, super::open::marker_of(h, batch))?;
        }
        Ok(Some(ReplicatedAppend {
            first_offset,
            last_offset: headers[headers.len() - 1].last_offset(),
            batches: headers.len(),
        }))
    }

    /// The OffsetForLeaderEpoch answer for `epoch`: the largest epoch <= `epoch` this log has data or a record
    /// of, and the offset where that epoch's data ends (the log end offset for the latest epoch); `(-1, -1)`
    /// when `epoch` is older than every known epoch. See [`crate::LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The newest leader epoch that wrote to this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache, oldest epoch first.
    pub fn leader_epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    /// Persists the partition's high watermark in `high-watermark` (fsynced, atomic), unless it already holds
    /// `hw`. The broker decides how often; after a restart, [`Log::persisted_high_watermark`] returns it.
    pub fn write_high_watermark(&mut self, hw: i64) -> Result<(), LogError> {
        if self.persisted_high_watermark != Some(hw) {
            write_offset(&self.dir, HIGH_WATERMARK_FILE, hw)?;
            self.persisted_high_watermark = Some(hw);
        }
        Ok(())
    }

    /// The last persisted high watermark (`None` if none was ever written), brought into
    /// [log start offset, log end offset] as Kafka does: a crash or a truncation can leave the log shorter than
    /// the high watermark once was.
    pub fn persisted_high_watermark(&self) -> Option<i64> {
        self.persisted_high_watermark
            .map(|hw| hw.clamp(self.log_start_offset, self.log_end_offset()))
    }
}
