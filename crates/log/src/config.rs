//! Per-topic log settings as plain values. The broker maps Kafka's topic config keys (named in each field's doc)
//! onto this struct; the log never parses config strings itself, except `cleanup.policy` which has a helper.

use crate::batch::TimestampType;

/// Settings of one partition log. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old, so time retention can delete it.
    pub segment_ms: i64,
    /// `segment.jitter.ms`: each segment rolls up to this much (and less than `segment_ms`) before `segment_ms`,
    /// by an amount fixed per segment, so partitions created together do not all roll at once.
    pub segment_jitter_ms: i64,
    /// `preallocate`: reserve `segment_bytes` of disk for a new segment up front (without growing the file), and
    /// release what is left over when it rolls.
    pub preallocate: bool,
    /// `file.delete.delay.ms`: a segment deleted by retention is renamed `*.deleted` and removed this much later
    /// (at the first cleanup pass after), so a reader that opened it in the meantime finishes; 0 deletes at once.
    pub file_delete_delay_ms: i64,
    /// `retention.ms`: delete closed segments whose newest record is older than this; -1 = keep forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest closed segments while the log is bigger than this; -1 = unlimited.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps a tombstone, so slow consumers still see the delete.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is compacted only once its newest record is at least this old.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record stays uncompacted at most about this long: a compacted log whose oldest
    /// dirty segment started this long ago is cleaned whatever its dirty ratio, and its active segment rolls
    /// this long after it started (Kafka's maxSegmentMs) so the cleaner can reach it.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the cleaner compacts a log once its dirty bytes (closed segments not yet
    /// cleaned) are at least this fraction of its cleanable bytes.
    pub min_cleanable_dirty_ratio: f64,
    /// `max.message.bytes`: largest accepted record batch.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: log bytes between two sparse index entries (0 = index every batch).
    pub index_interval_bytes: usize,
    /// `segment.index.bytes`: largest offset/time index file; a full index rolls the segment.
    pub segment_index_bytes: usize,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record may be (default unlimited).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record may be (Kafka 4.0's default,
    /// one hour).
    pub message_timestamp_after_max_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            segment_jitter_ms: 0,
            preallocate: false,
            file_delete_delay_ms: 60_000,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::default(),
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
        }
    }
}

impl LogConfig {
    /// How old the active segment may get before it rolls: `segment.ms`, or `max.compaction.lag.ms` when that is
    /// shorter and the log is compacted (Kafka's maxSegmentMs), so no record waits in it past the lag.
    pub fn max_segment_ms(&self) -> i64 {
        if self.cleanup_policy.compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

/// `cleanup.policy`: which of deletion by retention and compaction by key apply. Both may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

impl CleanupPolicy {
    /// Parses Kafka's comma-separated form (`delete`, `compact`, `compact,delete`); `None` for unknown words.
    pub fn parse(value: &str) -> Option<Self> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for word in value.split(',').map(str::trim) {
            match word {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cleanup_policy() {
        let both = CleanupPolicy::parse("compact, delete").unwrap();
        assert!(both.compact && both.delete);
        assert!(CleanupPolicy::parse("compact").is_some_and(|p| p.compact && !p.delete));
        assert!(CleanupPolicy::parse("shred").is_none());
    }
}
