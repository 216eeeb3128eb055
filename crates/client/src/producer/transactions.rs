//! The transactional producer's state machine (the Java producer's `TransactionManager`), without I/O.
//!
//! States, as in Kafka: `Uninitialized` -> `Initializing` (InitProducerId) -> `Ready` -> `InTransaction`
//! (`begin_transaction`) -> `Committing` | `Aborting` (EndTxn) -> `Ready` ... An error that spoils only the
//! current transaction (a record that could not be delivered, an offset commit the group refused) leaves it
//! `Abortable`: only `abort_transaction` is allowed then. An error that means another producer owns the
//! transactional id now (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) or that no transaction can ever succeed
//! (authorization, an unsupported broker) is `Fatal`: every later call returns it, and the producer can only be
//! closed.
//!
//! The manager also knows which partitions the current transaction has told the coordinator about. A record for
//! a new partition makes it pending; the sender sends AddPartitionsToTxn for the pending partitions before any
//! batch of them is drained ([`TransactionManager::is_sendable`] gates the drain), as the coordinator must know
//! every partition before the transaction writes to it (else it could not write the partition's marker).

use std::collections::BTreeSet;
use std::fmt;

use rustc_hash::FxHashSet;
use strom_protocol::kafka::ResponseError;

use super::accumulator::{ProducerIdentity, TopicPartition};
use crate::error::Error;

/// Where the producer is in its transactions' life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Uninitialized,
    Initializing,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    Abortable,
    Fatal,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Uninitialized => "uninitialized (call init_transactions first)",
            State::Initializing => "initializing",
            State::Ready => "ready (no transaction begun)",
            State::InTransaction => "in a transaction",
            State::Committing => "committing",
            State::Aborting => "aborting",
            State::Abortable => "abortable (the transaction failed and must be aborted)",
            State::Fatal => "fatal",
        })
    }
}

/// How a transactional request's error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Try again: the coordinator moved or is loading (`rediscover`: look it up again), or is still finishing
    /// the previous transaction (`short`: CONCURRENT_TRANSACTIONS clears within milliseconds).
    Retry { rediscover: bool, short: bool },
    /// The current transaction cannot commit; aborting it recovers.
    Abortable,
    /// Nothing but closing the producer recovers.
    Fatal,
}

/// Classifies an error of a transactional request or of a transactional record's delivery.
pub(crate) fn classify(error: &Error) -> ErrorClass {
    let Some(code) = error.kafka_code() else {
        return match error {
            Error::UnsupportedVersion { .. } => ErrorClass::Fatal,
            // A call that kept retrying until max.block.ms: it may be called again.
            Error::Timeout { .. } => ErrorClass::Retry {
                rediscover: false,
                short: false,
            },
            e if e.is_retriable() => ErrorClass::Retry {
                rediscover: true,
                short: false,
            },
            _ => ErrorClass::Abortable,
        };
    };
    match code {
        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => {
            ErrorClass::Retry {
                rediscover: true,
                short: false,
            }
        }
        ResponseError::CoordinatorLoadInProgress
        | ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::RequestTimedOut
        | ResponseError::UnstableOffsetCommit => ErrorClass::Retry {
            rediscover: false,
            short: false,
        },
        ResponseError::ConcurrentTransactions => ErrorClass::Retry {
            rediscover: false,
            short: true,
        },
        ResponseError::ProducerFenced
        | ResponseError::InvalidProducerEpoch
        | ResponseError::TransactionalIdAuthorizationFailed
        | ResponseError::ClusterAuthorizationFailed
        | ResponseError::InvalidTransactionTimeout
        | ResponseError::UnsupportedVersion
        | ResponseError::UnsupportedForMessageFormat
        | ResponseError::TransactionCoordinatorFenced => ErrorClass::Fatal,
        _ => ErrorClass::Abortable,
    }
}

/// The state machine. See the module documentation.
pub(crate) struct TransactionManager {
    transactional_id: String,
    state: State,
    /// Why the state is `Abortable` or `Fatal`.
    error: Option<Error>,
    producer: Option<ProducerIdentity>,
    /// Partitions the coordinator has in the current transaction: their batches may be sent.
    added: FxHashSet<TopicPartition>,
    /// Partitions with records in the current transaction that the coordinator does not know yet.
    pending: BTreeSet<TopicPartition>,
    /// Partitions of an AddPartitionsToTxn in flight.
    adding: BTreeSet<TopicPartition>,
    /// The coordinator knows of this transaction (a partition or a group's offsets were added): ending it needs
    /// EndTxn. A transaction that wrote nothing ends locally, as in the Java producer.
    started: bool,
}

impl TransactionManager {
    pub fn new(transactional_id: String) -> Self {
        Self {
            transactional_id,
            state: State::Uninitialized,
            error: None,
            producer: None,
            added: FxHashSet::default(),
            pending: BTreeSet::new(),
            adding: BTreeSet::new(),
            started: false,
        }
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn producer(&self) -> Option<ProducerIdentity> {
        self.producer
    }

    /// The error to return for `operation` in a state that does not allow it.
    fn refuse(&self, operation: &'static str) -> Error {
        match (&self.error, self.state) {
            (Some(e), State::Fatal) => e.clone(),
            (Some(e), State::Abortable) => Error::TransactionState {
                transactional_id: self.transactional_id.clone(),
                operation,
                state: self.state.to_string(),
                reason: format!(": {e}"),
            },
            _ => Error::TransactionState {
                transactional_id: self.transactional_id.clone(),
                operation,
                state: self.state.to_string(),
                reason: String::new(),
            },
        }
    }

    fn expect(&self, operation: &'static str, allowed: &[State]) -> Result<(), Error> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(self.refuse(operation))
        }
    }

    /// `init_transactions` begins: once, before anything else (again after an attempt that failed retriably).
    pub fn begin_init(&mut self) -> Result<(), Error> {
        self.expect("init_transactions", &[State::Uninitialized])?;
        self.state = State::Initializing;
        Ok(())
    }

    /// InitProducerId answered: the producer id and epoch this producer writes with.
    pub fn init_completed(&mut self, producer: ProducerIdentity) {
        self.producer = Some(producer);
        self.state = State::Ready;
    }

    /// InitProducerId failed; returns the error to report. A producer that failed for a passing reason (a
    /// timeout) may call `init_transactions` again.
    pub fn init_failed(&mut self, error: Error) -> Error {
        match classify(&error) {
            ErrorClass::Fatal => self.fail(error),
            _ => {
                self.state = State::Uninitialized;
                error
            }
        }
    }

    pub fn begin(&mut self) -> Result<(), Error> {
        self.expect("begin_transaction", &[State::Ready])?;
        self.state = State::InTransaction;
        self.started = false;
        Ok(())
    }

    /// A record for `tp` is about to be accepted: allowed only inside a transaction; a new partition becomes
    /// pending.
    pub fn on_send(&mut self, tp: &TopicPartition) -> Result<(), Error> {
        if self.state != State::InTransaction {
            return Err(self.refuse("send"));
        }
        if !self.added.contains(tp) && !self.adding.contains(tp) && !self.pending.contains(tp) {
            self.pending.insert(tp.clone());
        }
        Ok(())
    }

    /// Whether batches of `tp` may be drained: the coordinator has it in the transaction.
    pub fn is_sendable(&self, tp: &TopicPartition) -> bool {
        self.added.contains(tp)
    }

    /// The pending partitions to send AddPartitionsToTxn for, with the identity to send it as; none when there
    /// are none, or an add is already in flight, or the transaction is past needing them.
    pub fn take_pending(&mut self) -> Option<(ProducerIdentity, Vec<TopicPartition>)> {
        if self.pending.is_empty()
            || !self.adding.is_empty()
            || !matches!(self.state, State::InTransaction | State::Committing)
        {
            return None;
        }
        let producer = self.producer?;
        self.adding = std::mem::take(&mut self.pending);
        self.started = true;
        Some((producer, self.adding.iter().cloned().collect()))
    }

    /// AddPartitionsToTxn succeeded: the partitions' batches may go.
    pub fn partitions_added(&mut self) {
        self.added.extend(std::mem::take(&mut self.adding));
    }

    /// AddPartitionsToTxn failed for good (retriable errors were retried): the transaction cannot commit.
    /// Returns the partitions whose queued records must now fail, and the error to fail them with.
    pub fn add_failed(&mut self, error: Error) -> (Vec<TopicPartition>, Error) {
        let failed: Vec<TopicPartition> = std::mem::take(&mut self.adding)
            .into_iter()
            .chain(std::mem::take(&mut self.pending))
            .collect();
        let error = self.on_error(error);
        (failed, error)
    }

    /// Errors unless a transaction is open (and has not failed).
    pub fn expect_in_transaction(&self, operation: &'static str) -> Result<(), Error> {
        self.expect(operation, &[State::InTransaction])
    }

    /// `send_offsets_to_transaction` begins (AddOffsetsToTxn, then TxnOffsetCommit).
    pub fn begin_send_offsets(&mut self) -> Result<ProducerIdentity, Error> {
        self.expect("send_offsets_to_transaction", &[State::InTransaction])?;
        self.started = true;
        Ok(self.producer.expect("initialized before a transaction"))
    }

    /// `commit_transaction` begins: from a transaction, or again after a commit that timed out.
    pub fn begin_commit(&mut self) -> Result<(), Error> {
        self.expect(
            "commit_transaction",
            &[State::InTransaction, State::Committing],
        )?;
        self.state = State::Committing;
        Ok(())
    }

    /// `abort_transaction` begins: from a transaction, a failed one, or again after an abort that timed out.
    pub fn begin_abort(&mut self) -> Result<(), Error> {
        self.expect(
            "abort_transaction",
            &[State::InTransaction, State::Abortable, State::Aborting],
        )?;
        self.state = State::Aborting;
        self.error = None;
        Ok(())
    }

    /// The commit or abort is still what is going on (an error while flushing may have changed that); returns
    /// whether EndTxn must be sent, with the identity to send it as.
    pub fn ending(&self, operation: &'static str) -> Result<Option<ProducerIdentity>, Error> {
        let state = if operation == "commit_transaction" {
            State::Committing
        } else {
            State::Aborting
        };
        self.expect(operation, &[state])?;
        Ok(self.started.then_some(self.producer).flatten())
    }

    /// EndTxn succeeded (or was not needed): ready for the next transaction.
    pub fn end_completed(&mut self) {
        self.state = State::Ready;
        self.started = false;
        self.added.clear();
        self.pending.clear();
        self.adding.clear();
    }

    /// The producer has a new epoch (after an abort that left sequence numbers in doubt).
    pub fn epoch_bumped(&mut self, producer: ProducerIdentity) {
        self.producer = Some(producer);
    }

    /// An error during a transaction, after retries: moves to `Abortable` or `Fatal` as its class says (a
    /// retriable error that outlived its retries spoils the transaction like an abortable one). Returns the
    /// error to report.
    pub fn on_error(&mut self, error: Error) -> Error {
        if self.state == State::Fatal {
            return self.error.clone().unwrap_or(error);
        }
        match classify(&error) {
            ErrorClass::Fatal => self.fail(error),
            // A commit or an abort that timed out is retried by calling it again, as in the Java producer.
            ErrorClass::Retry { .. }
                if matches!(self.state, State::Committing | State::Aborting) =>
            {
                error
            }
            _ if self.state == State::Aborting => error,
            _ => self.spoil(error),
        }
    }

    /// A record of the transaction was not delivered (after the producer's retries): the transaction cannot
    /// commit, whatever the cause.
    pub fn on_delivery_failed(&mut self, error: Error) -> Error {
        if self.state == State::Fatal {
            return self.error.clone().unwrap_or(error);
        }
        match classify(&error) {
            ErrorClass::Fatal => self.fail(error),
            _ => self.spoil(error),
        }
    }

    fn spoil(&mut self, error: Error) -> Error {
        if matches!(self.state, State::InTransaction | State::Committing) {
            self.state = State::Abortable;
            self.error = Some(error.clone());
        }
        error
    }

    fn fail(&mut self, error: Error) -> Error {
        let error = match error.kafka_code() {
            Some(code @ (ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)) => {
                Error::Kafka {
                    code,
                    context: format!(
                        "transactional.id {}: another producer with this id took over (this one is fenced and \
                         can only be closed)",
                        self.transactional_id
                    ),
                }
            }
            _ => error,
        };
        self.state = State::Fatal;
        self.error = Some(error.clone());
        self.pending.clear();
        self.adding.clear();
        self.added.clear();
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("out"),
            partition: p,
        }
    }

    fn kafka(code: ResponseError) -> Error {
        Error::Kafka {
            code,
            context: "test".into(),
        }
    }

    fn ready() -> TransactionManager {
        let mut m = TransactionManager::new("tx".into());
        m.begin_init().unwrap();
        m.init_completed(ProducerIdentity { id: 5, epoch: 0 });
        m
    }

    #[test]
    fn misuse_is_refused_with_the_state_named() {
        let mut m = TransactionManager::new("tx".into());
        let err = m.begin().unwrap_err();
        assert!(matches!(err, Error::TransactionState { .. }), "{err}");
        assert!(err.to_string().contains("init_transactions first"), "{err}");
        let mut m = ready();
        for err in [
            m.begin_commit().unwrap_err(),
            m.begin_abort().unwrap_err(),
            m.on_send(&tp(0)).unwrap_err(),
            m.begin_send_offsets().unwrap_err(),
            m.begin_init().unwrap_err(),
        ] {
            assert!(err.to_string().contains("no transaction begun"), "{err}");
        }
        m.begin().unwrap();
        assert!(m.begin().is_err(), "no nested transactions");
    }

    #[test]
    fn a_new_partition_is_added_once_before_its_batches_may_go() {
        let mut m = ready();
        m.begin().unwrap();
        assert!(m.take_pending().is_none(), "nothing to add yet");
        m.on_send(&tp(0)).unwrap();
        m.on_send(&tp(0)).unwrap();
        m.on_send(&tp(1)).unwrap();
        assert!(!m.is_sendable(&tp(0)));
        let (producer, partitions) = m.take_pending().unwrap();
        assert_eq!(producer, ProducerIdentity { id: 5, epoch: 0 });
        assert_eq!(partitions, vec![tp(0), tp(1)]);
        // While that add is in flight, a third partition waits for the next one.
        m.on_send(&tp(2)).unwrap();
        m.on_send(&tp(1)).unwrap();
        assert!(m.take_pending().is_none(), "one add at a time");
        m.partitions_added();
        assert!(m.is_sendable(&tp(0)) && m.is_sendable(&tp(1)));
        assert_eq!(m.take_pending().unwrap().1, vec![tp(2)]);
        m.partitions_added();
        m.begin_commit().unwrap();
        assert_eq!(m.ending("commit_transaction").unwrap(), m.producer());
        m.end_completed();
        assert_eq!(m.state(), State::Ready);
        assert!(
            !m.is_sendable(&tp(0)),
            "the next transaction adds its partitions again"
        );
        m.begin().unwrap();
        m.on_send(&tp(0)).unwrap();
        assert_eq!(m.take_pending().unwrap().1, vec![tp(0)]);
    }

    #[test]
    fn a_transaction_that_wrote_nothing_ends_without_end_txn() {
        let mut m = ready();
        m.begin().unwrap();
        m.begin_commit().unwrap();
        assert_eq!(m.ending("commit_transaction").unwrap(), None);
        m.end_completed();
        m.begin().unwrap();
        m.begin_send_offsets().unwrap();
        m.begin_abort().unwrap();
        assert!(m.ending("abort_transaction").unwrap().is_some());
    }

    #[test]
    fn an_abortable_error_allows_only_abort() {
        let mut m = ready();
        m.begin().unwrap();
        m.on_send(&tp(0)).unwrap();
        m.take_pending().unwrap();
        m.on_send(&tp(1)).unwrap();
        let (failed, err) = m.add_failed(kafka(ResponseError::TopicAuthorizationFailed));
        assert_eq!(failed, vec![tp(0), tp(1)], "their queued records fail");
        assert_eq!(
            err.kafka_code(),
            Some(ResponseError::TopicAuthorizationFailed)
        );
        assert_eq!(m.state(), State::Abortable);
        let refused = m.begin_commit().unwrap_err();
        assert!(
            refused.to_string().contains("must be aborted") && refused.to_string().contains("test"),
            "{refused}"
        );
        assert!(m.on_send(&tp(0)).is_err());
        m.begin_abort().unwrap();
        m.end_completed();
        m.begin().unwrap();
    }

    #[test]
    fn a_record_that_failed_spoils_the_commit() {
        let mut m = ready();
        m.begin().unwrap();
        m.begin_commit().unwrap();
        m.on_delivery_failed(Error::Timeout {
            what: "delivery".into(),
            timeout: std::time::Duration::from_secs(1),
        });
        assert_eq!(m.state(), State::Abortable);
        assert!(m.ending("commit_transaction").is_err());
    }

    #[test]
    fn fencing_is_fatal_and_every_later_call_says_so() {
        let mut m = ready();
        m.begin().unwrap();
        let err = m.on_error(kafka(ResponseError::ProducerFenced));
        assert_eq!(m.state(), State::Fatal);
        assert!(err.to_string().contains("fenced"), "{err}");
        for later in [
            m.begin_abort().unwrap_err(),
            m.begin_commit().unwrap_err(),
            m.begin().unwrap_err(),
            m.on_send(&tp(0)).unwrap_err(),
            m.on_error(kafka(ResponseError::NotCoordinator)),
        ] {
            assert_eq!(
                later.kafka_code(),
                Some(ResponseError::ProducerFenced),
                "{later}"
            );
        }
        let mut m = ready();
        m.begin().unwrap();
        m.begin_commit().unwrap();
        let err = m.on_error(kafka(ResponseError::InvalidProducerEpoch));
        assert_eq!(err.kafka_code(), Some(ResponseError::InvalidProducerEpoch));
        assert_eq!(m.state(), State::Fatal);
    }

    #[test]
    fn a_commit_that_timed_out_may_be_retried() {
        let mut m = ready();
        m.begin().unwrap();
        m.begin_commit().unwrap();
        m.on_error(Error::Timeout {
            what: "EndTxn".into(),
            timeout: std::time::Duration::from_secs(1),
        });
        assert_eq!(m.state(), State::Committing);
        m.begin_commit().unwrap();
        m.end_completed();
    }

    #[test]
    fn init_may_be_retried_after_a_passing_failure_but_not_after_fencing() {
        let mut m = TransactionManager::new("tx".into());
        m.begin_init().unwrap();
        m.init_failed(Error::Timeout {
            what: "InitProducerId".into(),
            timeout: std::time::Duration::from_secs(1),
        });
        m.begin_init().unwrap();
        m.init_failed(kafka(ResponseError::TransactionalIdAuthorizationFailed));
        assert_eq!(m.state(), State::Fatal);
        assert!(m.begin_init().is_err());
    }

    #[test]
    fn errors_are_classified_as_kafka_does() {
        assert_eq!(
            classify(&kafka(ResponseError::ConcurrentTransactions)),
            ErrorClass::Retry {
                rediscover: false,
                short: true
            }
        );
        assert_eq!(
            classify(&kafka(ResponseError::NotCoordinator)),
            ErrorClass::Retry {
                rediscover: true,
                short: false
            }
        );
        assert!(matches!(
            classify(&kafka(ResponseError::CoordinatorLoadInProgress)),
            ErrorClass::Retry { .. }
        ));
        assert_eq!(
            classify(&kafka(ResponseError::ProducerFenced)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&kafka(ResponseError::IllegalGeneration)),
            ErrorClass::Abortable
        );
        assert_eq!(classify(&Error::ProducerClosed), ErrorClass::Abortable);
    }
}
