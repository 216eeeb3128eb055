//! Consumer lag: how far a group's committed offsets trail the end of each partition.

use crate::offsets::OffsetStore;
use crate::topics::Topics;

/// One partition's lag for a group, as `kafka-consumer-groups --describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The committed offset (the next record the group will read).
    pub committed: i64,
    /// The high watermark: the offset the next produced record gets, as far as consumers can see.
    pub log_end_offset: i64,
    /// `log_end_offset - committed`, never negative. A committed offset below the log start offset counts from the
    /// log start: records deleted by retention cannot be consumed any more.
    pub lag: i64,
}

/// The lag of every partition `group` has committed offsets for, sorted by topic and partition. Partitions of
/// deleted topics are left out.
pub fn group_lag(topics: &Topics, offsets: &OffsetStore, group: &str) -> Vec<PartitionLag> {
    offsets
        .fetch(group)
        .into_iter()
        .filter_map(|((topic, partition), committed)| {
            let hosted = topics.get(&topic)?;
            let p = hosted.partition(partition)?;
            let end = p.high_watermark();
            let from = committed.offset.max(p.log_start_offset());
            Some(PartitionLag {
                topic,
                partition,
                committed: committed.offset,
                log_end_offset: end,
                lag: (end - from).max(0),
            })
        })
        .collect()
}
