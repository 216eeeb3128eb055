//! The async producer.
//!
//! `send` picks the partition, waits for buffer space (`buffer.memory`: it waits instead of growing), and
//! appends the record to its partition's batch in the [`accumulator`]; it returns a [`DeliveryFuture`]. One
//! sender task drains ready batches, groups them by leader into Produce requests, and queues each request
//! on the leader's connection in drain order (the order the broker must see them in); a small task per
//! request awaits the response and reports each batch's outcome back to the accumulator, which decides
//! between done, retry and failure. All policy lives in the accumulator, which has no I/O.
//!
//! With `transactional.id` the producer is transactional (see [`transactional`]): the [`transactions`] state
//! machine says which calls are allowed and which partitions the coordinator has in the transaction, the sender
//! adds new partitions ([`coordinator`]) before it drains their batches.

mod accumulator;
mod config;
mod coordinator;
mod record;
mod transactional;
mod transactions;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strom_protocol::kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
use strom_protocol::kafka::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::records::Compression;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterConfig};
use crate::connection::ConnectionConfig;
use crate::error::Error;
use crate::partitioner::Partitioner;
use accumulator::{
    Accumulator, Batch, Outcome, PendingRecord, ProducerIdentity, Settings, TopicPartition,
    Undelivered, UndeliveredGuard,
};

pub use config::{Acks, PartitionerChoice, ProducerConfig};
pub use record::{DeliveryFuture, DeliveryReport, IntoTopic, ProducerRecord, RecordMetadata};
use record::{Reply, ReportSlot};

/// An async Kafka producer. Share it behind an `Arc`; dropping it closes it in the background (use
/// [`Producer::close`] to wait for delivery).
pub struct Producer {
    inner: Arc<Inner>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    config: ProducerConfig,
    cluster: Arc<Cluster>,
    partitioner: Arc<dyn Partitioner>,
    accumulator: Mutex<Accumulator>,
    memory: Arc<Semaphore>,
    wake: Notify,
    /// Number of flush() calls in progress; while non-zero every batch is ready at once.
    flushing: Mutex<usize>,
    /// Records accepted but not yet completed, for flush().
    undelivered: Arc<Undelivered>,
    closing: AtomicBool,
    /// With `transactional.id`.
    txn: Option<transactional::Txn>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to the cluster and starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Self, Error> {
        let config = config.validated()?;
        let cluster = Cluster::connect(ClusterConfig {
            bootstrap_servers: config.bootstrap_servers.clone(),
            connection: ConnectionConfig {
                client_id: config.client_id.clone(),
                request_timeout: config.request_timeout,
                ..ConnectionConfig::default()
            },
            allow_auto_topic_creation: true,
        })
        .await?;
        Ok(Self::with_cluster(config, cluster))
    }

    /// A producer over an existing cluster view (shared with other clients of the same application).
    pub fn with_cluster(config: ProducerConfig, cluster: Arc<Cluster>) -> Self {
        let settings = Settings {
            batch_size: config.batch_size,
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            idempotent: config.enable_idempotence,
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            delivery_timeout: config.delivery_timeout,
            transactional: config.transactional_id.is_some(),
        };
        let txn = config
            .transactional_id
            .as_ref()
            .map(|id| transactional::Txn::new(id, &config, cluster.clone()));
        let inner = Arc::new(Inner {
            partitioner: config.partitioner.build(),
            memory: Arc::new(Semaphore::new(config.buffer_memory)),
            accumulator: Mutex::new(Accumulator::new(settings)),
            config,
            cluster,
            wake: Notify::new(),
            flushing: Mutex::new(0),
            undelivered: Arc::default(),
            closing: AtomicBool::new(false),
            txn,
        });
        let sender = tokio::spawn(run_sender(inner.clone()));
        Self {
            inner,
            sender: Mutex::new(Some(sender)),
        }
    }

    /// Accepts a record for delivery. Waits (at most `max.block.ms`) for the topic's metadata and for room
    /// in `buffer.memory`; errors here mean the record was not accepted. The returned future resolves with
    /// the record's partition, offset and timestamp once the broker acknowledged it, or with why not.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Error> {
        let (tx, rx) = oneshot::channel();
        self.accept(record, || Reply::Future(tx)).await?;
        Ok(DeliveryFuture { rx })
    }

    /// Accepts a record for delivery as [`send`](Self::send) does, its result counted in `report` instead of
    /// a future of its own: the cheaper way to send many records when only "all acknowledged, or the first
    /// failure" matters. A record not accepted (an error here) is not counted.
    pub async fn send_with_report(
        &self,
        record: ProducerRecord,
        report: &Arc<DeliveryReport>,
    ) -> Result<(), Error> {
        self.accept(record, || Reply::Report(ReportSlot::new(report.clone())))
            .await
    }

    async fn accept(
        &self,
        record: ProducerRecord,
        reply: impl FnOnce() -> Reply,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Err(Error::ProducerClosed);
        }
        let size = record.buffered_size();
        let limit = inner
            .config
            .max_request_size
            .min(inner.config.buffer_memory);
        if size > limit {
            return Err(Error::RecordTooLarge {
                size,
                limit,
                setting: if limit == inner.config.max_request_size {
                    "max.request.size"
                } else {
                    "buffer.memory"
                },
            });
        }
        let max_block = inner.config.max_block;
        // max.block.ms bounds the metadata wait and the buffer.memory wait together; the clock is read only
        // when there is a wait (not per record).
        let mut blocked_since = None;
        let count = match inner.cluster.partition_count(&record.topic) {
            Some(count) => count,
            None => {
                blocked_since = Some(tokio::time::Instant::now());
                inner
                    .cluster
                    .wait_for_topic(&record.topic, max_block)
                    .await?
                    .partition_count()
            }
        };
        let partition = match record.partition {
            Some(p) => p,
            None => {
                let p = inner.partitioner.partition(
                    &record.topic,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    count as u32,
                );
                i32::try_from(p).unwrap_or(i32::MAX)
            }
        };
        if usize::try_from(partition).map_or(true, |p| p >= count) {
            return Err(Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition,
                count,
            });
        }
        // Room in buffer.memory at once (the common case, no timer), else wait up to max.block.ms for it.
        let permit = match inner.memory.clone().try_acquire_many_owned(size as u32) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Error::ProducerClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => match tokio::time::timeout(
                max_block.saturating_sub(blocked_since.map_or(Duration::ZERO, |t| t.elapsed())),
                inner.memory.clone().acquire_many_owned(size as u32),
            )
            .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(Error::ProducerClosed),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!("waiting for {size} bytes of buffer.memory"),
                        timeout: max_block,
                    })
                }
            },
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let tp = TopicPartition {
            topic: record.topic.clone(),
            partition,
        };
        let pending = PendingRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp,
            size,
            reply: reply(),
            _permit: Some(permit),
            _undelivered: UndeliveredGuard::new(inner.undelivered.clone()),
        };
        let appended = {
            let mut acc = inner.accumulator.lock().unwrap();
            if inner.closing.load(Ordering::Acquire) {
                return Err(Error::ProducerClosed);
            }
            // Checked under the accumulator's lock, which a commit takes to leave the transaction: a record is
            // either in the transaction being committed (and the commit's flush waits for it) or refused.
            if let Some(txn) = &inner.txn {
                txn.manager.lock().unwrap().on_send(&tp)?;
            }
            acc.append(&tp, pending, Instant::now())
        };
        if appended.closed_batch {
            inner
                .partitioner
                .on_new_batch(&record.topic, partition as u32, count as u32);
        }
        if appended.wake {
            inner.wake.notify_one();
        }
        Ok(())
    }

    /// Sends every buffered record now and waits until all records accepted so far have a result (records
    /// sent concurrently with the flush are waited for too).
    pub async fn flush(&self) {
        *self.inner.flushing.lock().unwrap() += 1;
        self.inner.wake.notify_one();
        self.inner.undelivered.wait_for_zero().await;
        *self.inner.flushing.lock().unwrap() -= 1;
    }

    /// Stops accepting records, delivers what is buffered (bounded by `delivery.timeout.ms`) and stops the
    /// sender task. A transaction still open is aborted first, as the Java producer does on a graceful close
    /// (dropping the producer instead leaves it to the coordinator's `transaction.timeout.ms`, or to the next
    /// producer with the same `transactional.id`).
    pub async fn close(&self) {
        if self.inner.txn.is_some() {
            self.abort_open_transaction().await;
        }
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let sender = self.sender.lock().unwrap().take();
        if let Some(s) = sender {
            let _ = s.await;
        }
    }

    /// The cluster view this producer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Bytes of `buffer.memory` currently free.
    pub fn available_memory(&self) -> usize {
        self.inner.memory.available_permits()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender task finishes what is buffered and exits.
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run_sender(inner: Arc<Inner>) {
    loop {
        let closing = inner.closing.load(Ordering::Acquire);
        let now = Instant::now();
        let needs_id = {
            let mut acc = inner.accumulator.lock().unwrap();
            acc.expire(now);
            if closing && acc.is_idle() {
                return;
            }
            acc.needs_producer_id()
        };
        if needs_id {
            if let Err(e) = init_producer_id(&inner).await {
                tracing::warn!(error = %e, "InitProducerId failed; retrying");
                if !e.is_retriable() {
                    inner.accumulator.lock().unwrap().fail_all(&e);
                }
                wait(&inner, Some(Instant::now() + inner.config.retry_backoff)).await;
                continue;
            }
        }
        if let Some(txn) = &inner.txn {
            transactional::add_pending_partitions(&inner, txn).await;
        }
        let flush = closing || *inner.flushing.lock().unwrap() > 0;
        let drained = {
            let metadata = inner.cluster.metadata();
            let mut acc = inner.accumulator.lock().unwrap();
            let leader_of =
                |tp: &TopicPartition| metadata.topics.get(&*tp.topic)?.leader(tp.partition);
            match &inner.txn {
                None => acc.drain(Instant::now(), flush, leader_of),
                Some(txn) => {
                    let manager = txn.manager.lock().unwrap();
                    acc.drain_where(Instant::now(), flush, leader_of, |tp| {
                        manager.is_sendable(tp)
                    })
                }
            }
        };
        for tp in &drained.closed {
            if let Some(t) = inner.cluster.topic(&tp.topic) {
                inner.partitioner.on_new_batch(
                    &tp.topic,
                    tp.partition as u32,
                    t.partition_count() as u32,
                );
            }
        }
        if drained.missing_leader {
            if let Err(e) = inner.cluster.refresh().await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        if drained.batches.is_empty() {
            let deadline = {
                let acc = inner.accumulator.lock().unwrap();
                match &inner.txn {
                    None => acc.next_deadline(),
                    Some(txn) => {
                        let manager = txn.manager.lock().unwrap();
                        acc.next_deadline_where(|tp| manager.is_sendable(tp))
                    }
                }
            };
            let deadline = if drained.missing_leader {
                Some(Instant::now() + inner.config.retry_backoff)
            } else {
                deadline
            };
            wait(&inner, deadline).await;
            continue;
        }
        let mut by_broker: BTreeMap<i32, Vec<Batch>> = BTreeMap::new();
        for (broker, batch) in drained.batches {
            by_broker.entry(broker).or_default().push(batch);
        }
        for (broker, batches) in by_broker {
            send_to_broker(&inner, broker, batches).await;
        }
    }
}

/// Sleeps until woken, or until `deadline` when there is one.
async fn wait(inner: &Inner, deadline: Option<Instant>) {
    match deadline {
        Some(d) => {
            let _ = tokio::time::timeout_at(d.into(), inner.wake.notified()).await;
        }
        None => inner.wake.notified().await,
    }
}

async fn init_producer_id(inner: &Arc<Inner>) -> Result<(), Error> {
    let connection = inner.cluster.any_connection().await?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(i32::MAX)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let response = connection.request(&request).await?;
    if let Some(e) = Error::kafka(response.error_code, "InitProducerId") {
        return Err(e);
    }
    let identity = ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    };
    tracing::debug!(
        producer_id = identity.id,
        epoch = identity.epoch,
        "producer id assigned"
    );
    inner.accumulator.lock().unwrap().set_producer(identity);
    Ok(())
}

/// Encodes the batches, queues one Produce request on the broker's connection (so requests reach the
/// broker in drain order), and hands the response to a task that reports the outcomes.
async fn send_to_broker(inner: &Arc<Inner>, broker: i32, mut batches: Vec<Batch>) {
    let connection = match inner.cluster.broker_connection(broker).await {
        Ok(c) => c,
        Err(e) => {
            for b in batches {
                complete(inner, b, Outcome::Failed(e.clone()));
            }
            return;
        }
    };
    // A batch whose partition still has earlier batches in flight on another (closed) connection must not
    // overtake their retries: it goes back unsent, as a retriable failure.
    let (sendable, held_back): (Vec<Batch>, Vec<Batch>) = {
        let mut accumulator = inner.accumulator.lock().unwrap();
        batches
            .drain(..)
            .partition(|b| accumulator.claim_connection(&b.tp, connection.id()))
    };
    for b in held_back {
        let error = Error::ConnectionClosed {
            addr: connection.addr().to_string(),
            reason: "an earlier batch of the partition was in flight on a connection that closed"
                .into(),
        };
        complete(inner, b, Outcome::Failed(error));
    }
    let compression: Compression = inner.config.compression;
    let transactional = inner.txn.is_some();
    let mut topics: BTreeMap<Arc<str>, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut encoded = Vec::with_capacity(sendable.len());
    for mut batch in sendable {
        match batch.encode(compression, transactional) {
            Ok(bytes) => {
                topics.entry(batch.tp.topic.clone()).or_default().push(
                    PartitionProduceData::default()
                        .with_index(batch.tp.partition)
                        .with_records(Some(bytes)),
                );
                encoded.push(batch);
            }
            Err(e) => {
                complete(inner, batch, Outcome::Failed(e));
            }
        }
    }
    if encoded.is_empty() {
        return;
    }
    let request = ProduceRequest::default()
        .with_transactional_id(inner.config.transactional_id.as_ref().map(|id| {
            strom_protocol::kafka::messages::TransactionalId(StrBytes::from_string(id.clone()))
        }))
        .with_acks(inner.config.acks.wire_value())
        .with_timeout_ms(
            i32::try_from(inner.config.request_timeout.as_millis()).unwrap_or(i32::MAX),
        )
        .with_topic_data(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_data(partitions)
                })
                .collect(),
        );
    if inner.config.acks == Acks::None {
        let result = connection.send_without_response(&request).await;
        for b in encoded {
            let outcome = match &result {
                Ok(()) => Outcome::Written {
                    base_offset: -1,
                    log_append_time: -1,
                },
                Err(e) => Outcome::Failed(e.clone()),
            };
            complete(inner, b, outcome);
        }
        return;
    }
    let pending = match connection.start_request(&request).await {
        Ok(p) => p,
        Err(e) => {
            for b in encoded {
                complete(inner, b, Outcome::Failed(e.clone()));
            }
            return;
        }
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        let response = pending.await;
        let mut refresh = false;
        for b in encoded {
            let outcome = match &response {
                Err(e) => Outcome::Failed(e.clone()),
                Ok(r) => partition_outcome(r, &b),
            };
            refresh |= complete(&inner, b, outcome);
        }
        if refresh {
            if let Err(e) = inner.cluster.refresh().await {
                tracing::debug!(error = %e, "metadata refresh after produce error failed");
            }
        }
        inner.wake.notify_one();
    });
}

fn partition_outcome(
    response: &strom_protocol::kafka::messages::ProduceResponse,
    batch: &Batch,
) -> Outcome {
    let found = response
        .responses
        .iter()
        .filter(|t| *t.name.0 == *batch.tp.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == batch.tp.partition);
    let Some(p) = found else {
        return Outcome::Failed(Error::Kafka {
            code: strom_protocol::kafka::ResponseError::NetworkException,
            context: format!(
                "produce response lacks {}-{}",
                batch.tp.topic, batch.tp.partition
            ),
        });
    };
    match Error::kafka(
        p.error_code,
        format!(
            "produce to {}-{}{}",
            batch.tp.topic,
            batch.tp.partition,
            p.error_message
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
    ) {
        Some(e) => Outcome::Failed(e),
        None => Outcome::Written {
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
        },
    }
}

/// Reports one batch's outcome; returns whether metadata should be refreshed.
fn complete(inner: &Inner, batch: Batch, outcome: Outcome) -> bool {
    let after = inner
        .accumulator
        .lock()
        .unwrap()
        .complete(batch, outcome, Instant::now());
    after.refresh_metadata
}

/// Default timeout helpers for tests and callers that want a bounded close.
impl Producer {
    /// `close` bounded by `timeout`; returns whether everything was delivered or failed in time.
    pub async fn close_timeout(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.close()).await.is_ok()
    }
}
