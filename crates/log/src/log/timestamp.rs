//! ListOffsets by timestamp, at record precision.

use super::Log;
use crate::error::LogError;

impl Log {
    /// The first offset (at or after the log start offset) whose record timestamp is >= `ts`, with that
    /// record's timestamp; `None` if there is none. Segments are skipped by their largest timestamp, the time
    /// index narrows the scan inside the segment, and only the one batch that must hold the answer is decoded
    /// (decompressing it if needed).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        for seg in &self.segments {
            if seg.next_offset() <= self.log_start_offset {
                continue;
            }
            if let Some(found) = seg.find_timestamp(ts, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: offset and timestamp of the first record holding the largest timestamp.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let max = self
            .segments
            .iter()
            .map(|s| s.max_timestamp())
            .max()
            .unwrap_or(-1);
        if max < 0 {
            return Ok(None);
        }
        match self.segments.iter().find(|s| s.max_timestamp() == max) {
            Some(seg) => seg.max_timestamp_record(),
            None => Ok(None),
        }
    }
}
