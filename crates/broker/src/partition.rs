//! One partition hosted by this broker: its log, its offsets, and the signals that wake waiting fetches and
//! acknowledgements.
//!
//! The log sits behind this partition's own mutex, so appends to different partitions never contend; there is
//! no broker-wide lock on the produce path. The mutex is a plain blocking one because every operation under it
//! is a bounded piece of file I/O (an append into the page cache, a pread), never an await.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strom_log::{AppendError, AppendOptions, AppendOutcome, Log, LogConfig, LogError, ReadResult};
use tokio::sync::{watch, Notify};

/// Why a partition operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition was deleted or the broker is shutting down.
    #[error("partition {0} is no longer hosted here")]
    Closed(String),
}

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub dir: PathBuf,
    /// The partition's leader epoch from the metadata: stamped on appended batches and checked against the
    /// epochs clients send.
    leader_epoch: AtomicI32,
    log: Mutex<Option<Log>>,
    /// Offsets below the high watermark are visible to consumers. A single broker is its whole ISR, so the high
    /// watermark is the log end offset as soon as an append is in the log.
    high_watermark: AtomicI64,
    log_start_offset: AtomicI64,
    /// Records appended since the last fsync (for `flush.messages`).
    unflushed_records: AtomicI64,
    /// Woken on every append, so long-polling fetches answer at once instead of on a timer.
    appended: Notify,
    /// Offsets below this value are fsynced; acks=all producers wait on it.
    flushed: watch::Sender<i64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl Partition {
    /// Opens (recovering if needed) the log of `topic`-`index` under `dir`.
    pub fn open(
        topic: Arc<str>,
        index: i32,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let log = Log::open(&dir, config, now_ms)?;
        if log.recovered_on_open() {
            tracing::info!(partition = %format!("{topic}-{index}"), log_end_offset = log.log_end_offset(), "recovered log after unclean shutdown");
        }
        let leo = log.log_end_offset();
        let lso = log.log_start_offset();
        let flushed = log.flushed_offset();
        Ok(Self {
            topic,
            index,
            dir,
            leader_epoch: AtomicI32::new(0),
            high_watermark: AtomicI64::new(leo),
            log_start_offset: AtomicI64::new(lso),
            unflushed_records: AtomicI64::new(0),
            log: Mutex::new(Some(log)),
            appended: Notify::new(),
            flushed: watch::channel(flushed).0,
        })
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Release);
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// Kafka's check of a client's `current_leader_epoch` (-1: no check): a newer epoch than ours means this broker
    /// is behind (UNKNOWN_LEADER_EPOCH), an older one means the client is (FENCED_LEADER_EPOCH).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), i16> {
        use strom_protocol::kafka::ResponseError;
        let leader_epoch = self.leader_epoch();
        if current_leader_epoch < 0 || current_leader_epoch == leader_epoch {
            Ok(())
        } else if current_leader_epoch > leader_epoch {
            Err(ResponseError::UnknownLeaderEpoch.code())
        } else {
            Err(ResponseError::FencedLeaderEpoch.code())
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// Runs `f` on the open log.
    pub fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, PartitionError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.log.lock();
        let log = guard
            .as_mut()
            .ok_or_else(|| PartitionError::Closed(self.name()))?;
        f(log)
    }

    /// Appends one produce request's records for this partition. Returns the outcome and whether the append
    /// pushed the unflushed record count to `flush_messages`, in which case the ack must wait for an fsync.
    pub fn append(
        &self,
        records: Bytes,
        now_ms: i64,
        flush_messages: i64,
    ) -> Result<(AppendOutcome, bool), PartitionError> {
        let opts = AppendOptions {
            leader_epoch: self.leader_epoch(),
            now_ms,
        };
        let outcome = self.with_log(|log| Ok(log.append(records, opts)?))?;
        let mut must_flush = false;
        if let AppendOutcome::Appended {
            base_offset,
            last_offset,
            log_start_offset,
            ..
        } = outcome
        {
            self.high_watermark
                .fetch_max(last_offset + 1, Ordering::AcqRel);
            self.log_start_offset
                .store(log_start_offset, Ordering::Release);
            let records = last_offset - base_offset + 1;
            must_flush = self.unflushed_records.fetch_add(records, Ordering::AcqRel) + records
                >= flush_messages;
            self.appended.notify_waiters();
        }
        Ok((outcome, must_flush))
    }

    /// Reads batches for a fetch, bounded by the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, PartitionError> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.read(offset, max_bytes, hw, min_one_batch)?))
    }

    /// A future that completes after the next append. Create it *before* checking for data, then await it, so an
    /// append in between is not missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// fsyncs the log (blocking: call from a blocking thread) and publishes the new durable offset. The fsync
    /// itself runs without the partition lock, so appends continue meanwhile.
    pub fn flush(&self) -> Result<(), PartitionError> {
        self.unflushed_records.store(0, Ordering::Release);
        let pending = self.with_log(|log| Ok(log.begin_flush()?))?;
        let synced = pending.sync();
        let flushed = self.with_log(|log| match synced {
            Ok(()) => {
                log.complete_flush(pending)?;
                Ok(log.flushed_offset())
            }
            Err(e) => {
                log.abort_flush(pending);
                self.unflushed_records.fetch_add(1, Ordering::AcqRel);
                Err(e.into())
            }
        })?;
        self.flushed.send_if_modified(|current| {
            let advanced = flushed > *current;
            *current = (*current).max(flushed);
            advanced
        });
        Ok(())
    }

    /// Whether anything appended is not yet fsynced.
    pub fn is_dirty(&self) -> bool {
        self.unflushed_records.load(Ordering::Acquire) > 0
    }

    /// Waits until every offset below `offset` is fsynced.
    pub async fn wait_flushed(&self, offset: i64) -> bool {
        let mut rx = self.flushed.subscribe();
        let reached = rx.wait_for(|flushed| *flushed >= offset).await.is_ok();
        reached
    }

    /// Moves the log start offset (DeleteRecords).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let lso = self.with_log(|log| Ok(log.delete_records_before(offset)?))?;
        self.log_start_offset.store(lso, Ordering::Release);
        Ok(lso)
    }

    /// Retention and compaction; returns (segments deleted, records compacted away).
    pub fn run_cleanup(&self, now_ms: i64) -> Result<(usize, u64), PartitionError> {
        let (deleted, compacted, lso) = self.with_log(|log| {
            let deleted = log.enforce_retention(now_ms)?;
            let compacted = if log.config().cleanup_policy.compact {
                log.compact(now_ms)?.records_removed
            } else {
                0
            };
            Ok((deleted, compacted, log.log_start_offset()))
        })?;
        self.log_start_offset.store(lso, Ordering::Release);
        Ok((deleted, compacted))
    }

    pub fn set_config(&self, config: LogConfig) {
        let _ = self.with_log(|log| {
            log.set_config(config);
            Ok(())
        });
    }

    /// Clean shutdown of this partition's log (flush, indexes, clean-shutdown marker).
    pub fn close(&self) -> Result<(), LogError> {
        match self.log.lock().take() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }

    /// Deletes the partition's data (topic deletion); waiters see it as closed.
    pub fn delete(&self) -> Result<(), LogError> {
        let log = self.log.lock().take();
        self.appended.notify_waiters();
        match log {
            Some(log) => log.delete(),
            None => Ok(()),
        }
    }
}
