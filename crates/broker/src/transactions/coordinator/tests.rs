use super::*;

const NOW: i64 = 1_000;

fn coordinator() -> Coordinator {
    Coordinator::new(Settings::default(), 3)
}

fn pe(producer_id: i64, producer_epoch: i16) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch {
        producer_id,
        producer_epoch,
    }
}

fn parts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// Makes a transition and persists it, as the driver would after writing it.
fn persist(
    c: &mut Coordinator,
    f: impl FnOnce(&mut Coordinator) -> Result<Transition, i16>,
) -> Transition {
    let t = f(c).expect("a transition");
    c.persisted(&t.metadata.transactional_id);
    t
}

/// A fresh id with producer 7 at epoch 0.
fn initialized() -> Coordinator {
    let mut c = coordinator();
    let t = persist(&mut c, |c| c_init(c, None));
    assert_eq!((t.metadata.producer_id, t.metadata.producer_epoch), (7, 0));
    c
}

/// Producer 7 of "tx" at epoch 0 with a transaction open on a-0.
fn open_on_a0() -> Coordinator {
    let mut c = initialized();
    persist(&mut c, |c| {
        Ok(c.add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW)
            .unwrap()
            .unwrap())
    });
    c
}

/// Producer 7 of "tx" at epoch `i16::MAX - 1`, the last one, with a transaction open on a-0.
fn open_at_the_last_epoch() -> Coordinator {
    at_the_last_epoch(TxnState::Ongoing, &[("a", 0)])
}

/// Producer 7 of "tx" at epoch `i16::MAX - 1` in `state`, holding `partitions`.
fn at_the_last_epoch(state: TxnState, partitions: &[(&str, i32)]) -> Coordinator {
    let mut c = coordinator();
    c.load([(
        "tx".to_string(),
        Some(TxnMetadata {
            transactional_id: "tx".into(),
            producer_id: 7,
            producer_epoch: i16::MAX - 1,
            timeout_ms: 60_000,
            state,
            partitions: parts(partitions).into_iter().collect(),
            start_ms: NOW,
            last_update_ms: NOW,
        }),
    )]);
    c
}

fn c_init(c: &mut Coordinator, expected: Option<ProducerIdAndEpoch>) -> Result<Transition, i16> {
    c.init_producer_id("tx", 60_000, expected, NOW, || 7)
}

#[test]
fn a_transaction_goes_empty_ongoing_prepare_complete_and_the_next_starts_afresh() {
    let mut c = initialized();
    assert_eq!(c.get("tx").unwrap().state, TxnState::Empty);
    persist(&mut c, |c| {
        Ok(
            c.add_partitions("tx", pe(7, 0), &parts(&[("a", 0), ("b", 1)]), NOW)
                .unwrap()
                .unwrap(),
        )
    });
    let m = c.get("tx").unwrap();
    assert_eq!(m.state, TxnState::Ongoing);
    assert_eq!(m.start_ms, NOW);
    // Adding what is already there changes nothing.
    assert_eq!(
        c.add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW),
        Ok(None)
    );
    let end = persist(&mut c, |c| {
        c.end_txn("tx", pe(7, 0), true, false, NOW)
            .map(Option::unwrap)
    });
    assert_eq!(end.metadata.state, TxnState::PrepareCommit);
    assert_eq!(
        end.then,
        Then::WriteMarkers {
            producer_id: 7,
            producer_epoch: 0,
            control: ControlType::Commit,
            partitions: parts(&[("a", 0), ("b", 1)]).into_iter().collect(),
        }
    );
    // A retry while the markers are being written is told to wait.
    assert_eq!(
        c.end_txn("tx", pe(7, 0), true, false, NOW),
        Err(error::CONCURRENT_TRANSACTIONS)
    );
    let done = c.markers_written("tx", 7, 0, NOW + 1, None).unwrap();
    assert_eq!(done.metadata.state, TxnState::CompleteCommit);
    c.persisted("tx");
    // Now a retry is answered as done; the opposite end is refused.
    assert_eq!(c.end_txn("tx", pe(7, 0), true, false, NOW), Ok(None));
    // The next transaction starts with only its own partitions.
    let next = c
        .add_partitions("tx", pe(7, 0), &parts(&[("c", 0)]), NOW + 5)
        .unwrap()
        .unwrap();
    assert_eq!(
        next.metadata.partitions,
        parts(&[("c", 0)]).into_iter().collect()
    );
    assert_eq!(next.metadata.start_ms, NOW + 5);
}

#[test]
fn a_pending_transition_makes_every_other_request_wait() {
    let mut c = initialized();
    let t = c
        .add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(t.metadata.state, TxnState::Ongoing);
    assert_eq!(
        c.end_txn("tx", pe(7, 0), true, false, NOW),
        Err(error::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(c_init(&mut c, None), Err(error::CONCURRENT_TRANSACTIONS));
    // The write failed: the transition never happened.
    c.persist_failed("tx");
    assert_eq!(c.get("tx").unwrap().state, TxnState::Empty);
    // A first InitProducerId whose write failed leaves nothing behind.
    let first = c
        .init_producer_id("other", 60_000, None, NOW, || 9)
        .unwrap();
    assert_eq!(first.metadata.producer_id, 9);
    assert!(c.get("other").is_none(), "not persisted yet");
    c.persist_failed("other");
    assert!(c.get("other").is_none());
    assert_eq!(c.all().count(), 1);
}

#[test]
fn init_producer_id_bumps_the_epoch_and_fences_the_old_producer() {
    let mut c = initialized();
    let again = persist(&mut c, |c| c_init(c, None));
    assert_eq!(
        (again.metadata.producer_id, again.metadata.producer_epoch),
        (7, 1)
    );
    assert_eq!(
        c.add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW),
        Err(error::PRODUCER_FENCED)
    );
    assert_eq!(
        c.end_txn("tx", pe(7, 0), false, false, NOW),
        Err(error::PRODUCER_FENCED)
    );
    assert_eq!(
        c.add_partitions("tx", pe(8, 1), &parts(&[("a", 0)]), NOW),
        Err(error::INVALID_PRODUCER_ID_MAPPING)
    );
    assert_eq!(
        c.add_partitions("nobody", pe(7, 1), &parts(&[("a", 0)]), NOW),
        Err(error::INVALID_PRODUCER_ID_MAPPING)
    );
    // KIP-360: a client presenting an id and epoch that are not the current ones is a zombie.
    assert_eq!(c_init(&mut c, Some(pe(7, 5))), Err(error::PRODUCER_FENCED));
    let recovered = persist(&mut c, |c| c_init(c, Some(pe(7, 1))));
    assert_eq!(recovered.metadata.producer_epoch, 2);
}

#[test]
fn init_producer_id_aborts_a_transaction_left_open_with_the_new_epoch() {
    let mut c = open_on_a0();
    let fence = persist(&mut c, |c| c_init(c, None));
    assert_eq!(fence.metadata.state, TxnState::PrepareAbort);
    assert_eq!(
        fence.then,
        Then::FenceAndAbort {
            producer_id: 7,
            producer_epoch: 1,
            partitions: parts(&[("a", 0)]).into_iter().collect(),
        }
    );
    // Until the abort completes the new producer is told to retry.
    assert_eq!(c_init(&mut c, None), Err(error::CONCURRENT_TRANSACTIONS));
    persist(&mut c, |c| {
        c.markers_written("tx", 7, 1, NOW, None).ok_or(0)
    });
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteAbort);
    let ready = persist(&mut c, |c| c_init(c, None));
    assert_eq!(ready.metadata.producer_epoch, 2);
    assert_eq!(ready.metadata.state, TxnState::Empty);
}

#[test]
fn an_expired_transaction_is_aborted_with_the_next_epoch() {
    let mut c = open_on_a0();
    assert!(c.expired(NOW + 59_999).is_empty());
    assert_eq!(c.expired(NOW + 60_000), vec!["tx".to_string()]);
    let abort = persist(&mut c, |c| c.abort_expired("tx", NOW + 60_000).ok_or(0));
    assert_eq!(abort.metadata.producer_epoch, 1);
    assert!(matches!(
        abort.then,
        Then::WriteMarkers {
            control: ControlType::Abort,
            producer_epoch: 1,
            ..
        }
    ));
    // The producer that left it open is fenced.
    assert_eq!(
        c.end_txn("tx", pe(7, 0), true, false, NOW),
        Err(error::PRODUCER_FENCED)
    );
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut c = at_the_last_epoch(TxnState::CompleteCommit, &[]);
    let t = persist(&mut c, |c| {
        c.init_producer_id("tx", 60_000, None, NOW, || 8)
    });
    assert_eq!((t.metadata.producer_id, t.metadata.producer_epoch), (8, 0));
}

/// An open transaction at the last epoch is aborted (fencing its producer, or past its timeout) with the same
/// producer id at `i16::MAX`, so the markers end the transaction its records belong to; the id changes when the
/// abort completes.
#[test]
fn an_open_transaction_at_the_last_epoch_is_aborted_under_its_own_producer_id() {
    for fence in [true, false] {
        let mut c = open_at_the_last_epoch();
        let abort = if fence {
            persist(&mut c, |c| {
                c.init_producer_id("tx", 60_000, None, NOW, || 8)
            })
        } else {
            persist(&mut c, |c| c.abort_expired("tx", NOW + 60_000).ok_or(0))
        };
        let (producer_id, producer_epoch) = match abort.then {
            Then::WriteMarkers {
                producer_id,
                producer_epoch,
                ..
            }
            | Then::FenceAndAbort {
                producer_id,
                producer_epoch,
                ..
            } => (producer_id, producer_epoch),
            Then::Respond => panic!("markers expected"),
        };
        assert_eq!((producer_id, producer_epoch), (7, i16::MAX));
        assert!(c.completes_with_new_producer_id("tx"));
        let done = persist(&mut c, |c| {
            Ok(c.markers_written("tx", 7, i16::MAX, NOW, Some(9)).unwrap())
        });
        assert_eq!(
            (done.metadata.producer_id, done.metadata.producer_epoch),
            (9, 0)
        );
        assert_eq!(done.metadata.state, TxnState::CompleteAbort);
    }
}

#[test]
fn loading_resumes_the_markers_of_prepared_transactions() {
    let mut c = coordinator();
    let prepared = TxnMetadata {
        transactional_id: "p".into(),
        producer_id: 5,
        producer_epoch: 2,
        timeout_ms: 60_000,
        state: TxnState::PrepareAbort,
        partitions: parts(&[("a", 1)]).into_iter().collect(),
        start_ms: 0,
        last_update_ms: 0,
    };
    let done = TxnMetadata {
        transactional_id: "d".into(),
        state: TxnState::CompleteCommit,
        ..prepared.clone()
    };
    let resumed = c.load([
        ("p".to_string(), Some(prepared)),
        ("d".to_string(), Some(done)),
        ("gone".to_string(), None),
    ]);
    assert_eq!(
        resumed,
        vec![(
            "p".to_string(),
            Then::WriteMarkers {
                producer_id: 5,
                producer_epoch: 2,
                control: ControlType::Abort,
                partitions: parts(&[("a", 1)]).into_iter().collect(),
            }
        )]
    );
    let complete = c.markers_written("p", 5, 2, NOW, None).unwrap();
    assert_eq!(complete.metadata.state, TxnState::CompleteAbort);
}

#[test]
fn a_prepared_transaction_whose_marker_writer_stopped_is_handed_out_again_once() {
    let mut c = open_on_a0();
    persist(&mut c, |c| {
        Ok(c.end_txn("tx", pe(7, 0), true, false, NOW)
            .unwrap()
            .unwrap())
    });
    assert!(c.awaits_markers("tx", 7, 0, ControlType::Commit));
    assert!(!c.awaits_markers("tx", 7, 0, ControlType::Abort));
    // Its writer runs (started with the Prepare state): the sweep leaves it alone.
    assert_eq!(c.take_unfinished(), vec![]);
    // A writer of an earlier coordinator epoch ending changes nothing.
    c.markers_stopped("tx", 2);
    assert_eq!(c.take_unfinished(), vec![]);
    // Its own writer ended without completing it: handed out once, then counted as being written again.
    c.markers_stopped("tx", 3);
    let again = c.take_unfinished();
    assert_eq!(
        again,
        vec![(
            "tx".to_string(),
            Then::WriteMarkers {
                producer_id: 7,
                producer_epoch: 0,
                control: ControlType::Commit,
                partitions: parts(&[("a", 0)]).into_iter().collect(),
            }
        )]
    );
    assert_eq!(c.take_unfinished(), vec![]);
    persist(&mut c, |c| {
        Ok(c.markers_written("tx", 7, 0, NOW, None).unwrap())
    });
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteCommit);
    assert!(!c.awaits_markers("tx", 7, 0, ControlType::Commit));
    c.markers_stopped("tx", 3);
    assert_eq!(c.take_unfinished(), vec![]);
}

/// Transaction version 2: EndTxn bumps the epoch (markers carry it), a retry of that EndTxn is answered, and an
/// exhausted epoch ends at i16::MAX and completes with a new producer id at epoch 0.
#[test]
fn transaction_version_2_ends_each_transaction_with_the_next_epoch() {
    let mut c = initialized();
    let add = |c: &mut Coordinator, epoch: i16| {
        persist(c, |c| {
            Ok(
                c.add_partitions("tx", pe(7, epoch), &parts(&[("a", 0)]), NOW)
                    .unwrap()
                    .unwrap(),
            )
        })
    };
    add(&mut c, 0);
    let t = persist(&mut c, |c| {
        Ok(c.end_txn("tx", pe(7, 0), true, true, NOW).unwrap().unwrap())
    });
    assert_eq!(
        (t.metadata.producer_epoch, t.metadata.state),
        (1, TxnState::PrepareCommit)
    );
    assert_eq!(
        t.then,
        Then::WriteMarkers {
            producer_id: 7,
            producer_epoch: 1,
            control: ControlType::Commit,
            partitions: parts(&[("a", 0)]).into_iter().collect(),
        }
    );
    // A retry while the markers are written, then once complete.
    assert_eq!(
        c.end_txn("tx", pe(7, 0), true, true, NOW),
        Err(error::CONCURRENT_TRANSACTIONS)
    );
    persist(&mut c, |c| {
        Ok(c.markers_written("tx", 7, 1, NOW, None).unwrap())
    });
    assert_eq!(c.end_txn("tx", pe(7, 0), true, true, NOW), Ok(None));
    assert_eq!(
        c.end_txn("tx", pe(7, 0), false, true, NOW),
        Err(error::INVALID_TXN_STATE),
        "not the end it made"
    );
    // The old epoch is fenced for anything else.
    assert_eq!(
        c.add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW),
        Err(error::PRODUCER_FENCED)
    );
    // An abort with nothing open bumps too, with no markers to write.
    let t = persist(&mut c, |c| {
        Ok(c.end_txn("tx", pe(7, 1), false, true, NOW)
            .unwrap()
            .unwrap())
    });
    assert_eq!(t.metadata.producer_epoch, 2);
    assert!(t.metadata.partitions.is_empty());
    persist(&mut c, |c| {
        Ok(c.markers_written("tx", 7, 2, NOW, None).unwrap())
    });
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteAbort);

    // The exhausted epoch: ends at i16::MAX, completes with the new id the driver allocated.
    let mut c = open_at_the_last_epoch();
    let t = persist(&mut c, |c| {
        Ok(c.end_txn("tx", pe(7, i16::MAX - 1), true, true, NOW)
            .unwrap()
            .unwrap())
    });
    assert_eq!(t.metadata.producer_epoch, i16::MAX);
    assert!(c.completes_with_new_producer_id("tx"));
    assert_eq!(
        c.markers_written("tx", 7, i16::MAX, NOW, None),
        None,
        "needs the new id"
    );
    let done = persist(&mut c, |c| {
        Ok(c.markers_written("tx", 7, i16::MAX, NOW, Some(8)).unwrap())
    });
    assert_eq!(
        (
            done.metadata.producer_id,
            done.metadata.producer_epoch,
            done.metadata.state
        ),
        (8, 0, TxnState::CompleteCommit)
    );
    assert_eq!(
        c.end_txn("tx", pe(7, i16::MAX - 1), true, true, NOW),
        Ok(None)
    );
}

/// Transaction version 2 after a coordinator failover: the coordinator that loads `__transaction_state` knows a
/// retried EndTxn by its epoch, the one just before the bumped one, and answers it as the first one would have;
/// the producer's epochs before that stay fenced.
#[test]
fn a_retried_version_2_end_txn_is_answered_by_the_coordinator_that_took_over() {
    let mut c = open_on_a0();
    persist(&mut c, |c| {
        Ok(c.end_txn("tx", pe(7, 0), true, true, NOW).unwrap().unwrap())
    });
    let take_over = |c: &Coordinator| {
        let mut next = coordinator();
        let resumed = next.load([("tx".to_string(), c.get("tx").cloned())]);
        (next, resumed)
    };
    // Taken over while the markers are written: the retry waits, and the new coordinator writes them.
    let (mut next, resumed) = take_over(&c);
    assert_eq!(resumed.len(), 1);
    assert_eq!(
        next.end_txn("tx", pe(7, 0), true, true, NOW),
        Err(error::CONCURRENT_TRANSACTIONS)
    );
    persist(&mut next, |c| {
        Ok(c.markers_written("tx", 7, 1, NOW, None).unwrap())
    });
    // Taken over once complete: the retry is answered, the other end and older epochs are refused.
    let (mut last, _) = take_over(&next);
    assert_eq!(last.end_txn("tx", pe(7, 0), true, true, NOW), Ok(None));
    assert_eq!(
        last.end_txn("tx", pe(7, 0), false, true, NOW),
        Err(error::PRODUCER_FENCED),
        "not the end it made"
    );
    assert_eq!(
        last.add_partitions("tx", pe(7, 0), &parts(&[("a", 0)]), NOW),
        Err(error::PRODUCER_FENCED)
    );
    // Transaction version 1 never bumped: the epoch before the current one is a zombie's.
    assert_eq!(
        last.end_txn("tx", pe(7, 0), true, false, NOW),
        Err(error::PRODUCER_FENCED)
    );
}

#[test]
fn bad_timeouts_and_out_of_step_ends_get_kafka_s_codes() {
    let mut c = coordinator();
    assert_eq!(
        c.init_producer_id("tx", 0, None, NOW, || 7),
        Err(error::INVALID_TRANSACTION_TIMEOUT)
    );
    assert_eq!(
        c.init_producer_id("tx", 900_001, None, NOW, || 7),
        Err(error::INVALID_TRANSACTION_TIMEOUT)
    );
    assert!(c.get("tx").is_none(), "nothing created");
    let mut c = initialized();
    assert_eq!(
        c.end_txn("tx", pe(7, 0), true, false, NOW),
        Err(error::INVALID_TXN_STATE),
        "commit with nothing open"
    );
    assert_eq!(c.end_txn("tx", pe(7, 0), false, false, NOW), Ok(None));
    assert_eq!(
        c.end_txn("tx", pe(7, 1), false, false, NOW),
        Err(error::INVALID_PRODUCER_EPOCH),
        "an epoch from the future"
    );
}
