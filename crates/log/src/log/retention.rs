//! Removing data from the front (retention, DeleteRecords) and from the back (truncation).

use super::open::rebuild_producer_state;
use super::Log;
use crate::checkpoint::{write_offset, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use crate::error::LogError;
use crate::segment::Segment;

impl Log {
    /// Deletes whole closed segments by retention.ms (the segment's largest timestamp is older than
    /// `now_ms - retention.ms`; a segment without timestamps counts as infinitely old) and then by
    /// retention.bytes (oldest first while the log stays at or above the limit without it). Only a prefix of the
    /// log is deleted and never the active segment. Applies only with `cleanup.policy=delete`. Before that, rolls
    /// the active segment if segment.ms elapsed, so that time retention can eventually reach its data.
    /// Returns the number of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        if self.active().is_time_to_roll(&self.config, now_ms) {
            self.roll(now_ms)?;
        }
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
        Ok(self.log_start_offset)
    }

    /// Removes all data at or above `offset`. Truncation is per batch: a batch holding `offset` goes entirely,
    /// so the new log end offset is the end of the last batch that remains (<= `offset`). Truncating to or
    /// below the log start offset empties the log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.log_start_offset {
            let now = self.active_created_hint();
            for seg in self.segments.drain(..) {
                seg.delete()?;
            }
            self.segments.push(Segment::create(
                &self.dir,
                offset.max(0),
                &self.config,
                now,
            )?);
            self.log_start_offset = offset.max(0);
            write_offset(&self.dir, LOG_START_OFFSET_FILE, self.log_start_offset)?;
        } else {
            while self.segments.len() > 1 && self.active().base_offset() >= offset {
                if let Some(seg) = self.segments.pop() {
                    seg.delete()?;
                }
            }
            self.active_mut().truncate_to(offset)?;
        }
        self.dir_dirty = true;
        self.producers = rebuild_producer_state(&self.segments)?;
        let end = self.log_end_offset();
        if self.recovery_point > end {
            self.recovery_point = end;
        }
        if self.persisted_recovery_point > end {
            write_offset(&self.dir, RECOVERY_POINT_FILE, end)?;
            self.persisted_recovery_point = end;
        }
        Ok(())
    }

    /// Deletes the first `count` segments (never the last one) and advances the log start offset past them.
    fn delete_oldest_segments(&mut self, count: usize) -> Result<(), LogError> {
        let count = count.min(self.segments.len() - 1);
        if count == 0 {
            return Ok(());
        }
        for seg in self.segments.drain(..count) {
            tracing::info!(dir = %self.dir.display(), base_offset = seg.base_offset(), size = seg.size(), "deleting log segment");
            seg.delete()?;
        }
        self.dir_dirty = true;
        let first = self.segments[0].base_offset();
        self.producers.prune_below(first);
        if first > self.log_start_offset {
            self.log_start_offset = first;
            write_offset(&self.dir, LOG_START_OFFSET_FILE, first)?;
        }
        Ok(())
    }

    /// A creation time for segments made by calls that take no clock. It only seeds segment.ms for an empty
    /// segment, and the clock restarts at its first append anyway.
    fn active_created_hint(&self) -> i64 {
        self.active().max_timestamp().max(0)
    }
}
