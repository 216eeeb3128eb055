//! The transaction coordinator's I/O: runs the requests through the state machine, persists each transition
//! before it counts, writes markers to the partitions a transaction touched, completes the transaction, and
//! aborts transactions that time out.
//!
//! Markers go to partitions this broker leads directly and to the others through their leader's WriteTxnMarkers
//! (`markers.rs`); a partition that cannot be written yet (no leader, a leader that does not answer) is retried,
//! and the transaction stays in its Prepare state until every marker is durable, so nothing half-done is reported
//! as done.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use strom_log::txn::{ControlType, Marker};
use strom_protocol::kafka::ResponseError;

use super::coordinator::{ProducerIdAndEpoch, Then, Transition};
use crate::clock::now_ms;
use crate::server::BrokerState;

/// How long a transition may take to be persisted.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long EndTxn waits for its transaction to complete before answering (it is durable either way).
const END_TXN_WAIT: Duration = Duration::from_secs(5);
/// How long the marker writer waits before retrying a partition it could not write.
const MARKER_RETRY: Duration = Duration::from_millis(200);

/// Persists `transition` for `transactional_id` and reports the outcome to its coordinator.
async fn persist(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    transition: &Transition,
) -> Result<(), i16> {
    let result = state
        .transactions
        .persist(&transition.metadata, PERSIST_TIMEOUT)
        .await;
    let _ = state.transactions.with(transactional_id, |c| match result {
        Ok(()) => c.persisted(transactional_id),
        Err(_) => c.persist_failed(transactional_id),
    });
    result
}

/// Persists `transition`, reports the outcome to its coordinator, then starts the markers it asks for (returning
/// their completion), in a task of its own: a request whose connection closes mid-way (dropping the handler's
/// future) must not leave the transition pending for good, nor a persisted Prepare state without its writer.
async fn persist_and_follow(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    transition: Transition,
) -> Result<Option<tokio::sync::oneshot::Receiver<()>>, i16> {
    let (state, transactional_id) = (state.clone(), transactional_id.to_string());
    tokio::spawn(async move {
        persist(&state, &transactional_id, &transition).await?;
        Ok(markers_of(&state, &transactional_id, transition.then))
    })
    .await
    .unwrap_or(Err(ResponseError::UnknownServerError.code()))
}

/// InitProducerId with a transactional id: the producer id and epoch to use.
pub async fn init_producer_id(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<ProducerIdAndEpoch>,
) -> Result<(i64, i16), i16> {
    // A new producer id is needed for a new transactional id or an exhausted epoch: allocate it first (outside
    // the coordinator's lock, as allocation may ask the controller); unused, it is simply skipped.
    let needs_id = state.transactions.with(transactional_id, |c| {
        c.get(transactional_id)
            .is_none_or(|m| m.producer_epoch >= i16::MAX - 1)
    })?;
    let fresh = if needs_id {
        Some(state.producer_ids.next(state).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            ResponseError::CoordinatorNotAvailable.code()
        })?)
    } else {
        None
    };
    let transition = state.transactions.with(transactional_id, |c| {
        c.init_producer_id(transactional_id, timeout_ms, expected, now_ms(), || {
            fresh.unwrap_or(-1)
        })
    })??;
    if transition.metadata.producer_id < 0 {
        // The id was needed after all (another request got in between): the client retries.
        let _ = state
            .transactions
            .with(transactional_id, |c| c.persist_failed(transactional_id));
        return Err(ResponseError::ConcurrentTransactions.code());
    }
    let (producer_id, producer_epoch) = (
        transition.metadata.producer_id,
        transition.metadata.producer_epoch,
    );
    match persist_and_follow(state, transactional_id, transition).await? {
        // The transaction left open is being aborted: the client retries until it is.
        Some(_) => Err(ResponseError::ConcurrentTransactions.code()),
        None => Ok((producer_id, producer_epoch)),
    }
}

/// AddPartitionsToTxn (and AddOffsetsToTxn's offsets partition).
pub async fn add_partitions(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partitions: &[(String, i32)],
) -> Result<(), i16> {
    let transition = state.transactions.with(transactional_id, |c| {
        c.add_partitions(transactional_id, producer, partitions, now_ms())
    })??;
    match transition {
        Some(t) => persist_and_follow(state, transactional_id, t)
            .await
            .map(|_| ()),
        None => Ok(()),
    }
}

/// EndTxn: answered once the decision is persisted; the markers follow in the background. Returns the producer
/// id and epoch the producer continues with: bumped under transaction version 2 (`bump_epoch`, EndTxn v5+).
pub async fn end_txn(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    commit: bool,
    bump_epoch: bool,
) -> Result<(i64, i16), i16> {
    let transition = state.transactions.with(transactional_id, |c| {
        c.end_txn(transactional_id, producer, commit, bump_epoch, now_ms())
    })??;
    let Some(transition) = transition else {
        // Already ended this way: the producer continues with what the transaction completed with.
        return current_producer(state, transactional_id);
    };
    let new_producer_id = transition.metadata.producer_epoch == i16::MAX;
    let (producer_id, producer_epoch) = (
        transition.metadata.producer_id,
        transition.metadata.producer_epoch,
    );
    if let Some(completed) = persist_and_follow(state, transactional_id, transition).await? {
        // The outcome is durable once the Prepare state is: answering now would be correct (Kafka does). But the
        // producer's next transaction would then meet CONCURRENT_TRANSACTIONS until the markers are written, and
        // wait out a retry backoff for it; waiting here for the markers, which take a few fsyncs, is faster. A
        // transaction whose markers take longer is answered anyway and completes in the background.
        let _ = tokio::time::timeout(END_TXN_WAIT, completed).await;
    }
    if new_producer_id {
        // The epoch is exhausted: the producer id it continues with exists once the transaction completes.
        // Until then the client retries (a retry of this EndTxn is recognised) and gets it.
        let (producer_id, producer_epoch) = current_producer(state, transactional_id)?;
        if producer_epoch == i16::MAX {
            return Err(ResponseError::ConcurrentTransactions.code());
        }
        return Ok((producer_id, producer_epoch));
    }
    Ok((producer_id, producer_epoch))
}

/// The producer id and epoch `transactional_id` has now.
fn current_producer(state: &Arc<BrokerState>, transactional_id: &str) -> Result<(i64, i16), i16> {
    state.transactions.with(transactional_id, |c| {
        c.get(transactional_id)
            .map(|m| (m.producer_id, m.producer_epoch))
            .ok_or(ResponseError::InvalidProducerIdMapping.code())
    })?
}

/// Resumes what a newly loaded coordinator found unfinished.
pub fn resume(state: &Arc<BrokerState>, resumed: super::store::Resumed) {
    for (transactional_id, then) in resumed {
        markers_of(state, &transactional_id, then);
    }
}

/// Starts writing the markers a transition asks for, if it asks for any; the receiver fires once the transaction
/// is complete.
fn markers_of(
    state: &Arc<BrokerState>,
    transactional_id: &str,
    then: Then,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    match then {
        Then::WriteMarkers {
            producer_id,
            producer_epoch,
            control,
            partitions,
        } => Some(spawn_markers(
            state.clone(),
            transactional_id.to_string(),
            producer_id,
            producer_epoch,
            control,
            partitions,
        )),
        Then::FenceAndAbort {
            producer_id,
            producer_epoch,
            partitions,
        } => Some(spawn_markers(
            state.clone(),
            transactional_id.to_string(),
            producer_id,
            producer_epoch,
            ControlType::Abort,
            partitions,
        )),
        Then::Respond => None,
    }
}

/// Writes the markers of one transaction to every partition it touched, waits until each is durable on its ISR,
/// then completes the transaction. Gives up only when the coordinator that started it is gone (this broker no
/// longer leads the transaction's partition, or leads it at a new epoch: the coordinator loaded then resumes from
/// the Prepare state), so no two writers of one coordinator overlap, nor one writer's retries and a later
/// transaction of the same producer epoch.
fn spawn_markers(
    state: Arc<BrokerState>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    partitions: BTreeSet<(String, i32)>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (completed, on_completed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut pending = partitions;
        let mut writer: Option<MarkerWriter> = None;
        loop {
            let now = state.transactions.with(&transactional_id, |c| {
                let awaits =
                    c.awaits_markers(&transactional_id, producer_id, producer_epoch, control);
                (c.coordinator_epoch, awaits)
            });
            let coordinator_epoch = match (now, &writer) {
                (Ok((epoch, true)), None) => {
                    writer = Some(MarkerWriter {
                        state: state.clone(),
                        transactional_id: transactional_id.clone(),
                        coordinator_epoch: epoch,
                    });
                    epoch
                }
                (Ok((epoch, true)), Some(w)) if w.coordinator_epoch == epoch => epoch,
                (Ok((_, false)), _) => return,
                _ => {
                    tracing::info!(
                        transactional_id,
                        "no longer the coordinator; markers left to the next one"
                    );
                    return;
                }
            };
            let marker = Marker {
                control,
                coordinator_epoch,
            };
            let failed =
                super::markers::write_once(&state, producer_id, producer_epoch, marker, &pending)
                    .await;
            if failed.is_empty() {
                break;
            }
            pending = failed;
            tokio::time::sleep(MARKER_RETRY).await;
        }
        // An exhausted epoch completes with a new producer id.
        let exhausted = state
            .transactions
            .with(&transactional_id, |c| {
                c.completes_with_new_producer_id(&transactional_id)
            })
            .unwrap_or(false);
        let next_producer_id = if exhausted {
            match state.producer_ids.next(&state).await {
                Ok(id) => Some(id),
                Err(e) => {
                    // Left prepared: the sweep writes the markers again and retries this.
                    tracing::warn!(transactional_id, error = %e, "cannot allocate a producer id");
                    return;
                }
            }
        } else {
            None
        };
        let transition = state.transactions.with(&transactional_id, |c| {
            c.markers_written(
                &transactional_id,
                producer_id,
                producer_epoch,
                now_ms(),
                next_producer_id,
            )
        });
        if let Ok(Some(t)) = transition {
            // The Complete state counts once appended, without waiting for its fsync: it follows the durable
            // Prepare state and markers, and anything the coordinator persists later on that partition (the next
            // transaction's first step, which does wait) makes it durable too. Lost in a crash, it leaves the
            // Prepare state, whose markers a reloading coordinator writes again (idempotent on the partitions).
            let appended = state.transactions.persist(&t.metadata, PERSIST_TIMEOUT);
            let result = match futures::FutureExt::now_or_never(appended) {
                // Already failed: the append itself was refused.
                Some(Err(code)) => Err(code),
                _ => Ok(()),
            };
            let _ = state
                .transactions
                .with(&transactional_id, |c| match result {
                    Ok(()) => c.persisted(&transactional_id),
                    Err(_) => c.persist_failed(&transactional_id),
                });
            match result {
                Ok(()) => {
                    let _ = completed.send(());
                }
                Err(code) => tracing::warn!(
                    transactional_id,
                    code,
                    "cannot complete the transaction; the next coordinator will"
                ),
            }
        }
    });
    on_completed
}

/// A running marker writer: reports to its coordinator when it ends, however it ends, so the sweep can start
/// another one for a transaction it left prepared.
struct MarkerWriter {
    state: Arc<BrokerState>,
    transactional_id: String,
    coordinator_epoch: i32,
}

impl Drop for MarkerWriter {
    fn drop(&mut self) {
        let _ = self.state.transactions.with(&self.transactional_id, |c| {
            c.markers_stopped(&self.transactional_id, self.coordinator_epoch)
        });
    }
}

/// Writes again the markers of every transaction left in a Prepare state with no writer (its writer ended
/// without completing it: completing could not be persisted). Without this it would stay prepared, holding the
/// last stable offset of its partitions, until the next leadership change.
pub fn redrive_unfinished(state: &Arc<BrokerState>) {
    let unfinished: Vec<(String, Then)> = state.transactions.for_each(|c| c.take_unfinished());
    for (transactional_id, then) in unfinished {
        tracing::info!(
            transactional_id,
            "writing the markers of a prepared transaction again"
        );
        markers_of(state, &transactional_id, then);
    }
}

/// Aborts the transactions open longer than their timeout, fencing their producers (one sweep).
pub async fn abort_timed_out(state: &Arc<BrokerState>) {
    let now = now_ms();
    let expired: Vec<String> = state.transactions.for_each(|c| c.expired(now));
    for transactional_id in expired {
        let transition = state.transactions.with(&transactional_id, |c| {
            c.abort_expired(&transactional_id, now)
        });
        let Ok(Some(transition)) = transition else {
            continue;
        };
        tracing::info!(
            transactional_id,
            producer_id = transition.metadata.producer_id,
            "aborting a transaction past its timeout"
        );
        let _ = persist_and_follow(state, &transactional_id, transition).await;
    }
}

/// Sweeps for timed-out transactions every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
pub fn start_timeouts(state: Arc<BrokerState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_millis(
        state
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            abort_timed_out(&state).await;
            redrive_unfinished(&state);
        }
    });
}
