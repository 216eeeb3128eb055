//! [`Log`]: one partition's log, a directory of segments with the produce and fetch paths.
//!
//! Directory layout (`<dir>` is one partition, named `<topic>-<partition>` by the broker):
//! ```text
//! <dir>/00000000000000000000.log        segments, see segment.rs (with .index, .timeindex and .txnindex beside
//!                                       each)
//! <dir>/00000000000000012345.log        ... the last segment is the active one, the only one appended to
//! <dir>/log-start-offset                checkpoints, see checkpoint.rs
//! <dir>/recovery-point
//! <dir>/.clean-shutdown
//! <dir>/high-watermark
//! <dir>/leader-epoch-checkpoint         the leader epoch cache (leader_epoch.rs), format in checkpoint.rs
//! <dir>/producer-state.snapshot         see producer_state.rs (with open transactions, txn.rs)
//! <dir>/<base>.log.cleaned              compaction output being written; deleted by open
//! <dir>/<base>.log.swap                 complete compaction output; open finishes the swap (see log/compact.rs)
//! ```
//! Invariants: segments are ordered by base offset and their offset ranges do not overlap; only the last one
//! grows; log start offset >= the first segment's base offset; the log end offset is the active segment's next
//! offset; every leader epoch cache entry starts inside [log start offset, log end offset], and the checkpoint
//! file covers every batch on disk. The log has no locking of its own: the broker holds a per-partition lock
//! around every call.

mod compact;
mod open;
mod replication;
mod retention;
mod timestamp;
mod transactions;

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::batch::{
    split_batches, stamp_log_append_time, stamp_offset_and_epoch, BatchHeader, TimestampType,
    STAMPED_PREFIX,
};
use crate::checkpoint::{sync_dir, write_leader_epochs, write_offset, RECOVERY_POINT_FILE};
use crate::config::LogConfig;
use crate::error::{AppendError, LogError};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::ProducerStateManager;
use crate::record::batch_records;
use crate::segment::Segment;

pub use compact::{CleaningDue, CompactionStats};
pub use replication::ReplicatedAppend;

/// Who is appending and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOptions {
    /// Stamped into every batch's partitionLeaderEpoch, and recorded in the leader epoch cache at the first
    /// append of a newer epoch (negative: unknown, not recorded).
    pub leader_epoch: i32,
    /// The broker's clock: LogAppendTime, segment.ms rolling.
    pub now_ms: i64,
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended {
        base_offset: i64,
        last_offset: i64,
        /// The broker time stamped into the batches, or -1 unless the topic uses LogAppendTime.
        log_append_time: i64,
        log_start_offset: i64,
    },
    /// An idempotent producer retried a batch already in the log: answer with the original offsets, append nothing.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        log_start_offset: i64,
    },
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches back to back, possibly empty.
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// One partition's log on disk.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Ordered by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Offsets below this are fsynced (persisted as `recovery-point` at checkpoints).
    recovery_point: i64,
    producers: ProducerStateManager,
    /// Mirrors `leader-epoch-checkpoint`: changed only through [`Log::update_epochs`].
    epochs: LeaderEpochCache,
    /// The value in `high-watermark`, as written (not capped).
    persisted_high_watermark: Option<i64>,
    recovered_on_open: bool,
    /// A segment file was created or removed since the last directory fsync.
    dir_dirty: bool,
    /// The `recovery-point` value on disk, and when it was written.
    persisted_recovery_point: i64,
    last_checkpoint: Instant,
    /// Counts truncations and resets, so a flush that began before one cannot vouch for what was written after.
    truncations: u64,
    /// Files of segments deleted by retention, renamed `*.deleted`, and when: removed once `file.delete.delay.ms`
    /// has passed ([`Log::remove_retired`]).
    retired: Vec<(PathBuf, Instant)>,
    /// Compaction: offsets below this were cleaned by the last compaction (Kafka's cleaner checkpoint, here in
    /// memory, so after a restart the whole log counts as dirty once).
    first_dirty_offset: i64,
}

/// How often a flush also persists the recovery point (with index and directory fsyncs). Between checkpoints a
/// flush is a single `fdatasync` of the active segment; a crash then rescans from the older persisted point, which
/// costs recovery time, never data.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// A flush prepared under the partition lock ([`Log::begin_flush`]) whose fsyncs run without it
/// ([`PendingFlush::sync`]), so appends continue during the slow part; [`Log::complete_flush`] then publishes it.
pub struct PendingFlush {
    files: Vec<(File, PathBuf)>,
    end: i64,
    truncations: u64,
}

impl PendingFlush {
    /// fsyncs every segment that had unsynced writes when the flush began.
    pub fn sync(&self) -> Result<(), LogError> {
        for (file, path) in &self.files {
            file.sync_data().map_err(|source| LogError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Offsets below this are durable once [`PendingFlush::sync`] succeeded.
    pub fn end_offset(&self) -> i64 {
        self.end
    }
}

impl Log {
    /// Validates and appends all batches of one produce request's partition data atomically: all or none.
    /// Everything is checked first (framing, CRC, size, keys on compacted topics, producer sequences), then the
    /// batches get consecutive offsets from the log end offset and are written with a positional vectored write
    /// that takes the request's bytes as they are (one system call unless it is short or has over 512 batches).
    /// The first append in a newer leader epoch records the epoch in the leader epoch cache, persisted before
    /// the data is written.
    pub fn append(
        &mut self,
        records: Bytes,
        opts: AppendOptions,
    ) -> Result<AppendOutcome, AppendError> {
        if records.is_empty() {
            return Err(AppendError::InvalidRecord(
                "produce request has no record batches".into(),
            ));
        }
        let batches = split_batches(&records)?;
        for (header, batch) in &batches {
            if batch.len() > self.config.max_message_bytes {
                return Err(AppendError::MessageTooLarge {
                    size: batch.len(),
                    max: self.config.max_message_bytes,
                });
            }
            if header.is_control() {
                return Err(AppendError::InvalidRecord(
                    "control batches are written by the broker, not by clients".into(),
                ));
            }
            self.check_timestamps(header, batch, opts.now_ms)?;
            if self.config.cleanup_policy.compact {
                let decoded = batch_records(header, batch).map_err(AppendError::Corrupt)?;
                if decoded.iter().any(|r| r.key.is_none()) {
                    return Err(AppendError::InvalidRecord(
                        "compacted topic requires keys".into(),
                    ));
                }
            }
        }

        // The broker-owned fields (baseOffset, partitionLeaderEpoch) are outside the CRC, so a CreateTime batch is
        // written as a stamped copy of its first STAMPED_PREFIX bytes followed by the rest of the request's bytes,
        // untouched. LogAppendTime also rewrites attributes and maxTimestamp, which the CRC covers: those batches
        // are stamped in a copy, since the CRC has to be recomputed over all of their bytes anyway.
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
        let mut copied = Vec::with_capacity(if log_append_time { total } else { 0 });
        let mut prefixes = Vec::with_capacity(batches.len());
        let mut headers = Vec::with_capacity(batches.len());
        let mut next_offset = self.log_end_offset();
        for (header, batch) in &batches {
            let assigned = if log_append_time {
                let start = copied.len();
                copied.extend_from_slice(batch);
                let stored = &mut copied[start..];
                stamp_offset_and_epoch(stored, next_offset, opts.leader_epoch);
                stamp_log_append_time(stored, opts.now_ms);
                BatchHeader::parse(stored)?
            } else {
                let mut prefix = [0u8; STAMPED_PREFIX];
                prefix.copy_from_slice(&batch[..STAMPED_PREFIX]);
                stamp_offset_and_epoch(&mut prefix, next_offset, opts.leader_epoch);
                prefixes.push(prefix);
                BatchHeader {
                    base_offset: next_offset,
                    partition_leader_epoch: opts.leader_epoch,
                    ..*header
                }
            };
            next_offset = assigned.last_offset() + 1;
            debug_assert_eq!(assigned.records_count, header.records_count);
            headers.push(assigned);
        }
        if let Some(original) = self.producers.validate(&headers)? {
            return Ok(AppendOutcome::Duplicate {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                log_start_offset: self.log_start_offset,
            });
        }
        let epoch = opts.leader_epoch;
        if epoch >= 0 && self.epochs.latest_epoch().is_none_or(|l| epoch > l) {
            let start = headers[0].base_offset;
            self.update_epochs(|c| c.assign(epoch, start))?;
        }

        let last_offset = next_offset - 1;
        if self.active().should_roll(
            &self.config,
            total as u64,
            headers.len(),
            last_offset,
            opts.now_ms,
        ) {
            self.roll(opts.now_ms)?;
        }
        let pieces: Vec<&[u8]> = if log_append_time {
            vec![&copied]
        } else {
            prefixes
                .iter()
                .zip(&batches)
                .flat_map(|(prefix, (_, batch))| [&prefix[..], &batch[STAMPED_PREFIX..]])
                .collect()
        };
        let now = opts.now_ms;
        self.active_mut().append(&pieces, &headers, now)?;
        for h in &headers {
            self.track_appended(h, None)?;
        }
        Ok(AppendOutcome::Appended {
            base_offset: headers[0].base_offset,
            last_offset,
            log_append_time: if log_append_time { opts.now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
        })
    }

    /// Reads whole batches starting at the batch that contains `offset`, up to `max_bytes` in total, never
    /// including a batch whose base offset is >= `max_offset` (the high watermark). With `min_one_batch`, a
    /// first batch larger than `max_bytes` is returned whole (KIP-74). May continue into following segments.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let mut out = Vec::new();
        if offset < log_end_offset && offset < max_offset {
            // Room for the whole read up front, so growing `out` never moves (copies) what is already read.
            let unread = self.size_bytes_from(offset);
            out.reserve_exact(unread.min(max_bytes as u64) as usize);
            let first = self
                .segments
                .partition_point(|s| s.base_offset() <= offset)
                .saturating_sub(1);
            let mut from = offset;
            for seg in &self.segments[first..] {
                let Some((position, _)) = seg.find_position(from)? else {
                    continue;
                };
                let budget = max_bytes.saturating_sub(out.len());
                let oversized_ok = min_one_batch && out.is_empty();
                if !seg.read_into(position, budget, max_offset, oversized_ok, &mut out)? {
                    break;
                }
                from = seg.next_offset();
            }
        }
        Ok(ReadResult {
            records: Bytes::from(out),
            log_start_offset: self.log_start_offset,
            log_end_offset,
        })
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// fsyncs every segment with unflushed data and its indexes; afterwards everything below the log end offset
    /// is durable, and the recovery point says so.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.recovery_point = self.log_end_offset();
        self.checkpoint()
    }

    /// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` checks for CreateTime batches. The future bound
    /// is checked against the header's maxTimestamp (every record's timestamp is at most that), so the common case
    /// costs nothing; the past bound needs each record's timestamp and decodes the batch only when it is set.
    fn check_timestamps(
        &self,
        header: &BatchHeader,
        batch: &Bytes,
        now_ms: i64,
    ) -> Result<(), AppendError> {
        if self.config.message_timestamp_type != TimestampType::CreateTime {
            return Ok(());
        }
        let after = self.config.message_timestamp_after_max_ms;
        if header.max_timestamp > now_ms.saturating_add(after) {
            return Err(AppendError::InvalidTimestamp(format!(
                "timestamp {} is more than message.timestamp.after.max.ms ({after}) ahead of the broker's clock ({now_ms})",
                header.max_timestamp
            )));
        }
        let before = self.config.message_timestamp_before_max_ms;
        if before != i64::MAX {
            let earliest = now_ms.saturating_sub(before);
            for record in batch_records(header, batch).map_err(AppendError::Corrupt)? {
                let ts = record.timestamp(header);
                if ts < earliest {
                    return Err(AppendError::InvalidTimestamp(format!(
                        "timestamp {ts} is more than message.timestamp.before.max.ms ({before}) behind the broker's clock ({now_ms})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Starts a flush whose fsync the caller runs without holding the partition lock.
    pub fn begin_flush(&mut self) -> Result<PendingFlush, LogError> {
        let end = self.log_end_offset();
        let mut files = Vec::new();
        for seg in &mut self.segments {
            if let Some(handle) = seg.take_data_sync()? {
                files.push(handle);
            }
        }
        Ok(PendingFlush {
            files,
            end,
            truncations: self.truncations,
        })
    }

    /// Publishes a flush whose [`PendingFlush::sync`] succeeded (on failure call [`Log::abort_flush`]), and persists
    /// the recovery point when a checkpoint is due.
    pub fn complete_flush(&mut self, pending: PendingFlush) -> Result<(), LogError> {
        // A truncation since the flush began may have replaced records below `pending.end` with new ones this
        // fsync did not cover: the next flush vouches for them.
        if pending.truncations == self.truncations {
            self.recovery_point = self
                .recovery_point
                .max(pending.end.min(self.log_end_offset()));
        }
        if self.dir_dirty || self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// A [`PendingFlush::sync`] failed: the segments it covered are unsynced again.
    pub fn abort_flush(&mut self, _pending: PendingFlush) {
        for seg in &mut self.segments {
            seg.mark_dirty();
        }
    }

    /// Makes everything below `recovery_point` recoverable without a scan: segment data and indexes, the
    /// directory, then the `recovery-point` file.
    fn checkpoint(&mut self) -> Result<(), LogError> {
        for seg in &mut self.segments {
            seg.flush()?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        if self.recovery_point != self.persisted_recovery_point {
            write_offset(&self.dir, RECOVERY_POINT_FILE, self.recovery_point)?;
            self.persisted_recovery_point = self.recovery_point;
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Applies `change` to the leader epoch cache and, if it reports a change, persists the result before the
    /// log sees it: the in-memory cache never holds what `leader-epoch-checkpoint` does not.
    fn update_epochs(
        &mut self,
        change: impl FnOnce(&mut LeaderEpochCache) -> bool,
    ) -> Result<(), LogError> {
        let mut next = self.epochs.clone();
        if change(&mut next) {
            write_leader_epochs(&self.dir, next.entries())?;
            self.epochs = next;
        }
        Ok(())
    }

    /// Offsets below this are fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.recovery_point
    }

    /// Replaces the config; applies to the next append, roll and maintenance call.
    pub fn set_config(&mut self, config: LogConfig) {
        for seg in &mut self.segments {
            seg.apply_config(&config);
        }
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Bytes of the segments from the one holding `offset` to the end: an upper bound of what a read from
    /// `offset` can return (without KIP-74's oversized first batch).
    fn size_bytes_from(&self, offset: i64) -> u64 {
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        self.segments[first..].iter().map(Segment::size).sum()
    }

    /// Bytes of all `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// True if the last open ran the recovery scan (no clean-shutdown marker).
    pub fn recovered_on_open(&self) -> bool {
        self.recovered_on_open
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Starts a new active segment at the log end offset.
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.roll_at(self.log_end_offset(), now_ms)
    }

    /// Starts a new active segment at `base` (>= the log end offset; above it only for a replicated append whose
    /// first batch follows an offset gap).
    fn roll_at(&mut self, base: i64, now_ms: i64) -> Result<(), LogError> {
        debug_assert!(base >= self.log_end_offset());
        self.active_mut().on_become_inactive()?;
        let seg = Segment::create(&self.dir, base, &self.config, now_ms)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled new log segment");
        self.segments.push(seg);
        self.dir_dirty = true;
        Ok(())
    }
}
