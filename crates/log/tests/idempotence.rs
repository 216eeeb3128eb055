//! Idempotent producer: duplicates, sequence gaps, epochs, and identical state after clean and unclean reopen.

mod common;

use common::*;
use strom_log::{AppendError, AppendOutcome, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        ..LogConfig::default()
    }
}

#[test]
fn duplicate_retry_returns_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(simple(2, 0), opts(0)).unwrap();
    assert_eq!(
        appended(log.append(idem(1, 0, 0, 3), opts(0)).unwrap()),
        (2, 4)
    );
    assert_eq!(
        appended(log.append(idem(1, 0, 3, 2), opts(0)).unwrap()),
        (5, 6)
    );
    let out = log.append(idem(1, 0, 0, 3), opts(0)).unwrap();
    assert_eq!(
        out,
        AppendOutcome::Duplicate {
            base_offset: 2,
            last_offset: 4,
            log_start_offset: 0
        }
    );
    assert_eq!(log.log_end_offset(), 7, "nothing appended");
}

#[test]
fn gaps_stale_epochs_and_rejections_do_not_advance_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(idem(1, 2, 0, 2), opts(0)).unwrap();
    let err = log.append(idem(1, 2, 5, 1), opts(0)).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                producer_id: 1,
                expected: 2,
                received: 5
            }
        ),
        "{err}"
    );
    assert_eq!(err.kafka_error_code(), 45);
    let err = log.append(idem(1, 1, 2, 1), opts(0)).unwrap_err();
    assert!(matches!(
        err,
        AppendError::InvalidProducerEpoch {
            producer_id: 1,
            current: 2,
            received: 1
        }
    ));
    assert_eq!(err.kafka_error_code(), 47);
    // A request whose second batch is bad leaves the first one unappended and the sequence where it was.
    let mut req = bytes::BytesMut::from(&idem(1, 2, 2, 1)[..]);
    req.extend_from_slice(&idem(1, 2, 9, 1));
    assert!(log.append(req.freeze(), opts(0)).is_err());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        appended(log.append(idem(1, 2, 2, 1), opts(0)).unwrap()),
        (2, 2)
    );
    // A new epoch must start at sequence 0.
    assert_eq!(
        log.append(idem(1, 3, 3, 1), opts(0))
            .unwrap_err()
            .kafka_error_code(),
        45
    );
    assert_eq!(
        appended(log.append(idem(1, 3, 0, 1), opts(0)).unwrap()),
        (3, 3)
    );
    // Unknown producers may start anywhere; producer id -1 is never checked.
    log.append(idem(2, 0, 1_000, 1), opts(0)).unwrap();
    log.append(simple(1, 0), opts(0)).unwrap();
    log.append(simple(1, 0), opts(0)).unwrap();
}

#[test]
fn sequences_wrap_at_i32_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(idem(4, 0, i32::MAX - 1, 3), opts(0)).unwrap();
    assert_eq!(
        log.append(idem(4, 0, 2, 1), opts(0))
            .unwrap_err()
            .kafka_error_code(),
        45
    );
    log.append(idem(4, 0, 1, 1), opts(0)).unwrap();
}

/// Outcomes of requests that change nothing, describing the producer state: duplicates of the last batches,
/// the batch just outside the window, gaps and stale epochs.
fn probe(log: &mut Log) -> Vec<String> {
    let mut out = Vec::new();
    for pid in [10i64, 11] {
        for seq in 0..8 {
            out.push(format!(
                "{:?}",
                log.append(idem(pid, 1, seq * 2, 2), opts(0))
            ));
        }
        out.push(format!("{:?}", log.append(idem(pid, 1, 99, 1), opts(0))));
        out.push(format!("{:?}", log.append(idem(pid, 0, 16, 1), opts(0))));
    }
    out
}

#[test]
fn state_is_identical_after_clean_and_unclean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for pid in [10i64, 11] {
        log.append(idem(pid, 0, 0, 1), opts(0)).unwrap();
    }
    for seq in 0..8 {
        for pid in [10i64, 11] {
            log.append(idem(pid, 1, seq * 2, 2), opts(0)).unwrap();
            log.append(simple(1, 0), opts(0)).unwrap();
        }
    }
    let end = log.log_end_offset();
    let expected = probe(&mut log);
    assert!(
        expected
            .iter()
            .filter(|s| s.starts_with("Ok(Duplicate"))
            .count()
            == 10,
        "{expected:?}"
    );
    assert_eq!(log.log_end_offset(), end, "probes append nothing");

    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(!log.recovered_on_open());
    assert_eq!(probe(&mut log), expected, "clean reopen (snapshot)");

    drop(log); // no close: unclean
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(log.recovered_on_open());
    assert_eq!(probe(&mut log), expected, "unclean reopen (replay)");

    log.close().unwrap();
    std::fs::remove_file(dir.path().join(".clean-shutdown")).unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(log.recovered_on_open());
    assert_eq!(probe(&mut log), expected, "marker deleted");

    // A damaged snapshot falls back to replay.
    log.close().unwrap();
    std::fs::write(dir.path().join("producer-state.snapshot"), b"junk").unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(probe(&mut log), expected, "damaged snapshot");
}

#[test]
fn retention_forgets_producers_whose_batches_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    log.append(idem(5, 0, 0, 1), opts(0)).unwrap();
    for _ in 0..10 {
        log.append(simple(3, 0), opts(0)).unwrap();
    }
    log.delete_records_before(log.log_end_offset()).unwrap();
    // Unknown again: any sequence is accepted, as after a restart from the remaining log.
    log.append(idem(5, 0, 50, 1), opts(0)).unwrap();
}
