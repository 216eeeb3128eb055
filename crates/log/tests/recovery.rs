//! Crash recovery: torn writes at every byte of the last batch, bit flips, trailing garbage, damaged or missing
//! indexes. In every case the batches before the damage read back identical, the log end offset is right and
//! appends continue.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use strom_log::{Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

/// A log of 12 batches (2 records each, varied codecs) over several segments; returns the stored batches.
fn build(dir: &Path, clean: bool) -> Vec<Bytes> {
    let mut log = Log::open(dir, config(), 0).unwrap();
    for i in 0..12i64 {
        let recs = [
            rec(&format!("k{i}"), "value", 100 + i),
            rec("x", "y", 100 + i),
        ];
        log.append(
            encode(
                &recs,
                ALL_CODECS[i as usize % 5],
                Some((1, 0, i as i32 * 2)),
            ),
            opts(0),
        )
        .unwrap();
    }
    assert!(log.segment_count() >= 3);
    let stored = stored_batches(&read_all(&log))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    if clean {
        log.close().unwrap();
    }
    stored
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn last_log(dir: &Path) -> PathBuf {
    files(dir, ".log").pop().unwrap()
}

/// Opens the damaged copy and checks it holds exactly `expect` batches of the original, then appends.
fn check_recovered(dir: &Path, original: &[Bytes], expect: usize) {
    let mut log = Log::open(dir, config(), 0).unwrap();
    let stored: Vec<Bytes> = stored_batches(&read_all(&log))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(stored.len(), expect);
    assert_eq!(&stored[..], &original[..expect]);
    assert_eq!(log.log_end_offset(), expect as i64 * 2);
    // Producer state was rebuilt from the surviving batches: the next sequence continues from them.
    let next_seq = expect as i32 * 2;
    assert_eq!(
        appended(log.append(idem(1, 0, next_seq, 1), opts(0)).unwrap()),
        (expect as i64 * 2, expect as i64 * 2)
    );
    log.close().unwrap();
    let log = Log::open(dir, config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), expect as i64 * 2 + 1);
}

#[test]
fn torn_write_at_every_byte_of_the_last_batch() {
    for clean in [false, true] {
        let src = tempfile::tempdir().unwrap();
        let original = build(src.path(), clean);
        let last = last_log(src.path());
        let len = fs::metadata(&last).unwrap().len();
        let last_batch = original.last().unwrap().len() as u64;
        for cut in (len - last_batch)..len {
            let work = tempfile::tempdir().unwrap();
            copy_dir(src.path(), work.path());
            let f = fs::OpenOptions::new()
                .write(true)
                .open(work.path().join(last.file_name().unwrap()))
                .unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            if clean {
                // A torn write cannot follow a clean close; simulate the crash by dropping the marker.
                fs::remove_file(work.path().join(".clean-shutdown")).unwrap();
            }
            check_recovered(work.path(), &original, original.len() - 1);
        }
    }
}

#[test]
fn bit_flips_in_the_last_batch_truncate_it() {
    let src = tempfile::tempdir().unwrap();
    let original = build(src.path(), false);
    let last = last_log(src.path());
    let len = fs::metadata(&last).unwrap().len() as usize;
    let start = len - original.last().unwrap().len();
    // baseOffset (0..8) and partitionLeaderEpoch (12..16) are outside the CRC by design; every other byte is
    // covered by the length check or the CRC.
    for at in (start + 8..start + 12).chain(start + 16..len) {
        for bit in [0u8, 3, 7] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(src.path(), work.path());
            let path = work.path().join(last.file_name().unwrap());
            let mut data = fs::read(&path).unwrap();
            data[at] ^= 1 << bit;
            fs::write(&path, data).unwrap();
            check_recovered(work.path(), &original, original.len() - 1);
        }
    }
}

#[test]
fn garbage_after_the_last_batch_is_cut() {
    for garbage in [
        vec![0u8; 4096],
        vec![0xab; 7],
        b"not a batch at all, just some trailing bytes".repeat(5),
    ] {
        let src = tempfile::tempdir().unwrap();
        let original = build(src.path(), false);
        let path = last_log(src.path());
        let mut data = fs::read(&path).unwrap();
        data.extend_from_slice(&garbage);
        fs::write(&path, data).unwrap();
        check_recovered(src.path(), &original, original.len());
    }
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt_even_after_clean_shutdown() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("delete all", |d| {
            for p in files(d, ".index").into_iter().chain(files(d, ".timeindex")) {
                fs::remove_file(p).unwrap();
            }
        }),
        ("garbage offset index", |d| {
            for p in files(d, ".index") {
                fs::write(p, [0xffu8; 16]).unwrap();
            }
        }),
        ("torn entries", |d| {
            for p in files(d, ".index").into_iter().chain(files(d, ".timeindex")) {
                let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len.saturating_sub(3)).unwrap();
            }
        }),
        ("index points past the log", |d| {
            for p in files(d, ".index") {
                let mut data = fs::read(&p).unwrap();
                data.extend_from_slice(&[0, 0, 0, 100, 0, 1, 0, 0]);
                fs::write(p, data).unwrap();
            }
        }),
        ("unordered time index", |d| {
            for p in files(d, ".timeindex") {
                let mut data = fs::read(&p).unwrap();
                data.extend_from_slice(&[0u8; 12]);
                fs::write(p, data).unwrap();
            }
        }),
    ];
    for (name, damage) in damages {
        for clean in [true, false] {
            let src = tempfile::tempdir().unwrap();
            let original = build(src.path(), clean);
            damage(src.path());
            let log = Log::open(src.path(), config(), 0).unwrap();
            for (i, batch) in original.iter().enumerate() {
                let r = log.read(i as i64 * 2 + 1, 1, i64::MAX, true).unwrap();
                assert_eq!(&r.records, batch, "{name}, clean {clean}, batch {i}");
            }
            assert_eq!(
                log.offset_for_timestamp(105).unwrap(),
                Some((10, 105)),
                "{name}"
            );
            drop(log);
            check_recovered(src.path(), &original, original.len());
        }
    }
}

#[test]
fn damage_in_an_older_segment_drops_everything_after_it() {
    let src = tempfile::tempdir().unwrap();
    let original = build(src.path(), false);
    let logs = files(src.path(), ".log");
    let first = &logs[0];
    let mut data = fs::read(first).unwrap();
    let first_batches = stored_batches(&Bytes::from(data.clone())).len();
    let at = data.len() - 5;
    data[at] ^= 0xff;
    fs::write(first, data).unwrap();
    check_recovered(src.path(), &original, first_batches - 1);
    assert_eq!(files(src.path(), ".log").len(), 1);
}

#[test]
fn recovery_point_limits_the_scan_to_unflushed_segments() {
    let src = tempfile::tempdir().unwrap();
    let mut log = Log::open(src.path(), config(), 0).unwrap();
    for i in 0..12 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    log.flush().unwrap();
    log.append(simple(2, 99), opts(0)).unwrap();
    let expected = read_all(&log);
    drop(log);
    // Damage an index of a flushed segment: the trusted path notices and rebuilds it.
    let first_index = files(src.path(), ".index").remove(0);
    fs::write(first_index, [1u8; 8]).unwrap();
    let log = Log::open(src.path(), config(), 0).unwrap();
    assert!(log.recovered_on_open());
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.flushed_offset(), 26);
}

#[test]
fn a_flush_begun_before_a_truncation_does_not_vouch_for_records_written_after_it() {
    let src = tempfile::tempdir().unwrap();
    let mut log = Log::open(src.path(), config(), 0).unwrap();
    for i in 0..12 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    let end = log.log_end_offset();
    let pending = log.begin_flush().unwrap();
    // A follower truncates its tail and takes new records at the same offsets while the fsync runs.
    log.truncate_to(end - 6).unwrap();
    assert!(log.flushed_offset() <= end - 6);
    for i in 0..3 {
        log.append(simple(2, 100 + i), opts(0)).unwrap();
    }
    assert_eq!(log.log_end_offset(), end);
    pending.sync().unwrap();
    log.complete_flush(pending).unwrap();
    assert!(
        log.flushed_offset() <= end - 6,
        "flushed offset {} covers records written after the flush began",
        log.flushed_offset()
    );

    let pending = log.begin_flush().unwrap();
    pending.sync().unwrap();
    log.complete_flush(pending).unwrap();
    assert_eq!(log.flushed_offset(), log.log_end_offset());
}

#[test]
fn a_split_flush_makes_data_durable_and_recovery_rescans_past_the_persisted_point() {
    let src = tempfile::tempdir().unwrap();
    let mut log = Log::open(src.path(), config(), 0).unwrap();
    for i in 0..12 {
        log.append(simple(2, i), opts(0)).unwrap();
    }
    let pending = log.begin_flush().unwrap();
    assert_eq!(pending.end_offset(), log.log_end_offset());
    // Appends may continue between begin and complete; they are not covered by this flush.
    log.append(simple(2, 50), opts(0)).unwrap();
    pending.sync().unwrap();
    let covered = pending.end_offset();
    log.complete_flush(pending).unwrap();
    assert_eq!(log.flushed_offset(), covered);
    assert!(log.flushed_offset() < log.log_end_offset());

    // A second split flush covers the rest.
    let pending = log.begin_flush().unwrap();
    pending.sync().unwrap();
    log.complete_flush(pending).unwrap();
    assert_eq!(log.flushed_offset(), log.log_end_offset());
    let expected = read_all(&log);
    let end = log.log_end_offset();
    drop(log); // no close: an unclean shutdown

    let log = Log::open(src.path(), config(), 0).unwrap();
    assert!(log.recovered_on_open());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), expected);
}
