//! ListOffsets by timestamp (record precision, inside compressed batches) and MAX_TIMESTAMP.

mod common;

use common::*;
use strom_log::{Log, LogConfig};

/// Batches whose records are out of timestamp order inside, spread over several segments, one per codec.
fn build(log: &mut Log) {
    for (i, codec) in ALL_CODECS.iter().enumerate() {
        let base = 1_000 * (i as i64 + 1);
        // Offsets 4i..4i+3 carry timestamps base+30, base+10, base+40, base+20.
        let recs = [
            rec("a", "1", base + 30),
            rec("b", "2", base + 10),
            rec("c", "3", base + 40),
            rec("d", "4", base + 20),
        ];
        log.append(encode(&recs, *codec, None), opts(0)).unwrap();
    }
}

#[test]
fn finds_the_first_record_at_or_after_a_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 200,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    build(&mut log);
    assert!(log.segment_count() >= 3);
    let check = |log: &Log| {
        for i in 0..5i64 {
            let base = 1_000 * (i + 1);
            let first = 4 * i;
            assert_eq!(
                log.offset_for_timestamp(base).unwrap(),
                Some((first, base + 30)),
                "batch {i}"
            );
            assert_eq!(
                log.offset_for_timestamp(base + 31).unwrap(),
                Some((first + 2, base + 40))
            );
            assert_eq!(
                log.offset_for_timestamp(base + 40).unwrap(),
                Some((first + 2, base + 40))
            );
            assert_eq!(
                log.offset_for_timestamp(base + 41)
                    .map(|o| o.map(|x| x.0))
                    .unwrap(),
                if i < 4 { Some(first + 4) } else { None }
            );
        }
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1_030)));
        assert_eq!(log.offset_for_timestamp(99_999).unwrap(), None);
        assert_eq!(log.max_timestamp().unwrap(), Some((18, 5_040)));
    };
    check(&log);
    log.close().unwrap();
    let log = Log::open(dir.path(), config.clone(), 0).unwrap();
    check(&log);
    drop(log);
    // Unclean reopen rebuilds the time indexes.
    let log = Log::open(dir.path(), config, 0).unwrap();
    assert!(log.recovered_on_open());
    check(&log);
}

#[test]
fn sparse_time_index_still_finds_exact_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..50 {
        log.append(simple(2, i * 100), opts(0)).unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            log.offset_for_timestamp(i * 100 + 1).unwrap(),
            Some((2 * i + 1, i * 100 + 1))
        );
        assert_eq!(
            log.offset_for_timestamp(i * 100 + 2).unwrap().map(|x| x.0),
            if i < 49 { Some(2 * i + 2) } else { None }
        );
    }
}

#[test]
fn max_timestamp_picks_the_first_holder_and_empty_log_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    log.append(
        encode(
            &[rec("a", "", 5), rec("b", "", 9), rec("c", "", 9)],
            strom_log::Compression::Zstd,
            None,
        ),
        opts(0),
    )
    .unwrap();
    log.append(
        encode(&[rec("d", "", 9)], strom_log::Compression::None, None),
        opts(0),
    )
    .unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((1, 9)));
}

#[test]
fn records_below_the_log_start_offset_are_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    log.append(simple(4, 100), opts(0)).unwrap();
    log.delete_records_before(2).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((2, 102)));
}
