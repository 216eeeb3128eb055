//! What a user sends and what they get back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::Error;

/// One record to send. Built with the setters: `ProducerRecord::new("topic").key("k").value("v")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
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
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
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
