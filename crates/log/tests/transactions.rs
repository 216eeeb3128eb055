//! Transactions in the log: open transactions hold the last stable offset, markers end them, aborted ones are
//! listed for read_committed fetches, and all of it survives clean and unclean reopen, truncation and retention.

mod common;

use common::*;
use strom_log::txn::{AbortedTxn, ControlType, Marker};
use strom_log::{ActiveProducer, AppendError, Log, LogConfig};

fn commit(coordinator_epoch: i32) -> Marker {
    Marker {
        control: ControlType::Commit,
        coordinator_epoch,
    }
}

fn abort(coordinator_epoch: i32) -> Marker {
    Marker {
        control: ControlType::Abort,
        coordinator_epoch,
    }
}

/// Two producers interleave: 1 commits, 2 aborts; plain records around them.
///   0..2 plain | 2..5 txn of 1 | 5..7 txn of 2 | 7 commit(1) | 8..10 plain | 10 abort(2) | 11 txn of 1 (open)
fn history(log: &mut Log) {
    log.append(simple(2, 0), opts(0)).unwrap();
    log.append(transactional(1, 0, 0, 3), opts(0)).unwrap();
    history_rest(log);
}

fn expected_aborted() -> AbortedTxn {
    AbortedTxn {
        producer_id: 2,
        first_offset: 5,
        last_offset: 10,
        last_stable_offset: 11,
    }
}

fn check_history(log: &Log) {
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(
        log.first_unstable_offset(),
        Some(11),
        "1's second transaction"
    );
    assert_eq!(log.last_stable_offset(12), 11);
    assert_eq!(
        log.last_stable_offset(9),
        9,
        "never above the high watermark"
    );
    assert_eq!(log.open_transactions(), vec![(1, 11)]);
    assert_eq!(log.aborted_transactions(0, 12), vec![expected_aborted()]);
    assert_eq!(log.aborted_transactions(6, 7), vec![expected_aborted()]);
    assert!(
        log.aborted_transactions(11, 12).is_empty(),
        "its marker is below the fetch"
    );
    assert!(
        log.aborted_transactions(0, 5).is_empty(),
        "its first batch is at or after the upper bound"
    );
}

#[test]
fn open_transactions_hold_the_last_stable_offset_and_aborts_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    log.append(simple(2, 0), opts(0)).unwrap();
    log.append(transactional(1, 0, 0, 3), opts(0)).unwrap();
    assert_eq!(
        log.last_stable_offset(5),
        2,
        "held at the transaction's first batch"
    );
    history_rest(&mut log);
    check_history(&log);
    // The markers are in the log as control batches a reader sees.
    let batches = stored_batches(&read_all(&log));
    let markers: Vec<i64> = batches
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(markers, vec![7, 10]);
}

fn history_rest(log: &mut Log) {
    log.append(transactional(2, 0, 0, 2), opts(0)).unwrap();
    assert_eq!(log.append_marker(1, 0, commit(0), opts(0)).unwrap(), 7);
    log.append(simple(2, 0), opts(0)).unwrap();
    assert_eq!(log.append_marker(2, 0, abort(0), opts(0)).unwrap(), 10);
    log.append(transactional(1, 1, 0, 1), opts(0)).unwrap();
}

#[test]
fn active_producers_show_epoch_last_batch_coordinator_epoch_and_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // A segment every batch or two, so the headers are looked up across segments.
    let config = LogConfig {
        segment_bytes: 200,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert!(log.active_producers().unwrap().is_empty());
    history(&mut log);
    assert!(log.segment_count() > 3, "{}", log.segment_count());
    let expected = vec![
        ActiveProducer {
            producer_id: 1,
            producer_epoch: 1,
            last_sequence: 0,
            last_offset: Some(11),
            last_timestamp: 1_000,
            coordinator_epoch: 0,
            txn_start_offset: Some(11),
        },
        ActiveProducer {
            producer_id: 2,
            producer_epoch: 0,
            last_sequence: 1,
            last_offset: Some(6),
            // The max timestamp of its two-record batch.
            last_timestamp: 1_001,
            coordinator_epoch: 0,
            txn_start_offset: None,
        },
    ];
    assert_eq!(log.active_producers().unwrap(), expected);
    log.close().unwrap();
    let log = Log::open(dir.path(), config, 0).unwrap();
    assert_eq!(log.active_producers().unwrap(), expected, "after a reopen");
}

#[test]
fn the_transaction_state_survives_clean_and_unclean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    history(&mut log);
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    check_history(&log);
    // Unclean: no snapshot, so the state comes from replaying the log, control batches included.
    drop(log);
    let _ = std::fs::remove_file(dir.path().join("producer-state.snapshot"));
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    check_history(&log);
}

/// Each abort is an entry in the aborted-transaction index of the segment holding its marker, in Kafka's
/// 34-byte layout; an index lost (a data directory from before it existed) or damaged is rebuilt from the log at
/// open, even a clean one, and written whole only then.
#[test]
fn aborts_live_in_the_txnindex_of_their_marker_s_segment_and_a_lost_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let one_batch_per_segment = LogConfig {
        segment_bytes: 1,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), one_batch_per_segment.clone(), 0).unwrap();
    history(&mut log);
    let index = dir.path().join("00000000000000000010.txnindex");
    let bytes = std::fs::read(&index).unwrap();
    assert_eq!(bytes.len(), 34, "one entry, in the abort marker's segment");
    assert_eq!(&bytes[..2], &0i16.to_be_bytes(), "version");
    assert_eq!(&bytes[2..10], &2i64.to_be_bytes(), "producer id");
    assert_eq!(&bytes[10..18], &5i64.to_be_bytes(), "first offset");
    assert_eq!(&bytes[18..26], &10i64.to_be_bytes(), "last offset");
    assert_eq!(&bytes[26..34], &11i64.to_be_bytes(), "last stable offset");
    let empty = dir.path().join("00000000000000000007.txnindex");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "a commit");
    log.close().unwrap();

    std::fs::remove_file(&index).unwrap();
    let log = Log::open(dir.path(), one_batch_per_segment.clone(), 0).unwrap();
    check_history(&log);
    assert_eq!(std::fs::read(&index).unwrap(), bytes, "rebuilt");
    log.close().unwrap();

    std::fs::write(&index, &bytes[..20]).unwrap();
    let log = Log::open(dir.path(), one_batch_per_segment, 0).unwrap();
    check_history(&log);
    assert_eq!(std::fs::read(&index).unwrap(), bytes, "rebuilt");
}

#[test]
fn fenced_markers_and_writes_outside_an_open_transaction_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    log.append(transactional(1, 2, 0, 2), opts(0)).unwrap();
    let end = log.log_end_offset();
    let stale_epoch = log.append_marker(1, 1, commit(5), opts(0)).unwrap_err();
    assert!(
        matches!(stale_epoch, AppendError::InvalidProducerEpoch { .. }),
        "{stale_epoch}"
    );
    assert_eq!(stale_epoch.kafka_error_code(), 47);
    let outside = log.append(idem(1, 2, 2, 1), opts(0)).unwrap_err();
    assert!(
        matches!(outside, AppendError::InvalidTxnState(_)),
        "{outside}"
    );
    assert_eq!(outside.kafka_error_code(), 48);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.first_unstable_offset(), Some(0));

    log.append_marker(1, 2, commit(5), opts(0)).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    log.append(transactional(1, 3, 0, 1), opts(0)).unwrap();
    let stale_coordinator = log.append_marker(1, 3, abort(4), opts(0)).unwrap_err();
    assert!(
        matches!(
            stale_coordinator,
            AppendError::TransactionCoordinatorFenced { .. }
        ),
        "{stale_coordinator}"
    );
    assert_eq!(stale_coordinator.kafka_error_code(), 52);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    log.append_marker(1, 3, abort(5), opts(0)).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
}

#[test]
fn truncation_below_a_marker_reopens_its_transaction_and_forgets_its_abort() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    history(&mut log);
    // Down to offset 10: the abort marker of producer 2 and what follows go.
    log.truncate_to(10).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(
        log.first_unstable_offset(),
        Some(5),
        "2's transaction is open again"
    );
    assert!(log.aborted_transactions(0, 10).is_empty());
    // Down to 7: 1's commit goes too.
    log.truncate_to(7).unwrap();
    assert_eq!(log.open_transactions(), vec![(1, 2), (2, 5)]);
    assert_eq!(log.last_stable_offset(7), 2);
}

#[test]
fn retention_forgets_aborts_whose_marker_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    history(&mut log);
    log.delete_records_before(11).unwrap();
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(log.first_unstable_offset(), Some(11));
    log.append_marker(1, 1, commit(0), opts(0)).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(13), 13);
}

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 1,
        cleanup_policy: strom_log::CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_compaction_lag_ms: 0,
        ..LogConfig::default()
    }
}

/// Values by key, as a read_committed reader sees them: records of aborted transactions dropped.
fn committed_values(log: &Log) -> Vec<(i64, String, String)> {
    let aborted = log.aborted_transactions(0, i64::MAX);
    let mut out = Vec::new();
    for (h, batch) in stored_batches(&read_all(log)) {
        let dropped = h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset < a.last_offset
            });
        if h.is_control() || dropped {
            continue;
        }
        for (offset, _, key, value) in decode(&batch) {
            let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
            out.push((offset, text(key), text(value)));
        }
    }
    out
}

#[test]
fn compaction_drops_aborted_records_keeps_markers_and_stops_at_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compacted(), 0).unwrap();
    // k0..k2 committed plainly (0..3), then a transaction of 2 that rewrites k0, k1 and aborts (3..5, marker 5).
    log.append(simple(3, 0), opts(0)).unwrap();
    log.append(transactional(2, 0, 0, 2), opts(0)).unwrap();
    log.append_marker(2, 0, abort(0), opts(0)).unwrap();
    // A transaction of 1 that rewrites k0 and stays open (6), then more plain writes (7..10).
    log.append(transactional(1, 0, 0, 1), opts(0)).unwrap();
    log.append(simple(3, 0), opts(0)).unwrap();
    let before = committed_values(&log);
    log.compact(10_000).unwrap();
    let batches = stored_batches(&read_all(&log));
    assert!(
        batches
            .iter()
            .all(|(h, _)| !(h.producer_id == 2 && !h.is_control() && h.records_count > 0)),
        "the aborted records are gone"
    );
    assert!(
        batches
            .iter()
            .any(|(h, _)| h.is_control() && h.base_offset == 5),
        "the abort marker stays"
    );
    assert!(
        batches.iter().any(|(h, _)| h.base_offset == 0),
        "k0's committed value at 0 is below the open transaction at 6: cleaning stops there"
    );
    assert_eq!(
        committed_values(&log),
        before,
        "a read_committed reader sees the same"
    );

    // Once 1 commits (marker 10) and k0 is written again (11), the latest values are k1@8, k2@9 and k0@11:
    // everything before goes, the committed transaction's k0@6 too.
    log.append_marker(1, 0, commit(0), opts(0)).unwrap();
    log.append(simple(1, 0), opts(0)).unwrap();
    log.compact(20_000).unwrap();
    let left: Vec<i64> = committed_values(&log).iter().map(|(o, _, _)| *o).collect();
    assert_eq!(left, vec![8, 9, 11]);
}
