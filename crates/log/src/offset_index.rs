//! Sparse offset index of one segment: `<base offset, 20 digits>.index`.
//!
//! ```text
//! entry (8 bytes, big-endian): relative_offset u32 | position u32
//! ```
//! `relative_offset` is a batch's base offset minus the segment's base offset, `position` the byte position of
//! that batch in the `.log` file. One entry is added when at least `index.interval.bytes` of log were written
//! since the previous one, so a lookup is a binary search followed by a short scan of batch headers.
//! Invariants: both columns strictly increase; every position is the start of a batch inside the log file.
//! Relative offsets fit in u32 because a segment rolls before its offsets span more than i32::MAX, and
//! positions fit because segments are capped at i32::MAX bytes.
//! Recovery: an index that is missing, torn (size not a multiple of 8), out of order or pointing past the end of
//! the log is rebuilt from the log (see `Segment`).

use std::path::Path;

use crate::error::LogError;
use crate::index_file::IndexFile;

pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

pub(crate) struct OffsetIndex {
    file: IndexFile,
    /// In-memory copy: lookups never touch the disk, and the whole index is at most segment.index.bytes.
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub(crate) fn create(path: &Path, max_bytes: usize) -> Result<Self, LogError> {
        Ok(OffsetIndex {
            file: IndexFile::create(path, OFFSET_ENTRY_SIZE, max_bytes)?,
            entries: Vec::new(),
        })
    }

    /// Loads and checks the index; `None` means "rebuild me" (missing, torn or inconsistent with a log of
    /// `log_size` bytes).
    pub(crate) fn load(
        path: &Path,
        max_bytes: usize,
        log_size: u64,
    ) -> Result<Option<Self>, LogError> {
        let Some((file, raw)) = IndexFile::open(path, OFFSET_ENTRY_SIZE, max_bytes)? else {
            return Ok(None);
        };
        let entries: Vec<OffsetEntry> = raw
            .chunks_exact(OFFSET_ENTRY_SIZE)
            .map(|c| OffsetEntry {
                relative_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let inside = entries
            .last()
            .is_none_or(|e| u64::from(e.position) < log_size);
        if !ordered || !inside {
            tracing::warn!(path = %path.display(), "offset index is inconsistent with its log");
            return Ok(None);
        }
        Ok(Some(OffsetIndex { file, entries }))
    }

    pub(crate) fn append(&mut self, relative_offset: u32, position: u32) -> Result<(), LogError> {
        let mut raw = [0u8; OFFSET_ENTRY_SIZE];
        raw[..4].copy_from_slice(&relative_offset.to_be_bytes());
        raw[4..].copy_from_slice(&position.to_be_bytes());
        self.file.append(&raw)?;
        self.entries.push(OffsetEntry {
            relative_offset,
            position,
        });
        Ok(())
    }

    /// The last entry whose batch starts at or before `relative_offset`: the batch holding that offset is at the
    /// entry's position or after it. `None` means "scan from the start of the segment".
    pub(crate) fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    pub(crate) fn last(&self) -> Option<OffsetEntry> {
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
    fn lookup_finds_floor_entry_and_reload_checks_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&path, 1024).unwrap();
        idx.append(10, 100).unwrap();
        idx.append(20, 200).unwrap();
        assert_eq!(idx.lookup(5), None);
        assert_eq!(idx.lookup(10).unwrap().position, 100);
        assert_eq!(idx.lookup(19).unwrap().position, 100);
        assert_eq!(idx.lookup(99).unwrap().position, 200);
        assert!(OffsetIndex::load(&path, 1024, 201).unwrap().is_some());
        assert!(OffsetIndex::load(&path, 1024, 200).unwrap().is_none());
        std::fs::write(&path, [0u8; 5]).unwrap();
        assert!(OffsetIndex::load(&path, 1024, 201).unwrap().is_none());
    }
}
