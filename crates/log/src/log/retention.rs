//! Removing data from the front (retention, DeleteRecords) and from the back (truncation, and a follower's
//! restart at its leader's log start offset). The leader epoch cache follows each change: epochs with no data
//! left are dropped after the data is removed, so a crash in between leaves the file ahead of the log, which open
//! corrects (see log/open.rs).

use std::time::{Duration, Instant};

use super::open::rebuild_producer_state;
use super::Log;
use crate::checkpoint::{write_offset, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use crate::error::LogError;
use crate::producer_state::ProducerStateManager;
use crate::segment::Segment;

impl Log {
    /// Deletes whole closed segments by retention.ms (the segment's largest timestamp is older than
    /// `now_ms - retention.ms`; a segment without timestamps counts as infinitely old) and then by
    /// retention.bytes (oldest first while the log stays at or above the limit without it). Only a prefix of the
    /// log is deleted and never the active segment. Applies only with `cleanup.policy=delete`. Before that, rolls
    /// the active segment if segment.ms elapsed, so that time retention can eventually reach its data.
    /// Returns the number of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.remove_retired()?;
        self.roll_if_due(now_ms)?;
        if !self.config.cleanup_policy.delete {
            return Ok(0);
        }
        let closed = self.segments.len() - 1;
        let mut count = 0;
        if self.config.retention_ms >= 0 {
            let limit = now_ms.saturating_sub(self.config.retention_ms);
            count = self.segments[..closed]
                .iter()
                .take_while(|s| s.max_timestamp() < limit)
                .count();
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.segments[count..]
                .iter()
                .map(Segment::size)
                .sum::<u64>() as i64
                - self.config.retention_bytes;
            for seg in &self.segments[count..closed] {
                if excess - (seg.size() as i64) < 0 {
                    break;
                }
                excess -= seg.size() as i64;
                count += 1;
            }
        }
        self.delete_oldest_segments(count)?;
        Ok(count)
    }

    /// DeleteRecords: moves the log start offset forward to `offset` (at most the log end offset) and deletes
    /// segments wholly below it. Persisted in `log-start-offset`. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let end = self.log_end_offset();
        if offset > end || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        if offset == end && self.active().size() > 0 {
            // Everything goes: start an empty segment so the old active one can be deleted too.
            let now = self.active_created_hint();
            self.roll(now)?;
        }
        self.log_start_offset = offset;
        let count = self.segments[1..]
            .iter()
            .take_while(|next| next.base_offset() <= offset)
            .count();
        self.delete_oldest_segments(count)?;
        write_offset(&self.dir, LOG_START_OFFSET_FILE, self.log_start_offset)?;
        let start = self.log_start_offset;
        self.update_epochs(|c| c.truncate_from_start(start))?;
        Ok(self.log_start_offset)
    }

    /// Removes all data at or above `offset`. Truncation is per batch: a batch holding `offset` goes entirely,
    /// so the new log end offset is the end of the last batch that remains (<= `offset`). Truncating to or
    /// below the log start offset empties the log and restarts it at `offset`. Leader epochs that start at or
    /// after the new log end offset are dropped.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.truncations += 1;
        if offset <= self.log_start_offset {
            self.restart_at(offset.max(0))?;
        } else {
            while self.segments.len() > 1 && self.active().base_offset() >= offset {
                if let Some(seg) = self.segments.pop() {
                    seg.delete()?;
                }
            }
            self.active_mut().truncate_to(offset)?;
            self.dir_dirty = true;
            self.producers = rebuild_producer_state(&mut self.segments)?;
        }
        let end = self.log_end_offset();
        // Records written again at the truncated offsets were never cleaned.
        self.first_dirty_offset = self.first_dirty_offset.min(end);
        self.update_epochs(|c| c.truncate_from_end(end))?;
        if self.recovery_point > end {
            self.recovery_point = end;
        }
        if self.persisted_recovery_point > end {
            write_offset(&self.dir, RECOVERY_POINT_FILE, end)?;
            self.persisted_recovery_point = end;
        }
        Ok(())
    }

    /// Drops every segment and restarts the log, empty, at `offset`: log start offset = log end offset =
    /// `offset`, no producer state, no leader epochs. For a follower whose log ends below its leader's log start
    /// offset (Kafka's truncateFullyAndStartAt), so `offset` may lie past the log end offset; any offset >= 0 is
    /// accepted.
    pub fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        self.truncations += 1;
        self.restart_at(offset)?;
        self.update_epochs(|c| {
            let had = !c.entries().is_empty();
            c.clear();
            had
        })?;
        // Nothing below `offset` exists, so nothing is left to recover below it.
        self.recovery_point = offset;
        if self.persisted_recovery_point != offset {
            write_offset(&self.dir, RECOVERY_POINT_FILE, offset)?;
            self.persisted_recovery_point = offset;
        }
        Ok(())
    }

    /// Replaces every segment with one empty segment at `offset` and makes that the log start offset.
    fn restart_at(&mut self, offset: i64) -> Result<(), LogError> {
        let now = self.active_created_hint();
        for seg in self.segments.drain(..) {
            seg.delete()?;
        }
        self.segments
            .push(Segment::create(&self.dir, offset, &self.config, now)?);
        self.dir_dirty = true;
        self.producers = ProducerStateManager::default();
        self.log_start_offset = offset;
        self.first_dirty_offset = offset;
        write_offset(&self.dir, LOG_START_OFFSET_FILE, offset)
    }

    /// Deletes the first `count` segments (never the last one) and advances the log start offset past them.
    fn delete_oldest_segments(&mut self, count: usize) -> Result<(), LogError> {
        let count = count.min(self.segments.len() - 1);
        if count == 0 {
            return Ok(());
        }
        let delayed = self.config.file_delete_delay_ms > 0;
        for seg in self.segments.drain(..count) {
            tracing::info!(dir = %self.dir.display(), base_offset = seg.base_offset(), size = seg.size(), delayed, "deleting log segment");
            if delayed {
                let now = Instant::now();
                self.retired
                    .extend(seg.retire()?.into_iter().map(|path| (path, now)));
            } else {
                seg.delete()?;
            }
        }
        self.dir_dirty = true;
        let first = self.segments[0].base_offset();
        self.producers.prune_below(first);
        if first > self.log_start_offset {
            self.log_start_offset = first;
            write_offset(&self.dir, LOG_START_OFFSET_FILE, first)?;
        }
        let start = self.log_start_offset;
        self.update_epochs(|c| c.truncate_from_start(start))
    }

    /// A creation time for segments made by calls that take no clock. It only seeds segment.ms for an empty
    /// segment, and the clock restarts at its first append anyway.
    fn active_created_hint(&self) -> i64 {
        self.active().max_timestamp().max(0)
    }

    /// Removes the files of segments deleted at least `file.delete.delay.ms` ago (all of them when it is 0).
    pub fn remove_retired(&mut self) -> Result<(), LogError> {
        let delay = Duration::from_millis(self.config.file_delete_delay_ms.max(0) as u64);
        let mut result = Ok(());
        self.retired.retain(|(path, since)| {
            if since.elapsed() < delay {
                return true;
            }
            match crate::checkpoint::remove_if_exists(path) {
                Ok(()) => false,
                Err(e) => {
                    result = Err(e);
                    true
                }
            }
        });
        result
    }

    /// The files of deleted segments waiting for `file.delete.delay.ms`.
    pub fn retired_files(&self) -> Vec<std::path::PathBuf> {
        self.retired.iter().map(|(p, _)| p.clone()).collect()
    }
}
