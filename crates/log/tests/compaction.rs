//! Compaction: latest value per key, tombstones after delete.retention.ms, offsets unchanged, all codecs.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use strom_log::{CleanupPolicy, Compression, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

type Decoded = Vec<(i64, i64, Option<Bytes>, Option<Bytes>)>;

fn by_offset(records: &Decoded) -> HashMap<i64, (i64, Option<Bytes>, Option<Bytes>)> {
    records
        .iter()
        .map(|(o, t, k, v)| (*o, (*t, k.clone(), v.clone())))
        .collect()
}

#[test]
fn keeps_the_latest_value_per_key_at_its_original_offset() {
    for codec in ALL_CODECS {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        // 30 batches of 3 records over 5 keys: key i%5, value = offset.
        for b in 0..30i64 {
            let recs: Vec<Rec> = (0..3)
                .map(|r| {
                    let offset = b * 3 + r;
                    rec(
                        &format!("key{}", offset % 5),
                        &offset.to_string(),
                        100 + offset,
                    )
                })
                .collect();
            log.append(encode(&recs, codec, None), opts(0)).unwrap();
        }
        let before = decode(&read_all(&log));
        let size_before = log.size_bytes();
        let stats = log.compact(10_000).unwrap();
        assert!(stats.records_removed > 0, "{codec:?}");
        assert!(stats.segments_cleaned > 0);
        assert!(stats.bytes_after < stats.bytes_before);
        assert!(log.size_bytes() < size_before);
        assert_eq!(log.log_end_offset(), 90);

        let check = |log: &Log| {
            let after = decode(&read_all(log));
            let original = by_offset(&before);
            let mut latest: HashMap<Bytes, i64> = HashMap::new();
            for (o, _, k, _) in &before {
                latest.insert(k.clone().unwrap(), *o);
            }
            // Every surviving record is unchanged at its offset, and every key's latest record survives.
            for (o, t, k, v) in &after {
                assert_eq!(original[o], (*t, k.clone(), v.clone()));
            }
            let kept: Vec<i64> = after.iter().map(|r| r.0).collect();
            for o in latest.values() {
                assert!(kept.contains(o), "latest offset {o} survives");
            }
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            // Closed segments hold at most the latest record per key; the active one is untouched.
            assert!(after.len() < before.len());
            for (h, b) in stored_batches(&read_all(log)) {
                assert_eq!(
                    h.compression(),
                    if h.records_count == 0 {
                        Compression::None
                    } else {
                        codec
                    }
                );
                assert_eq!(crc32c::crc32c(&b[21..]), h.crc);
            }
            // Fetching from an offset that was compacted away returns the next batch.
            let r = log.read(1, 1 << 20, i64::MAX, true).unwrap();
            assert!(stored_batches(&r.records)[0].0.last_offset() >= 1);
        };
        check(&log);
        log.close().unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        check(&log);
        drop(log);
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert!(log.recovered_on_open());
        check(&log);
    }
}

#[test]
fn tombstones_survive_until_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(
        encode(
            &[rec("a", "1", 100), rec("b", "1", 100)],
            Compression::Gzip,
            None,
        ),
        opts(0),
    )
    .unwrap();
    log.append(
        encode(&[tombstone("a", 200)], Compression::None, None),
        opts(0),
    )
    .unwrap();
    for i in 0..10 {
        log.append(
            encode(&[rec("c", &i.to_string(), 300)], Compression::None, None),
            opts(0),
        )
        .unwrap();
    }
    assert!(log.segment_count() > 1);
    // At 1_100 the tombstone (ts 200) is younger than delete.retention.ms: it stays, the old "a" goes.
    log.compact(1_100).unwrap();
    let records = decode(&read_all(&log));
    let keys: Vec<(i64, Option<Bytes>, bool)> = records
        .iter()
        .map(|r| (r.0, r.2.clone(), r.3.is_none()))
        .collect();
    assert!(keys.contains(&(1, Some(Bytes::from("b")), false)));
    assert!(
        keys.contains(&(2, Some(Bytes::from("a")), true)),
        "tombstone kept: {keys:?}"
    );
    assert!(!keys.iter().any(|k| k.0 == 0));
    // Later it is removed too.
    log.compact(1_300).unwrap();
    let records = decode(&read_all(&log));
    assert!(!records
        .iter()
        .any(|r| r.2.as_deref() == Some(b"a".as_slice())));
    assert!(records.iter().any(|r| r.0 == 1));
}

#[test]
fn min_compaction_lag_protects_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        min_compaction_lag_ms: 500,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for i in 0..20 {
        log.append(
            encode(
                &[rec("k", &i.to_string(), 1_000 + i)],
                Compression::None,
                None,
            ),
            opts(0),
        )
        .unwrap();
    }
    assert_eq!(
        log.compact(1_000).unwrap().records_removed,
        0,
        "everything is within the lag"
    );
    let removed = log.compact(10_000).unwrap().records_removed;
    assert!(removed > 0);
    assert_eq!(decode(&read_all(&log)).last().unwrap().0, 19);
}

#[test]
fn compaction_needs_the_compact_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::default(),
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for _ in 0..20 {
        log.append(simple(1, 0), opts(0)).unwrap();
    }
    assert_eq!(log.compact(10_000).unwrap().records_removed, 0);
    assert_eq!(decode(&read_all(&log)).len(), 20);
}

#[test]
fn idempotent_producer_state_survives_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(
        encode(&[rec("x", "1", 10)], Compression::Snappy, Some((7, 0, 0))),
        opts(0),
    )
    .unwrap();
    for i in 0..20 {
        log.append(
            encode(&[rec("x", &i.to_string(), 20)], Compression::None, None),
            opts(0),
        )
        .unwrap();
    }
    log.compact(10_000).unwrap();
    // The producer's only batch lost its record but is kept empty, so the sequence continues after restart.
    let (h, _) = stored_batches(&read_all(&log)).into_iter().next().unwrap();
    assert_eq!((h.base_offset, h.producer_id, h.records_count), (0, 7, 0));
    drop(log);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let err = log
        .append(
            encode(&[rec("x", "2", 30)], Compression::None, Some((7, 0, 5))),
            opts(0),
        )
        .unwrap_err();
    assert_eq!(err.kafka_error_code(), 45);
    log.append(
        encode(&[rec("x", "2", 30)], Compression::None, Some((7, 0, 1))),
        opts(0),
    )
    .unwrap();
}

#[test]
fn leftover_cleaned_and_swap_files_are_handled_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for i in 0..20 {
        log.append(
            encode(&[rec("k", &i.to_string(), 10)], Compression::None, None),
            opts(0),
        )
        .unwrap();
    }
    log.close().unwrap();
    let first = dir.path().join(format!("{:020}.log", 0));
    let original = std::fs::read(&first).unwrap();
    // A half-written .cleaned is discarded.
    std::fs::write(
        dir.path().join(format!("{:020}.log.cleaned", 0)),
        b"partial",
    )
    .unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(!dir.path().join(format!("{:020}.log.cleaned", 0)).exists());
    assert_eq!(std::fs::read(&first).unwrap(), original);
    log.close().unwrap();
    // A complete .swap replaces the segment: here, the segment minus its first batch.
    let batches = stored_batches(&Bytes::from(original.clone()));
    let replacement: Vec<u8> = batches[1..].iter().flat_map(|(_, b)| b.to_vec()).collect();
    std::fs::write(dir.path().join(format!("{:020}.log.swap", 0)), &replacement).unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(std::fs::read(&first).unwrap(), replacement);
    assert_eq!(log.log_end_offset(), 20);
    let records = decode(&read_all(&log));
    assert_eq!(records.first().unwrap().0, 1);
    assert_eq!(records.len(), 19);
}

/// The cleaner's choice (Kafka's): a log is due once the dirty part of its cleanable segments (not cleaned by the
/// last compaction) reaches min.cleanable.dirty.ratio of them; after a compaction it is clean until enough new
/// closed segments pile up.
#[test]
fn cleaning_is_due_at_the_dirty_ratio_and_not_after_a_clean() {
    use strom_log::CleaningDue;
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let fill = |log: &mut Log, batches: i64, from: i64| {
        for b in from..from + batches {
            let recs: Vec<Rec> = (0..3)
                // 60 keys: a compaction leaves most records (a clean part), later batches make it dirty again.
                .map(|r| rec(&format!("key{}", (b * 3 + r) % 60), "v", 100))
                .collect();
            log.append(encode(&recs, Compression::None, None), opts(0))
                .unwrap();
        }
    };
    assert_eq!(log.cleaning_due(10_000), None, "nothing closed yet");
    fill(&mut log, 30, 0);
    assert!(log.segment_count() > 3);
    // Never cleaned: all dirty.
    assert_eq!(log.cleaning_due(10_000), Some(CleaningDue::DirtyRatio(1.0)));
    log.compact(10_000).unwrap();
    assert_eq!(log.cleaning_due(10_000), None, "clean after a compaction");

    // A few more closed segments: dirty, but below half of the cleanable bytes.
    let segments = log.segment_count();
    fill(&mut log, 3, 30);
    assert!(log.segment_count() > segments, "a new segment was closed");
    let due = log.cleaning_due(10_000);
    match due {
        None => {}
        Some(CleaningDue::DirtyRatio(r)) => assert!(r >= 0.5, "due below the ratio: {r}"),
        other => panic!("{other:?}"),
    }
    // With a ratio of 0.01 any dirty segment is due; with 1.0 only an all-dirty log.
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.01,
        ..config()
    });
    assert!(matches!(
        log.cleaning_due(10_000),
        Some(CleaningDue::DirtyRatio(_))
    ));
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 1.0,
        ..config()
    });
    assert_eq!(log.cleaning_due(10_000), None);
    // Unless max.compaction.lag.ms has passed since the oldest dirty segment started (at time 0 here).
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 1.0,
        max_compaction_lag_ms: 5_000,
        ..config()
    });
    assert_eq!(log.cleaning_due(4_000), None);
    assert_eq!(
        log.cleaning_due(10_000),
        Some(CleaningDue::MaxCompactionLag)
    );
}

/// max.compaction.lag.ms bounds how long the active segment of a compacted log stays open (Kafka's maxSegmentMs),
/// so its records reach the cleaner in time; a log that is not compacted rolls on segment.ms alone.
#[test]
fn max_compaction_lag_rolls_the_active_segment_of_a_compacted_log() {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        max_compaction_lag_ms: 1_000,
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    log.append(simple(2, 0), opts(0)).unwrap();
    assert!(!log.roll_if_due(900).unwrap());
    assert!(log.roll_if_due(1_100).unwrap());
    assert_eq!(log.segment_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            cleanup_policy: CleanupPolicy::default(),
            ..cfg
        },
        0,
    )
    .unwrap();
    log.append(simple(2, 0), opts(0)).unwrap();
    assert!(
        !log.roll_if_due(1_100).unwrap(),
        "delete policy: segment.ms only"
    );
}
