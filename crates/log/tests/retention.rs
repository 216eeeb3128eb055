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
