//! The transaction coordinator's state machine (Kafka's `TransactionCoordinator` with `TransactionMetadata`),
//! without I/O: the driver persists each transition to `__transaction_state`, writes the markers it asks for, and
//! reports back. One instance serves the transactional ids of one `__transaction_state` partition this broker
//! leads, at that partition's leader epoch (the coordinator epoch stamped into markers).
//!
//! A request that changes a transaction's metadata yields a [`Transition`]: the metadata to persist, then what
//! follows. Until the driver calls [`Coordinator::persisted`] (or [`Coordinator::persist_failed`]) the id has a
//! pending transition and every other request for it gets CONCURRENT_TRANSACTIONS, which clients retry. Ending a
//! transaction is two transitions: to PrepareCommit/PrepareAbort (persisted before EndTxn is answered, so the
//! outcome survives a coordinator crash), then, once every partition has its marker, to
//! CompleteCommit/CompleteAbort. A coordinator that takes over a partition reloads it ([`Coordinator::load`]) and
//! resumes the marker writing of every transaction left in a Prepare state.
//!
//! States (Kafka's): Empty -> Ongoing (first AddPartitionsToTxn/AddOffsetsToTxn) -> PrepareCommit|PrepareAbort
//! (EndTxn, or the transaction timeout for an abort) -> CompleteCommit|CompleteAbort (markers written) -> Ongoing
//! (the next transaction) ... InitProducerId bumps the epoch from Empty or a Complete state, fencing the previous
//! producer; while a transaction is Ongoing it first aborts it with the bumped epoch.

use std::collections::{BTreeMap, BTreeSet};

use strom_log::txn::ControlType;

/// Kafka's error codes the coordinator answers with.
pub mod error {
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const PRODUCER_FENCED: i16 = 90;
}

/// A transaction's state, as Kafka names and numbers them in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            _ => return None,
        })
    }

    /// Kafka's names, as DescribeTransactions and ListTransactions show them.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }
}

/// One transactional id's metadata: what `__transaction_state` holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions the current (or last) transaction wrote to: (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction began (its first partition), -1 when none.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// The settings the coordinator enforces.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `transaction.max.timeout.ms` (Kafka's default 15 minutes).
    pub max_timeout_ms: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
        }
    }
}

/// What the driver does once a transition is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Answer the request (InitProducerId with the metadata's producer id and epoch).
    Respond,
    /// Answer the request if one waits (EndTxn), then write `control` markers for the producer id and epoch to
    /// `partitions`, and call [`Coordinator::markers_written`].
    WriteMarkers {
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        partitions: BTreeSet<(String, i32)>,
    },
    /// InitProducerId found a transaction open: it is being aborted with the bumped epoch (write these markers,
    /// as above); the client is answered CONCURRENT_TRANSACTIONS and retries until the abort completes.
    FenceAndAbort {
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<(String, i32)>,
    },
}

/// Metadata to persist, then what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub metadata: TxnMetadata,
    pub then: Then,
}

struct Entry {
    current: TxnMetadata,
    pending: Option<TxnMetadata>,
    /// Created by a first InitProducerId whose transition is not persisted yet: `current` is only a copy of it.
    fresh: bool,
    /// A Prepare state whose markers the driver is writing (it always starts writing them once the state is
    /// persisted or loaded, and reports [`Coordinator::markers_stopped`] when its writer ends).
    writing_markers: bool,
    /// The producer id and epoch that ended the last transaction under transaction version 2, before its epoch
    /// bump: a retry of that EndTxn (its response lost) is recognised by them and answered with the bumped ones.
    ended_by: Option<ProducerIdAndEpoch>,
}

/// The transactions of one `__transaction_state` partition.
pub struct Coordinator {
    settings: Settings,
    /// This partition's leader epoch: markers carry it, and a newer coordinator fences an older one's.
    pub coordinator_epoch: i32,
    txns: BTreeMap<String, Entry>,
}

/// How a request presents its producer: the id and epoch the client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl Coordinator {
    pub fn new(settings: Settings, coordinator_epoch: i32) -> Self {
        Self {
            settings,
            coordinator_epoch,
            txns: BTreeMap::new(),
        }
    }

    /// Loads the partition's metadata (the last value of each key in `__transaction_state`, a tombstone being
    /// `None`). Returns the transitions that were interrupted: every transaction in a Prepare state needs its
    /// markers written again (they are idempotent on the partitions), by transactional id.
    pub fn load(
        &mut self,
        records: impl IntoIterator<Item = (String, Option<TxnMetadata>)>,
    ) -> Vec<(String, Then)> {
        for (id, metadata) in records {
            match metadata {
                Some(m) => {
                    self.txns.insert(
                        id,
                        Entry {
                            current: m,
                            pending: None,
                            fresh: false,
                            writing_markers: false,
                            ended_by: None,
                        },
                    );
                }
                None => {
                    self.txns.remove(&id);
                }
            }
        }
        self.take_unfinished()
    }

    /// Every transaction in a Prepare state with no transition pending and no markers being written, with the
    /// markers it needs, now counted as being written: what [`Coordinator::load`] resumes, and what the driver's
    /// sweep writes again when a marker writer ended without completing its transaction.
    pub fn take_unfinished(&mut self) -> Vec<(String, Then)> {
        self.txns
            .values_mut()
            .filter(|e| e.pending.is_none() && !e.writing_markers)
            .filter_map(|e| {
                let m = &e.current;
                let control = match m.state {
                    TxnState::PrepareCommit => ControlType::Commit,
                    TxnState::PrepareAbort => ControlType::Abort,
                    _ => return None,
                };
                let then = write_markers(m, control);
                e.writing_markers = true;
                Some((m.transactional_id.clone(), then))
            })
            .collect()
    }

    /// The metadata of `transactional_id`, as persisted.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns
            .get(transactional_id)
            .filter(|e| !e.fresh)
            .map(|e| &e.current)
    }

    /// Every transactional id's metadata, as persisted.
    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values().filter(|e| !e.fresh).map(|e| &e.current)
    }

    /// InitProducerId with a transactional id. `next_producer_id` allocates a new id (a first use, or an exhausted
    /// epoch). `expected` is KIP-360's current id and epoch, when the client presents them.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<ProducerIdAndEpoch>,
        now_ms: i64,
        next_producer_id: impl FnOnce() -> i64,
    ) -> Result<Transition, i16> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(error::INVALID_TRANSACTION_TIMEOUT);
        }
        let Some(entry) = self.txns.get_mut(transactional_id) else {
            let metadata = TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id: next_producer_id(),
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            };
            self.txns.insert(
                transactional_id.to_string(),
                Entry {
                    current: metadata.clone(),
                    pending: Some(metadata.clone()),
                    fresh: true,
                    writing_markers: false,
                    ended_by: None,
                },
            );
            return Ok(Transition {
                metadata,
                then: Then::Respond,
            });
        };
        if entry.pending.is_some() {
            return Err(error::CONCURRENT_TRANSACTIONS);
        }
        let current = &entry.current;
        if let Some(expected) = expected {
            // KIP-360: a producer recovering from an error presents what it holds; anything but the current id
            // and epoch (or the one before, after a bump the producer did not see) is a zombie.
            let matches = expected.producer_id == current.producer_id
                && (expected.producer_epoch == current.producer_epoch
                    || expected.producer_epoch == current.producer_epoch - 1);
            if !matches {
                return Err(error::PRODUCER_FENCED);
            }
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(error::CONCURRENT_TRANSACTIONS),
            TxnState::Ongoing => {
                // Fence the producer that left it open: abort with the next epoch.
                let mut next = bumped_for_abort(current, now_ms);
                next.state = TxnState::PrepareAbort;
                next.timeout_ms = timeout_ms;
                let then = Then::FenceAndAbort {
                    producer_id: next.producer_id,
                    producer_epoch: next.producer_epoch,
                    partitions: next.partitions.clone(),
                };
                entry.pending = Some(next.clone());
                Ok(Transition {
                    metadata: next,
                    then,
                })
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let mut next = bumped(current, now_ms, next_producer_id);
                next.state = TxnState::Empty;
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_ms = -1;
                entry.pending = Some(next.clone());
                Ok(Transition {
                    metadata: next,
                    then: Then::Respond,
                })
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets` partition). `Ok(None)`: the
    /// partitions are in the transaction already, answer at once.
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<Transition>, i16> {
        let entry = self.checked(transactional_id, producer)?;
        let current = &entry.current;
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(error::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Dead => return Err(error::INVALID_TXN_STATE),
            _ => {}
        }
        let ongoing = current.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| current.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = current.clone();
        if !ongoing {
            // A new transaction: the last one's partitions are done with.
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms;
        entry.pending = Some(next.clone());
        Ok(Some(Transition {
            metadata: next,
            then: Then::Respond,
        }))
    }

    /// EndTxn. `Ok(None)`: a retry of an end already complete with the same result, answer at once (with the
    /// current producer id and epoch).
    ///
    /// `bump_epoch` is transaction version 2 (EndTxn v5+, KIP-890 part 2): the transaction ends with the next
    /// producer epoch, carried by its markers, so no write of the ended transaction's epoch is taken afterwards
    /// (a late produce, or a zombie's), and the producer continues with that epoch; an epoch that would overflow
    /// ends at `i16::MAX` and moves to a new producer id when the transaction completes. An abort with no
    /// transaction open bumps the epoch too.
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        commit: bool,
        bump_epoch: bool,
        now_ms: i64,
    ) -> Result<Option<Transition>, i16> {
        let (prepare, complete, control) = ending(commit);
        if bump_epoch {
            if let Some(entry) = self.txns.get(transactional_id) {
                let m = &entry.current;
                // A retry of the EndTxn that bumped the epoch (its response lost): this coordinator saw it
                // (`ended_by`, which also knows an exhausted epoch's move to a new producer id), or it comes from
                // the epoch just before the current one of a transaction that ended this way, which is what a
                // coordinator that took over from the one that answered knows of it (Kafka's rule).
                let retry = entry.ended_by == Some(producer)
                    || (producer.producer_id == m.producer_id
                        && producer.producer_epoch.checked_add(1) == Some(m.producer_epoch)
                        && (m.state == prepare || m.state == complete));
                if retry && entry.pending.is_none() {
                    return match m.state {
                        s if s == prepare => Err(error::CONCURRENT_TRANSACTIONS),
                        s if s == complete => Ok(None),
                        _ => Err(error::INVALID_TXN_STATE),
                    };
                }
            }
        }
        let entry = self.checked(transactional_id, producer)?;
        let current = &entry.current;
        let open = current.state == TxnState::Ongoing;
        let empty_abort = !commit
            && matches!(
                current.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            );
        if open || (bump_epoch && empty_abort) {
            let mut next = current.clone();
            next.state = prepare;
            next.last_update_ms = now_ms;
            if bump_epoch {
                // i16::MAX is reached only here: the epoch is exhausted, and the id changes on completion.
                next.producer_epoch = current.producer_epoch.saturating_add(1);
                entry.ended_by = Some(producer);
            }
            if !open {
                next.partitions.clear();
            }
            entry.pending = Some(next.clone());
            return Ok(Some(Transition {
                then: write_markers(&next, control),
                metadata: next,
            }));
        }
        match current.state {
            // The same end again (a retry after a lost response): already under way or done.
            s if s == prepare => Err(error::CONCURRENT_TRANSACTIONS),
            s if s == complete => Ok(None),
            // An abort with nothing open is harmless; anything else is the client out of step.
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort if !commit => {
                Ok(None)
            }
            _ => Err(error::INVALID_TXN_STATE),
        }
    }

    /// Whether completing `transactional_id`'s prepared transaction moves it to a new producer id (its epoch
    /// is exhausted): the driver then allocates one for [`Coordinator::markers_written`].
    pub fn completes_with_new_producer_id(&self, transactional_id: &str) -> bool {
        self.txns
            .get(transactional_id)
            .is_some_and(|e| e.current.producer_epoch == i16::MAX)
    }

    /// The markers of `producer_id`/`producer_epoch`'s transaction are on every partition: complete it (with
    /// `next_producer_id` at epoch 0 when the epoch is exhausted, see [`Coordinator::end_txn`]).
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
        next_producer_id: Option<i64>,
    ) -> Option<Transition> {
        let entry = self.txns.get_mut(transactional_id)?;
        let current = &entry.current;
        if entry.pending.is_some()
            || current.producer_id != producer_id
            || current.producer_epoch != producer_epoch
        {
            return None;
        }
        let complete = match current.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = current.clone();
        next.state = complete;
        next.last_update_ms = now_ms;
        if current.producer_epoch == i16::MAX {
            next.producer_id = next_producer_id?;
            next.producer_epoch = 0;
        }
        entry.pending = Some(next.clone());
        Some(Transition {
            metadata: next,
            then: Then::Respond,
        })
    }

    /// Transactions open longer than their timeout, to abort with [`Coordinator::abort_expired`].
    pub fn expired(&self, now_ms: i64) -> Vec<String> {
        self.txns
            .values()
            .filter(|e| e.pending.is_none())
            .map(|e| &e.current)
            .filter(|m| {
                m.state == TxnState::Ongoing && m.start_ms + i64::from(m.timeout_ms) <= now_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect()
    }

    /// Aborts an expired transaction with the next epoch, which fences the producer that left it open.
    pub fn abort_expired(&mut self, transactional_id: &str, now_ms: i64) -> Option<Transition> {
        let entry = self.txns.get_mut(transactional_id)?;
        if entry.pending.is_some() || entry.current.state != TxnState::Ongoing {
            return None;
        }
        let mut next = bumped_for_abort(&entry.current, now_ms);
        next.state = TxnState::PrepareAbort;
        entry.pending = Some(next.clone());
        Some(Transition {
            then: write_markers(&next, ControlType::Abort),
            metadata: next,
        })
    }

    /// The pending transition of `transactional_id` is in `__transaction_state`: it is now the metadata.
    pub fn persisted(&mut self, transactional_id: &str) {
        if let Some(entry) = self.txns.get_mut(transactional_id) {
            if let Some(next) = entry.pending.take() {
                // A Prepare state is followed by its markers, which the driver starts writing now.
                entry.writing_markers =
                    matches!(next.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
                entry.current = next;
                entry.fresh = false;
            }
        }
    }

    /// The driver's marker writer for `transactional_id`, started by the coordinator of `coordinator_epoch`,
    /// ended (its transaction completed, or it gave up). A writer of an earlier coordinator changes nothing.
    pub fn markers_stopped(&mut self, transactional_id: &str, coordinator_epoch: i32) {
        if coordinator_epoch != self.coordinator_epoch {
            return;
        }
        if let Some(entry) = self.txns.get_mut(transactional_id) {
            entry.writing_markers = false;
        }
    }

    /// Whether `producer_id`/`producer_epoch`'s transaction still waits for `control` markers (a marker writer
    /// stops once it does not).
    pub fn awaits_markers(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
    ) -> bool {
        let (prepared, _, _) = ending(control == ControlType::Commit);
        self.txns.get(transactional_id).is_some_and(|e| {
            let m = &e.current;
            m.producer_id == producer_id
                && m.producer_epoch == producer_epoch
                && m.state == prepared
        })
    }

    /// The pending transition could not be persisted: forget it (a first InitProducerId forgets the id).
    pub fn persist_failed(&mut self, transactional_id: &str) {
        let Some(entry) = self.txns.get_mut(transactional_id) else {
            return;
        };
        if entry
            .pending
            .as_ref()
            .is_some_and(|p| matches!(p.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
        {
            // The end did not happen: a retry of it is a new attempt, not a retry of a bump.
            entry.ended_by = None;
        }
        entry.pending = None;
        if entry.fresh {
            // A first InitProducerId inserted it before persisting; nothing of it exists.
            self.txns.remove(transactional_id);
        }
    }

    /// Validates the producer of a request about an existing transactional id.
    fn checked(
        &mut self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
    ) -> Result<&mut Entry, i16> {
        let entry = self
            .txns
            .get_mut(transactional_id)
            .ok_or(error::INVALID_PRODUCER_ID_MAPPING)?;
        if entry.current.producer_id != producer.producer_id {
            return Err(error::INVALID_PRODUCER_ID_MAPPING);
        }
        if producer.producer_epoch < entry.current.producer_epoch {
            return Err(error::PRODUCER_FENCED);
        }
        if producer.producer_epoch > entry.current.producer_epoch {
            return Err(error::INVALID_PRODUCER_EPOCH);
        }
        if entry.pending.is_some() {
            return Err(error::CONCURRENT_TRANSACTIONS);
        }
        Ok(entry)
    }
}

/// The Prepare state, Complete state and marker of a commit (`true`) or an abort.
fn ending(commit: bool) -> (TxnState, TxnState, ControlType) {
    if commit {
        (
            TxnState::PrepareCommit,
            TxnState::CompleteCommit,
            ControlType::Commit,
        )
    } else {
        (
            TxnState::PrepareAbort,
            TxnState::CompleteAbort,
            ControlType::Abort,
        )
    }
}

/// The markers that end `m`'s transaction: `control` on its partitions, under its producer id and epoch.
fn write_markers(m: &TxnMetadata, control: ControlType) -> Then {
    Then::WriteMarkers {
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        control,
        partitions: m.partitions.clone(),
    }
}

/// The metadata of an open transaction aborted with the next epoch, which fences its producer: the same producer
/// id, since the markers must end the transaction its records belong to. An exhausted epoch aborts at `i16::MAX`
/// and moves to a new producer id once the abort completes ([`Coordinator::markers_written`]).
fn bumped_for_abort(current: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut next = current.clone();
    next.producer_epoch = current.producer_epoch.saturating_add(1);
    next.last_update_ms = now_ms;
    next
}

/// The metadata with the next epoch, or a new producer id at epoch 0 when the epoch is exhausted.
fn bumped(
    current: &TxnMetadata,
    now_ms: i64,
    next_producer_id: impl FnOnce() -> i64,
) -> TxnMetadata {
    let mut next = current.clone();
    if current.producer_epoch >= i16::MAX - 1 {
        next.producer_id = next_producer_id();
        next.producer_epoch = 0;
    } else {
        next.producer_epoch += 1;
    }
    next.last_update_ms = now_ms;
    next
}

#[cfg(test)]
mod tests;
