//! Replication's side of the log: a follower copies its leader's batches byte for byte, the leader epoch cache
//! (kept on append, persisted, rebuilt, following truncation and retention) answers OffsetForLeaderEpoch, and
//! the high watermark is persisted.

mod common;

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTs,
};
use strom_log::{
    AppendError, AppendOptions, AppendOutcome, Compression, EpochEntry, Log, LogConfig,
    ReplicatedAppend, TimestampType,
};

const EPOCH_FILE: &str = "leader-epoch-checkpoint";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

fn in_epoch(leader_epoch: i32) -> AppendOptions {
    AppendOptions {
        leader_epoch,
        now_ms: 0,
    }
}

fn entry(epoch: i32, start_offset: i64) -> EpochEntry {
    EpochEntry {
        epoch,
        start_offset,
    }
}

/// `batch` as a leader would have stored it at `base_offset` in `epoch`. Both fields are outside the CRC.
fn stored_at(batch: &Bytes, base_offset: i64, epoch: i32) -> Bytes {
    let mut b = batch.to_vec();
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
    Bytes::from(b)
}

fn concat(batches: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for b in batches {
        out.extend_from_slice(b);
    }
    out.freeze()
}

/// A transaction commit marker as a transaction coordinator would have it written: one control record.
fn commit_marker(pid: i64, producer_epoch: i16) -> Bytes {
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: pid,
        producer_epoch,
        timestamp_type: KTs::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 5_000,
        // ControlRecordType COMMIT (version 0, type 1) and its value (version 0, coordinator epoch 0).
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: KCompression::None,
        },
    )
    .expect("encode control batch");
    buf.freeze()
}

/// Appends to `leader` batches in epochs 0, 0, 2, 2, 5 (offsets 0-1, 2-3, 4-5, 6-7, 8-9).
fn leader_with_epochs(dir: &Path) -> Log {
    let mut log = Log::open(dir, config(), 0).unwrap();
    for epoch in [0, 0, 2, 2, 5] {
        log.append(simple(2, 1_000), in_epoch(epoch)).unwrap();
    }
    log
}

/// Fetches from `leader` into `follower` until it caught up, `max_bytes` at a time.
fn replicate(leader: &Log, follower: &mut Log, max_bytes: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = leader
            .read(follower.log_end_offset(), max_bytes, i64::MAX, true)
            .unwrap();
        let appended = follower
            .append_replicated(fetched.records, 0)
            .unwrap()
            .expect("a whole batch");
        assert_eq!(appended.last_offset + 1, follower.log_end_offset());
    }
}

#[test]
fn follower_copies_the_leader_byte_for_byte() {
    let leader_dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..config()
    };
    let mut leader = Log::open(leader_dir.path(), cfg, 0).unwrap();
    for i in 0..12i64 {
        let recs = [rec(&format!("k{i}"), "value", 100 + i), rec("x", "y", 100)];
        let batch = encode(
            &recs,
            ALL_CODECS[i as usize % 5],
            Some((7, 0, i as i32 * 2)),
        );
        leader
            .append(
                batch,
                AppendOptions {
                    leader_epoch: i as i32 / 4,
                    now_ms: 2_000 + i,
                },
            )
            .unwrap();
    }
    let leader_bytes = read_all(&leader);

    let follower_dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(follower_dir.path(), config(), 0).unwrap();
    replicate(&leader, &mut follower, 300);
    assert_eq!(read_all(&follower), leader_bytes);
    assert_eq!(follower.log_end_offset(), 24);
    assert!(follower.segment_count() > 1, "the follower rolled segments");
    assert_eq!(
        follower.leader_epoch_entries(),
        [entry(0, 0), entry(1, 8), entry(2, 16)]
    );
    assert_eq!(
        follower.leader_epoch_entries(),
        leader.leader_epoch_entries()
    );

    // Producer state was taken from the replicated headers: after a failover the follower, now leader, knows the
    // producer's sequence and answers its retry as a duplicate.
    let retry = encode(
        &[rec("k11", "value", 111), rec("x", "y", 100)],
        Compression::None,
        Some((7, 0, 22)),
    );
    assert!(matches!(
        follower.append(retry, in_epoch(3)).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: 22,
            last_offset: 23,
            ..
        }
    ));

    // A control batch, appended as it is.
    let marker = stored_at(&commit_marker(7, 0), 24, 3);
    assert_eq!(
        follower.append_replicated(marker.clone(), 0).unwrap(),
        Some(ReplicatedAppend {
            first_offset: 24,
            last_offset: 24,
            batches: 1
        })
    );
    let read = follower.read(24, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(read.records, marker);

    follower.close().unwrap();
    let follower = Log::open(follower_dir.path(), config(), 0).unwrap();
    assert_eq!(
        read_all(&follower).slice(..leader_bytes.len()),
        leader_bytes
    );
    assert_eq!(follower.latest_epoch(), Some(3));
}

#[test]
fn rejects_offsets_below_the_log_end_and_corrupt_batches() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = leader_with_epochs(leader_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), config(), 0).unwrap();
    replicate(&leader, &mut follower, 1 << 20);
    let before = read_all(&follower);

    let again = leader.read(8, 1 << 20, i64::MAX, true).unwrap().records;
    let err = follower.append_replicated(again, 0).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::UnexpectedAppendOffset {
                first_offset: 8,
                last_offset: 9,
                expected_at_least: 10
            }
        ),
        "{err}"
    );

    // Batches out of order among themselves.
    let b = simple(2, 1_000);
    let overlapping = concat(&[stored_at(&b, 10, 5), stored_at(&b, 11, 5)]);
    assert!(matches!(
        follower.append_replicated(overlapping, 0),
        Err(AppendError::UnexpectedAppendOffset {
            first_offset: 11,
            expected_at_least: 12,
            ..
        })
    ));

    let mut corrupt = stored_at(&b, 10, 5).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let corrupt = concat(&[stored_at(&b, 10, 5), Bytes::from(corrupt)]);
    assert!(matches!(
        follower.append_replicated(corrupt, 0),
        Err(AppendError::Corrupt(_))
    ));

    assert_eq!(
        read_all(&follower),
        before,
        "rejected appends changed nothing"
    );
    assert_eq!(follower.log_end_offset(), 10);
    assert_eq!(follower.latest_epoch(), Some(5));
}

#[test]
fn offset_gaps_from_a_compacted_leader_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), config(), 0).unwrap();
    let b = simple(2, 1_000);
    let fetched = concat(&[
        stored_at(&b, 3, 0),
        stored_at(&b, 10, 0),
        stored_at(&b, 40, 1),
    ]);
    assert_eq!(
        follower.append_replicated(fetched, 0).unwrap(),
        Some(ReplicatedAppend {
            first_offset: 3,
            last_offset: 41,
            batches: 3
        })
    );
    assert_eq!(follower.log_end_offset(), 42);
    assert_eq!(follower.leader_epoch_entries(), [entry(0, 3), entry(1, 40)]);
    // An offset inside a gap reads the next batch, as on the leader.
    let read = follower.read(20, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(stored_batches(&read.records)[0].0.base_offset, 40);
    // The next batches may follow with another gap, from a later fetch.
    let next = concat(&[stored_at(&b, 50, 1), stored_at(&b, 52, 1)]);
    follower.append_replicated(next, 0).unwrap();
    assert_eq!(follower.log_end_offset(), 54);
    let offsets = |log: &Log| -> Vec<i64> {
        stored_batches(&read_all(log))
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect()
    };
    assert_eq!(offsets(&follower), [3, 10, 40, 50, 52]);

    // Both a clean and an unclean open keep the gaps.
    follower.close().unwrap();
    let follower = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(follower.log_end_offset(), 54);
    drop(follower);
    let follower = Log::open(dir.path(), config(), 0).unwrap();
    assert!(follower.recovered_on_open());
    assert_eq!(follower.log_end_offset(), 54);
    assert_eq!(offsets(&follower), [3, 10, 40, 50, 52]);
}

#[test]
fn a_trailing_partial_batch_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), config(), 0).unwrap();
    let b = simple(2, 1_000);
    let whole = stored_at(&b, 0, 0);
    let next = stored_at(&b, 2, 0);
    for cut in [1, 16, 30, 61, next.len() - 1] {
        let fetched = concat(&[whole.clone(), next.slice(..cut)]);
        let mut log = Log::open(&dir.path().join(format!("cut-{cut}")), config(), 0).unwrap();
        assert_eq!(
            log.append_replicated(fetched, 0).unwrap(),
            Some(ReplicatedAppend {
                first_offset: 0,
                last_offset: 1,
                batches: 1
            }),
            "cut at {cut}"
        );
        assert_eq!(read_all(&log), whole);
    }
    assert_eq!(
        follower.append_replicated(next.slice(..30), 0).unwrap(),
        None
    );
    assert_eq!(follower.append_replicated(Bytes::new(), 0).unwrap(), None);
    assert_eq!(follower.log_end_offset(), 0);
    assert_eq!(follower.latest_epoch(), None);
}

#[test]
fn end_offset_for_epoch_answers_offset_for_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_with_epochs(dir.path());
    assert_eq!(
        log.leader_epoch_entries(),
        [entry(0, 0), entry(2, 4), entry(5, 8)]
    );
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    assert_eq!(log.end_offset_for_epoch(1), (0, 4));
    assert_eq!(log.end_offset_for_epoch(2), (2, 8));
    assert_eq!(log.end_offset_for_epoch(4), (2, 8));
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    assert_eq!(log.end_offset_for_epoch(6), (5, 10));

    // A zombie leader's older epoch is still appended, but not recorded.
    log.append(simple(1, 1_000), in_epoch(3)).unwrap();
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), (5, 11));

    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Log::open(empty_dir.path(), config(), 0).unwrap();
    assert_eq!(empty.end_offset_for_epoch(0), (-1, -1));
    assert_eq!(empty.latest_epoch(), None);
}

#[test]
fn the_epoch_checkpoint_is_written_in_kafkas_format_before_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = leader_with_epochs(dir.path());
    let text = fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap();
    assert_eq!(text, "0\n3\n0 0\n2 4\n5 8\n");
    drop(log);
}

#[test]
fn the_epoch_cache_survives_clean_and_unclean_opens() {
    let dir = tempfile::tempdir().unwrap();
    let log = leader_with_epochs(dir.path());
    let epochs = log.leader_epoch_entries();
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(!log.recovered_on_open());
    assert_eq!(log.leader_epoch_entries(), epochs);
    drop(log);
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(log.recovered_on_open());
    assert_eq!(log.leader_epoch_entries(), epochs);
}

#[test]
fn an_unclean_open_drops_epochs_whose_data_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for epoch in [0, 1, 4, 5] {
        log.append(simple(2, 1_000), in_epoch(epoch)).unwrap();
    }
    assert_eq!(log.segment_count(), 1);
    let sizes: Vec<u64> = stored_batches(&read_all(&log))
        .iter()
        .map(|(h, _)| h.total_size() as u64)
        .collect();
    drop(log);
    // The crash tore the third batch and lost the fourth.
    let segment = dir.path().join(format!("{:020}.log", 0));
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(sizes[0] + sizes[1] + 5)
        .unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    // Epoch 5 started past the end and is gone. Epoch 4 began at the new end, which stays true: it is kept, as
    // an epoch a leader recorded before writing anything would be.
    assert_eq!(
        log.leader_epoch_entries(),
        [entry(0, 0), entry(1, 2), entry(4, 4)]
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n3\n0 0\n1 2\n4 4\n"
    );
    assert_eq!(log.end_offset_for_epoch(4), (4, 4));
}

#[test]
fn a_missing_or_damaged_epoch_checkpoint_is_rebuilt_from_the_batches() {
    for damage in ["delete", "garbage", "wrong count"] {
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = leader_with_epochs(dir.path());
            // An older epoch after a newer one is not an entry, in the cache or in the rebuild.
            log.append(simple(1, 1_000), in_epoch(3)).unwrap();
            let epochs = log.leader_epoch_entries();
            if clean {
                log.close().unwrap();
            } else {
                drop(log);
            }
            let path = dir.path().join(EPOCH_FILE);
            match damage {
                "delete" => fs::remove_file(&path).unwrap(),
                "garbage" => fs::write(&path, b"\xff\xfe not a checkpoint").unwrap(),
                _ => fs::write(&path, "0\n4\n0 0\n").unwrap(),
            }
            let log = Log::open(dir.path(), config(), 0).unwrap();
            assert_eq!(
                log.leader_epoch_entries(),
                epochs,
                "{damage}, clean {clean}"
            );
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                "0\n3\n0 0\n2 4\n5 8\n",
                "{damage}, clean {clean}"
            );
        }
    }
}

#[test]
fn truncate_to_drops_epochs_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_with_epochs(dir.path());
    log.truncate_to(9).unwrap();
    // Truncation is per batch: the batch 8-9 goes, and epoch 5 with it.
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.leader_epoch_entries(), [entry(0, 0), entry(2, 4)]);
    assert_eq!(log.end_offset_for_epoch(5), (2, 8));
    // The follower, now a leader in epoch 6, writes on.
    log.append(simple(2, 1_000), in_epoch(6)).unwrap();
    assert_eq!(
        log.leader_epoch_entries(),
        [entry(0, 0), entry(2, 4), entry(6, 8)]
    );
    drop(log);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(
        log.leader_epoch_entries(),
        [entry(0, 0), entry(2, 4), entry(6, 8)]
    );
    log.truncate_to(0).unwrap();
    assert_eq!(log.leader_epoch_entries(), []);
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), []);
}

#[test]
fn moving_the_log_start_moves_the_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_with_epochs(dir.path());
    log.delete_records_before(3).unwrap();
    assert_eq!(
        log.leader_epoch_entries(),
        [entry(0, 3), entry(2, 4), entry(5, 8)]
    );
    log.delete_records_before(6).unwrap();
    assert_eq!(log.leader_epoch_entries(), [entry(2, 6), entry(5, 8)]);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    // Everything deleted: the latest epoch stays, at the new log start offset.
    log.delete_records_before(10).unwrap();
    assert_eq!(log.leader_epoch_entries(), [entry(5, 10)]);
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    drop(log);
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [entry(5, 10)]);
}

#[test]
fn retention_moves_the_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 300,
        retention_ms: 1_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..10i64 {
        log.append(simple(2, 1_000 + i * 100), in_epoch(i as i32))
            .unwrap();
    }
    log.enforce_retention(100_000).unwrap();
    let start = log.log_start_offset();
    assert!(start > 0);
    let epochs = log.leader_epoch_entries();
    assert_eq!(epochs[0].start_offset, start);
    assert_eq!(epochs.last(), Some(&entry(9, 18)));
    assert!(epochs.iter().all(|e| e.start_offset >= start));
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), epochs);
}

#[test]
fn reset_to_restarts_an_empty_log_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_with_epochs(dir.path());
    log.write_high_watermark(10).unwrap();
    log.reset_to(500).unwrap();
    assert_eq!(log.log_start_offset(), 500);
    assert_eq!(log.log_end_offset(), 500);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.leader_epoch_entries(), []);
    assert_eq!(log.persisted_high_watermark(), Some(500));
    assert!(log
        .read(500, 100, i64::MAX, true)
        .unwrap()
        .records
        .is_empty());
    assert!(log.reset_to(-1).is_err());

    // The follower then copies from the leader's log start offset.
    let b = simple(2, 1_000);
    log.append_replicated(stored_at(&b, 500, 7), 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [entry(7, 500)]);
    drop(log);
    for clean in [false, true] {
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 502));
        assert_eq!(log.leader_epoch_entries(), [entry(7, 500)]);
        if clean {
            log.close().unwrap();
        }
    }
}

#[test]
fn high_watermark_is_persisted_and_capped_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_with_epochs(dir.path());
    assert_eq!(log.persisted_high_watermark(), None);
    log.write_high_watermark(6).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("high-watermark")).unwrap(),
        "0\n6\n"
    );
    // Unchanged values are not rewritten.
    fs::remove_file(dir.path().join("high-watermark")).unwrap();
    log.write_high_watermark(6).unwrap();
    assert!(!dir.path().join("high-watermark").exists());
    log.write_high_watermark(10).unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.persisted_high_watermark(), Some(10));
    log.truncate_to(4).unwrap();
    assert_eq!(log.persisted_high_watermark(), Some(4));
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.persisted_high_watermark(), Some(4));
    log.delete_records_before(4).unwrap();
    log.append(simple(2, 1_000), in_epoch(6)).unwrap();
    log.write_high_watermark(2).unwrap();
    assert_eq!(
        log.persisted_high_watermark(),
        Some(4),
        "not below the log start"
    );
}

#[test]
fn an_unknown_leader_epoch_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(simple(1, 1_000), in_epoch(-1)).unwrap();
    assert_eq!(log.latest_epoch(), None);
    log.append(simple(1, 1_000), in_epoch(0)).unwrap();
    assert_eq!(log.leader_epoch_entries(), [entry(0, 1)]);
}

#[test]
fn gaps_wider_than_a_segment_can_index_start_new_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), config(), 0).unwrap();
    let b = simple(2, 1_000);
    let far = 3_000_000_000i64;
    let beyond = far + i64::from(i32::MAX) + 10;
    let fetched = concat(&[stored_at(&b, far, 0), stored_at(&b, beyond, 0)]);
    // The empty segment at 0 cannot index `far`: a segment starts there, and the batch past its span waits.
    assert_eq!(
        follower.append_replicated(fetched, 0).unwrap(),
        Some(ReplicatedAppend {
            first_offset: far,
            last_offset: far + 1,
            batches: 1
        })
    );
    let rest = stored_at(&b, beyond, 0);
    follower.append_replicated(rest, 0).unwrap();
    assert_eq!(follower.log_end_offset(), beyond + 2);
    assert_eq!(follower.segment_count(), 3);
    let read = follower.read(far + 2, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(stored_batches(&read.records)[0].0.base_offset, beyond);
    drop(follower);
    let follower = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(follower.log_end_offset(), beyond + 2);
    assert_eq!(follower.leader_epoch_entries(), [entry(0, far)]);
}
