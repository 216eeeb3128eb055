//! What a user sends and what they get back.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Error;

/// One record to send. Built with the setters: `ProducerRecord::new("topic").key("k").value("v")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Shared, so that a sender writing many records to one topic names it without a copy per record.
    pub topic: Arc<str>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys should be distinct: the batch encoder keeps one value per key (the last).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time in ms since the epoch; `None` means "now" at `send`.
    pub timestamp: Option<i64>,
    /// An explicit partition bypasses the partitioner.
    pub partition: Option<i32>,
}

impl ProducerRecord {
    pub fn new(topic: impl IntoTopic) -> Self {
        Self {
            topic: topic.into_topic(),
            ..Self::default()
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Bytes this record holds in the producer's buffer: its payload plus a fixed per-record overhead
    /// (Kafka's record framing is at most ~21 bytes of varints and attributes, headers add their own).
    pub(crate) fn buffered_size(&self) -> usize {
        const RECORD_OVERHEAD: usize = 21;
        const HEADER_OVERHEAD: usize = 10;
        RECORD_OVERHEAD
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| HEADER_OVERHEAD + k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// What names a topic in [`ProducerRecord::new`]: a `&str` or a `String` (or a reference to one), or an
/// `Arc<str>`, which a sender of many records to one topic passes without a copy per record.
pub trait IntoTopic {
    fn into_topic(self) -> Arc<str>;
}

impl IntoTopic for &str {
    fn into_topic(self) -> Arc<str> {
        Arc::from(self)
    }
}

impl IntoTopic for String {
    fn into_topic(self) -> Arc<str> {
        Arc::from(self)
    }
}

impl IntoTopic for &String {
    fn into_topic(self) -> Arc<str> {
        Arc::from(self.as_str())
    }
}

impl IntoTopic for Arc<str> {
    fn into_topic(self) -> Arc<str> {
        self
    }
}

impl IntoTopic for &Arc<str> {
    fn into_topic(self) -> Arc<str> {
        self.clone()
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 when unknown: acks=0, or a duplicate the broker recognized without naming its offset.
    pub offset: i64,
    /// The record's timestamp: the broker's append time for `LogAppendTime` topics, else the creation time.
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged (or definitively failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    pub(crate) rx: oneshot::Receiver<Result<RecordMetadata, Error>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ProducerClosed)))
    }
}

/// Where many sends ended, summed up instead of a future per record: for a sender that needs "all of them
/// acknowledged, or the first failure" and where each partition's writes ended (a stream processor before it
/// commits its input offsets), not each record's metadata. Records go in with
/// [`Producer::send_with_report`](super::Producer::send_with_report); after
/// [`Producer::flush`](super::Producer::flush) every one of them is counted here, acknowledged or failed.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    state: Mutex<ReportState>,
}

#[derive(Debug, Default)]
struct ReportState {
    error: Option<Error>,
    acknowledged: u64,
    failed: u64,
    next_offsets: HashMap<(Arc<str>, i32), i64>,
}

impl DeliveryReport {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The first failure of a record sent with this report.
    pub fn error(&self) -> Option<Error> {
        self.state.lock().unwrap().error.clone()
    }

    /// Records acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.state.lock().unwrap().acknowledged
    }

    /// Records failed so far.
    pub fn failed(&self) -> u64 {
        self.state.lock().unwrap().failed
    }

    /// Per partition written since the last call, one past the highest offset acknowledged there (writes
    /// acknowledged without an offset, as with acks=0 or a duplicate, leave no entry).
    pub fn take_next_offsets(&self) -> Vec<(String, i32, i64)> {
        let taken = std::mem::take(&mut self.state.lock().unwrap().next_offsets);
        taken
            .into_iter()
            .map(|((topic, partition), next)| (topic.to_string(), partition, next))
            .collect()
    }

    /// `count` records of a batch acknowledged; `last_offset` is the last one's, -1 when unknown.
    pub(crate) fn record_acknowledged(
        &self,
        topic: &Arc<str>,
        partition: i32,
        count: u64,
        last_offset: i64,
    ) {
        let mut state = self.state.lock().unwrap();
        state.acknowledged += count;
        if last_offset >= 0 {
            let next = state
                .next_offsets
                .entry((topic.clone(), partition))
                .or_insert(0);
            *next = (*next).max(last_offset + 1);
        }
    }

    pub(crate) fn record_failed(&self, count: u64, error: &Error) {
        let mut state = self.state.lock().unwrap();
        state.failed += count;
        if state.error.is_none() {
            state.error = Some(error.clone());
        }
    }
}

/// How a record's result gets back to its sender.
pub(crate) enum Reply {
    Future(oneshot::Sender<Result<RecordMetadata, Error>>),
    Report(ReportSlot),
}

/// A record's place in a [`DeliveryReport`]. Dropped without a result (the producer went away with the record
/// still buffered), it counts the record failed: a record sent with a report is never silently missing.
pub(crate) struct ReportSlot(Option<Arc<DeliveryReport>>);

impl ReportSlot {
    pub fn new(report: Arc<DeliveryReport>) -> Self {
        Self(Some(report))
    }

    /// The report, which the caller now answers to.
    pub fn take(mut self) -> Arc<DeliveryReport> {
        self.0.take().expect("a slot is taken once")
    }
}

impl Drop for ReportSlot {
    fn drop(&mut self) {
        if let Some(report) = self.0.take() {
            report.record_failed(1, &Error::ProducerClosed);
        }
    }
}
