//! What a consumer hands out, and how a fetched partition's bytes become records.
//!
//! A fetch response carries whole record batches back to back, except that the last one may be cut short by the
//! byte limits; a cut batch is not an error, it is fetched again from its base offset next time. A batch may start
//! below the requested offset (the broker returns whole batches, and compressed batches cannot be split), so
//! records below the position are dropped here.

use std::fmt;

use bytes::Bytes;
use strom_protocol::kafka::records::{RecordBatchDecoder, TimestampType};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A committed position: the next offset to read, and the committer's metadata string (Kafka Streams keeps a
/// task's stream time there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    pub metadata: String,
}

impl OffsetAndMetadata {
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            metadata: String::new(),
        }
    }
}

/// A consumer's identity in its group, for a transactional producer's
/// [`send_offsets_to_transaction`](crate::Producer::send_offsets_to_transaction) (Kafka's `ConsumerGroupMetadata`):
/// the group coordinator accepts the offsets only from the current generation's member, so a consumer that lost
/// its partitions in a rebalance cannot commit for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    pub group_id: String,
    /// -1 while not a member (no subscription, or between generations); the member epoch under the consumer
    /// protocol.
    pub generation_id: i32,
    /// Empty while not a member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// The metadata of a group this process is not a member of (offsets of assigned partitions): the coordinator
    /// then checks no generation, as for a plain offset commit without membership.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared by the records of one fetch of the partition.
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch: creation time, or the broker's append time (see `timestamp_type`).
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub leader_epoch: i32,
}

/// The records of one fetched partition, and where the next fetch should start.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub records: Vec<ConsumerRecord>,
    /// One past the last offset of the last whole batch, when at least one batch was whole.
    pub next_offset: Option<i64>,
}

/// Size of the batch fields before the length-delimited part: base offset (8) and batch length (4).
const LOG_OVERHEAD: usize = 12;
/// Where `lastOffsetDelta` sits in a v2 batch: base offset 8, length 4, leader epoch 4, magic 1, CRC 4,
/// attributes 2.
const LAST_OFFSET_DELTA_AT: usize = 23;

/// Where `recordCount` sits in a v2 batch header, after the producer id, epoch and base sequence.
const RECORD_COUNT_AT: usize = 57;
/// The fewest bytes a record takes (length, attributes, timestamp and offset deltas, key and value lengths,
/// header count): what bounds a batch's claimed record count by its size.
const MIN_RECORD_BYTES: usize = 7;

/// How many records the whole batches of `data` claim to hold, each batch's claim capped by its size: the room
/// to reserve before decoding them.
fn record_count(data: &Bytes) -> usize {
    let mut count = 0;
    let mut at = 0;
    while data.len() - at >= RECORD_COUNT_AT + 4 {
        let length = i32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap());
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        if data.len() - at - LOG_OVERHEAD < length || length < RECORD_COUNT_AT + 4 - LOG_OVERHEAD {
            break;
        }
        let claimed = i32::from_be_bytes(
            data[at + RECORD_COUNT_AT..at + RECORD_COUNT_AT + 4]
                .try_into()
                .unwrap(),
        );
        count += usize::try_from(claimed)
            .unwrap_or(0)
            .min(length / MIN_RECORD_BYTES);
        at += LOG_OVERHEAD + length;
    }
    count
}

/// The transactions a `read_committed` fetch said were aborted: producer id and first offset of each, which
/// `decode_partition` skips until the producer's abort marker (Kafka's consumer algorithm).
#[derive(Debug, Default)]
pub(crate) struct Aborted {
    /// Not yet reached, by first offset.
    pending: std::collections::BTreeSet<(i64, i64)>,
    /// Producers whose batches are being skipped: their aborted transaction began at or before the batch.
    skipping: std::collections::HashSet<i64>,
}

impl Aborted {
    pub(crate) fn new(transactions: impl IntoIterator<Item = (i64, i64)>) -> Self {
        Self {
            pending: transactions
                .into_iter()
                .map(|(producer_id, first_offset)| (first_offset, producer_id))
                .collect(),
            skipping: Default::default(),
        }
    }

    /// Starts skipping the producers whose aborted transactions began at or before `last_offset`.
    fn reach(&mut self, last_offset: i64) {
        while let Some(&(first, pid)) = self.pending.first() {
            if first > last_offset {
                break;
            }
            self.pending.pop_first();
            self.skipping.insert(pid);
        }
    }

    /// Whether the data batch of `producer_id` ending at `last_offset` belongs to an aborted transaction.
    fn skips(&mut self, producer_id: i64, last_offset: i64) -> bool {
        self.reach(last_offset);
        self.skipping.contains(&producer_id)
    }

    /// An abort marker of `producer_id` at `offset` ends its aborted transaction. Reached first: an aborted
    /// transaction that wrote nothing to this partition is listed as beginning at its marker, and must end there
    /// rather than swallow the producer's next transaction.
    fn abort_marker(&mut self, producer_id: i64, offset: i64) {
        self.reach(offset);
        self.skipping.remove(&producer_id);
    }
}

/// Where the transactional and control bits sit in a v2 batch's attributes, and where the producer id is.
const ATTRIBUTES_AT: usize = 21;
const TRANSACTIONAL_BIT: u16 = 1 << 4;
const CONTROL_BIT: u16 = 1 << 5;
const PRODUCER_ID_AT: usize = 43;

/// Decodes every whole batch of `data`, keeping records at or after `position`. Control records (transaction
/// markers) advance the position but are never returned. With `aborted` (a `read_committed` fetch), the batches
/// of aborted transactions are skipped too.
pub(crate) fn decode_partition(
    topic: &str,
    partition: i32,
    mut data: Bytes,
    position: i64,
    mut aborted: Option<Aborted>,
) -> Result<Decoded, String> {
    let mut out = Decoded {
        records: Vec::with_capacity(record_count(&data)),
        next_offset: None,
    };
    let topic: std::sync::Arc<str> = topic.into();
    while data.len() >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(data[0..8].try_into().unwrap());
        let length = i32::from_be_bytes(data[8..12].try_into().unwrap());
        let Ok(length) = usize::try_from(length) else {
            return Err(format!(
                "negative batch length {length} at offset {base_offset}"
            ));
        };
        if data.len() - LOG_OVERHEAD < length {
            break; // cut by the fetch size limit
        }
        let mut batch = data.split_to(LOG_OVERHEAD + length);
        if batch.len() < LAST_OFFSET_DELTA_AT + 4 {
            return Err(format!("batch at offset {base_offset} is too short"));
        }
        let last_delta = i32::from_be_bytes(
            batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .unwrap(),
        );
        let magic = batch[16];
        if magic != 2 {
            return Err(format!(
                "batch at offset {base_offset} has message format v{magic}; only v2 is supported"
            ));
        }
        let attributes = u16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
        let producer_id = i64::from_be_bytes(
            batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8]
                .try_into()
                .unwrap(),
        );
        let last_offset = base_offset + i64::from(last_delta);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("batch at offset {base_offset}: {e:#}"))?;
        if let Some(aborted) = aborted.as_mut() {
            if attributes & CONTROL_BIT != 0 {
                // An abort marker ends the skipping of its producer's records.
                let is_abort = set
                    .records
                    .first()
                    .and_then(|r| r.key.as_deref())
                    .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
                if is_abort {
                    aborted.abort_marker(producer_id, last_offset);
                }
            } else if attributes & TRANSACTIONAL_BIT != 0 && aborted.skips(producer_id, last_offset)
            {
                let next = last_offset + 1;
                out.next_offset = Some(out.next_offset.map_or(next, |n: i64| n.max(next)));
                continue;
            }
        }
        for r in set.records {
            if r.control || r.offset < position {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                timestamp_type: r.timestamp_type,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                leader_epoch: r.partition_leader_epoch,
            });
        }
        let next = base_offset + i64::from(last_delta) + 1;
        out.next_offset = Some(out.next_offset.map_or(next, |n: i64| n.max(next)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use strom_protocol::kafka::protocol::StrBytes;
    use strom_protocol::kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
    };

    fn batch(base: i64, count: i64, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: i as i32,
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{}", base + i))),
                headers: [(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn records_below_the_position_are_skipped_inside_a_batch() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut data = BytesMut::from(&batch(10, 5, c)[..]);
            data.extend_from_slice(&batch(15, 5, c));
            let d = decode_partition("t", 0, data.freeze(), 13, None).unwrap();
            let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, (13..20).collect::<Vec<_>>(), "{c:?}");
            assert_eq!(d.next_offset, Some(20));
            assert_eq!(d.records[0].value.as_deref(), Some(&b"v13"[..]));
            assert_eq!(
                d.records[0].headers,
                vec![("h".into(), Some(Bytes::from_static(b"x")))]
            );
        }
    }

    /// A transactional batch of `producer_id` at `base`: data records, or one control record (`marker`: 0 abort,
    /// 1 commit).
    fn txn_batch(base: i64, count: i64, producer_id: i64, marker: Option<u8>) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: true,
                control: marker.is_some(),
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: if marker.is_some() { -1 } else { i as i32 },
                timestamp: 1000 + i,
                key: Some(match marker {
                    Some(m) => Bytes::from(vec![0, 0, 0, m]),
                    None => Bytes::from(format!("k{i}")),
                }),
                value: Some(match marker {
                    Some(_) => Bytes::from_static(&[0, 0, 0, 0, 0, 0]),
                    None => Bytes::from(format!("v{}", base + i)),
                }),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn an_aborted_transaction_that_wrote_nothing_here_does_not_hide_the_next_one() {
        // 0 abort marker of an empty transaction (listed as aborted from 0) | 1-2 committed data | 3 commit
        // marker | 4 aborted data | 5 abort marker | 6 committed data | 7 commit marker.
        let mut data = BytesMut::new();
        for b in [
            txn_batch(0, 1, 9, Some(0)),
            txn_batch(1, 2, 9, None),
            txn_batch(3, 1, 9, Some(1)),
            txn_batch(4, 1, 9, None),
            txn_batch(5, 1, 9, Some(0)),
            txn_batch(6, 1, 9, None),
            txn_batch(7, 1, 9, Some(1)),
        ] {
            data.extend_from_slice(&b);
        }
        let aborted = Aborted::new([(9, 0), (9, 4)]);
        let d = decode_partition("t", 0, data.freeze(), 0, Some(aborted)).unwrap();
        let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 2, 6]);
        assert_eq!(d.next_offset, Some(8));
    }

    #[test]
    fn a_batch_cut_by_the_size_limit_is_left_for_the_next_fetch() {
        let mut data = BytesMut::from(&batch(0, 3, Compression::None)[..]);
        let second = batch(3, 3, Compression::None);
        data.extend_from_slice(&second[..second.len() - 5]);
        let data = data.freeze();
        assert_eq!(record_count(&data), 3, "the cut batch is not counted");
        let d = decode_partition("t", 0, data, 0, None).unwrap();
        assert_eq!(d.records.len(), 3);
        assert_eq!(d.next_offset, Some(3));
        // Every prefix decodes cleanly or fails with a message, never panics.
        let whole = batch(0, 3, Compression::Gzip);
        for cut in 0..whole.len() {
            assert!(record_count(&whole.slice(..cut)) <= 3);
            let _ = decode_partition("t", 0, whole.slice(..cut), 0, None);
        }
    }
}
