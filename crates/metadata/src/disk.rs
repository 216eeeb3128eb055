//! The durable metadata log of one quorum node — what [`DurableState`] models in memory, kept in a directory of
//! its own (the broker's `<data-dir>/__cluster_metadata-0/`) — and the node's identity file, `meta.properties`.
//!
//! ```text
//! raft.snapshot    header, one frame: protobuf eraftpb::Snapshot (its data is the MetadataImage as JSON)
//! raft.log         header, one frame per entry: protobuf eraftpb::Entry, indexes snapshot index + 1, + 2, ...
//! raft.hardstate   header, one frame: protobuf eraftpb::HardState (term, vote, commit)
//! <name>.tmp       a replacement being written; removed by open
//!
//! header  8 bytes   "STRMRFT1" (the last byte is the format version)
//! frame   u32 BE    length L of the payload
//!         u32 BE    crc32c (Castagnoli) of the payload
//!         L bytes   payload; an entry's is never empty (its index is at least 1), so zeros never pass for one
//! ```
//! Invariants: raft.log's entries are contiguous and start at the snapshot's index + 1; raft.snapshot exists
//! whenever either other file does (a directory without it has never been written). A new node's directory is
//! written whole by [`MetadataDisk::create`] (or a first `InstallSnapshot`): before that the voters are unknown,
//! so other changes are refused. A call Raft would never make (an append that leaves a gap, a compaction below
//! the snapshot) is refused before any of it is written.
//!
//! Writes ([`MetadataDisk::persist`]). Appended entries are written at the end of raft.log, with one fdatasync
//! per call. Entries that replace a suffix (a new leader's log wins) first cut the file at the first replaced
//! entry, whose position is kept in memory, and sync the cut, so a stale frame can never follow new ones. The
//! snapshot and hard state files, and the log when a snapshot compacts or replaces it, are replaced whole: write
//! `<name>.tmp`, fsync, rename, fsync the directory. A snapshot is written before the log it shortens (and
//! after syncing the entries it covers), the hard state last, and only when it changed.
//!
//! Recovery ([`MetadataDisk::open`] repairs; [`MetadataDisk::load`] reads the same way without repairing):
//! - A bad frame (cut short, a checksum mismatch, empty) with no valid entry anywhere after it is the torn tail
//!   of an append whose sync never returned, so nothing in it was acknowledged: the log is cut there, with a
//!   warning.
//! - A bad frame followed by a valid entry is damage to synced data: an error naming the file and offset, since
//!   the entries after it may be committed. (A crash could also leave this inside an unsynced append if the file
//!   system wrote its pages out of order; the operator decides whether to cut the file at that offset.)
//! - Entries at or below the snapshot's index are left by a crash between writing a snapshot and rewriting the
//!   log. If the log holds the snapshot's own (index, term), the compaction was ours: the entries after it stay.
//!   Otherwise the snapshot came from the leader to replace this log (raft-rs installs one only when the log
//!   does not hold its (index, term)) and every entry goes. The log is rewritten.
//! - A gap (the first entry after snapshot index + 1, or an index skipped) is an error.
//! - A hard state behind the snapshot (commit or term below the snapshot's) is left by a crash between the
//!   snapshot and the hard state; both are raised to the snapshot's, as `QuorumLog::install_snapshot` does. Raft
//!   never persists such a hard state itself, so for what it writes `load` returns exactly what was persisted.
//! - A missing raft.log is empty; a missing raft.hardstate is the default hard state.
//! - raft.snapshot and raft.hardstate are only ever replaced by rename, so any defect in them is an error.
//!
//! `meta.properties`, in the data directory's root, is Kafka's KRaft identity file (Java properties, `#`
//! comments): `version=1`, `cluster.id=<22-char base64url UUID>`, `node.id=<int>`; other keys are ignored. It is
//! replaced atomically like the files above.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};

use crate::quorum::{DurableState, PersistOp};

const LOG_FILE: &str = "raft.log";
const SNAPSHOT_FILE: &str = "raft.snapshot";
const HARD_STATE_FILE: &str = "raft.hardstate";
const TMP_SUFFIX: &str = ".tmp";
const META_PROPERTIES: &str = "meta.properties";

const MAGIC: [u8; 8] = *b"STRMRFT1";
const HEADER_LEN: u64 = MAGIC.len() as u64;
const FRAME_HEADER_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{} has a gap: index {found} at byte {offset}, where {expected} should be", path.display())]
    Gap {
        path: PathBuf,
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error("{} is missing, but the directory holds a metadata log or hard state", path.display())]
    MissingSnapshot { path: PathBuf },
    #[error("{} holds no metadata log yet: create() its initial state before persisting changes", dir.display())]
    NotCreated { dir: PathBuf },
    #[error("{} already holds a metadata log", dir.display())]
    AlreadyCreated { dir: PathBuf },
    #[error("cannot append to {}: {reason}", path.display())]
    BadAppend { path: PathBuf, reason: String },
    #[error("cannot compact {} at index {index}: its snapshot is already at {snapshot_index}", path.display())]
    BadCompact {
        path: PathBuf,
        index: u64,
        snapshot_index: u64,
    },
    #[error("an earlier write to {} failed; reopen the directory to recover", dir.display())]
    Failed { dir: PathBuf },
    #[error("{}: {reason}", path.display())]
    MetaProperties { path: PathBuf, reason: String },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The open log file and where each of its entries starts.
struct LogFile {
    path: PathBuf,
    file: File,
    /// `positions[i]` is the byte position of the entry at index `snapshot_index + 1 + i`: cutting the log at an
    /// index is one `set_len`, with no scan.
    positions: Vec<u64>,
    len: u64,
}

/// One node's metadata log directory; see the module documentation for the format.
pub struct MetadataDisk {
    dir: PathBuf,
    /// `None` until the directory holds a snapshot.
    log: Option<LogFile>,
    snapshot_index: u64,
    snapshot_term: u64,
    /// What `load` would return, so an unchanged hard state is not rewritten.
    hard_state: HardState,
    /// Set when a write failed part way: the in-memory positions may no longer match the files.
    failed: bool,
}

impl MetadataDisk {
    /// Opens (creating if missing) a node's metadata log directory and repairs what a crash left (see the module
    /// documentation).
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(io_error("create", dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        for name in [LOG_FILE, SNAPSHOT_FILE, HARD_STATE_FILE] {
            let tmp = tmp_path(dir, name);
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("remove", &tmp)(e))
                }
                _ => {}
            }
        }
        let mut disk = Self {
            dir: dir.to_path_buf(),
            log: None,
            snapshot_index: 0,
            snapshot_term: 0,
            hard_state: HardState::default(),
            failed: false,
        };
        let Some(recovered) = recover(dir)? else {
            return Ok(disk);
        };
        let meta = recovered.state.snapshot.get_metadata();
        disk.snapshot_index = meta.index;
        disk.snapshot_term = meta.term;
        disk.hard_state = recovered.state.hard_state.clone();
        if recovered.rewrite_log {
            disk.rewrite_log(encode_frames(&recovered.state.entries, HEADER_LEN).0)?;
        } else {
            let path = dir.join(LOG_FILE);
            let file = open_log(&path)?;
            if recovered.valid_len < recovered.file_len {
                file.set_len(recovered.valid_len)
                    .and_then(|()| file.sync_data())
                    .map_err(io_error("truncate", &path))?;
            }
            disk.log = Some(LogFile {
                path,
                file,
                positions: recovered.positions,
                len: recovered.valid_len,
            });
        }
        if recovered.hard_state_raised {
            write_atomic(dir, HARD_STATE_FILE, &encode_single(&disk.hard_state))?;
        }
        Ok(disk)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the directory holds, or `None` if it has never been written.
    pub fn load(&self) -> Result<Option<DurableState>, DiskError> {
        Ok(recover(&self.dir)?.map(|r| r.state))
    }

    /// Writes a node's first state into a directory that has never been written.
    pub fn create(&mut self, state: &DurableState) -> Result<(), DiskError> {
        if self.log.is_some() {
            return Err(DiskError::AlreadyCreated {
                dir: self.dir.clone(),
            });
        }
        self.persist(&[
            PersistOp::InstallSnapshot(state.snapshot.clone()),
            PersistOp::Entries(state.entries.clone()),
            PersistOp::HardState(state.hard_state.clone()),
        ])
    }

    /// Applies `ops` in order, as [`DurableState::persist`] does, and returns once they are durable. Only an
    /// `InstallSnapshot` may come first in a directory that has never been written.
    pub fn persist(&mut self, ops: &[PersistOp]) -> Result<(), DiskError> {
        if ops.is_empty() {
            return Ok(());
        }
        if self.failed {
            return Err(DiskError::Failed {
                dir: self.dir.clone(),
            });
        }
        self.check(ops)?;
        let result = self.persist_ops(ops);
        // A failed write may have left the files apart from what is in memory, and appends unsynced.
        self.failed = result.is_err();
        result
    }

    /// Refuses a call that Raft would never make before any of it is written, so a refused call changes nothing.
    fn check(&self, ops: &[PersistOp]) -> Result<(), DiskError> {
        let path = || self.dir.join(LOG_FILE);
        let mut created = self.log.is_some();
        let mut snapshot_index = self.snapshot_index;
        let mut last = snapshot_index + self.log.as_ref().map_or(0, |l| l.positions.len() as u64);
        for op in ops {
            if !created && !matches!(op, PersistOp::InstallSnapshot(_)) {
                return Err(DiskError::NotCreated {
                    dir: self.dir.clone(),
                });
            }
            match op {
                PersistOp::Entries(entries) => {
                    let Some(first) = entries.first() else {
                        continue;
                    };
                    if first.index <= snapshot_index || first.index > last + 1 {
                        return Err(DiskError::BadAppend {
                            path: path(),
                            reason: format!(
                                "entry {} is not after the snapshot ({snapshot_index}) and at most {}",
                                first.index,
                                last + 1
                            ),
                        });
                    }
                    if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
                        return Err(DiskError::BadAppend {
                            path: path(),
                            reason: format!("entry {} follows entry {}", w[1].index, w[0].index),
                        });
                    }
                    last = first.index + entries.len() as u64 - 1;
                }
                PersistOp::HardState(_) => {}
                PersistOp::Compact(snapshot) => {
                    let index = snapshot.get_metadata().index;
                    if index < snapshot_index {
                        return Err(DiskError::BadCompact {
                            path: path(),
                            index,
                            snapshot_index,
                        });
                    }
                    snapshot_index = index;
                    last = last.max(index);
                }
                PersistOp::InstallSnapshot(snapshot) => {
                    created = true;
                    snapshot_index = snapshot.get_metadata().index;
                    last = snapshot_index;
                }
            }
        }
        Ok(())
    }

    fn persist_ops(&mut self, ops: &[PersistOp]) -> Result<(), DiskError> {
        let mut log_unsynced = false;
        let mut hard_state = None;
        for op in ops {
            match op {
                PersistOp::Entries(entries) => log_unsynced |= self.append(entries)?,
                PersistOp::HardState(hs) => hard_state = Some(hs),
                PersistOp::Compact(snapshot) => {
                    let index = snapshot.get_metadata().index;
                    let dropped = (index - self.snapshot_index) as usize;
                    let log = self.created()?;
                    // The snapshot covers these entries only once they are durable themselves.
                    if log_unsynced {
                        log.sync()?;
                        log_unsynced = false;
                    }
                    let from = log.positions.get(dropped).copied().unwrap_or(log.len);
                    let mut rest = vec![0; (log.len - from) as usize];
                    log.file
                        .read_exact_at(&mut rest, from)
                        .map_err(io_error("read", &log.path))?;
                    self.write_snapshot(snapshot)?;
                    self.rewrite_log(rest)?;
                }
                PersistOp::InstallSnapshot(snapshot) => {
                    self.write_snapshot(snapshot)?;
                    self.rewrite_log(Vec::new())?;
                    log_unsynced = false;
                }
            }
        }
        if log_unsynced {
            self.created()?.sync()?;
        }
        if let Some(hs) = hard_state {
            let mut hs = hs.clone();
            raise_to_snapshot(&mut hs, self.snapshot_index, self.snapshot_term);
            if hs != self.hard_state {
                write_atomic(&self.dir, HARD_STATE_FILE, &encode_single(&hs))?;
                self.hard_state = hs;
            }
        }
        Ok(())
    }

    fn created(&mut self) -> Result<&mut LogFile, DiskError> {
        self.log.as_mut().ok_or_else(|| DiskError::NotCreated {
            dir: self.dir.clone(),
        })
    }

    /// Appends entries, first cutting the log at the first one's index; returns whether anything was written.
    fn append(&mut self, entries: &[Entry]) -> Result<bool, DiskError> {
        let Some(first) = entries.first() else {
            return Ok(false);
        };
        let snapshot_index = self.snapshot_index;
        let log = self.created()?;
        if first.index <= snapshot_index + log.positions.len() as u64 {
            let keep = (first.index - snapshot_index - 1) as usize;
            let at = log.positions[keep];
            log.positions.truncate(keep);
            // Synced before anything is written over the old frames: otherwise a crash could leave new frames
            // followed by old ones that the file system had not yet forgotten.
            log.file
                .set_len(at)
                .and_then(|()| log.file.sync_data())
                .map_err(io_error("truncate", &log.path))?;
            log.len = at;
        }
        let (bytes, positions) = encode_frames(entries, log.len);
        if let Err(e) = log.file.write_all_at(&bytes, log.len) {
            // Best effort: a partial frame left here would be cut by the next open anyway.
            let _ = log.file.set_len(log.len);
            return Err(io_error("append to", &log.path)(e));
        }
        log.positions.extend(positions);
        log.len += bytes.len() as u64;
        Ok(true)
    }

    fn write_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), DiskError> {
        write_atomic(&self.dir, SNAPSHOT_FILE, &encode_single(snapshot))?;
        let meta = snapshot.get_metadata();
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        raise_to_snapshot(&mut self.hard_state, meta.index, meta.term);
        Ok(())
    }

    /// Replaces the log with `frames` (entries from the snapshot's index + 1, already framed).
    fn rewrite_log(&mut self, frames: Vec<u8>) -> Result<(), DiskError> {
        let mut bytes = Vec::with_capacity(MAGIC.len() + frames.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&frames);
        write_atomic(&self.dir, LOG_FILE, &bytes)?;
        let path = self.dir.join(LOG_FILE);
        let mut positions = Vec::new();
        let mut pos = HEADER_LEN as usize;
        while pos < bytes.len() {
            positions.push(pos as u64);
            pos += FRAME_HEADER_LEN + u32::from_be_bytes(frame_word(&bytes, pos)) as usize;
        }
        self.log = Some(LogFile {
            file: open_log(&path)?,
            path,
            positions,
            len: bytes.len() as u64,
        });
        Ok(())
    }
}

impl LogFile {
    fn sync(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(io_error("sync", &self.path))
    }
}

fn open_log(path: &Path) -> Result<File, DiskError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error("open", path))
}

/// Raft requires commit >= the snapshot's index and term >= its term; see "hard state behind the snapshot".
fn raise_to_snapshot(hs: &mut HardState, index: u64, term: u64) -> bool {
    let raised = hs.commit < index || hs.term < term;
    hs.commit = hs.commit.max(index);
    hs.term = hs.term.max(term);
    raised
}

fn frame_word(bytes: &[u8], at: usize) -> [u8; 4] {
    bytes[at..at + 4].try_into().expect("four bytes")
}

fn push_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a metadata frame is far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

fn encode(message: &impl protobuf::Message) -> Vec<u8> {
    // Only a proto2 message with unset required fields fails to encode; eraftpb is proto3.
    message.write_to_bytes().expect("eraftpb messages encode")
}

/// The header and one frame: the whole content of raft.snapshot or raft.hardstate.
fn encode_single(message: &impl protobuf::Message) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    push_frame(&encode(message), &mut out);
    out
}

/// The frames of `entries` and the position of each, the first written at `at`.
fn encode_frames(entries: &[Entry], at: u64) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut positions = Vec::with_capacity(entries.len());
    for entry in entries {
        positions.push(at + bytes.len() as u64);
        push_frame(&encode(entry), &mut bytes);
    }
    (bytes, positions)
}

/// The payload of the frame at `at` and where the next frame starts, or why there is no valid frame there.
fn frame_at(bytes: &[u8], at: usize, min_len: usize) -> Result<(&[u8], usize), &'static str> {
    if bytes.len() - at < FRAME_HEADER_LEN {
        return Err("a frame header cut short");
    }
    let len = u32::from_be_bytes(frame_word(bytes, at)) as usize;
    let crc = u32::from_be_bytes(frame_word(bytes, at + 4));
    let start = at + FRAME_HEADER_LEN;
    // Checked against what is there before anything is allocated or summed.
    if len > bytes.len() - start {
        return Err("a frame running past the end of the file");
    }
    if len < min_len {
        return Err("an empty frame");
    }
    let payload = &bytes[start..start + len];
    if crc32c::crc32c(payload) != crc {
        return Err("a checksum mismatch");
    }
    Ok((payload, start + len))
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, DiskError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> DiskError {
    DiskError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            path,
            0,
            "it does not start with \"STRMRFT1\" (not a Strom metadata file, or another format version)",
        ));
    }
    Ok(())
}

/// raft.snapshot or raft.hardstate: replaced by rename only, so anything but one whole frame is an error.
fn read_single<M: protobuf::Message>(path: &Path) -> Result<Option<M>, DiskError> {
    let Some(bytes) = read_file(path)? else {
        return Ok(None);
    };
    check_header(path, &bytes)?;
    let at = MAGIC.len();
    let (payload, end) = frame_at(&bytes, at, 0).map_err(|reason| corrupt(path, at, reason))?;
    if end != bytes.len() {
        return Err(corrupt(path, end, "unexpected bytes after the frame"));
    }
    M::parse_from_bytes(payload)
        .map(Some)
        .map_err(|e| corrupt(path, at, format!("the frame does not decode: {e}")))
}

struct ScannedLog {
    entries: Vec<Entry>,
    positions: Vec<u64>,
    /// Where the valid frames end: the file is cut here if it is longer (a torn tail).
    valid_len: u64,
}

fn scan_log(path: &Path, bytes: &[u8]) -> Result<ScannedLog, DiskError> {
    check_header(path, bytes)?;
    let mut log = ScannedLog {
        entries: Vec::new(),
        positions: Vec::new(),
        valid_len: bytes.len() as u64,
    };
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let last = log.entries.last().map_or(0, |e| e.index);
        let (payload, next) = match frame_at(bytes, at, 1) {
            Ok(frame) => frame,
            Err(reason) => {
                if let Some(valid) = next_valid_entry(bytes, at + 1, last) {
                    return Err(corrupt(
                        path,
                        at,
                        format!(
                            "{reason}, but a valid entry follows at byte {valid}; not dropping entries that \
                             may be committed (if this is the torn tail of a crash, cut the file at byte {at})"
                        ),
                    ));
                }
                tracing::warn!(
                    path = %path.display(),
                    offset = at,
                    dropped_bytes = bytes.len() - at,
                    "cutting the torn tail of the metadata log ({reason}) left by a crash during an append"
                );
                log.valid_len = at as u64;
                break;
            }
        };
        let entry = Entry::parse_from_bytes(payload)
            .map_err(|e| corrupt(path, at, format!("the entry does not decode: {e}")))?;
        if entry.index == 0 {
            return Err(corrupt(path, at, "an entry with index 0"));
        }
        if last != 0 && entry.index != last + 1 {
            return Err(DiskError::Gap {
                path: path.to_path_buf(),
                offset: at as u64,
                expected: last + 1,
                found: entry.index,
            });
        }
        log.positions.push(at as u64);
        log.entries.push(entry);
        at = next;
    }
    Ok(log)
}

/// The first position at or after `from` holding a whole, valid frame of an entry after index `after`. Only
/// run on a bad frame, so its scan (every byte position) costs nothing in normal operation.
fn next_valid_entry(bytes: &[u8], from: usize, after: u64) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER_LEN)).find(|&at| {
        frame_at(bytes, at, 1)
            .ok()
            .and_then(|(payload, _)| Entry::parse_from_bytes(payload).ok())
            .is_some_and(|e| e.index > after)
    })
}

struct Recovered {
    state: DurableState,
    /// File positions of `state.entries` (when the log is not rewritten).
    positions: Vec<u64>,
    file_len: u64,
    valid_len: u64,
    /// The log is missing or holds entries the snapshot covers.
    rewrite_log: bool,
    hard_state_raised: bool,
}

fn recover(dir: &Path) -> Result<Option<Recovered>, DiskError> {
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let log_path = dir.join(LOG_FILE);
    let snapshot: Option<Snapshot> = read_single(&snapshot_path)?;
    let hard_state: Option<HardState> = read_single(&dir.join(HARD_STATE_FILE))?;
    let log_bytes = read_file(&log_path)?;
    let Some(snapshot) = snapshot else {
        if hard_state.is_some() || log_bytes.is_some() {
            return Err(DiskError::MissingSnapshot {
                path: snapshot_path,
            });
        }
        return Ok(None);
    };
    let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
    let (mut scanned, file_len) = match &log_bytes {
        Some(bytes) => (scan_log(&log_path, bytes)?, bytes.len() as u64),
        None => (
            ScannedLog {
                entries: Vec::new(),
                positions: Vec::new(),
                valid_len: 0,
            },
            0,
        ),
    };
    let mut rewrite_log = log_bytes.is_none();
    if let Some(first) = scanned.entries.first().map(|e| e.index) {
        if first > index + 1 {
            return Err(DiskError::Gap {
                path: log_path,
                offset: HEADER_LEN,
                expected: index + 1,
                found: first,
            });
        }
        if first <= index {
            let at = (index - first) as usize;
            let ours = scanned.entries.get(at).is_some_and(|e| e.term == term);
            let drop = if ours { at + 1 } else { scanned.entries.len() };
            tracing::warn!(
                path = %log_path.display(),
                snapshot_index = index,
                dropped = drop,
                kept = scanned.entries.len() - drop,
                "finishing a snapshot interrupted by a crash: dropping the entries it {}",
                if ours { "covers" } else { "replaced" }
            );
            scanned.entries.drain(..drop);
            scanned.positions.drain(..drop);
            rewrite_log = true;
        }
    }
    let mut hard_state = hard_state.unwrap_or_default();
    let hard_state_raised = raise_to_snapshot(&mut hard_state, index, term);
    Ok(Some(Recovered {
        state: DurableState {
            hard_state,
            snapshot,
            entries: scanned.entries,
        },
        positions: scanned.positions,
        file_len,
        valid_len: scanned.valid_len,
        rewrite_log,
        hard_state_raised,
    }))
}

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{TMP_SUFFIX}"))
}

/// Replaces `dir/name` with `bytes`: a crash leaves either the old file or the new one, never a mix.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DiskError> {
    let tmp = tmp_path(dir, name);
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_error("rename into place", &path))?;
    sync_dir(dir)
}

/// Makes creations and renames in `dir` durable; without it a crash can lose or resurrect a name.
fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// A node's identity, in its data directory's `meta.properties` (Kafka's KRaft format, version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
}

impl MetaProperties {
    /// The identity in `data_dir/meta.properties`, or `None` if there is none yet.
    pub fn read(data_dir: &Path) -> Result<Option<Self>, DiskError> {
        let path = data_dir.join(META_PROPERTIES);
        let Some(bytes) = read_file(&path)? else {
            return Ok(None);
        };
        let fail = |reason: String| DiskError::MetaProperties {
            path: path.clone(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
        let (mut version, mut cluster_id, mut node_id) = (None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(fail(format!(
                    "line {}: expected key=value, found '{line}'",
                    n + 1
                )));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value),
                "cluster.id" => cluster_id = Some(value),
                "node.id" => {
                    node_id = Some(value.parse::<i32>().ok().filter(|id| *id >= 0).ok_or_else(
                        || {
                            fail(format!(
                                "line {}: node.id '{value}' is not a node id",
                                n + 1
                            ))
                        },
                    )?)
                }
                _ => {}
            }
        }
        match version {
            Some("1") => {}
            Some(v) => {
                return Err(fail(format!(
                    "version {v} is not supported (only KRaft's version 1 is)"
                )))
            }
            None => return Err(fail("no version".into())),
        }
        let cluster_id = cluster_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| fail("no cluster.id".into()))?;
        let node_id = node_id.ok_or_else(|| fail("no node.id".into()))?;
        Ok(Some(Self {
            cluster_id: cluster_id.to_string(),
            node_id,
        }))
    }

    /// Writes `data_dir/meta.properties` atomically, creating `data_dir` if needed.
    pub fn write(&self, data_dir: &Path) -> Result<(), DiskError> {
        let path = data_dir.join(META_PROPERTIES);
        let id = &self.cluster_id;
        if id.is_empty() || id.trim() != id || id.contains(['\n', '\r', '=', '\\']) {
            return Err(DiskError::MetaProperties {
                path,
                reason: format!(
                    "cannot write cluster.id '{id}': empty, padded or with = \\ or a newline"
                ),
            });
        }
        fs::create_dir_all(data_dir).map_err(io_error("create", data_dir))?;
        let text = format!(
            "#\n# Written by Strom: this node's identity in its cluster.\nversion=1\ncluster.id={}\nnode.id={}\n",
            self.cluster_id, self.node_id
        );
        write_atomic(data_dir, META_PROPERTIES, text.as_bytes())
    }
}

/// A new cluster id as Kafka makes them (`kafka-storage random-uuid`): a random UUID as 22 characters of
/// URL-safe base64 without padding.
pub fn generate_cluster_id() -> String {
    loop {
        let id = base64_url(uuid::Uuid::new_v4().as_bytes());
        // Kafka's Uuid.randomUuid() redraws these too: a command line would take a leading '-' for an option.
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// RFC 4648 section 5 (URL-safe alphabet), no padding. Sixteen bytes a cluster do not justify a dependency.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, b)| w | (u32::from(*b) << (16 - 8 * i)));
        // n bytes carry 8n bits: ceil(8n / 6) = n + 1 characters.
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((word >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_rfc_4648() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ] {
            assert_eq!(base64_url(input), expected);
        }
    }
}
