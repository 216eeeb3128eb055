//! The file under both sparse indexes: fixed-size big-endian entries back to back, no header.
//!
//! Entries are appended as the log grows (the file is grown, not preallocated, so there is nothing to trim at
//! close and the file size always equals `entries * entry_size` once written). Writes are positional, with no
//! fsync of their own: an index is made durable together with its log by `Segment::flush`. After a crash the
//! tail of an index may be missing or hold garbage; `Segment` checks every loaded index and rebuilds it from the
//! log when the check fails, so an index is a cache of the log, never a source of truth.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::remove_if_exists;
use crate::error::{IoContext, LogError};

pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    entry_size: usize,
    len: usize,
    max_entries: usize,
}

impl IndexFile {
    /// Creates (or empties) the index at `path`.
    pub(crate) fn create(
        path: &Path,
        entry_size: usize,
        max_bytes: usize,
    ) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .at(path)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entry_size,
            len: 0,
            max_entries: (max_bytes / entry_size).max(1),
        })
    }

    /// Opens an existing index and returns it with its raw content; `None` if the file is missing or its size is
    /// not a whole number of entries (a torn write), in which case the caller rebuilds it.
    pub(crate) fn open(
        path: &Path,
        entry_size: usize,
        max_bytes: usize,
    ) -> Result<Option<(Self, Vec<u8>)>, LogError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(path),
        };
        let size = file.metadata().at(path)?.len() as usize;
        if !size.is_multiple_of(entry_size) {
            tracing::warn!(path = %path.display(), size, "index size is not a multiple of its entry size");
            return Ok(None);
        }
        let mut raw = vec![0u8; size];
        file.read_exact_at(&mut raw, 0).at(path)?;
        let index = IndexFile {
            path: path.to_path_buf(),
            file,
            entry_size,
            len: size / entry_size,
            max_entries: (max_bytes / entry_size).max(1),
        };
        Ok(Some((index, raw)))
    }

    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<(), LogError> {
        debug_assert_eq!(entry.len(), self.entry_size);
        let at = (self.len * self.entry_size) as u64;
        self.file.write_all_at(entry, at).at(&self.path)?;
        self.len += 1;
        Ok(())
    }

    /// Keeps the first `entries` entries.
    pub(crate) fn truncate(&mut self, entries: usize) -> Result<(), LogError> {
        self.file
            .set_len((entries * self.entry_size) as u64)
            .at(&self.path)?;
        self.len = entries.min(self.len);
        Ok(())
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.max_entries
    }

    pub(crate) fn free_entries(&self) -> usize {
        self.max_entries.saturating_sub(self.len)
    }

    pub(crate) fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_entries = (max_bytes / self.entry_size).max(1);
    }

    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file.sync_data().at(&self.path)
    }

    pub(crate) fn delete(self) -> Result<(), LogError> {
        drop(self.file);
        remove_if_exists(&self.path)
    }
}
