//! Log compaction: keep only the latest record per key in closed segments.
//!
//! Which segments: the closed ones (never the active one), from the oldest up to the first whose newest record
//! is younger than min.compaction.lag.ms, so records inside the lag are never touched. Which records survive:
//! a keyed record whose offset is the latest for its key anywhere in the log (the active segment included),
//! unless it is a tombstone (null value) older than delete.retention.ms. Keyless records are dropped, as Kafka's
//! cleaner does (compacted topics reject them at produce time). Control batches are copied unchanged. Batch
//! rewriting rules are in cleaner.rs; offsets never change.
//!
//! Crash safety, per segment `<base>`:
//! 1. write `<base>.log.cleaned` and fsync it            crash: open deletes the .cleaned file
//! 2. rename it to `<base>.log.swap`, fsync the directory crash: open renames .swap over .log, drops indexes
//! 3. delete `<base>.index` / `.timeindex`                 crash: same as 2; missing indexes are rebuilt
//! 4. rename `.swap` over `<base>.log`, fsync the directory crash: indexes missing -> rebuilt on open
//! 5. reopen the segment, rebuilding and fsyncing its indexes
//!
//! At every point the directory holds either the old or the new complete segment, never a mix.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};

use bytes::Bytes;

use super::open::{CLEANED_SUFFIX, SWAP_SUFFIX};
use super::Log;
use crate::batch::BatchHeader;
use crate::checkpoint::sync_dir;
use crate::cleaner::{filter_batch, Filtered};
use crate::error::{IoContext, LogError};
use crate::record::batch_records;
use crate::scan::{BatchScanner, ScanMode, Step};
use crate::segment::{segment_file, Segment, LOG_SUFFIX};

/// Why the cleaner should compact a log now ([`Log::cleaning_due`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CleaningDue {
    /// Dirty bytes are at least `min.cleanable.dirty.ratio` of the cleanable bytes.
    DirtyRatio(f64),
    /// The oldest dirty segment started more than `max.compaction.lag.ms` ago.
    MaxCompactionLag,
}

/// What one `compact` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments that were rewritten.
    pub segments_cleaned: usize,
    pub records_removed: u64,
    /// Size of the examined segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Bytes read: the whole log once for the latest offset of each key, and the examined segments again.
    pub bytes_read: u64,
}

/// Calls `f` for every valid batch of a segment, with its whole bytes.
fn for_each_batch(
    seg: &Segment,
    mut f: impl FnMut(&BatchHeader, Bytes) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let (file, path) = seg.file();
    let mut scanner = BatchScanner::new(file, path, 0, seg.size(), ScanMode::Verified);
    loop {
        match scanner.next_batch()? {
            Step::Batch { header, bytes, .. } => {
                let bytes = Bytes::copy_from_slice(bytes);
                f(&header, bytes)?;
            }
            Step::End => return Ok(()),
            Step::Invalid { position, reason } => {
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("at byte {position}: {reason}"),
                })
            }
        }
    }
}

fn corrupt(seg: &Segment, reason: String) -> LogError {
    LogError::Corrupt {
        path: seg.file().1.to_path_buf(),
        reason,
    }
}

impl Log {
    /// Compacts closed segments when `cleanup.policy` includes compact (see module doc). Returns statistics.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        let mut stats = CompactionStats::default();
        if !self.config.cleanup_policy.compact {
            return Ok(stats);
        }
        let cleanable = self.cleanable_segments(now_ms);
        if cleanable == 0 {
            return Ok(stats);
        }
        let unstable = self.first_unstable_offset().unwrap_or(i64::MAX);

        // Records of aborted transactions never count as a key's value, and go (Kafka's cleaner does the same);
        // transaction markers stay.
        let aborted = self.aborted_transactions(0, i64::MAX);
        let is_aborted = |header: &BatchHeader| {
            header.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id == header.producer_id
                        && a.first_offset <= header.base_offset
                        && header.base_offset < a.last_offset
                })
        };
        // Latest offset of every key below the first open transaction (a later value could still be aborted).
        // Keys are copied so the map does not pin whole batches.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for seg in &self.segments {
            for_each_batch(seg, |header, bytes| {
                if header.is_control() || is_aborted(header) || header.base_offset >= unstable {
                    return Ok(());
                }
                let records = batch_records(header, &bytes).map_err(|r| corrupt(seg, r))?;
                for r in &records {
                    if let Some(k) = &r.key {
                        latest.insert(Bytes::copy_from_slice(k), r.offset(header));
                    }
                }
                Ok(())
            })?;
        }
        stats.bytes_read = self.segments.iter().map(Segment::size).sum();
        let producer_last = self.producers.last_offsets();
        let tombstone_limit = now_ms.saturating_sub(self.config.delete_retention_ms);

        for i in 0..cleanable {
            let before = self.segments[i].size();
            stats.bytes_before += before;
            stats.bytes_read += before;
            let removed =
                self.compact_segment(i, &latest, &producer_last, tombstone_limit, &is_aborted)?;
            if removed > 0 {
                stats.segments_cleaned += 1;
                stats.records_removed += removed;
            }
            stats.bytes_after += self.segments[i].size();
        }
        self.first_dirty_offset = self.segments[cleanable - 1].next_offset();
        tracing::info!(dir = %self.dir.display(), ?stats, "compacted log");
        Ok(stats)
    }

    /// How many closed segments, from the oldest, compaction may touch: up to the first whose newest record is
    /// younger than min.compaction.lag.ms, and none at or after the first open transaction (whether its records
    /// stay is not known yet).
    fn cleanable_segments(&self, now_ms: i64) -> usize {
        let lag_limit = now_ms.saturating_sub(self.config.min_compaction_lag_ms);
        let closed = self.segments.len() - 1;
        let unstable = self.first_unstable_offset().unwrap_or(i64::MAX);
        self.segments[..closed]
            .iter()
            .take_while(|s| s.max_timestamp() <= lag_limit && s.next_offset() <= unstable)
            .count()
    }

    /// Whether the cleaner should compact this log now, as Kafka's cleaner chooses: its cleanable segments hold
    /// dirty bytes (not cleaned by the last compaction) of at least `min.cleanable.dirty.ratio` of their bytes, or
    /// the oldest dirty one started more than `max.compaction.lag.ms` ago. `None` with nothing dirty to clean.
    pub fn cleaning_due(&self, now_ms: i64) -> Option<CleaningDue> {
        if !self.config.cleanup_policy.compact {
            return None;
        }
        let cleanable = &self.segments[..self.cleanable_segments(now_ms)];
        let first_dirty = self.first_dirty_offset.max(self.log_start_offset);
        let dirty_from = cleanable.partition_point(|s| s.next_offset() <= first_dirty);
        let bytes = |segments: &[Segment]| segments.iter().map(Segment::size).sum::<u64>();
        let dirty = bytes(&cleanable[dirty_from..]);
        if dirty == 0 {
            return None;
        }
        let ratio = dirty as f64 / bytes(cleanable) as f64;
        if ratio >= self.config.min_cleanable_dirty_ratio {
            return Some(CleaningDue::DirtyRatio(ratio));
        }
        let oldest_dirty = cleanable[dirty_from].created_ms();
        (now_ms.saturating_sub(oldest_dirty) > self.config.max_compaction_lag_ms)
            .then_some(CleaningDue::MaxCompactionLag)
    }

    /// Rolls the active segment if segment.ms (or max.compaction.lag.ms, for a compacted log) has passed since it
    /// started, so a time-bound clean or deletion can reach its records. Returns whether it rolled.
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<bool, LogError> {
        if !self.active().is_time_to_roll(&self.config, now_ms) {
            return Ok(false);
        }
        self.roll(now_ms)?;
        Ok(true)
    }

    /// Rewrites segment `i`; returns how many records were removed (0: the segment was left untouched).
    fn compact_segment(
        &mut self,
        i: usize,
        latest: &HashMap<Bytes, i64>,
        producer_last: &HashMap<i64, i64>,
        tombstone_limit: i64,
        is_aborted: &dyn Fn(&BatchHeader) -> bool,
    ) -> Result<u64, LogError> {
        let base = self.segments[i].base_offset();
        let cleaned_path = self.dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        let swap_path = self.dir.join(format!("{base:020}{SWAP_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&cleaned_path)
            .at(&cleaned_path)?;
        let mut out = BufWriter::new(file);
        let mut removed = 0u64;
        let seg = &self.segments[i];
        for_each_batch(seg, |header, bytes| {
            let aborted = is_aborted(header);
            let filtered = if header.is_control() {
                Filtered::Unchanged
            } else {
                let keep = |r: &crate::record::RawRecord| match &r.key {
                    _ if aborted => false,
                    None => false,
                    Some(k) => {
                        latest.get(k) == Some(&r.offset(header))
                            && !(r.value_is_null && r.timestamp(header) < tombstone_limit)
                    }
                };
                let newest_of_producer = header.producer_id >= 0
                    && producer_last.get(&header.producer_id) == Some(&header.last_offset());
                filter_batch(header, &bytes, keep, newest_of_producer)
                    .map_err(|r| corrupt(seg, r))?
            };
            match filtered {
                Filtered::Unchanged => out.write_all(&bytes).at(&cleaned_path),
                Filtered::Rewritten { batch, removed: n } => {
                    removed += n;
                    out.write_all(&batch).at(&cleaned_path)
                }
                Filtered::Dropped { removed: n } => {
                    removed += n;
                    Ok(())
                }
            }
        })?;
        let file: File = out
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&cleaned_path)?;
        if removed == 0 {
            drop(file);
            fs::remove_file(&cleaned_path).at(&cleaned_path)?;
            return Ok(0);
        }
        file.sync_all().at(&cleaned_path)?;
        drop(file);
        fs::rename(&cleaned_path, &swap_path).at(&swap_path)?;
        sync_dir(&self.dir)?;

        let old = self.segments.remove(i);
        let swapped = self.swap_in(old, base);
        let reopened = match swapped {
            Ok(seg) => seg,
            Err(e) => {
                // Keep the in-memory log whole with whatever is on disk; the next open finishes a pending swap.
                if let Ok((seg, _)) = Segment::open_recovering(&self.dir, base, &self.config, 0) {
                    self.segments.insert(i, seg);
                }
                return Err(e);
            }
        };
        self.segments.insert(i, reopened);
        Ok(removed)
    }

    /// Steps 3-5 of the module doc.
    fn swap_in(&self, old: Segment, base: i64) -> Result<Segment, LogError> {
        old.delete_indexes()?;
        let log_path = segment_file(&self.dir, base, LOG_SUFFIX);
        let swap_path = self.dir.join(format!("{base:020}{SWAP_SUFFIX}"));
        fs::rename(&swap_path, &log_path).at(&log_path)?;
        sync_dir(&self.dir)?;
        let (seg, _) = Segment::open_recovering(&self.dir, base, &self.config, 0)?;
        Ok(seg)
    }
}
