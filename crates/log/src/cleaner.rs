//! The pure part of compaction: rewriting one batch to keep only some of its records.
//!
//! A rewritten batch keeps everything that identifies it: base offset, lastOffsetDelta (so its offset range and
//! its producer's sequence range stay what the producer wrote), baseTimestamp, leader epoch, producer id, epoch
//! and base sequence, codec and timestamp type. Surviving records are copied byte for byte, so their offset and
//! timestamp deltas still resolve to their original offsets and timestamps. What changes: batchLength,
//! recordsCount (now possibly less than lastOffsetDelta + 1, as in Kafka), maxTimestamp (recomputed over the
//! survivors under CreateTime) and the CRC.
//!
//! A batch left with no records is dropped, except the newest batch of an idempotent producer, kept as an empty
//! batch (recordsCount 0, no records block, maxTimestamp -1) so that the producer's epoch and last sequence
//! survive a restart (the same choice as Kafka). Its codec bits are cleared because some decoders reject an
//! empty compressed stream.

use bytes::Bytes;

use crate::batch::{fix_crc, BatchHeader, TimestampType, COMPRESSION_MASK, LOG_OVERHEAD};
use crate::record::{batch_records, compress, RawRecord};

pub(crate) enum Filtered {
    /// Every record survives: copy the batch as it is.
    Unchanged,
    /// Some records survive (or the batch is kept empty): the new batch bytes.
    Rewritten { batch: Vec<u8>, removed: u64 },
    /// Nothing survives and the batch is not needed for producer state.
    Dropped { removed: u64 },
}

/// Applies `keep` to each record of the batch. `keep_if_empty`: the batch is its producer's newest.
pub(crate) fn filter_batch(
    header: &BatchHeader,
    batch: &Bytes,
    keep: impl Fn(&RawRecord) -> bool,
    keep_if_empty: bool,
) -> Result<Filtered, String> {
    let records = batch_records(header, batch)?;
    let kept: Vec<&RawRecord> = records.iter().filter(|r| keep(r)).collect();
    let removed = (records.len() - kept.len()) as u64;
    if removed == 0 {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() && !keep_if_empty {
        return Ok(Filtered::Dropped { removed });
    }
    let mut new = *header;
    new.records_count = kept.len() as i32;
    let body = if kept.is_empty() {
        new.attributes &= !COMPRESSION_MASK;
        new.max_timestamp = -1;
        Vec::new()
    } else {
        if header.timestamp_type() == TimestampType::CreateTime {
            new.max_timestamp = kept.iter().map(|r| r.timestamp(header)).max().unwrap_or(-1);
        }
        let raw: Vec<u8> = kept.iter().flat_map(|r| r.raw.iter().copied()).collect();
        compress(header.compression(), &raw)?.to_vec()
    };
    new.batch_length = (BatchHeader::SIZE - LOG_OVERHEAD + body.len()) as i32;
    let mut out = Vec::with_capacity(BatchHeader::SIZE + body.len());
    new.write_to(&mut out);
    out.extend_from_slice(&body);
    fix_crc(&mut out);
    Ok(Filtered::Rewritten {
        batch: out,
        removed,
    })
}
