//! A read-only view of a Kafka RecordBatch (magic 2) header, plus the few in-place header rewrites the broker does.
//!
//! The broker never re-encodes records on the produce or fetch path: it parses the fixed 61-byte header, checks
//! it, and stores the client's bytes as they are, except for the two fields that are deliberately outside the
//! CRC so a broker can assign them: `baseOffset` and `partitionLeaderEpoch`.
//!
//! ```text
//! offset size field                  notes
//!      0    8 baseOffset      i64    assigned by the broker; outside the CRC
//!      8    4 batchLength     i32    bytes after this field: total size = batchLength + 12
//!     12    4 partitionLeaderEpoch   assigned by the broker; outside the CRC
//!     16    1 magic           i8     always 2 here; v0/v1 message sets have magic at the same position
//!     17    4 crc             u32    CRC-32C (Castagnoli) of bytes 21..total
//!     21    2 attributes      i16    bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//!     23    4 lastOffsetDelta i32
//!     27    8 baseTimestamp   i64
//!     35    8 maxTimestamp    i64    inside the CRC: rewriting it (LogAppendTime) means recomputing the CRC
//!     43    8 producerId      i64
//!     51    2 producerEpoch   i16
//!     53    4 baseSequence    i32
//!     57    4 recordsCount    i32
//!     61      records (possibly compressed as one block)
//! ```

use bytes::Bytes;

/// Record compression codec, from attributes bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Meaning of record timestamps, from attributes bit 3; also the `message.timestamp.type` topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's clock (default).
    #[default]
    CreateTime,
    /// The broker's clock at append: every record's timestamp is the batch's maxTimestamp.
    LogAppendTime,
}

/// Why bytes are not an acceptable record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the length prefix announces (a torn or partial batch).
    #[error(
        "record batch at byte {position} is truncated: needs {needed} bytes, {available} available"
    )]
    Truncated {
        position: usize,
        needed: usize,
        available: usize,
    },
    /// batchLength smaller than the fixed header, or negative.
    #[error("record batch length {0} is smaller than the 49-byte minimum")]
    InvalidLength(i32),
    /// Message format v0/v1 (or garbage): Strom stores only magic 2.
    #[error("unsupported record batch magic {0}: only v2 (magic 2) is accepted")]
    UnsupportedMagic(i8),
    /// The CRC-32C stored in the header does not match the bytes.
    #[error("record batch CRC mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// Header fields that contradict each other.
    #[error("{0}")]
    InvalidRecord(String),
}

/// The parsed fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

pub(crate) const LENGTH_OFFSET: usize = 8;
pub(crate) const EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;
pub(crate) const RECORDS_COUNT_OFFSET: usize = 57;
/// baseOffset + batchLength: the part of the header that precedes the counted length.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Smallest legal batchLength: the header after the length field, with no records.
pub(crate) const MIN_BATCH_LENGTH: i32 = (BatchHeader::SIZE - LOG_OVERHEAD) as i32;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub(crate) const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub(crate) const CONTROL_BIT: i16 = 1 << 5;
pub(crate) const COMPRESSION_MASK: i16 = 0x7;

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Size of the fixed header; records start here.
    pub const SIZE: usize = 61;

    /// Parses the header at the start of `buf`. Checks only what the header alone can tell: enough bytes, magic 2
    /// (checked first, because v0/v1 message sets are shorter and keep magic at the same position) and a
    /// batchLength that covers the header. Does not look at the CRC or the records.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() <= MAGIC_OFFSET {
            return Err(BatchError::Truncated {
                position: 0,
                needed: Self::SIZE,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if buf.len() < Self::SIZE {
            return Err(BatchError::Truncated {
                position: 0,
                needed: Self::SIZE,
                available: buf.len(),
            });
        }
        let batch_length = be_i32(buf, LENGTH_OFFSET);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, EPOCH_OFFSET),
            magic,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Codec of the records block. Unknown codec ids (5-7) read as `None`; the broker does not decompress on the
    /// produce path, and compaction reports such a batch as corrupt when it tries to decode it.
    pub fn compression(&self) -> Compression {
        match self.attributes & COMPRESSION_MASK {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Appends the 61 header bytes as they are (the caller fixes the CRC once the records follow).
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(self.magic as u8);
        out.extend_from_slice(&self.crc.to_be_bytes());
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.records_count.to_be_bytes());
    }

    /// Sequence number of the last record. Sequences wrap from i32::MAX to 0, as in Kafka's
    /// `DefaultRecordBatch.incrementSequence`.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + by`, wrapping past i32::MAX to 0 (not to i32::MIN): Kafka sequences are non-negative.
pub(crate) fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

/// The CRC-32C a batch should carry, computed over bytes 21..end.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks that `batch` (exactly one whole batch) carries the right CRC.
pub(crate) fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), BatchError> {
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Writes the correct CRC into a complete batch.
pub(crate) fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The broker-owned fields all lie in the first bytes of a batch, before magic: stamping them needs only a copy of
/// this prefix, not of the batch.
pub(crate) const STAMPED_PREFIX: usize = MAGIC_OFFSET;

/// Assigns the broker-owned fields in `batch`, a whole batch or its first [`STAMPED_PREFIX`] bytes. Both are
/// outside the CRC, so the client's checksum stays valid.
pub(crate) fn stamp_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_OFFSET..EPOCH_OFFSET + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with `now_ms` as its maxTimestamp. Both fields are inside the CRC, so this is
/// the one produce-path rewrite that recomputes it.
pub(crate) fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    fix_crc(batch);
}

/// Splits a produce request's `records` bytes into whole batches, validating each: the length prefix fits in the
/// buffer (no trailing partial batch), batchLength >= 49, magic == 2, the CRC-32C matches, and
/// recordsCount == lastOffsetDelta + 1 > 0 (what a client writes; compacted batches on disk may differ, so this
/// last rule is for client input only). Zero-copy: each batch is a `Bytes` slice of `records`.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let header = BatchHeader::parse(rest).map_err(|e| at_position(e, pos))?;
        let total = header.total_size();
        if total > rest.len() {
            return Err(BatchError::Truncated {
                position: pos,
                needed: total,
                available: rest.len(),
            });
        }
        let batch = records.slice(pos..pos + total);
        verify_crc(&header, &batch)?;
        if header.records_count <= 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record batch at byte {pos} has {} records; a produced batch needs at least one",
                header.records_count
            )));
        }
        if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
            return Err(BatchError::InvalidRecord(format!(
                "record batch at byte {pos} says {} records but lastOffsetDelta {}",
                header.records_count, header.last_offset_delta
            )));
        }
        out.push((header, batch));
        pos += total;
    }
    Ok(out)
}

/// Splits a fetch response's `records` (batches exactly as a leader stored them) into whole batches, validating
/// framing, magic, CRC and lastOffsetDelta >= 0. A trailing partial batch is left out, not rejected: a leader
/// fills a fetch response up to its size limit and may cut the last batch. Unlike [`split_batches`], the record
/// count is not tied to lastOffsetDelta, since compaction removes records from stored batches. Zero-copy.
pub(crate) fn split_whole_batches(
    records: &Bytes,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let header = match BatchHeader::parse(rest) {
            Ok(h) if h.total_size() > rest.len() => break,
            Ok(h) => h,
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e),
        };
        let batch = records.slice(pos..pos + header.total_size());
        verify_crc(&header, &batch)?;
        if header.last_offset_delta < 0 || header.records_count < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record batch at byte {pos} has lastOffsetDelta {} and {} records",
                header.last_offset_delta, header.records_count
            )));
        }
        pos += batch.len();
        out.push((header, batch));
    }
    Ok(out)
}

fn at_position(e: BatchError, pos: usize) -> BatchError {
    match e {
        BatchError::Truncated {
            needed, available, ..
        } => BatchError::Truncated {
            position: pos,
            needed,
            available,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid header-only batch built by hand, so these tests do not depend on an encoder.
    fn bare_batch(count: i32) -> Vec<u8> {
        let mut b = vec![0u8; BatchHeader::SIZE];
        b[8..12].copy_from_slice(&MIN_BATCH_LENGTH.to_be_bytes());
        b[MAGIC_OFFSET] = 2;
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn sequence_wraps_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }

    #[test]
    fn stamping_offset_keeps_crc_valid_and_log_append_time_recomputes_it() {
        let mut b = bare_batch(1);
        stamp_offset_and_epoch(&mut b, 42, 7);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        assert!(verify_crc(&h, &b).is_ok());
        stamp_log_append_time(&mut b, 1234);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 1234);
        assert!(verify_crc(&h, &b).is_ok());
    }

    #[test]
    fn whole_batches_stop_before_a_partial_one() {
        let mut two = bare_batch(3);
        two.extend_from_slice(&bare_batch(1));
        let whole = two.len();
        for cut in 0..=whole {
            let bytes = Bytes::from(two[..cut].to_vec());
            let count = split_whole_batches(&bytes).unwrap().len();
            let expect = usize::from(cut >= BatchHeader::SIZE) + usize::from(cut == whole);
            assert_eq!(count, expect, "cut at {cut}");
        }
        let mut bad = bare_batch(1);
        bad[BatchHeader::SIZE - 1] ^= 1;
        assert!(matches!(
            split_whole_batches(&Bytes::from(bad)),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn zero_count_is_rejected() {
        let b = Bytes::from(bare_batch(0));
        assert!(matches!(
            split_batches(&b),
            Err(BatchError::InvalidRecord(_))
        ));
    }
}
