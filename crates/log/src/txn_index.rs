//! A segment's aborted-transaction index (`<base offset, 20 digits>.txnindex`), in Kafka's layout so Kafka's
//! tools read it: one 34-byte entry per transaction aborted by a marker in this segment, in marker order,
//! big-endian:
//!
//! ```text
//! version i16 (0) | producer_id i64 | first_offset i64 | last_offset i64 | last_stable_offset i64
//! ```
//! `last_offset` is the abort marker's offset, `first_offset` the transaction's first batch on the partition
//! (possibly in an earlier segment), `last_stable_offset` the partition's LSO right after the marker.
//!
//! The entries are derived from the log (the replay that rebuilds producer state finds every abort marker), so
//! the file is a cache that must be complete: every segment gets one when created, even empty, and an append is
//! idempotent (an entry whose marker is not past the last one's is already there). A missing or damaged file
//! makes the log's open replay the headers to fill it again (and write it whole only then); entries whose marker
//! a recovery or truncation cut off are dropped with it. The entries are also kept in memory, where a
//! `read_committed` fetch collects them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{remove_if_exists, write_atomic};
use crate::error::{IoContext, LogError};
use crate::segment::open_read_write;
use crate::txn::AbortedTxn;

pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

pub(crate) struct TxnIndex {
    path: PathBuf,
    /// `None` while the index is being rebuilt: no file exists until [`TxnIndex::complete`] writes the whole of it,
    /// so a crash in between finds it missing again rather than complete and short.
    file: Option<File>,
    entries: Vec<AbortedTxn>,
    dirty: bool,
}

impl TxnIndex {
    /// Creates an empty index at `path` (a new segment's), replacing any file there.
    pub(crate) fn create(path: &Path) -> Result<Self, LogError> {
        let (file, _) = open_read_write(path, true)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            entries: Vec::new(),
            dirty: true,
        })
    }

    /// Opens the index at `path`; entries whose marker is at or past `end_offset` (the segment's log end) go. A
    /// missing file (a segment written before the index existed) or a damaged one gives an index that is not
    /// [complete](TxnIndex::is_complete): the caller fills it by replaying the log, then completes it.
    pub(crate) fn open(path: &Path, end_offset: i64) -> Result<Self, LogError> {
        let incomplete = || Self {
            path: path.to_path_buf(),
            file: None,
            entries: Vec::new(),
            dirty: false,
        };
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(incomplete()),
            Err(e) => return Err(e).at(path),
        };
        let Some(mut entries) = parse(&data) else {
            tracing::warn!(path = %path.display(), "aborted-transaction index is damaged; rebuilding it");
            remove_if_exists(path)?;
            return Ok(incomplete());
        };
        let (file, _) = open_read_write(path, false)?;
        let whole = entries.len();
        entries.retain(|a| a.last_offset < end_offset);
        let mut index = Self {
            path: path.to_path_buf(),
            file: Some(file),
            entries,
            dirty: false,
        };
        if index.entries.len() < whole {
            index.rewrite_length()?;
        }
        Ok(index)
    }

    /// Whether the index holds every abort marker of its segment (else a replay of the log is filling it).
    pub(crate) fn is_complete(&self) -> bool {
        self.file.is_some()
    }

    /// A rebuilt index has all its entries: written whole, atomically, from now on kept up to date in place.
    pub(crate) fn complete(&mut self) -> Result<(), LogError> {
        if self.file.is_some() {
            return Ok(());
        }
        let bytes: Vec<u8> = self.entries.iter().flat_map(encode).collect();
        let (dir, name) = match (
            self.path.parent(),
            self.path.file_name().and_then(|n| n.to_str()),
        ) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)).at(&self.path),
        };
        write_atomic(dir, name, &bytes)?;
        self.file = Some(open_read_write(&self.path, false)?.0);
        Ok(())
    }

    /// Adds the transaction aborted by a marker in this segment, unless it is already here.
    pub(crate) fn append(&mut self, txn: AbortedTxn) -> Result<(), LogError> {
        if self
            .entries
            .last()
            .is_some_and(|last| txn.last_offset <= last.last_offset)
        {
            return Ok(());
        }
        if let Some(file) = &self.file {
            let position = (self.entries.len() * ENTRY_SIZE) as u64;
            file.write_all_at(&encode(&txn), position).at(&self.path)?;
            self.dirty = true;
        }
        self.entries.push(txn);
        Ok(())
    }

    /// Drops the entries whose marker is at or after `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = self.entries.partition_point(|a| a.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.rewrite_length()?;
        }
        Ok(())
    }

    fn rewrite_length(&mut self) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            file.set_len((self.entries.len() * ENTRY_SIZE) as u64)
                .at(&self.path)?;
            self.dirty = true;
        }
        Ok(())
    }

    /// The entries whose marker is at or after `from` and whose first batch is below `upper`.
    pub(crate) fn collect(&self, from: i64, upper: i64, out: &mut Vec<AbortedTxn>) {
        let start = self.entries.partition_point(|a| a.last_offset < from);
        out.extend(
            self.entries[start..]
                .iter()
                .filter(|a| a.first_offset < upper)
                .copied(),
        );
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        if let (true, Some(file)) = (self.dirty, &self.file) {
            file.sync_data().at(&self.path)?;
            self.dirty = false;
        }
        Ok(())
    }

    pub(crate) fn delete(self) -> Result<(), LogError> {
        drop(self.file);
        remove_if_exists(&self.path)
    }
}

fn encode(a: &AbortedTxn) -> [u8; ENTRY_SIZE] {
    let mut out = [0u8; ENTRY_SIZE];
    out[..2].copy_from_slice(&VERSION.to_be_bytes());
    for (i, v) in [
        a.producer_id,
        a.first_offset,
        a.last_offset,
        a.last_stable_offset,
    ]
    .into_iter()
    .enumerate()
    {
        out[2 + i * 8..10 + i * 8].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// The entries of a whole file; `None` if it is not whole entries of version 0 in marker order.
fn parse(data: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !data.len().is_multiple_of(ENTRY_SIZE) {
        return None;
    }
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(data.len() / ENTRY_SIZE);
    for chunk in data.chunks_exact(ENTRY_SIZE) {
        if i16::from_be_bytes([chunk[0], chunk[1]]) != VERSION {
            return None;
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&chunk[2 + i * 8..10 + i * 8]);
            i64::from_be_bytes(b)
        };
        let a = AbortedTxn {
            producer_id: field(0),
            first_offset: field(1),
            last_offset: field(2),
            last_stable_offset: field(3),
        };
        if a.first_offset > a.last_offset
            || entries
                .last()
                .is_some_and(|last| a.last_offset <= last.last_offset)
        {
            return None;
        }
        entries.push(a);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: 7,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_are_kafka_s_34_bytes_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::create(&path).unwrap();
        index.append(txn(3, 10)).unwrap();
        index.append(txn(11, 20)).unwrap();
        index.append(txn(11, 20)).unwrap();
        index.append(txn(0, 15)).unwrap();
        index.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 68, "two entries: appends are idempotent");
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &10i64.to_be_bytes());
        drop(index);

        let index = TxnIndex::open(&path, 21).unwrap();
        assert!(index.is_complete());
        assert_eq!(index.entries(), &[txn(3, 10), txn(11, 20)]);
        let mut out = Vec::new();
        index.collect(11, 30, &mut out);
        assert_eq!(out, vec![txn(11, 20)]);
        out.clear();
        index.collect(0, 11, &mut out);
        assert_eq!(
            out,
            vec![txn(3, 10)],
            "the second starts at the upper bound"
        );
    }

    #[test]
    fn markers_cut_off_take_their_entries_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::create(&path).unwrap();
        index.append(txn(3, 10)).unwrap();
        index.append(txn(11, 20)).unwrap();
        drop(index);
        let mut index = TxnIndex::open(&path, 15).unwrap();
        assert_eq!(index.entries(), &[txn(3, 10)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 34);
        index.truncate_to(10).unwrap();
        assert!(index.entries().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(index);

        std::fs::write(&path, [0u8; 35]).unwrap();
        let mut index = TxnIndex::open(&path, 100).unwrap();
        assert!(!index.is_complete());
        assert!(!path.exists(), "no file until the rebuild completes");
        index.append(txn(3, 10)).unwrap();
        index.complete().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 34);
        index.append(txn(11, 20)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
        drop(index);
        std::fs::remove_file(&path).unwrap();
        assert!(!TxnIndex::open(&path, 100).unwrap().is_complete());
    }
}
