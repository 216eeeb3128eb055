//! Errors of the log crate.
//!
//! Two enums, because the broker treats them differently: [`AppendError`] is the answer to one produce request
//! (most variants are the client's fault and become a Kafka error code in the response), while [`LogError`] is
//! everything else (reads, maintenance, open/close) where the cause is almost always the disk or the caller.
//! Batch framing problems found while splitting a request are [`crate::BatchError`], converted into
//! `AppendError` at the append boundary.

use std::path::{Path, PathBuf};

use crate::batch::BatchError;

/// Failure of a read, maintenance or lifecycle operation on a partition log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The disk said no. `path` names the file or directory so the operator knows where to look.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The requested offset is not in `[log_start_offset, log_end_offset]`.
    #[error(
        "offset {offset} is out of range: the log holds [{log_start_offset}, {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Data that passed validation when written no longer decodes (bit rot, or a bug). Not retriable.
    #[error("corrupt data in {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// Why one produce request's records were rejected. A rejected append changed nothing in the log.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The bytes do not frame or checksum as Kafka record batches.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Well-framed batches whose content Kafka does not accept (wrong magic, count mismatch, control batch, ...).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A CreateTime record lies outside message.timestamp.before.max.ms / after.max.ms of the broker's clock.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// One batch exceeds the topic's max.message.bytes.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    MessageTooLarge { size: usize, max: usize },
    /// The idempotent producer skipped or reordered sequence numbers.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, received {received}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    /// A producer with a transaction open on the partition wrote outside it.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator older than the one that wrote the producer's last marker.
    #[error(
        "marker for producer {producer_id} from coordinator epoch {received}, but epoch {current} wrote before"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        current: i32,
        received: i32,
    },
    /// A fenced (older) producer epoch tried to write.
    #[error("producer {producer_id} used epoch {received} but the current epoch is {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    /// A replicated append (`Log::append_replicated`) whose first batch starts below the follower's log end
    /// offset, or a later batch that does not follow the one before it: the follower asked for other offsets
    /// than it received, or its log diverged. Kafka's UnexpectedAppendOffsetException; the broker decides
    /// whether to truncate and refetch.
    #[error(
        "replicated batch {first_offset}..={last_offset} starts below offset {expected_at_least}, the log end \
         offset or the end of the batch before it"
    )]
    UnexpectedAppendOffset {
        first_offset: i64,
        last_offset: i64,
        expected_at_least: i64,
    },
    /// The disk failed while writing; the partition should be considered offline.
    #[error("storage error while appending: {0}")]
    Io(std::io::Error),
}

impl AppendError {
    /// The Kafka protocol error code the broker puts in the produce response.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            AppendError::Corrupt(_) => 2,
            AppendError::InvalidRecord(_) => 87,
            AppendError::InvalidTimestamp(_) => 32,
            AppendError::MessageTooLarge { .. } => 10,
            AppendError::OutOfOrderSequence { .. } => 45,
            AppendError::InvalidProducerEpoch { .. } => 47,
            AppendError::InvalidTxnState(_) => 48,
            AppendError::TransactionCoordinatorFenced { .. } => 52,
            // Not a client's error: replication answers no produce request, so it is UNKNOWN_SERVER_ERROR.
            AppendError::UnexpectedAppendOffset { .. } => -1,
            AppendError::Io(_) => 56,
        }
    }
}

impl From<BatchError> for AppendError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::UnsupportedMagic(_) | BatchError::InvalidRecord(_) => {
                AppendError::InvalidRecord(e.to_string())
            }
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. } => AppendError::Corrupt(e.to_string()),
        }
    }
}

/// Everything that goes wrong inside `append` after validation is a storage failure from the client's view.
impl From<LogError> for AppendError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io { path, source } => AppendError::Io(std::io::Error::new(
                source.kind(),
                format!("{}: {source}", path.display()),
            )),
            other => AppendError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

/// Attaches the path to a bare `io::Error`, so every I/O failure names its file.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for Result<T, std::io::Error> {
    fn at(self, path: &Path) -> Result<T, LogError> {
        self.map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
