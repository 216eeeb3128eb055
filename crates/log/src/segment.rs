//! One segment: a `.log` file of record batches plus its sparse offset and time indexes.
//!
//! ```text
//! <base offset, 20 digits>.log        record batches back to back, exactly as stored by append (no framing of
//!                                     our own: each batch's own length prefix frames it)
//! <base offset, 20 digits>.index      see offset_index.rs
//! <base offset, 20 digits>.timeindex  see time_index.rs
//! <base offset, 20 digits>.txnindex   see txn_index.rs (the transactions aborted by markers in this segment)
//! ```
//! The base offset in the name is the first offset the segment may hold; the first batch's base offset is >= it
//! (equal unless compaction removed the first batches). Within a segment, batch offsets strictly increase and
//! every batch's last offset is < base + 2^31, so relative offsets fit the indexes' u32.
//!
//! Recovery ([`Segment::open_recovering`]) scans every batch checking framing, magic, CRC and offset order, cuts
//! the file at the first batch that fails (a torn write or garbage after a crash), and rebuilds both indexes
//! from what remains. [`Segment::open_trusted`] is for data known to be flushed: it loads the indexes, checks
//! them, and verifies only the tail after the last offset-index entry; any doubt falls back to recovery.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::checkpoint::remove_if_exists;
use crate::config::LogConfig;
use crate::error::{IoContext, LogError};
use crate::offset_index::OffsetIndex;
use crate::scan::{BatchScanner, ScanMode, Step};
use crate::time_index::TimeIndex;
use crate::txn_index::{TxnIndex, TXN_INDEX_SUFFIX};

mod read;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Appended to the names of a segment's files deleted with a delay (`file.delete.delay.ms`).
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Positions are u32 in the index and relative offsets u32 too; Kafka caps both at i32::MAX.
pub(crate) const MAX_SEGMENT_SPAN: i64 = i32::MAX as i64;

/// Linux refuses a `pwritev` of more buffers than this (`UIO_MAXIOV`); longer lists are written in turns.
const MAX_IOVECS: usize = 1024;

/// `write_all_at` for a list of buffers: `pwritev` until every byte is written, resuming after a short write.
fn write_all_vectored_at(file: &File, pieces: &[&[u8]], mut offset: u64) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let turn = rest.len().min(MAX_IOVECS);
        match rustix::io::pwritev(file, &rest[..turn], offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(crate) fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// A number fixed for the segment at `base_offset` of the log in `dir`, spread over partitions and segments.
fn jitter_seed(dir: &Path, base_offset: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    base_offset.hash(&mut h);
    h.finish()
}

/// The base offset encoded in a segment file name like `00000000000000000042.log`.
pub(crate) fn parse_segment_name(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: File,
    size: u64,
    /// Last offset of the last batch + 1, or the base offset when empty.
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    txn_index: TxnIndex,
    /// Largest batch maxTimestamp in the segment (-1 if none) and the base offset of the first batch reaching it.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_index_entry: usize,
    /// The clock that segment.ms is measured against; see `roll_clock_start`.
    created_ms: i64,
    /// Fixes this segment's share of `segment.jitter.ms` (see [`Segment::roll_jitter_ms`]).
    jitter_seed: u64,
    /// Disk was reserved past the end of the file (`preallocate`); released when the segment rolls.
    preallocated: bool,
    /// The log file has writes not yet fsynced.
    dirty: bool,
    /// The index files have writes not yet fsynced (they are synced at checkpoints, not on every flush: recovery
    /// rebuilds the indexes of everything past the persisted recovery point).
    index_dirty: bool,
    index_interval_bytes: usize,
}

/// Opens `path` for reading and writing (with `create`: created, or emptied if it exists); returns its size.
pub(crate) fn open_read_write(path: &Path, create: bool) -> Result<(File, u64), LogError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .at(path)?;
    let size = file.metadata().at(path)?.len();
    Ok((file, size))
}

impl Segment {
    fn assemble(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        log: File,
        size: u64,
        txn_index: TxnIndex,
    ) -> Result<Self, LogError> {
        Ok(Segment {
            base_offset,
            log_path: segment_file(dir, base_offset, LOG_SUFFIX),
            log,
            size,
            next_offset: base_offset,
            offset_index: OffsetIndex::create(
                &segment_file(dir, base_offset, INDEX_SUFFIX),
                config.segment_index_bytes,
            )?,
            time_index: TimeIndex::create(
                &segment_file(dir, base_offset, TIME_INDEX_SUFFIX),
                config.segment_index_bytes,
            )?,
            txn_index,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            bytes_since_index_entry: 0,
            created_ms: 0,
            jitter_seed: jitter_seed(dir, base_offset),
            preallocated: false,
            dirty: true,
            index_dirty: true,
            index_interval_bytes: config.index_interval_bytes,
        })
    }

    /// Creates an empty segment (replacing any leftover files of that name).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let (log, size) = open_read_write(&path, true)?;
        let txn_index = TxnIndex::create(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX))?;
        let mut seg = Self::assemble(dir, base_offset, config, log, size, txn_index)?;
        seg.created_ms = now_ms;
        if config.preallocate {
            seg.preallocate(config.segment_bytes.min(MAX_SEGMENT_SPAN as u64));
        }
        Ok(seg)
    }

    /// Reserves `bytes` of disk for the file without changing its size (`FALLOC_FL_KEEP_SIZE`), so appends never
    /// wait for block allocation and the file's blocks lie together. A file system that cannot (some cannot) just
    /// allocates as it goes.
    fn preallocate(&mut self, bytes: u64) {
        match rustix::fs::fallocate(&self.log, rustix::fs::FallocateFlags::KEEP_SIZE, 0, bytes) {
            Ok(()) => self.preallocated = true,
            Err(e) => {
                tracing::debug!(path = %self.log_path.display(), error = %e, "cannot preallocate segment")
            }
        }
    }

    /// Opens a segment whose data is believed flushed. Returns the segment and whether it had to be recovered
    /// anyway (an index was missing or inconsistent, or the unindexed tail did not verify).
    pub(crate) fn open_trusted(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<(Self, bool), LogError> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let (log, size) = open_read_write(&log_path, false)?;
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let Some(offset_index) = OffsetIndex::load(&index_path, config.segment_index_bytes, size)?
        else {
            return Ok((
                Self::open_recovering(dir, base_offset, config, now_ms)?.0,
                true,
            ));
        };
        // Verify the tail the index does not cover, and learn the log end from it.
        let tail_start = offset_index.last().map_or(0, |e| u64::from(e.position));
        let mut scanner = BatchScanner::new(&log, &log_path, tail_start, size, ScanMode::Verified);
        let mut next_offset = base_offset;
        let mut tail_max = (-1i64, base_offset);
        let mut tail_ok = true;
        let mut tail_bytes = 0usize;
        let mut first_tail_base = None;
        loop {
            match scanner.next_batch()? {
                Step::Batch { header, .. } => {
                    first_tail_base.get_or_insert(header.base_offset);
                    if header.base_offset < next_offset
                        || header.last_offset() - base_offset > MAX_SEGMENT_SPAN
                    {
                        tail_ok = false;
                        break;
                    }
                    next_offset = header.last_offset() + 1;
                    if header.max_timestamp > tail_max.0 {
                        tail_max = (header.max_timestamp, header.base_offset);
                    }
                    tail_bytes += header.total_size();
                }
                Step::Invalid { .. } => {
                    tail_ok = false;
                    break;
                }
                Step::End => break,
            }
        }
        // The last index entry must point at the start of the batch it names.
        let entry_matches = offset_index
            .last()
            .is_none_or(|e| first_tail_base == Some(base_offset + i64::from(e.relative_offset)));
        if !tail_ok || !entry_matches {
            drop(offset_index);
            tracing::warn!(path = %log_path.display(), "segment tail does not match its index; recovering it");
            return Ok((
                Self::open_recovering(dir, base_offset, config, now_ms)?.0,
                true,
            ));
        }
        let max_rel = (next_offset > base_offset).then(|| (next_offset - 1 - base_offset) as u32);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        let Some(time_index) = TimeIndex::load(&time_path, config.segment_index_bytes, max_rel)?
        else {
            drop(offset_index);
            return Ok((
                Self::open_recovering(dir, base_offset, config, now_ms)?.0,
                true,
            ));
        };
        let txn_index = TxnIndex::open(
            &segment_file(dir, base_offset, TXN_INDEX_SUFFIX),
            next_offset,
        )?;
        let (mut max_timestamp, mut offset_of_max) =
            time_index.last().map_or((-1, base_offset), |e| {
                (e.timestamp, base_offset + i64::from(e.relative_offset))
            });
        if tail_max.0 > max_timestamp {
            (max_timestamp, offset_of_max) = tail_max;
        }
        let mut seg = Segment {
            base_offset,
            log_path,
            log,
            size,
            next_offset,
            offset_index,
            time_index,
            txn_index,
            max_timestamp,
            offset_of_max_timestamp: offset_of_max,
            bytes_since_index_entry: tail_bytes,
            created_ms: now_ms,
            jitter_seed: jitter_seed(dir, base_offset),
            preallocated: false,
            dirty: false,
            index_dirty: false,
            index_interval_bytes: config.index_interval_bytes,
        };
        seg.created_ms = seg.roll_clock_start(now_ms)?;
        Ok((seg, false))
    }

    /// Opens a segment of unknown state: validates every batch, truncates at the first bad one and rebuilds
    /// the indexes. Returns the segment and how many bytes were cut off.
    pub(crate) fn open_recovering(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<(Self, u64), LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let (log, size) = open_read_write(&path, false)?;
        // Its entries are checked against the recovered log end by `recover_in_place`.
        let txn_index =
            TxnIndex::open(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX), i64::MAX)?;
        let mut seg = Self::assemble(dir, base_offset, config, log, size, txn_index)?;
        let truncated = seg.recover_in_place()?;
        seg.created_ms = seg.roll_clock_start(now_ms)?;
        seg.flush()?;
        Ok((seg, truncated))
    }

    /// segment.ms counts from the first append into the segment. After a restart that moment is approximated by
    /// the first batch's maxTimestamp (as Kafka does), falling back to the open time for batches without one.
    fn roll_clock_start(&self, now_ms: i64) -> Result<i64, LogError> {
        if self.size < BatchHeader::SIZE as u64 {
            return Ok(now_ms);
        }
        let mut head = [0u8; BatchHeader::SIZE];
        self.log.read_exact_at(&mut head, 0).at(&self.log_path)?;
        Ok(match BatchHeader::parse(&head) {
            Ok(h) if h.max_timestamp >= 0 => h.max_timestamp,
            _ => now_ms,
        })
    }

    /// Rescans the whole file, cutting it at the first invalid batch, and rebuilds indexes and metadata.
    fn recover_in_place(&mut self) -> Result<u64, LogError> {
        self.offset_index.clear()?;
        self.time_index.clear()?;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.bytes_since_index_entry = 0;
        let mut valid: Vec<(u64, BatchHeader)> = Vec::new();
        let mut cut = None;
        {
            let mut scanner =
                BatchScanner::new(&self.log, &self.log_path, 0, self.size, ScanMode::Verified);
            let mut expected_min = self.base_offset;
            loop {
                match scanner.next_batch()? {
                    Step::Batch {
                        position, header, ..
                    } => {
                        if header.base_offset < expected_min
                            || header.last_offset_delta < 0
                            || header.last_offset() - self.base_offset > MAX_SEGMENT_SPAN
                        {
                            cut = Some((
                                position,
                                format!(
                                    "batch offsets {}..={} out of order",
                                    header.base_offset,
                                    header.last_offset()
                                ),
                            ));
                            break;
                        }
                        expected_min = header.last_offset() + 1;
                        valid.push((position, header));
                    }
                    Step::Invalid { position, reason } => {
                        cut = Some((position, reason));
                        break;
                    }
                    Step::End => break,
                }
            }
        }
        let mut truncated = 0;
        if let Some((position, reason)) = cut {
            truncated = self.size - position;
            tracing::warn!(path = %self.log_path.display(), position, truncated, %reason, "truncating log segment at invalid batch");
            self.log.set_len(position).at(&self.log_path)?;
            self.size = position;
        }
        for (position, header) in valid {
            self.track_batch(&header, position)?;
        }
        // Transactions aborted by markers that are no longer here are not aborted here.
        self.txn_index.truncate_to(self.next_offset)?;
        self.dirty = true;
        Ok(truncated)
    }

    /// Updates indexes and metadata for a batch now at `position`.
    fn track_batch(&mut self, header: &BatchHeader, position: u64) -> Result<(), LogError> {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        if self.bytes_since_index_entry > self.index_interval_bytes {
            self.offset_index
                .append(self.relative(header.base_offset), position as u32)?;
            if self.max_timestamp >= 0 {
                self.time_index.maybe_append(
                    self.max_timestamp,
                    self.relative(self.offset_of_max_timestamp),
                )?;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.total_size();
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, MAX_SEGMENT_SPAN) as u32
    }

    /// Appends already-validated batches (offsets assigned): `pieces` concatenated are the batches back to back.
    /// On a failed write the file is cut back so no partial batch stays behind.
    pub(crate) fn append(
        &mut self,
        pieces: &[&[u8]],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), LogError> {
        let start = self.size;
        if start == 0 {
            self.created_ms = now_ms;
        }
        if let Err(e) = write_all_vectored_at(&self.log, pieces, start) {
            // Best effort: recovery would cut the torn tail anyway.
            let _ = self.log.set_len(start);
            return Err(e).at(&self.log_path);
        }
        self.size += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        self.dirty = true;
        let mut position = start;
        for h in headers {
            self.track_batch(h, position)?;
            position += h.total_size() as u64;
        }
        Ok(())
    }

    /// Whether `batches` more batches totalling `bytes` and ending at `last_offset` would not fit.
    pub(crate) fn should_roll(
        &self,
        config: &LogConfig,
        bytes: u64,
        batches: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        let max_size = config.segment_bytes.min(MAX_SEGMENT_SPAN as u64);
        self.size + bytes > max_size
            || self.is_old_enough_to_roll(config, now_ms)
            || self.offset_index.free_entries() < batches
            || self.time_index.free_entries() < batches
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || last_offset - self.base_offset > MAX_SEGMENT_SPAN
    }

    pub(crate) fn is_time_to_roll(&self, config: &LogConfig, now_ms: i64) -> bool {
        self.size > 0 && self.is_old_enough_to_roll(config, now_ms)
    }

    /// segment.ms, less this segment's jitter, has passed since the roll clock started.
    fn is_old_enough_to_roll(&self, config: &LogConfig, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.created_ms)
            > config.max_segment_ms() - self.roll_jitter_ms(config)
    }

    /// How much earlier than `segment.ms` this segment rolls: a share of `segment.jitter.ms` (below it and below
    /// `segment.ms`) fixed per segment, as Kafka draws one at random per segment.
    pub(crate) fn roll_jitter_ms(&self, config: &LogConfig) -> i64 {
        let span = config.segment_jitter_ms.min(config.max_segment_ms());
        if span <= 0 {
            return 0;
        }
        (self.jitter_seed % span as u64) as i64
    }

    /// Called when a newer segment takes over: records the final max timestamp in the time index, so a trusted
    /// open learns it without scanning.
    pub(crate) fn on_become_inactive(&mut self) -> Result<(), LogError> {
        if self.preallocated {
            // Truncating to its own size hands back the blocks reserved past the end.
            self.log.set_len(self.size).at(&self.log_path)?;
            self.preallocated = false;
        }
        if self.max_timestamp >= 0 {
            self.time_index.maybe_append(
                self.max_timestamp,
                self.relative(self.offset_of_max_timestamp),
            )?;
            self.dirty = true;
        }
        Ok(())
    }

    pub(crate) fn apply_config(&mut self, config: &LogConfig) {
        self.index_interval_bytes = config.index_interval_bytes;
        self.offset_index.set_max_bytes(config.segment_index_bytes);
        self.time_index.set_max_bytes(config.segment_index_bytes);
    }

    /// Position of the first batch whose last offset is >= `offset`, or `None` if no batch here reaches it.
    pub(crate) fn find_position(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start = self
            .offset_index
            .lookup(self.relative(offset))
            .map_or(0, |e| u64::from(e.position));
        // The batch is at most `index.interval.bytes` past the index entry (plus the batch it starts in).
        let mut scanner = BatchScanner::new(
            &self.log,
            &self.log_path,
            start,
            self.size,
            ScanMode::Headers,
        )
        .with_read_size(self.index_interval_bytes + 2 * BatchHeader::SIZE);
        loop {
            match scanner.next_batch()? {
                Step::Batch {
                    position, header, ..
                } if header.last_offset() >= offset => return Ok(Some((position, header))),
                Step::Batch { .. } => {}
                Step::End => return Ok(None),
                Step::Invalid { position, reason } => return Err(self.corrupt(position, reason)),
            }
        }
    }

    pub(super) fn corrupt(&self, position: u64, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.log_path.clone(),
            reason: format!("at byte {position}: {reason}"),
        }
    }

    /// Removes every batch whose last offset is >= `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if let Some((position, _)) = self.find_position(offset)? {
            self.log.set_len(position).at(&self.log_path)?;
            self.size = position;
            self.recover_in_place()?;
        }
        Ok(())
    }

    /// fsyncs the log and both indexes if anything changed since the last flush.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.log.sync_data().at(&self.log_path)?;
            self.dirty = false;
            self.index_dirty = true;
        }
        if self.index_dirty {
            self.offset_index.sync()?;
            self.time_index.sync()?;
            self.index_dirty = false;
        }
        self.txn_index.sync()
    }

    /// For a flush done outside the partition lock: if the log file has unsynced writes, marks it clean and returns
    /// a second handle to fsync. Everything written before this call is covered by that fsync; later writes mark
    /// the segment dirty again. If the fsync fails, the caller must call [`Segment::mark_dirty`].
    pub(crate) fn take_data_sync(&mut self) -> Result<Option<(File, PathBuf)>, LogError> {
        if !self.dirty {
            return Ok(None);
        }
        let handle = self.log.try_clone().at(&self.log_path)?;
        self.dirty = false;
        self.index_dirty = true;
        Ok(Some((handle, self.log_path.clone())))
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn delete(self) -> Result<(), LogError> {
        self.offset_index.delete()?;
        self.time_index.delete()?;
        self.txn_index.delete()?;
        drop(self.log);
        remove_if_exists(&self.log_path)
    }

    /// Renames the segment's files to `<name>.deleted` (removed later by the log, after `file.delete.delay.ms`)
    /// and returns their new paths. Open handles stay valid, so a read in flight finishes.
    pub(crate) fn retire(self) -> Result<Vec<PathBuf>, LogError> {
        let dir = self.log_path.parent().unwrap_or(Path::new("."));
        let mut renamed = Vec::new();
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            let path = segment_file(dir, self.base_offset, suffix);
            let mut target = path.clone().into_os_string();
            target.push(DELETED_SUFFIX);
            let target = PathBuf::from(target);
            match std::fs::rename(&path, &target) {
                Ok(()) => renamed.push(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        Ok(renamed)
    }

    /// Deletes the offset and time indexes but not the log: compaction is about to rename a new log over it. The
    /// aborted-transaction index stays: compaction keeps the markers, so it holds for the new log too.
    pub(crate) fn delete_indexes(self) -> Result<(), LogError> {
        self.offset_index.delete()?;
        self.time_index.delete()
    }

    pub(crate) fn txn_index(&self) -> &TxnIndex {
        &self.txn_index
    }

    pub(crate) fn txn_index_mut(&mut self) -> &mut TxnIndex {
        &mut self.txn_index
    }

    pub(crate) fn file(&self) -> (&File, &Path) {
        (&self.log, &self.log_path)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    /// When the segment's roll clock started: its first append (after a restart, its first batch's timestamp).
    pub(crate) fn created_ms(&self) -> i64 {
        self.created_ms
    }
}
