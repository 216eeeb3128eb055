//! Opening, closing and deleting a partition log, including crash recovery.
//!
//! Open, in order:
//! 1. Leftovers of interrupted writes: `*.tmp` (checkpoint being replaced) and `*.log.cleaned` (compaction output
//!    not yet complete) are deleted, the old files being intact; `<base>.log.swap` (complete, fsynced
//!    compaction output) replaces `<base>.log`, and that segment's indexes are deleted so they get rebuilt.
//!    Index files without a `.log` are deleted.
//! 2. With the `.clean-shutdown` marker every segment is trusted (indexes loaded and sanity-checked, only the
//!    unindexed tail verified). Without it, segments from the one holding the recovery point onwards are
//!    scanned batch by batch; the first torn or invalid batch truncates its file and every later segment is
//!    deleted. Segments before the recovery point are trusted as above.
//! 3. Producer state comes from the snapshot if it was written for exactly this log end offset, else from a
//!    replay of all batch headers. A segment whose aborted-transaction index is missing or damaged (see
//!    txn_index.rs) is filled by that replay too, which then runs whatever the snapshot says. The leader epoch
//!    cache comes from `leader-epoch-checkpoint`, else (missing or unparsable) from the partitionLeaderEpoch of
//!    all batch headers, in the same replay when both are needed; entries past the log end offset (data the
//!    crash lost) and below the log start offset are dropped, and the file is rewritten if that changed it. The
//!    snapshot and the marker are then deleted, so a crash from here on is seen as unclean by the next open.
//! 4. `high-watermark` is read as it is; [`Log::persisted_high_watermark`] caps it to the recovered log.

use std::fs;
use std::path::Path;

use super::Log;
use crate::batch::BatchHeader;
use crate::checkpoint::{
    read_leader_epochs, read_offset, remove_if_exists, sync_dir, write_leader_epochs, write_offset,
    CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
    TMP_SUFFIX,
};
use crate::config::LogConfig;
use crate::error::{IoContext, LogError};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{ProducerStateManager, SNAPSHOT_FILE};
use crate::scan::{BatchScanner, ScanMode, Step};
use crate::segment::{
    parse_segment_name, segment_file, Segment, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use crate::txn::AbortedTxn;
use crate::txn_index::TXN_INDEX_SUFFIX;

pub(super) const CLEANED_SUFFIX: &str = ".log.cleaned";
pub(super) const SWAP_SUFFIX: &str = ".log.swap";

impl Log {
    /// Opens (or creates) the log in `dir`. Without a clean-shutdown marker, runs recovery (see module doc).
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        fs::create_dir_all(dir).at(dir)?;
        let bases = clean_leftovers(dir)?;
        // A directory with no segments is a new partition: nothing to recover, whatever the marker says.
        let clean = bases.is_empty() || read_offset(dir, CLEAN_SHUTDOWN_FILE)?.is_some();
        let recovery_point = if clean {
            None
        } else {
            read_offset(dir, RECOVERY_POINT_FILE)?
        };
        let checkpointed_start = read_offset(dir, LOG_START_OFFSET_FILE)?;

        // Index of the first segment to scan: the one holding the recovery point (all of them without one).
        let recover_from = match (clean, recovery_point) {
            (true, _) => bases.len(),
            (false, None) => 0,
            (false, Some(rp)) => bases.partition_point(|&b| b <= rp).saturating_sub(1),
        };
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut dropping = false;
        for (i, &base) in bases.iter().enumerate() {
            if dropping {
                tracing::warn!(dir = %dir.display(), base_offset = base, "deleting segment after a truncated one");
                for suffix in [
                    LOG_SUFFIX,
                    INDEX_SUFFIX,
                    TIME_INDEX_SUFFIX,
                    TXN_INDEX_SUFFIX,
                ] {
                    remove_if_exists(&segment_file(dir, base, suffix))?;
                }
                continue;
            }
            if i >= recover_from {
                let (seg, truncated) = Segment::open_recovering(dir, base, &config, now_ms)?;
                dropping = truncated > 0;
                segments.push(seg);
            } else {
                let (seg, rebuilt) = Segment::open_trusted(dir, base, &config, now_ms)?;
                if rebuilt {
                    tracing::warn!(dir = %dir.display(), base_offset = base, "rebuilt indexes of segment");
                }
                segments.push(seg);
            }
        }
        if segments.is_empty() {
            let base = checkpointed_start.unwrap_or(0).max(0);
            segments.push(Segment::create(dir, base, &config, now_ms)?);
        }
        let first_base = segments[0].base_offset();
        let end = segments[segments.len() - 1].next_offset();
        let log_start_offset = checkpointed_start
            .unwrap_or(first_base)
            .max(first_base)
            .min(end);

        let snapshot = ProducerStateManager::read_snapshot(dir, end)?;
        let checkpointed_epochs = read_leader_epochs(dir)?;
        let rebuild_epochs = checkpointed_epochs.is_none() && segments.iter().any(|s| s.size() > 0);
        let mut epochs =
            LeaderEpochCache::from_entries(checkpointed_epochs.clone().unwrap_or_default());
        let incomplete_txn_indexes = segments.iter().any(|s| !s.txn_index().is_complete());
        let producers = match snapshot {
            Some(state) if !rebuild_epochs && !incomplete_txn_indexes => state,
            snapshot => {
                let mut replayed = ProducerStateManager::default();
                let mut aborted = Vec::new();
                replay_headers(&segments, |segment, h, marker| {
                    if let Some(txn) = replayed.update(h, marker) {
                        aborted.push((segment, txn));
                    }
                    if rebuild_epochs {
                        epochs.assign(h.partition_leader_epoch, h.base_offset);
                    }
                })?;
                if incomplete_txn_indexes {
                    tracing::info!(dir = %dir.display(), aborted = aborted.len(), "rebuilt aborted-transaction indexes from the log");
                }
                fill_txn_indexes(&mut segments, aborted)?;
                if rebuild_epochs {
                    tracing::warn!(dir = %dir.display(), epochs = epochs.entries().len(), "rebuilt leader epoch cache from batch headers");
                }
                snapshot.unwrap_or(replayed)
            }
        };
        // An epoch starting exactly at the log end offset has no data but is kept: it is how the latest epoch
        // survives DeleteRecords or retention emptying the log, and it stays true after a crash that lost the
        // epoch's first batch (the epoch began there).
        epochs.truncate_from_end(end + 1);
        epochs.truncate_from_start(log_start_offset);
        if checkpointed_epochs.as_deref() != Some(epochs.entries()) {
            write_leader_epochs(dir, epochs.entries())?;
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            recovery_point: end,
            producers,
            epochs,
            persisted_high_watermark: read_offset(dir, HIGH_WATERMARK_FILE)?,
            recovered_on_open: !clean,
            dir_dirty: true,
            persisted_recovery_point: end,
            truncations: 0,
            retired: Vec::new(),
            first_dirty_offset: 0,
            last_checkpoint: std::time::Instant::now(),
        };
        remove_if_exists(&dir.join(SNAPSHOT_FILE))?;
        remove_if_exists(&dir.join(CLEAN_SHUTDOWN_FILE))?;
        // Recovered segments were fsynced by their recovery and trusted ones were already durable, so the
        // whole log is the new recovery point.
        write_offset(dir, RECOVERY_POINT_FILE, end)?;
        if checkpointed_start != Some(log_start_offset) {
            write_offset(dir, LOG_START_OFFSET_FILE, log_start_offset)?;
        }
        log.flush()?;
        if !clean {
            tracing::info!(dir = %dir.display(), log_end_offset = end, "recovered log after unclean shutdown");
        }
        Ok(log)
    }

    /// Clean shutdown: flush, record the final time-index entry, save producer state, then write the marker
    /// that lets the next open skip recovery.
    pub fn close(mut self) -> Result<(), LogError> {
        self.active_mut().on_become_inactive()?;
        self.flush()?;
        let end = self.log_end_offset();
        self.producers.write_snapshot(&self.dir, end)?;
        write_offset(&self.dir, CLEAN_SHUTDOWN_FILE, end)
    }

    /// Deletes the whole partition directory (topic deletion).
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).at(&dir)
    }
}

/// Rebuilds producer state by replaying every batch header in offset order (bodies are read for control batches
/// only); the aborted-transaction indexes get any entry they lack.
pub(super) fn rebuild_producer_state(
    segments: &mut [Segment],
) -> Result<ProducerStateManager, LogError> {
    let mut state = ProducerStateManager::default();
    let mut aborted = Vec::new();
    replay_headers(segments, |segment, h, marker| {
        if let Some(txn) = state.update(h, marker) {
            aborted.push((segment, txn));
        }
    })?;
    fill_txn_indexes(segments, aborted)?;
    Ok(state)
}

/// Adds each replayed abort (by the index of the segment holding its marker) to that segment's index, where it is
/// not already, and writes out the indexes that were being rebuilt.
fn fill_txn_indexes(
    segments: &mut [Segment],
    aborted: Vec<(usize, AbortedTxn)>,
) -> Result<(), LogError> {
    for (segment, txn) in aborted {
        segments[segment].txn_index_mut().append(txn)?;
    }
    for segment in segments {
        segment.txn_index_mut().complete()?;
    }
    Ok(())
}

/// What a control batch (whole, header included) says; `None` for a data batch, or a control batch that does not
/// parse (logged: the producer state then misses that transaction's end).
pub(super) fn marker_of(header: &BatchHeader, batch: &bytes::Bytes) -> Option<crate::txn::Marker> {
    if !header.is_control() {
        return None;
    }
    match crate::txn::parse_marker(header, batch) {
        Ok(marker) => Some(marker),
        Err(reason) => {
            tracing::warn!(offset = header.base_offset, %reason, "control batch does not parse");
            None
        }
    }
}

/// Calls `f` with the index of its segment, every batch header in offset order, and what each control batch says
/// (bodies are read for control batches only).
fn replay_headers(
    segments: &[Segment],
    mut f: impl FnMut(usize, &BatchHeader, Option<crate::txn::Marker>),
) -> Result<(), LogError> {
    use std::os::unix::fs::FileExt;
    for (i, seg) in segments.iter().enumerate() {
        let (file, path) = seg.file();
        let mut scanner = BatchScanner::new(file, path, 0, seg.size(), ScanMode::Headers);
        loop {
            match scanner.next_batch()? {
                Step::Batch {
                    header, position, ..
                } if header.is_control() => {
                    let mut batch = vec![0u8; header.total_size()];
                    file.read_exact_at(&mut batch, position).at(path)?;
                    f(i, &header, marker_of(&header, &bytes::Bytes::from(batch)));
                }
                Step::Batch { header, .. } => f(i, &header, None),
                Step::End => break,
                Step::Invalid { position, reason } => {
                    return Err(LogError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("at byte {position}: {reason}"),
                    })
                }
            }
        }
    }
    Ok(())
}

/// Step 1 of open (see module doc). Returns the base offsets of the segments present, ascending.
fn clean_leftovers(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    for name in &names {
        if name.ends_with(TMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(dir = %dir.display(), file = %name, "deleting leftover of an interrupted write");
            remove_if_exists(&dir.join(name))?;
        } else if name.ends_with(DELETED_SUFFIX) {
            // A segment deleted with a delay before the restart: no reader can still have it open.
            remove_if_exists(&dir.join(name))?;
        } else if let Some(base) = parse_segment_name(name, SWAP_SUFFIX) {
            tracing::info!(dir = %dir.display(), base_offset = base, "completing interrupted compaction swap");
            remove_if_exists(&segment_file(dir, base, INDEX_SUFFIX))?;
            remove_if_exists(&segment_file(dir, base, TIME_INDEX_SUFFIX))?;
            let log = segment_file(dir, base, LOG_SUFFIX);
            fs::rename(dir.join(name), &log).at(&log)?;
            sync_dir(dir)?;
        }
    }
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(|n| parse_segment_name(n, LOG_SUFFIX))
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    for name in &names {
        let orphan = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX]
            .iter()
            .filter_map(|s| parse_segment_name(name, s))
            .any(|base| bases.binary_search(&base).is_err());
        if orphan {
            remove_if_exists(&dir.join(name))?;
        }
    }
    Ok(bases)
}
