//! Sparse time index of one segment: `<base offset, 20 digits>.timeindex`.
//!
//! ```text
//! entry (12 bytes, big-endian): timestamp i64 | relative_offset u32
//! ```
//! An entry says "up to here, the largest batch maxTimestamp seen is `timestamp`, first reached by the batch
//! whose base offset is `relative_offset` (relative to the segment's base offset)". Entries are added at the
//! same index interval as the offset index, but only when the largest timestamp grew, so timestamps strictly
//! increase and offsets never decrease. When a segment stops being active (roll, close) a final entry records
//! its overall largest timestamp, which is how a trusted segment learns its max timestamp on open.
//! Lookup of `ts`: the last entry with timestamp < ts names a batch before which every record is older than
//! `ts`; the scan for the first batch with maxTimestamp >= ts starts there.
//! Recovery: missing, torn or unordered files are rebuilt from the log (see `Segment`).

use std::path::Path;

use crate::error::LogError;
use crate::index_file::IndexFile;

pub(crate) const TIME_ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

pub(crate) struct TimeIndex {
    file: IndexFile,
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub(crate) fn create(path: &Path, max_bytes: usize) -> Result<Self, LogError> {
        Ok(TimeIndex {
            file: IndexFile::create(path, TIME_ENTRY_SIZE, max_bytes)?,
            entries: Vec::new(),
        })
    }

    /// Loads and checks the index; `None` means "rebuild me". `max_relative_offset` is the relative last offset of
    /// the segment's log: an entry beyond it belongs to data that is gone.
    pub(crate) fn load(
        path: &Path,
        max_bytes: usize,
        max_relative_offset: Option<u32>,
    ) -> Result<Option<Self>, LogError> {
        let Some((file, raw)) = IndexFile::open(path, TIME_ENTRY_SIZE, max_bytes)? else {
            return Ok(None);
        };
        let entries: Vec<TimeEntry> = raw
            .chunks_exact(TIME_ENTRY_SIZE)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                TimeEntry {
                    timestamp: i64::from_be_bytes(ts),
                    relative_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                }
            })
            .collect();
        let ordered = entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        });
        let inside = match (entries.last(), max_relative_offset) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(e), Some(max)) => e.relative_offset <= max,
        };
        if !ordered || !inside {
            tracing::warn!(path = %path.display(), "time index is inconsistent with its log");
            return Ok(None);
        }
        Ok(Some(TimeIndex { file, entries }))
    }

    /// Adds an entry if `timestamp` is a new maximum; otherwise the index already covers it.
    pub(crate) fn maybe_append(
        &mut self,
        timestamp: i64,
        relative_offset: u32,
    ) -> Result<(), LogError> {
        if self
            .entries
            .last()
            .is_some_and(|e| e.timestamp >= timestamp)
        {
            return Ok(());
        }
        let mut raw = [0u8; TIME_ENTRY_SIZE];
        raw[..8].copy_from_slice(&timestamp.to_be_bytes());
        raw[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.append(&raw)?;
        self.entries.push(TimeEntry {
            timestamp,
            relative_offset,
        });
        Ok(())
    }

    /// The last entry older than `timestamp`; see the module doc.
    pub(crate) fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    pub(crate) fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn free_entries(&self) -> usize {
        self.file.free_entries()
    }

    pub(crate) fn set_max_bytes(&mut self, max_bytes: usize) {
        self.file.set_max_bytes(max_bytes);
    }

    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file.sync()
    }

    pub(crate) fn clear(&mut self) -> Result<(), LogError> {
        self.entries.clear();
        self.file.truncate(0)
    }

    pub(crate) fn delete(self) -> Result<(), LogError> {
        self.file.delete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_new_maxima_and_looks_up_strictly_older() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut idx = TimeIndex::create(&path, 1024).unwrap();
        idx.maybe_append(100, 0).unwrap();
        idx.maybe_append(90, 3).unwrap();
        idx.maybe_append(200, 5).unwrap();
        assert_eq!(
            idx.last().unwrap(),
            TimeEntry {
                timestamp: 200,
                relative_offset: 5
            }
        );
        assert_eq!(idx.lookup_before(100), None);
        assert_eq!(idx.lookup_before(101).unwrap().relative_offset, 0);
        assert_eq!(idx.lookup_before(500).unwrap().relative_offset, 5);
        assert!(TimeIndex::load(&path, 1024, Some(5)).unwrap().is_some());
        assert!(TimeIndex::load(&path, 1024, Some(4)).unwrap().is_none());
    }
}
