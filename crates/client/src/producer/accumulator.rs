//! The producer's batching and idempotence state, without I/O: records in, batches out, outcomes in.
//!
//! Each partition has a queue of batches. Only the newest batch of a queue is open for appends; it closes
//! when the next record would push it past `batch.size` or when it is drained. A queue's front batch is
//! ready when it is closed, lingered `linger.ms`, is a retry whose backoff passed, or a flush is on.
//!
//! Ordering with retries. A batch gets its producer id, epoch and base sequence the first time it is drained
//! and keeps them on every retry. At most `max.in.flight` batches of one partition are in flight. When one
//! fails retriably it goes back to the front of its queue (sorted by sequence) and the partition enters
//! recovery: nothing more is drained for it until every in-flight batch came back, then the retried batches
//! go out one at a time, in sequence order, before any new batch. The broker therefore always sees
//! sequences in order; a batch that was in fact written before its response was lost comes back as a
//! duplicate, which the broker answers with the original offset.
//!
//! OUT_OF_ORDER_SEQUENCE_NUMBER is retried when an earlier batch of the same partition is still
//! unacknowledged (it is a consequence of that batch's failure, as in the Java producer); for the first
//! unacknowledged batch it is fatal for that batch, as is UNKNOWN_PRODUCER_ID, and the producer asks for a
//! new producer id once nothing is in flight (sequences then restart at 0 and queued retries are
//! re-stamped). Duplicates reported as DUPLICATE_SEQUENCE_NUMBER count as delivered with an unknown offset.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_protocol::kafka::ResponseError;

use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::record::{RecordMetadata, Reply};
use crate::error::Error;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// The producer's identity for idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// One record waiting in a batch. Its payload is dropped once the batch is encoded; the memory permit is
/// released when the record's result is delivered (or the record is dropped).
pub(crate) struct PendingRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp: i64,
    pub size: usize,
    pub reply: Reply,
    /// Held until the record's result is delivered: this is what bounds `buffer.memory`.
    pub _permit: Option<OwnedSemaphorePermit>,
    pub _undelivered: UndeliveredGuard,
}

/// Records accepted but without a result yet, which `flush` waits to reach zero. An atomic count, and a wake-up
/// only at zero: it changes twice per record.
#[derive(Debug, Default)]
pub(crate) struct Undelivered {
    count: AtomicUsize,
    zero: Notify,
}

impl Undelivered {
    /// Waits until every record counted has a result, including records counted while waiting.
    pub async fn wait_for_zero(&self) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a drop to zero in between is not missed.
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a record as undelivered for as long as it lives. A guard rather than explicit bookkeeping, so a
/// record dropped on any path (closing, a panic in a task) cannot leave flush waiting forever.
pub(crate) struct UndeliveredGuard(Option<Arc<Undelivered>>);

impl UndeliveredGuard {
    pub fn new(undelivered: Arc<Undelivered>) -> Self {
        undelivered.count.fetch_add(1, Ordering::AcqRel);
        Self(Some(undelivered))
    }

    #[cfg(test)]
    pub fn none() -> Self {
        Self(None)
    }
}

impl Drop for UndeliveredGuard {
    fn drop(&mut self) {
        if let Some(u) = &self.0 {
            if u.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                u.zero.notify_waiters();
            }
        }
    }
}

pub(crate) struct Batch {
    pub tp: TopicPartition,
    pub records: Vec<PendingRecord>,
    pub size: usize,
    pub created: Instant,
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    pub producer: Option<ProducerIdentity>,
    /// -1 until the first drain of an idempotent batch (and always for non-idempotent ones).
    pub base_sequence: i32,
    pub encoded: Option<Bytes>,
}

impl Batch {
    pub fn record_count(&self) -> i32 {
        self.records.len() as i32
    }

    /// Encodes the batch (once; retries resend the same bytes) and drops the record payloads. `transactional`
    /// sets the batch's transactional bit: its records are part of the producer's open transaction.
    pub fn encode(
        &mut self,
        compression: Compression,
        transactional: bool,
    ) -> Result<Bytes, Error> {
        if let Some(b) = &self.encoded {
            return Ok(b.clone());
        }
        let producer = self
            .producer
            .unwrap_or(ProducerIdentity { id: -1, epoch: -1 });
        let records: Vec<Record> = self
            .records
            .iter_mut()
            .enumerate()
            .map(|(i, r)| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.id,
                producer_epoch: producer.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder groups records whose offset - sequence is constant; keep it so even at -1.
                sequence: self.base_sequence.wrapping_add(i as i32),
                timestamp: r.timestamp,
                key: r.key.take(),
                value: r.value.take(),
                headers: std::mem::take(&mut r.headers)
                    .into_iter()
                    .map(|(k, v)| (strom_protocol::kafka::protocol::StrBytes::from_string(k), v))
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::with_capacity(self.size + 64);
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .map_err(|e| Error::Encode {
            api: strom_protocol::kafka::messages::ApiKey::Produce,
            version: 2,
            reason: format!("record batch: {e:#}"),
        })?;
        let bytes = buf.freeze();
        self.encoded = Some(bytes.clone());
        Ok(bytes)
    }

    /// Completes every record with its offset. Records sent with a report are counted there once per run of
    /// them, not once each.
    pub fn succeed(self, base_offset: i64, log_append_time: i64) {
        let topic = &self.tp.topic;
        let offset_of = |i: usize| {
            if base_offset >= 0 {
                base_offset + i as i64
            } else {
                -1
            }
        };
        let mut run: Option<(Arc<super::DeliveryReport>, u64, i64)> = None;
        // A record counts as undelivered (and holds its buffer memory) until every report has it: a flush that
        // returned before the last run was recorded would read a report missing it.
        let mut held = Vec::with_capacity(self.records.len());
        for (i, r) in self.records.into_iter().enumerate() {
            held.push((r._permit, r._undelivered));
            match r.reply {
                Reply::Future(tx) => {
                    let _ = tx.send(Ok(RecordMetadata {
                        topic: topic.to_string(),
                        partition: self.tp.partition,
                        offset: offset_of(i),
                        timestamp: if log_append_time >= 0 {
                            log_append_time
                        } else {
                            r.timestamp
                        },
                    }));
                }
                Reply::Report(slot) => {
                    let report = slot.take();
                    match &mut run {
                        Some((current, count, last)) if Arc::ptr_eq(current, &report) => {
                            *count += 1;
                            *last = offset_of(i);
                        }
                        _ => {
                            if let Some((done, count, last)) = run.take() {
                                done.record_acknowledged(topic, self.tp.partition, count, last);
                            }
                            run = Some((report, 1, offset_of(i)));
                        }
                    }
                }
            }
        }
        if let Some((done, count, last)) = run {
            done.record_acknowledged(topic, self.tp.partition, count, last);
        }
        drop(held);
    }

    pub fn fail(self, error: Error) {
        for r in self.records {
            match r.reply {
                Reply::Future(tx) => {
                    let _ = tx.send(Err(error.clone()));
                }
                Reply::Report(slot) => slot.take().record_failed(1, &error),
            }
        }
    }
}

/// Sets producer id, epoch and base sequence in an encoded RecordBatch v2 and recomputes its CRC.
/// Layout: baseOffset 0..8, length 8..12, leaderEpoch 12..16, magic 16, crc 17..21, attributes 21..23,
/// lastOffsetDelta 23..27, timestamps 27..43, producerId 43..51, epoch 51..53, baseSequence 53..57.
fn restamp(encoded: &Bytes, producer: ProducerIdentity, base_sequence: i32) -> Bytes {
    let mut b = BytesMut::from(&encoded[..]);
    b[43..51].copy_from_slice(&producer.id.to_be_bytes());
    b[51..53].copy_from_slice(&producer.epoch.to_be_bytes());
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

#[derive(Default)]
struct PartitionState {
    queue: VecDeque<Batch>,
    next_sequence: i32,
    /// The sequence after the last acknowledged batch: the broker's next expected sequence.
    acked_next: i32,
    in_flight: usize,
    recovering: bool,
    /// The connection the partition's latest batch went out on (see [`Accumulator::claim_connection`]).
    connection: Option<u64>,
}

/// Batching settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub batch_size: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub idempotent: bool,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub delivery_timeout: Duration,
    /// A transactional producer: its producer id comes from `init_transactions`, never from the sender, and a
    /// batch that fails is remembered so that the transaction does not commit without it.
    pub transactional: bool,
}

/// What an append did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Appended {
    /// A batch was closed by this append (the sticky partitioner moves on).
    pub closed_batch: bool,
    /// The sender should look now: a new batch (its linger timer starts) or a full one.
    pub wake: bool,
}

/// The outcome of one batch's produce attempt, as the driver saw it.
#[derive(Debug)]
pub(crate) enum Outcome {
    Written {
        base_offset: i64,
        log_append_time: i64,
    },
    Failed(Error),
}

/// What the driver should do after a completion.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AfterCompletion {
    pub refresh_metadata: bool,
}

/// Drained batches for one broker, in drain order.
pub(crate) struct Drained {
    pub batches: Vec<(i32, Batch)>,
    /// Partitions whose batch was closed by draining it (the sticky partitioner moves on).
    pub closed: Vec<TopicPartition>,
    /// Some ready partition has no known leader.
    pub missing_leader: bool,
}

pub(crate) struct Accumulator {
    settings: Settings,
    partitions: rustc_hash::FxHashMap<TopicPartition, PartitionState>,
    producer: Option<ProducerIdentity>,
    reset_needed: bool,
    /// Transactional only: the first batch that failed for good since the last [`Accumulator::take_failure`].
    failure: Option<Error>,
}

impl Accumulator {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            partitions: Default::default(),
            producer: None,
            reset_needed: false,
            failure: None,
        }
    }

    /// Adds a record to the partition's open batch, or opens a new one.
    pub fn append(&mut self, tp: &TopicPartition, record: PendingRecord, now: Instant) -> Appended {
        let batch_size = self.settings.batch_size;
        let state = self.partitions.entry(tp.clone()).or_default();
        let mut appended = Appended::default();
        let open = state
            .queue
            .back_mut()
            .filter(|b| b.attempts == 0 && b.base_sequence == -1 && b.encoded.is_none());
        match open {
            Some(b) if b.size + record.size <= batch_size => {
                b.size += record.size;
                b.records.push(record);
                appended.wake = b.size >= batch_size;
            }
            open => {
                appended.closed_batch = open.is_some();
                let size = record.size;
                state.queue.push_back(Batch {
                    tp: tp.clone(),
                    records: vec![record],
                    size,
                    created: now,
                    attempts: 0,
                    retry_at: None,
                    producer: None,
                    base_sequence: -1,
                    encoded: None,
                });
                appended.wake = true;
            }
        }
        appended
    }

    /// Whether the driver must (re)initialize the producer id before draining: at start, or after a fatal
    /// sequence error once nothing is in flight.
    pub fn needs_producer_id(&self) -> bool {
        self.settings.idempotent
            && !self.settings.transactional
            && (self.producer.is_none() || (self.reset_needed && self.in_flight() == 0))
    }

    /// Installs a (new) producer id: sequences restart at 0 and queued retries are re-stamped in order.
    pub fn set_producer(&mut self, producer: ProducerIdentity) {
        let changed = self.producer.is_some_and(|p| p != producer);
        self.producer = Some(producer);
        self.reset_needed = false;
        if !changed {
            return;
        }
        for state in self.partitions.values_mut() {
            state.next_sequence = 0;
            state.acked_next = 0;
            for b in state.queue.iter_mut().filter(|b| b.base_sequence != -1) {
                b.base_sequence = state.next_sequence;
                b.producer = Some(producer);
                state.next_sequence = increment_sequence(state.next_sequence, b.record_count());
                if let Some(e) = &b.encoded {
                    b.encoded = Some(restamp(e, producer, b.base_sequence));
                }
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight).sum()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.partitions
            .values()
            .all(|s| s.queue.is_empty() && s.in_flight == 0)
    }

    fn front_ready(&self, state: &PartitionState, now: Instant, flush: bool) -> bool {
        let Some(front) = state.queue.front() else {
            return false;
        };
        if state.in_flight >= self.settings.max_in_flight {
            return false;
        }
        if state.recovering && state.in_flight > 0 {
            return false;
        }
        if let Some(at) = front.retry_at {
            return at <= now;
        }
        if self.settings.idempotent && (self.producer.is_none() || self.reset_needed) {
            return false;
        }
        flush
            || state.queue.len() > 1
            || front.size >= self.settings.batch_size
            || front.created + self.settings.linger <= now
    }

    /// Takes the ready front batch of every partition whose leader is known, assigning sequences to first
    /// attempts. One batch per partition per call; the driver calls again while this returns batches.
    pub fn drain(
        &mut self,
        now: Instant,
        flush: bool,
        leader_of: impl Fn(&TopicPartition) -> Option<i32>,
    ) -> Drained {
        self.drain_where(now, flush, leader_of, |_| true)
    }

    /// [`drain`](Self::drain) of the partitions `allowed` accepts only: a transactional producer's partitions
    /// wait until the coordinator has them in the transaction.
    pub fn drain_where(
        &mut self,
        now: Instant,
        flush: bool,
        leader_of: impl Fn(&TopicPartition) -> Option<i32>,
        allowed: impl Fn(&TopicPartition) -> bool,
    ) -> Drained {
        let mut out = Drained {
            batches: Vec::new(),
            closed: Vec::new(),
            missing_leader: false,
        };
        let mut ready: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(tp, s)| self.front_ready(s, now, flush) && allowed(tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        ready.sort();
        for tp in ready {
            let Some(leader) = leader_of(&tp) else {
                out.missing_leader = true;
                continue;
            };
            let state = self.partitions.get_mut(&tp).expect("ready partition");
            let mut batch = state.queue.pop_front().expect("ready batch");
            if state.queue.is_empty() && batch.attempts == 0 {
                out.closed.push(tp.clone());
            }
            if self.settings.idempotent && batch.base_sequence == -1 {
                batch.producer = self.producer;
                batch.base_sequence = state.next_sequence;
                state.next_sequence = increment_sequence(state.next_sequence, batch.record_count());
            }
            if state.queue.front().is_none_or(|b| b.retry_at.is_none()) {
                state.recovering = false;
            }
            batch.attempts += 1;
            batch.retry_at = None;
            state.in_flight += 1;
            out.batches.push((leader, batch));
        }
        out
    }

    /// Whether the drained batch of `tp` may go out on `connection`. A batch is drained while earlier batches of
    /// its partition may still be in flight; if those went out on another connection (one that has since closed,
    /// as the pool hands out a new one only then), sending this batch on the new connection would let it reach
    /// the broker ahead of their retries. It must then not be sent: the caller completes it as a retriable
    /// failure, so it is retried in sequence order after them.
    pub fn claim_connection(&mut self, tp: &TopicPartition, connection: u64) -> bool {
        let Some(state) = self.partitions.get_mut(tp) else {
            return true;
        };
        // `in_flight` counts this batch too.
        if state.in_flight > 1 && state.connection.is_some_and(|c| c != connection) {
            return false;
        }
        state.connection = Some(connection);
        true
    }

    /// Records the outcome of one drained batch.
    pub fn complete(
        &mut self,
        mut batch: Batch,
        outcome: Outcome,
        now: Instant,
    ) -> AfterCompletion {
        let mut after = AfterCompletion::default();
        let Some(state) = self.partitions.get_mut(&batch.tp) else {
            batch.fail(Error::ProducerClosed);
            return after;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        let error = match outcome {
            Outcome::Written {
                base_offset,
                log_append_time,
            } => {
                if batch.base_sequence != -1 && batch.producer == self.producer {
                    state.acked_next =
                        increment_sequence(batch.base_sequence, batch.record_count());
                }
                batch.succeed(base_offset, log_append_time);
                return after;
            }
            Outcome::Failed(e) => e,
        };
        let code = error.kafka_code();
        if code == Some(ResponseError::DuplicateSequenceNumber) {
            state.acked_next = increment_sequence(batch.base_sequence, batch.record_count());
            batch.succeed(-1, -1);
            return after;
        }
        let stale_producer = batch.producer.is_some() && batch.producer != self.producer;
        let sequence_error = matches!(
            code,
            Some(ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId)
        );
        let retriable = if sequence_error {
            // Retriable only as the echo of an earlier batch's failure.
            code == Some(ResponseError::OutOfOrderSequenceNumber)
                && !stale_producer
                && !self.reset_needed
                && batch.base_sequence != state.acked_next
        } else {
            error.is_retriable()
        };
        let expired = batch.created + self.settings.delivery_timeout <= now;
        if retriable && batch.attempts <= self.settings.retries && !expired {
            after.refresh_metadata = code
                .is_some_and(|c| crate::error::is_metadata_error(c.code()))
                || matches!(
                    error,
                    Error::ConnectionClosed { .. } | Error::Connect { .. }
                );
            batch.retry_at = Some(now + self.settings.retry_backoff);
            let position = state
                .queue
                .iter()
                .position(|b| {
                    b.base_sequence == -1
                        || b.retry_at.is_none()
                        || b.base_sequence > batch.base_sequence
                })
                .unwrap_or(state.queue.len());
            state.queue.insert(position, batch);
            state.recovering = true;
            return after;
        }
        if sequence_error || (batch.base_sequence != -1 && self.settings.idempotent) {
            // A batch with a sequence is given up: the broker's sequence for this partition now has a gap
            // (or never had our id), so later batches need a fresh producer id.
            self.reset_needed = true;
        }
        let error = if expired && retriable {
            Error::Timeout {
                what: format!(
                    "delivery to {}-{} (last error: {error})",
                    batch.tp.topic, batch.tp.partition
                ),
                timeout: self.settings.delivery_timeout,
            }
        } else {
            error
        };
        if self.settings.transactional && self.failure.is_none() {
            self.failure = Some(error.clone());
        }
        batch.fail(error);
        after
    }

    /// Fails queued batches older than `delivery.timeout.ms` that are not in flight.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.settings.delivery_timeout;
        let mut reset = false;
        // A queue holds its batches oldest first (retries go back to the front), so the expired ones are a
        // prefix: this runs on every wake-up of the sender and must not touch the rest (a long queue made it
        // most of the producer's time when the broker lagged).
        for state in self.partitions.values_mut() {
            while state
                .queue
                .front()
                .is_some_and(|b| b.created + timeout <= now)
            {
                let b = state.queue.pop_front().expect("non-empty");
                reset |= b.base_sequence != -1;
                let what = format!("delivery to {}-{}", b.tp.topic, b.tp.partition);
                let error = Error::Timeout { what, timeout };
                if self.settings.transactional && self.failure.is_none() {
                    self.failure = Some(error.clone());
                }
                b.fail(error);
            }
        }
        if reset && self.settings.idempotent {
            self.reset_needed = true;
        }
    }

    /// The first batch failure since the last call (transactional producers only).
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// Fails every queued batch of an aborted transaction (those in flight complete on their own). A batch
    /// that had a sequence leaves a gap in the partition's sequences, which only a new epoch closes: see
    /// [`needs_epoch_bump`](Self::needs_epoch_bump).
    pub fn abort_queued(&mut self, error: &Error) {
        for state in self.partitions.values_mut() {
            for b in state.queue.drain(..) {
                self.reset_needed |= b.base_sequence != -1;
                b.fail(error.clone());
            }
            state.recovering = false;
        }
    }

    /// Fails the queued batches of `partitions` (their transaction could not take them).
    pub fn fail_partitions(&mut self, partitions: &[TopicPartition], error: &Error) {
        for tp in partitions {
            if let Some(state) = self.partitions.get_mut(tp) {
                for b in state.queue.drain(..) {
                    self.reset_needed |= b.base_sequence != -1;
                    b.fail(error.clone());
                }
            }
        }
    }

    /// A transactional producer's batches failed with sequences the broker may or may not have: the next
    /// transaction needs a new epoch (InitProducerId with the current id and epoch, KIP-360), with which
    /// sequences restart at 0.
    pub fn needs_epoch_bump(&self) -> bool {
        self.reset_needed
    }

    /// Fails everything queued (the producer is closing without a broker to deliver to).
    pub fn fail_all(&mut self, error: &Error) {
        for state in self.partitions.values_mut() {
            for b in state.queue.drain(..) {
                b.fail(error.clone());
            }
        }
    }

    /// The earliest instant at which some batch becomes ready (linger or retry backoff) or expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline_where(|_| true)
    }

    /// [`next_deadline`](Self::next_deadline) with the partitions `allowed` refuses waiting only for their
    /// batches' expiry: a batch waiting for its partition to join the transaction is not ready at its linger.
    pub fn next_deadline_where(
        &self,
        allowed: impl Fn(&TopicPartition) -> bool,
    ) -> Option<Instant> {
        self.partitions
            .iter()
            .flat_map(|(tp, s)| {
                s.queue.front().map(|b| {
                    let expiry = b.created + self.settings.delivery_timeout;
                    if allowed(tp) {
                        b.retry_at
                            .unwrap_or(b.created + self.settings.linger)
                            .min(expiry)
                    } else {
                        expiry
                    }
                })
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn settings() -> Settings {
        Settings {
            batch_size: 100,
            linger: Duration::from_millis(10),
            max_in_flight: 5,
            idempotent: true,
            retries: 10,
            retry_backoff: Duration::from_millis(50),
            delivery_timeout: Duration::from_secs(60),
            transactional: false,
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    fn record(
        size: usize,
    ) -> (
        PendingRecord,
        oneshot::Receiver<Result<RecordMetadata, Error>>,
    ) {
        let (tx, rx) = oneshot::channel();
        (
            PendingRecord {
                key: None,
                value: Some(Bytes::from(vec![b'x'; size])),
                headers: Vec::new(),
                timestamp: 1,
                size,
                reply: Reply::Future(tx),
                _permit: None,
                _undelivered: UndeliveredGuard::none(),
            },
            rx,
        )
    }

    fn reported(report: &Arc<super::super::DeliveryReport>) -> PendingRecord {
        PendingRecord {
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: Vec::new(),
            timestamp: 1,
            size: 1,
            reply: Reply::Report(super::super::record::ReportSlot::new(report.clone())),
            _permit: None,
            _undelivered: UndeliveredGuard::none(),
        }
    }

    fn batch_of(partition: i32, records: Vec<PendingRecord>) -> Batch {
        Batch {
            tp: tp(partition),
            size: records.len(),
            records,
            created: Instant::now(),
            attempts: 0,
            retry_at: None,
            producer: None,
            base_sequence: -1,
            encoded: None,
        }
    }

    #[test]
    fn a_delivery_report_counts_each_record_once_and_keeps_each_partition_s_end() {
        use super::super::DeliveryReport;
        let (report, other) = (DeliveryReport::new(), DeliveryReport::new());
        let (future, rx) = record(1);
        // Runs of one report, another report and a future record share a batch.
        let records = vec![
            reported(&report),
            reported(&report),
            reported(&other),
            future,
            reported(&report),
        ];
        batch_of(0, records).succeed(100, -1);
        batch_of(1, vec![reported(&report)]).succeed(7, -1);
        assert_eq!(report.acknowledged(), 4);
        assert_eq!(other.acknowledged(), 1);
        assert_eq!(rx.blocking_recv().unwrap().unwrap().offset, 103);
        let mut ends = report.take_next_offsets();
        ends.sort();
        assert_eq!(ends, vec![("t".into(), 0, 105), ("t".into(), 1, 8)]);
        assert!(report.take_next_offsets().is_empty(), "taken");
        assert_eq!(other.take_next_offsets(), vec![("t".into(), 0, 103)]);
        // Acknowledged without offsets (acks=0, a duplicate): counted, no end.
        batch_of(2, vec![reported(&report)]).succeed(-1, -1);
        assert_eq!(report.acknowledged(), 5);
        assert!(report.take_next_offsets().is_empty());
        assert!(report.error().is_none());

        batch_of(0, vec![reported(&report), reported(&report)]).fail(Error::ProducerClosed);
        assert_eq!(report.failed(), 2);
        assert!(matches!(report.error(), Some(Error::ProducerClosed)));
    }

    #[test]
    fn a_reported_record_dropped_without_a_result_counts_as_failed() {
        let report = super::super::DeliveryReport::new();
        drop(batch_of(0, vec![reported(&report)]));
        assert_eq!(report.failed(), 1);
        assert_eq!(report.acknowledged(), 0);
        assert!(report.error().is_some());
    }

    fn with_producer() -> Accumulator {
        let mut a = Accumulator::new(settings());
        a.set_producer(ProducerIdentity { id: 7, epoch: 0 });
        a
    }

    fn leader(_: &TopicPartition) -> Option<i32> {
        Some(1)
    }

    #[test]
    fn records_fill_a_batch_until_batch_size() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        let mut closed = 0;
        for _ in 0..5 {
            let (r, rx) = record(40);
            rxs.push(rx);
            closed += usize::from(a.append(&tp(0), r, t0).closed_batch);
        }
        // 40+40 fit in 100, the third opens a new batch: batches of 2, 2, 1.
        assert_eq!(closed, 2);
        let d = a.drain(t0, false, leader);
        assert_eq!(d.batches.len(), 1, "one batch per partition per drain");
        assert_eq!(d.batches[0].1.records.len(), 2);
        assert!(d.closed.is_empty(), "the drained batch was already closed");
    }

    #[test]
    fn a_lone_batch_waits_for_linger_unless_flushed() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let (r, _rx) = record(10);
        assert!(a.append(&tp(0), r, t0).wake);
        assert!(a.drain(t0, false, leader).batches.is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_millis(10)));
        let d = a.drain(t0, true, leader);
        assert_eq!(d.batches.len(), 1);
        assert_eq!(d.closed, vec![tp(0)], "draining the open batch closes it");
        let (r, _rx) = record(10);
        a.append(&tp(1), r, t0);
        assert_eq!(
            a.drain(t0 + Duration::from_millis(10), false, leader)
                .batches
                .len(),
            1
        );
    }

    #[test]
    fn nothing_drains_before_the_producer_id_is_known() {
        let mut a = Accumulator::new(settings());
        let t0 = Instant::now();
        let (r, _rx) = record(10);
        a.append(&tp(0), r, t0);
        assert!(a.needs_producer_id());
        assert!(a.drain(t0, true, leader).batches.is_empty());
        a.set_producer(ProducerIdentity { id: 1, epoch: 0 });
        assert_eq!(a.drain(t0, true, leader).batches.len(), 1);
    }

    fn drain_all(a: &mut Accumulator, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        loop {
            let d = a.drain(now, true, leader);
            if d.batches.is_empty() {
                return out;
            }
            out.extend(d.batches.into_iter().map(|(_, b)| b));
        }
    }

    #[test]
    fn sequences_are_assigned_in_order_and_in_flight_is_capped() {
        let mut a = with_producer();
        let t0 = Instant::now();
        for _ in 0..14 {
            let (r, rx) = record(60);
            std::mem::forget(rx);
            a.append(&tp(0), r, t0);
        }
        let batches = drain_all(&mut a, t0);
        assert_eq!(batches.len(), 5, "max.in.flight");
        let seqs: Vec<i32> = batches.iter().map(|b| b.base_sequence).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert!(batches
            .iter()
            .all(|b| b.producer == Some(ProducerIdentity { id: 7, epoch: 0 })));
    }

    #[test]
    fn a_batch_cannot_overtake_earlier_batches_in_flight_on_another_connection() {
        let mut a = with_producer();
        let t0 = Instant::now();
        for _ in 0..3 {
            let (r, rx) = record(60);
            std::mem::forget(rx);
            a.append(&tp(0), r, t0);
        }
        let batches = drain_all(&mut a, t0);
        assert_eq!(batches.len(), 3);
        // The first two went out on connection 1, which then closed; the third meets connection 2.
        assert!(a.claim_connection(&tp(0), 1));
        assert!(a.claim_connection(&tp(0), 1));
        assert!(
            !a.claim_connection(&tp(0), 2),
            "sent on connection 2, the third batch would reach the broker before the first two are retried"
        );
        // Once nothing earlier is in flight, any connection will do.
        let mut batches = batches.into_iter();
        let (b0, b1) = (batches.next().unwrap(), batches.next().unwrap());
        let closed = || {
            Outcome::Failed(Error::ConnectionClosed {
                addr: "b".into(),
                reason: "test".into(),
            })
        };
        a.complete(b0, closed(), t0);
        a.complete(b1, closed(), t0);
        assert!(a.claim_connection(&tp(0), 2));
    }

    #[test]
    fn a_retried_batch_goes_out_alone_and_first_after_in_flight_batches_return() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        for _ in 0..4 {
            let (r, rx) = record(60);
            rxs.push(rx);
            a.append(&tp(0), r, t0);
        }
        let mut batches = drain_all(&mut a, t0).into_iter();
        let (b0, b1, b2) = (
            batches.next().unwrap(),
            batches.next().unwrap(),
            batches.next().unwrap(),
        );
        let b3 = batches.next().unwrap();
        assert_eq!(b3.base_sequence, 3);
        let not_leader = || {
            Outcome::Failed(Error::Kafka {
                code: ResponseError::NotLeaderOrFollower,
                context: "test".into(),
            })
        };
        let oos = || {
            Outcome::Failed(Error::Kafka {
                code: ResponseError::OutOfOrderSequenceNumber,
                context: "test".into(),
            })
        };
        // Batch 0 fails retriably; the later ones are rejected as out of order (retriable echoes).
        assert!(a.complete(b0, not_leader(), t0).refresh_metadata);
        let after_backoff = t0 + Duration::from_millis(50);
        assert!(
            a.drain(after_backoff, true, leader).batches.is_empty(),
            "recovery waits for in-flight batches"
        );
        a.complete(b2, oos(), t0);
        a.complete(b1, oos(), t0);
        a.complete(b3, oos(), t0);
        let mut order = Vec::new();
        let mut now = after_backoff;
        loop {
            let d = a.drain(now, true, leader);
            assert!(d.batches.len() <= 1);
            let Some((_, b)) = d.batches.into_iter().next() else {
                break;
            };
            order.push(b.base_sequence);
            assert!(
                a.drain(now, true, leader).batches.is_empty(),
                "retries go out one at a time"
            );
            a.complete(
                b,
                Outcome::Written {
                    base_offset: 100 + order.len() as i64,
                    log_append_time: -1,
                },
                now,
            );
            now += Duration::from_millis(1);
        }
        assert_eq!(order, vec![0, 1, 2, 3]);
        for mut rx in rxs {
            assert!(rx.try_recv().unwrap().is_ok());
        }
    }

    #[test]
    fn out_of_order_on_the_first_unacknowledged_batch_is_fatal_and_resets_the_id() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let (r, mut rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        a.complete(
            b,
            Outcome::Failed(Error::Kafka {
                code: ResponseError::OutOfOrderSequenceNumber,
                context: "test".into(),
            }),
            t0,
        );
        let err = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(
            err.kafka_code(),
            Some(ResponseError::OutOfOrderSequenceNumber)
        );
        assert!(a.needs_producer_id());
        a.set_producer(ProducerIdentity { id: 8, epoch: 0 });
        let (r, _rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        assert_eq!(b.base_sequence, 0, "a new producer id restarts sequences");
        assert_eq!(b.producer.unwrap().id, 8);
    }

    #[test]
    fn duplicate_sequence_counts_as_delivered() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let (r, mut rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        a.complete(
            b,
            Outcome::Failed(Error::Kafka {
                code: ResponseError::DuplicateSequenceNumber,
                context: "test".into(),
            }),
            t0,
        );
        assert_eq!(rx.try_recv().unwrap().unwrap().offset, -1);
        assert!(!a.needs_producer_id());
    }

    #[test]
    fn retries_stop_at_the_delivery_timeout() {
        let mut a = with_producer();
        let t0 = Instant::now();
        let (r, mut rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        a.complete(
            b,
            Outcome::Failed(Error::Kafka {
                code: ResponseError::NotLeaderOrFollower,
                context: "test".into(),
            }),
            t0 + Duration::from_secs(61),
        );
        assert!(matches!(
            rx.try_recv().unwrap().unwrap_err(),
            Error::Timeout { .. }
        ));
    }

    #[test]
    fn queued_batches_expire() {
        let mut a = Accumulator::new(settings());
        let t0 = Instant::now();
        let (r, mut rx) = record(10);
        a.append(&tp(0), r, t0);
        a.expire(t0 + Duration::from_secs(60));
        assert!(matches!(
            rx.try_recv().unwrap().unwrap_err(),
            Error::Timeout { .. }
        ));
        assert!(a.is_idle());
    }

    #[test]
    fn encoded_batch_carries_producer_fields_and_restamping_keeps_it_valid() {
        let mut a = with_producer();
        let t0 = Instant::now();
        for _ in 0..3 {
            let (r, rx) = record(10);
            std::mem::forget(rx);
            a.append(&tp(0), r, t0);
        }
        let mut b = drain_all(&mut a, t0).pop().unwrap();
        let bytes = b.encode(Compression::None, false).unwrap();
        let decoded =
            strom_protocol::kafka::records::RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.records[0].producer_id, 7);
        assert_eq!(decoded.records[2].sequence, 2);
        let restamped = restamp(&bytes, ProducerIdentity { id: 9, epoch: 2 }, 40);
        let decoded =
            strom_protocol::kafka::records::RecordBatchDecoder::decode(&mut restamped.clone())
                .unwrap();
        assert_eq!(decoded.records[0].producer_id, 9);
        assert_eq!(decoded.records[0].producer_epoch, 2);
        assert_eq!(decoded.records[1].sequence, 41);
    }

    fn transactional() -> Accumulator {
        let mut a = Accumulator::new(Settings {
            transactional: true,
            ..settings()
        });
        assert!(
            !a.needs_producer_id(),
            "a transactional producer's id comes from init_transactions"
        );
        a.set_producer(ProducerIdentity { id: 7, epoch: 0 });
        a
    }

    #[test]
    fn a_transactional_partition_drains_only_once_allowed_and_its_batches_are_marked() {
        let mut a = transactional();
        let t0 = Instant::now();
        let (r, _rx) = record(10);
        a.append(&tp(0), r, t0);
        let late = t0 + Duration::from_secs(1);
        assert!(a
            .drain_where(late, true, leader, |_| false)
            .batches
            .is_empty());
        assert_eq!(
            a.next_deadline_where(|_| false),
            Some(t0 + Duration::from_secs(60)),
            "no wake-up at its linger, only at its expiry"
        );
        let mut d = a.drain_where(late, true, leader, |p| *p == tp(0));
        let (_, mut b) = d.batches.pop().unwrap();
        let bytes = b.encode(Compression::None, true).unwrap();
        let decoded =
            strom_protocol::kafka::records::RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
        assert!(decoded.records[0].transactional);
        assert_eq!(decoded.records[0].sequence, 0);
    }

    #[test]
    fn a_failed_transactional_batch_is_remembered_once() {
        let mut a = transactional();
        let t0 = Instant::now();
        for p in 0..2 {
            let (r, _rx) = record(10);
            a.append(&tp(p), r, t0);
        }
        let batches = drain_all(&mut a, t0);
        for b in batches {
            a.complete(
                b,
                Outcome::Failed(Error::Kafka {
                    code: ResponseError::InvalidRecord,
                    context: "test".into(),
                }),
                t0,
            );
        }
        assert!(a.take_failure().is_some());
        assert!(a.take_failure().is_none(), "taken");
        assert!(!a.needs_producer_id(), "never re-initialized by the sender");
        assert!(a.needs_epoch_bump(), "sequences are in doubt");
    }

    #[test]
    fn aborting_fails_queued_batches_and_needs_a_new_epoch_only_after_sequenced_ones() {
        let mut a = transactional();
        let t0 = Instant::now();
        let (r, mut rx) = record(10);
        a.append(&tp(0), r, t0);
        a.abort_queued(&Error::ProducerClosed);
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::ProducerClosed)));
        assert!(a.is_idle());
        assert!(!a.needs_epoch_bump(), "the record never had a sequence");
        // A batch sent, failed retriably and queued for its retry has one.
        let (r, _rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        a.complete(
            b,
            Outcome::Failed(Error::Kafka {
                code: ResponseError::NotLeaderOrFollower,
                context: "test".into(),
            }),
            t0,
        );
        a.abort_queued(&Error::ProducerClosed);
        assert!(a.needs_epoch_bump());
        a.set_producer(ProducerIdentity { id: 7, epoch: 1 });
        assert!(!a.needs_epoch_bump());
        let (r, _rx) = record(10);
        a.append(&tp(0), r, t0);
        let b = drain_all(&mut a, t0).pop().unwrap();
        assert_eq!(b.base_sequence, 0, "a new epoch restarts sequences");
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
