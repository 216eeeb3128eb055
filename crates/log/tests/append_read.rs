//! Produce and fetch paths: offsets, multi-segment reads, read limits, rolling, reopen, append rejections.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use strom_log::{
    AppendError, AppendOutcome, CleanupPolicy, Compression, Log, LogConfig, LogError, TimestampType,
};

/// Appends `count` batches of 3 records; returns what was sent.
fn fill(log: &mut Log, count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let b = simple(3, 1_000 + i as i64 * 10);
            log.append(b.clone(), opts(1_000)).unwrap();
            b
        })
        .collect()
}

#[test]
fn roundtrip_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let sent = fill(&mut log, 40);
    assert_eq!(log.log_end_offset(), 120);
    assert!(
        log.segment_count() > 3,
        "tiny segments roll: {}",
        log.segment_count()
    );
    let stored = read_all(&log);
    let batches = stored_batches(&stored);
    assert_eq!(batches.len(), 40);
    for (i, ((h, b), s)) in batches.iter().zip(&sent).enumerate() {
        assert_eq!(h.base_offset, i as i64 * 3);
        assert_eq!(h.partition_leader_epoch, 3);
        assert!(same_except_offset(b, s));
    }
    let records = decode(&stored);
    assert_eq!(records.len(), 120);
    assert!(records.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert_eq!(log.size_bytes(), stored.len() as u64);
}

#[test]
fn read_from_middle_offsets_returns_the_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    fill(&mut log, 30);
    for offset in 0..90 {
        let r = log.read(offset, 1, i64::MAX, true).unwrap();
        let batches = stored_batches(&r.records);
        assert_eq!(batches.len(), 1, "offset {offset}");
        assert_eq!(batches[0].0.base_offset, offset / 3 * 3);
        assert_eq!((r.log_start_offset, r.log_end_offset), (0, 90));
    }
}

#[test]
fn max_bytes_min_one_batch_and_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let sent = fill(&mut log, 5);
    let one = sent[0].len();
    // Room for two whole batches and a half: two come back.
    let r = log.read(0, one * 2 + one / 2, i64::MAX, false).unwrap();
    assert_eq!(stored_batches(&r.records).len(), 2);
    // Too small for one: empty unless min_one_batch.
    assert!(log
        .read(3, one - 1, i64::MAX, false)
        .unwrap()
        .records
        .is_empty());
    let r = log.read(3, 1, i64::MAX, true).unwrap();
    assert_eq!(stored_batches(&r.records).len(), 1);
    // The high watermark caps by base offset.
    let r = log.read(0, 1 << 20, 7, false).unwrap();
    let batches = stored_batches(&r.records);
    assert_eq!(batches.last().unwrap().0.base_offset, 6);
    assert!(log.read(7, 1 << 20, 6, true).unwrap().records.is_empty());
    // At the end: empty; beyond or before: out of range.
    assert!(log
        .read(15, 100, i64::MAX, true)
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        log.read(16, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange {
            offset: 16,
            log_start_offset: 0,
            log_end_offset: 15
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn rolls_by_size_and_by_time_and_lookups_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    log.append(simple(2, 10), opts(10_000)).unwrap();
    log.append(simple(2, 10), opts(10_500)).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(simple(2, 10), opts(11_001)).unwrap();
    assert_eq!(
        log.segment_count(),
        2,
        "segment.ms elapsed since the first append"
    );
    log.set_config(LogConfig {
        segment_bytes: 500,
        ..config.clone()
    });
    for _ in 0..20 {
        log.append(simple(2, 20), opts(11_002)).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 4);
    let before: Vec<Bytes> = (0..log.log_end_offset())
        .map(|o| log.read(o, 1, i64::MAX, true).unwrap().records)
        .collect();
    log.close().unwrap();
    let log = Log::open(dir.path(), config, 11_003).unwrap();
    assert!(!log.recovered_on_open());
    assert_eq!(log.segment_count(), segments);
    for (o, expected) in before.iter().enumerate() {
        assert_eq!(
            &log.read(o as i64, 1, i64::MAX, true).unwrap().records,
            expected
        );
    }
}

#[test]
fn full_index_rolls_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        segment_index_bytes: 24, // three offset entries, two time entries
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..12 {
        log.append(simple(1, i), opts(0)).unwrap();
    }
    assert!(log.segment_count() >= 3);
    assert_eq!(decode(&read_all(&log)).len(), 12);
}

#[test]
fn log_append_time_rewrites_max_timestamp_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let out = log.append(simple(2, 5), opts(77_000)).unwrap();
    assert!(matches!(
        out,
        AppendOutcome::Appended {
            log_append_time: 77_000,
            ..
        }
    ));
    let stored = read_all(&log);
    let (h, b) = &stored_batches(&stored)[0];
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, 77_000);
    assert!(strom_log::split_batches(b).is_ok(), "CRC was recomputed");
    assert_eq!(log.offset_for_timestamp(77_000).unwrap(), Some((0, 77_000)));
}

#[test]
fn rejected_appends_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    log.append(simple(1, 0), opts(0)).unwrap();
    let big = simple(20, 0);
    // A valid batch followed by an oversized one: neither is appended.
    let mut both = BytesMut::from(&simple(1, 0)[..]);
    both.extend_from_slice(&big);
    let err = log.append(both.freeze(), opts(0)).unwrap_err();
    assert!(matches!(err, AppendError::MessageTooLarge { max: 200, .. }));
    assert_eq!(err.kafka_error_code(), 10);

    let mut bad_crc = simple(1, 0).to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let err = log.append(Bytes::from(bad_crc), opts(0)).unwrap_err();
    assert_eq!(err.kafka_error_code(), 2);

    let mut old_magic = simple(1, 0).to_vec();
    old_magic[16] = 1;
    assert_eq!(
        log.append(Bytes::from(old_magic), opts(0))
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    assert_eq!(
        log.append(Bytes::new(), opts(0))
            .unwrap_err()
            .kafka_error_code(),
        87
    );

    let mut control = simple(1, 0).to_vec();
    control[22] |= 1 << 5;
    let crc = crc32c::crc32c(&control[21..]);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        log.append(Bytes::from(control), opts(0))
            .unwrap_err()
            .kafka_error_code(),
        87
    );

    let mut truncated = simple(1, 0);
    truncated.truncate(truncated.len() - 3);
    assert_eq!(
        log.append(truncated, opts(0))
            .unwrap_err()
            .kafka_error_code(),
        2
    );

    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..config
    });
    let err = log
        .append(
            encode(
                &[rec("k", "v", 0), keyless("v", 0)],
                strom_log::Compression::Lz4,
                None,
            ),
            opts(0),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("compacted topic requires keys"),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(decode(&read_all(&log)).len(), 1);
}

#[test]
fn multi_batch_request_gets_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(simple(2, 0), opts(0)).unwrap();
    let mut req = BytesMut::from(&simple(3, 0)[..]);
    req.extend_from_slice(&simple(4, 0));
    assert_eq!(appended(log.append(req.freeze(), opts(0)).unwrap()), (2, 8));
    let offsets: Vec<i64> = stored_batches(&read_all(&log))
        .iter()
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(offsets, vec![0, 2, 5]);
}

#[test]
fn flush_moves_the_flushed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    fill(&mut log, 5);
    assert_eq!(log.flushed_offset(), 0);
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), 15);
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, LogConfig::default(), 0).unwrap();
    fill(&mut log, 2);
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn create_time_records_outside_the_timestamp_bounds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_000_000_000;
    let mut config = small_config();
    config.message_timestamp_after_max_ms = 1_000;
    config.message_timestamp_before_max_ms = 5_000;
    let mut log = Log::open(dir.path(), config.clone(), now).unwrap();

    let future = encode(
        &[rec("k", "v", now), rec("k", "v", now + 1_001)],
        Compression::None,
        None,
    );
    let err = log.append(future, opts(now)).unwrap_err();
    assert_eq!(err.kafka_error_code(), 32, "{err}");
    assert!(
        err.to_string().contains("message.timestamp.after.max.ms"),
        "{err}"
    );

    // One old record in the middle of a compressed batch is enough to refuse it.
    let past = encode(
        &[
            rec("k", "v", now),
            rec("k", "v", now - 5_001),
            rec("k", "v", now),
        ],
        Compression::Lz4,
        None,
    );
    let err = log.append(past, opts(now)).unwrap_err();
    assert_eq!(err.kafka_error_code(), 32, "{err}");
    assert_eq!(log.log_end_offset(), 0, "refused batches append nothing");

    let fine = encode(
        &[rec("k", "v", now - 5_000), rec("k", "v", now + 1_000)],
        Compression::None,
        None,
    );
    log.append(fine, opts(now)).unwrap();
    assert_eq!(log.log_end_offset(), 2);

    // LogAppendTime topics replace client timestamps, so the bounds do not apply.
    config.message_timestamp_type = TimestampType::LogAppendTime;
    log.set_config(config);
    let future = encode(&[rec("k", "v", now + 10_000_000)], Compression::None, None);
    log.append(future, opts(now)).unwrap();
}

/// The batch as the log must store it: the client's bytes with baseOffset and partitionLeaderEpoch stamped.
fn stamped(batch: &[u8], base_offset: i64, leader_epoch: i32) -> Vec<u8> {
    let mut out = batch.to_vec();
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    out
}

#[test]
fn create_time_append_writes_stamped_request_bytes_and_leaves_the_request_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let first = simple(2, 1_000);
    // Enough batches in one request that the vectored write needs more than one pwritev (1024 buffers each).
    let batches: Vec<Bytes> = (0..700)
        .map(|i| simple(1 + i % 3, 1_000 + i as i64))
        .collect();
    let request = Bytes::from(batches.concat());
    let sent = request.to_vec();
    let mut expected = stamped(&first, 0, 3);
    let mut next_offset = 2;
    for batch in &batches {
        expected.extend(stamped(batch, next_offset, 3));
        next_offset += i64::from(stored_batches(batch)[0].0.records_count);
    }

    log.append(first, opts(1_000)).unwrap();
    let outcome = log.append(request.clone(), opts(1_000)).unwrap();

    assert_eq!(appended(outcome), (2, next_offset - 1));
    assert_eq!(
        request.to_vec(),
        sent,
        "the request's bytes are not modified"
    );
    let file = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
    assert!(
        file == expected,
        "the segment holds exactly the stamped batches"
    );
    assert_eq!(read_all(&log), Bytes::from(expected));
}
