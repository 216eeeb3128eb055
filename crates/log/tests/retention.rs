//! Retention by time and size (whole closed segments only) and DeleteRecords, persisted across reopen.

mod common;

use common::*;
use strom_log::{CleanupPolicy, Log, LogConfig, LogError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        retention_ms: 1_000,
        ..LogConfig::default()
    }
}

#[test]
fn time_retention_deletes_old_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for i in 0..10 {
        log.append(simple(2, 1_000 + i * 100), opts(0)).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments >= 4);
    // now - retention = 1_450: segments whose newest record is older go; stop at the first young one.
    let deleted = log.enforce_retention(2_450).unwrap();
    assert!(deleted >= 1 && deleted < segments);
    let start = log.log_start_offset();
    assert!(start > 0);
    // Batch k (offsets 2k, 2k+1) has timestamps 1_000 + 100k and +1: only batches 0..=4 are older than 1_450,
    // and a segment goes only if all of it is.
    assert!(start <= 10, "deleted only old data: start {start}");
    // Everything is old, but the active segment stays.
    log.enforce_retention(100_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 20);
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.log_start_offset(), start.max(log.log_start_offset()));
}

#[test]
fn size_retention_deletes_oldest_segments_while_staying_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: -1,
        retention_bytes: 700,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for i in 0..20 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    assert!(log.size_bytes() > 700);
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    // Kafka's rule: delete a segment only if the log stays at or above retention.bytes without it.
    assert!(log.size_bytes() >= 700, "size {}", log.size_bytes());
    assert_eq!(log.enforce_retention(0).unwrap(), 0);
    assert_eq!(decode(&read_all(&log)).last().unwrap().0, 39);
}

#[test]
fn retention_needs_the_delete_policy_but_time_roll_always_happens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        segment_ms: 10,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    log.append(simple(2, 0), opts(0)).unwrap();
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
    assert_eq!(
        log.segment_count(),
        2,
        "segment.ms rolled the active segment"
    );
}

#[test]
fn delete_records_before_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for i in 0..10 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    let segments = log.segment_count();
    assert_eq!(log.delete_records_before(7).unwrap(), 7);
    assert!(log.segment_count() <= segments);
    assert_eq!(
        log.delete_records_before(3).unwrap(),
        7,
        "never moves backwards"
    );
    assert!(matches!(
        log.delete_records_before(21),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let r = log.read(7, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(
        stored_batches(&r.records)[0].0.base_offset,
        6,
        "the batch holding 7"
    );
    assert!(matches!(
        log.read(6, 1, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Unclean reopen keeps it too.
    drop(log);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), 7);
    // Up to the end: every segment goes, appends continue at the same offsets.
    assert_eq!(log.delete_records_before(20).unwrap(), 20);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        appended(log.append(simple(1, 0), opts(0)).unwrap()),
        (20, 20)
    );
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 21));
}

#[test]
fn truncate_to_removes_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for i in 0..10 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    log.truncate_to(9).unwrap();
    assert_eq!(log.log_end_offset(), 8, "the batch holding 9 starts at 8");
    assert_eq!(appended(log.append(simple(1, 0), opts(0)).unwrap()), (8, 8));
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(decode(&read_all(&log)).len(), 9);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(appended(log.append(simple(1, 0), opts(0)).unwrap()), (0, 0));
}

/// file.delete.delay.ms: a segment deleted by retention is renamed `*.deleted` and stays until the delay has
/// passed at a later cleanup pass; a restart removes what is left at once; with 0 it goes at once.
#[test]
fn retention_renames_segments_deleted_and_removes_them_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        file_delete_delay_ms: 60_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..10 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    let deleted = log.enforce_retention(100_000).unwrap();
    assert!(deleted > 0);
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let retired = log.retired_files();
    assert_eq!(
        retired.len(),
        4 * deleted,
        "a .log, .index, .timeindex and .txnindex each"
    );
    for path in &retired {
        assert!(path.exists(), "{path:?} removed before its delay");
        assert!(path.to_str().unwrap().ends_with(".deleted"));
    }
    // Not yet: the delay has not passed.
    log.enforce_retention(100_000).unwrap();
    assert!(retired.iter().all(|p| p.exists()));
    // The log reads on as before.
    assert_eq!(decode(&read_all(&log)).last().unwrap().0, 19);

    // A delay of 0 (as if it had passed): the next pass removes them.
    log.set_config(LogConfig {
        file_delete_delay_ms: 0,
        ..cfg.clone()
    });
    log.enforce_retention(100_000).unwrap();
    assert!(
        retired.iter().all(|p| !p.exists()),
        "{:?}",
        names(dir.path())
    );
    assert!(log.retired_files().is_empty());

    // Deleted with a delay, then the broker restarts: open removes the leftovers.
    log.set_config(cfg.clone());
    for i in 0..10 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    assert!(log.enforce_retention(100_000).unwrap() > 0);
    assert!(!log.retired_files().is_empty());
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg, 0).unwrap();
    assert!(
        names(dir.path()).iter().all(|n| !n.ends_with(".deleted")),
        "{:?}",
        names(dir.path())
    );
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn with_no_delay_retention_deletes_the_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        file_delete_delay_ms: 0,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for i in 0..10 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    assert!(log.enforce_retention(100_000).unwrap() > 0);
    assert!(log.retired_files().is_empty());
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".deleted")
        })
        .count();
    assert_eq!(leftovers, 0);
}

/// segment.jitter.ms: each log's segment rolls at segment.ms less its own share of the jitter (below the jitter),
/// so logs created together do not roll together.
#[test]
fn segment_jitter_spreads_time_rolls_below_segment_ms() {
    const SEGMENT_MS: i64 = 1_000;
    const JITTER_MS: i64 = 900;
    let cfg = LogConfig {
        segment_ms: SEGMENT_MS,
        segment_jitter_ms: JITTER_MS,
        segment_bytes: 1 << 20,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: false,
        },
        ..config()
    };
    let mut rolled_at = Vec::new();
    for _ in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
        log.append(simple(1, 0), opts(0)).unwrap();
        // The first time (in 10 ms steps) at which a cleanup pass rolls the segment.
        let at = (0..=SEGMENT_MS / 10 + 1)
            .map(|step| step * 10)
            .find(|&now| {
                log.enforce_retention(now).unwrap();
                log.segment_count() == 2
            })
            .expect("rolled by segment.ms");
        rolled_at.push(at);
    }
    assert!(
        rolled_at
            .iter()
            .all(|at| *at > SEGMENT_MS - JITTER_MS && *at <= SEGMENT_MS + 10),
        "{rolled_at:?}"
    );
    rolled_at.sort_unstable();
    rolled_at.dedup();
    assert!(
        rolled_at.len() > 1,
        "every log rolled at once: {rolled_at:?}"
    );
}

/// preallocate: a new segment has segment.bytes of disk reserved while its file stays empty, and hands the rest
/// back when it rolls.
#[test]
fn preallocate_reserves_the_segment_and_releases_the_rest_at_the_roll() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 4 << 20,
        preallocate: true,
        segment_ms: 10,
        retention_ms: -1,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    let first = dir.path().join(format!("{:020}.log", 0));
    let meta = std::fs::metadata(&first).unwrap();
    assert_eq!(meta.len(), 0, "the file itself does not grow");
    assert!(
        meta.blocks() * 512 >= 4 << 20,
        "{} bytes reserved",
        meta.blocks() * 512
    );
    log.append(simple(2, 0), opts(0)).unwrap();
    // segment.ms has passed: the cleanup pass rolls the segment.
    log.enforce_retention(1_000).unwrap();
    assert_eq!(log.segment_count(), 2);
    let meta = std::fs::metadata(&first).unwrap();
    assert!(meta.len() > 0);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} bytes still reserved after the roll",
        meta.blocks() * 512
    );
}
