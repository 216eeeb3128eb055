//! The client's one error type.
//!
//! A Kafka error code in a response is data until the client decides it cannot recover: then it becomes
//! [`Error::Kafka`], carrying the code and where it came from. Whether an error is worth retrying is a
//! property of the error ([`Error::is_retriable`]), so the producer's retry loop and a user's own loop agree.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::messages::ApiKey;
use strom_protocol::kafka::ResponseError;
use thiserror::Error;

/// Everything that can go wrong in the client. `Clone` because one failure (a dropped connection, a failed
/// batch) is reported to every request or record that shared it.
#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: Arc<std::io::Error>,
    },
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed { addr: String, reason: String },
    #[error("{api:?} request to {addr} got no response within {timeout:?}")]
    RequestTimeout {
        addr: String,
        api: ApiKey,
        timeout: Duration,
    },
    #[error("{addr} announced a response of {size} bytes, over the {max}-byte limit")]
    ResponseTooLarge {
        addr: String,
        size: usize,
        max: usize,
    },
    #[error(
        "{addr} supports no version of {api:?} this client speaks (broker {broker:?}, client {client_min}..={client_max})"
    )]
    UnsupportedVersion {
        addr: String,
        api: ApiKey,
        broker: Option<(i16, i16)>,
        client_min: i16,
        client_max: i16,
    },
    #[error("cannot encode {api:?} v{version} request: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("malformed {api:?} response from {addr}: {reason}")]
    Decode {
        addr: String,
        api: ApiKey,
        reason: String,
    },
    #[error("{context}: {code} (Kafka error {})", code.code())]
    Kafka {
        code: ResponseError,
        context: String,
    },
    #[error("no broker reachable (tried {tried}): {last}")]
    NoBrokerAvailable { tried: String, last: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("record of {size} bytes is larger than {setting} ({limit})")]
    RecordTooLarge {
        size: usize,
        limit: usize,
        setting: &'static str,
    },
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    #[error("{what} did not complete within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("the producer is closed")]
    ProducerClosed,
    /// A transactional producer's call that its state does not allow: misuse (commit without begin), or a
    /// transaction that failed and must be aborted (`reason` says why).
    #[error("transactional producer {transactional_id}: cannot {operation} while {state}{reason}")]
    TransactionState {
        transactional_id: String,
        operation: &'static str,
        state: String,
        reason: String,
    },
}

impl Error {
    /// Whether repeating the operation may succeed: connection failures, timeouts and Kafka codes the protocol
    /// marks retriable (not leader, leader not available, not enough replicas, ...).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectionClosed { .. }
            | Error::RequestTimeout { .. }
            | Error::NoBrokerAvailable { .. } => true,
            Error::Kafka { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The Kafka error code, when the broker reported one.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn kafka(code: i16, context: impl Into<String>) -> Option<Self> {
        ResponseError::try_from_code(code).map(|code| Error::Kafka {
            code,
            context: context.into(),
        })
    }
}

/// Whether a Kafka error code means the client's metadata is stale (leader moved, topic unknown or not ready).
pub fn is_metadata_error(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::NotController
                | ResponseError::KafkaStorageError
        )
    )
}
