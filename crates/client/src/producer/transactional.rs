//! The transactional producer's API (Kafka's: `init_transactions`, `begin_transaction`,
//! `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`) and the sender's part in it.
//!
//! ```no_run
//! # async fn run() -> Result<(), strom_client::Error> {
//! use strom_client::{Producer, ProducerConfig, ProducerRecord};
//! let mut config = ProducerConfig::new("127.0.0.1:9092");
//! config.set("transactional.id", "orders-enricher-1")?;
//! let producer = Producer::new(config).await?;
//! producer.init_transactions().await?;
//! producer.begin_transaction()?;
//! producer.send(ProducerRecord::new("out").value("v")).await?;
//! producer.commit_transaction().await?; // or abort_transaction()
//! # Ok(())
//! # }
//! ```
//!
//! A commit flushes first: every record of the transaction is acknowledged (or one failed, and the commit fails,
//! leaving the transaction to abort) before EndTxn. An abort fails the records not yet sent, waits for those in
//! flight, and ends the transaction; if a failed batch left the broker's sequence numbers in doubt, the producer
//! then takes a new epoch (InitProducerId with its own id and epoch, KIP-360) so the next transaction starts clean.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::coordinator::Coordinators;
use super::transactions::{State, TransactionManager};
use super::{Inner, Producer, ProducerConfig};
use crate::cluster::Cluster;
use crate::consumer::{self, ConsumerGroupMetadata, OffsetAndMetadata};
use crate::error::Error;

/// A transactional producer's state beside the accumulator.
pub(crate) struct Txn {
    pub manager: Mutex<TransactionManager>,
    coordinators: Coordinators,
    /// One coordinator request of the transaction at a time (the sender's AddPartitionsToTxn, AddOffsetsToTxn
    /// with its TxnOffsetCommit, EndTxn): the coordinator would answer a second one CONCURRENT_TRANSACTIONS, and
    /// EndTxn must follow every add.
    ops: tokio::sync::Mutex<()>,
}

impl Txn {
    pub fn new(transactional_id: &str, config: &ProducerConfig, cluster: Arc<Cluster>) -> Self {
        Self {
            manager: Mutex::new(TransactionManager::new(transactional_id.to_string())),
            coordinators: Coordinators::new(
                cluster,
                transactional_id.to_string(),
                config.transaction_timeout,
                config.retry_backoff,
                config.max_block,
            ),
            ops: tokio::sync::Mutex::new(()),
        }
    }
}

/// The sender's step before it drains: AddPartitionsToTxn for the partitions the transaction wrote to first. On
/// failure the transaction cannot commit, and the records waiting for those partitions fail.
pub(crate) async fn add_pending_partitions(inner: &Inner, txn: &Txn) {
    let Some((producer, partitions)) = txn.manager.lock().unwrap().take_pending() else {
        return;
    };
    let _op = txn.ops.lock().await;
    match txn.coordinators.add_partitions(producer, &partitions).await {
        Ok(()) => txn.manager.lock().unwrap().partitions_added(),
        Err(e) => {
            let (failed, error) = txn.manager.lock().unwrap().add_failed(e);
            tracing::warn!(error = %error, "AddPartitionsToTxn failed; the transaction must be aborted");
            inner
                .accumulator
                .lock()
                .unwrap()
                .fail_partitions(&failed, &error);
        }
    }
}

/// What a record not sent before its transaction was aborted fails with.
fn aborted(transactional_id: &str) -> Error {
    Error::TransactionState {
        transactional_id: transactional_id.to_string(),
        operation: "deliver the record",
        state: State::Aborting.to_string(),
        reason: ": its transaction was aborted before it was sent".into(),
    }
}

impl Producer {
    fn txn(&self, operation: &str) -> Result<&Txn, Error> {
        self.inner.txn.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "{operation} needs a transactional producer (set transactional.id)"
            ))
        })
    }

    /// Registers the `transactional.id` with its coordinator and gets the producer id and epoch to write with.
    /// Fences every older producer with the same id (their later writes and commits fail) and completes or
    /// aborts a transaction one of them left open. Call once, before the first transaction.
    pub async fn init_transactions(&self) -> Result<(), Error> {
        let txn = self.txn("init_transactions")?;
        txn.manager.lock().unwrap().begin_init()?;
        let _op = txn.ops.lock().await;
        match txn.coordinators.init_producer_id(None).await {
            Ok(identity) => {
                tracing::debug!(
                    producer_id = identity.id,
                    epoch = identity.epoch,
                    "transactional producer initialized"
                );
                self.inner
                    .accumulator
                    .lock()
                    .unwrap()
                    .set_producer(identity);
                txn.manager.lock().unwrap().init_completed(identity);
                Ok(())
            }
            Err(e) => Err(txn.manager.lock().unwrap().init_failed(e)),
        }
    }

    /// Starts a transaction: the records sent until it is committed or aborted belong to it.
    pub fn begin_transaction(&self) -> Result<(), Error> {
        self.txn("begin_transaction")?
            .manager
            .lock()
            .unwrap()
            .begin()
    }

    /// Makes a consumer's offsets (the next offset to read per partition) part of the transaction: committed to
    /// `group` when the transaction commits, dropped when it aborts. `group` comes from the consumer's
    /// [`group_metadata`](crate::consumer::Consumer::group_metadata); a consumer that is no longer that
    /// generation's member is refused, and the transaction must be aborted.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<consumer::TopicPartition, OffsetAndMetadata>,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), Error> {
        let txn = self.txn("send_offsets_to_transaction")?;
        if offsets.is_empty() {
            return txn
                .manager
                .lock()
                .unwrap()
                .expect_in_transaction("send_offsets_to_transaction");
        }
        let producer = txn.manager.lock().unwrap().begin_send_offsets()?;
        let _op = txn.ops.lock().await;
        let result = async {
            txn.coordinators
                .add_offsets(producer, &group.group_id)
                .await?;
            txn.coordinators
                .txn_offset_commit(producer, group, offsets)
                .await
        }
        .await;
        result.map_err(|e| txn.manager.lock().unwrap().on_error(e))
    }

    /// Sends every record of the transaction, waits until all are acknowledged, and commits the transaction:
    /// its records become visible to read_committed consumers and its offsets are committed, together. If a
    /// record failed, the commit fails and the transaction must be aborted. A commit that timed out (the
    /// coordinator unreachable for `max.block.ms`) may be called again.
    pub async fn commit_transaction(&self) -> Result<(), Error> {
        let txn = self.txn("commit_transaction")?;
        {
            // Under the accumulator's lock: a record being accepted now is either in this transaction (and the
            // flush below waits for it) or refused.
            let _accumulator = self.inner.accumulator.lock().unwrap();
            txn.manager.lock().unwrap().begin_commit()?;
        }
        self.flush().await;
        let failure = self.inner.accumulator.lock().unwrap().take_failure();
        if let Some(e) = failure {
            return Err(txn.manager.lock().unwrap().on_delivery_failed(e));
        }
        let _op = txn.ops.lock().await;
        let producer = txn.manager.lock().unwrap().ending("commit_transaction")?;
        if let Some(producer) = producer {
            if let Err(e) = txn.coordinators.end_txn(producer, true).await {
                return Err(txn.manager.lock().unwrap().on_error(e));
            }
        }
        txn.manager.lock().unwrap().end_completed();
        Ok(())
    }

    /// Aborts the transaction: records not sent yet fail (their futures and reports say so), those in flight are
    /// waited for, and the coordinator writes abort markers: read_committed consumers never see any of it, and
    /// its offsets are not committed. Allowed after a failed commit or send.
    pub async fn abort_transaction(&self) -> Result<(), Error> {
        let txn = self.txn("abort_transaction")?;
        {
            let mut accumulator = self.inner.accumulator.lock().unwrap();
            let mut manager = txn.manager.lock().unwrap();
            manager.begin_abort()?;
            accumulator.abort_queued(&aborted(manager.transactional_id()));
        }
        self.flush().await;
        drop(self.inner.accumulator.lock().unwrap().take_failure());
        let _op = txn.ops.lock().await;
        let producer = txn.manager.lock().unwrap().ending("abort_transaction")?;
        if let Some(producer) = producer {
            if let Err(e) = txn.coordinators.end_txn(producer, false).await {
                return Err(txn.manager.lock().unwrap().on_error(e));
            }
        }
        if self.inner.accumulator.lock().unwrap().needs_epoch_bump() {
            let current = txn.manager.lock().unwrap().producer();
            match txn.coordinators.init_producer_id(current).await {
                Ok(identity) => {
                    tracing::debug!(
                        producer_id = identity.id,
                        epoch = identity.epoch,
                        "new epoch after an aborted transaction with failed batches"
                    );
                    self.inner
                        .accumulator
                        .lock()
                        .unwrap()
                        .set_producer(identity);
                    txn.manager.lock().unwrap().epoch_bumped(identity);
                }
                Err(e) => return Err(txn.manager.lock().unwrap().on_error(e)),
            }
        }
        txn.manager.lock().unwrap().end_completed();
        Ok(())
    }

    /// On a graceful close: aborts a transaction left open (best effort).
    pub(super) async fn abort_open_transaction(&self) {
        let Some(txn) = &self.inner.txn else {
            return;
        };
        let state = txn.manager.lock().unwrap().state();
        if matches!(
            state,
            State::InTransaction | State::Abortable | State::Aborting
        ) {
            if let Err(e) = self.abort_transaction().await {
                tracing::debug!(error = %e, "aborting the open transaction on close failed");
            }
        }
    }

    /// Whether the producer's `transactional.id` was taken over by a newer producer, or its transactions failed
    /// in another way nothing but closing recovers from.
    pub fn is_fenced(&self) -> bool {
        self.inner
            .txn
            .as_ref()
            .is_some_and(|t| t.manager.lock().unwrap().state() == State::Fatal)
    }
}
