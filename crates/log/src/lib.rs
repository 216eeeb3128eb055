//! One Kafka partition's log on disk: a directory of segments holding record batches exactly as producers sent
//! them (only baseOffset and partitionLeaderEpoch are assigned by the broker), with sparse offset and time
//! indexes, retention, compaction, idempotent-producer state and crash recovery.
//!
//! Plain `std::fs`, no async and no locking: the broker calls a [`Log`] under a per-partition lock. Where each
//! on-disk file is defined, its module documents the bytes and what recovery does with it:
//! `log` (directory layout), `segment`, `offset_index`, `time_index`, `checkpoint`, `producer_state`,
//! `leader_epoch`, `log::compact` (crash-safe segment swap). Replication's side of the log (follower appends,
//! the leader epoch cache, the persisted high watermark) is in `log::replication`.

pub mod batch;
mod checkpoint;
mod cleaner;
mod config;
mod error;
mod index_file;
mod leader_epoch;
mod log;
mod offset_index;
mod producer_state;
mod recompress;
mod record;
mod scan;
mod segment;
mod time_index;
pub mod txn;
mod txn_index;

pub use batch::{split_batches, BatchError, BatchHeader, Compression, TimestampType};
pub use config::{CleanupPolicy, LogConfig};
pub use error::{AppendError, LogError};
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{
    AppendOptions, AppendOutcome, CleaningDue, CompactionStats, Log, PendingFlush, ReadResult,
    ReplicatedAppend,
};
pub use producer_state::ActiveProducer;
pub use recompress::{recompress, TopicCodec};
