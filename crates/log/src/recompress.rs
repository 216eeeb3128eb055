//! A topic's `compression.type` other than `producer`: the broker rewrites each produced batch whose codec differs
//! from the topic's into the topic's codec before it is stored, as Kafka's LogValidator does. Only the records
//! block and the header fields that describe it change (the codec bits of attributes, batchLength, the CRC): the
//! records' bytes, offset deltas, timestamps and the producer fields stay as the producer sent them, so
//! idempotence and transactions see the same batch.
//!
//! A batch already in the topic's codec is stored as sent, like `compression.type=producer` (zero copy).

use bytes::Bytes;

use crate::batch::LOG_OVERHEAD;
use crate::batch::{
    fix_crc, split_batches, verify_crc, BatchHeader, Compression, COMPRESSION_MASK,
};
use crate::error::AppendError;
use crate::record::{compress_at_level, decompress, parse_records};

/// The codec a topic stores its batches in, with the level of `compression.<codec>.level` (snappy and none have
/// none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCodec {
    pub compression: Compression,
    /// gzip: -1 (zlib's default, 6) or 1-9; lz4: 1-17; zstd: -131072 to 22.
    pub level: i32,
}

/// `records` (one or more whole batches, as a produce request carries them) with every batch in `codec`. Returns
/// `records` itself when nothing needs rewriting. Checks each rewritten batch's CRC first, so a batch corrupted on
/// the way is refused rather than given a fresh checksum.
pub fn recompress(records: Bytes, codec: TopicCodec) -> Result<Bytes, AppendError> {
    let batches = split_batches(&records)?;
    if batches
        .iter()
        .all(|(h, _)| h.compression() == codec.compression || h.is_control())
    {
        return Ok(records);
    }
    let mut out = Vec::with_capacity(records.len());
    for (header, batch) in batches {
        if header.compression() == codec.compression || header.is_control() {
            out.extend_from_slice(&batch);
            continue;
        }
        verify_crc(&header, &batch)?;
        let body = batch.slice(BatchHeader::SIZE..);
        let data = decompress(header.compression(), body).map_err(AppendError::InvalidRecord)?;
        // Walks every record: a block that does not hold `records_count` well-formed records is refused here
        // rather than stored under a fresh CRC.
        parse_records(&data, header.records_count).map_err(AppendError::InvalidRecord)?;
        let compressed = compress_at_level(codec.compression, codec.level, &data)
            .map_err(AppendError::InvalidRecord)?;
        let mut new = header;
        new.attributes = (header.attributes & !COMPRESSION_MASK) | codec_bits(codec.compression);
        new.batch_length = (BatchHeader::SIZE - LOG_OVERHEAD + compressed.len()) as i32;
        let start = out.len();
        new.write_to(&mut out);
        out.extend_from_slice(&compressed);
        fix_crc(&mut out[start..]);
    }
    Ok(Bytes::from(out))
}

fn codec_bits(compression: Compression) -> i16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{batch_records, compress};

    /// A batch of `n` records with keys and values, in `compression`, with a correct CRC.
    fn batch(compression: Compression, n: i32) -> Bytes {
        let mut raw = Vec::new();
        for i in 0..n {
            let key = format!("key-{i}");
            let value = format!("value-{i}-").repeat(20);
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, i64::from(i)); // timestamp delta
            put_varint(&mut body, i64::from(i)); // offset delta
            put_varint(&mut body, key.len() as i64);
            body.extend_from_slice(key.as_bytes());
            put_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value.as_bytes());
            put_varint(&mut body, 0); // headers
            put_varint(&mut raw, body.len() as i64);
            raw.extend_from_slice(&body);
        }
        let block = compress(compression, &raw).unwrap();
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (BatchHeader::SIZE - LOG_OVERHEAD + block.len()) as i32,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: codec_bits(compression),
            last_offset_delta: n - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000 + i64::from(n - 1),
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: n,
        };
        let mut out = Vec::new();
        header.write_to(&mut out);
        out.extend_from_slice(&block);
        fix_crc(&mut out);
        Bytes::from(out)
    }

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    fn records_of(batch: &Bytes) -> Vec<(i32, Option<Bytes>, Option<Bytes>)> {
        let header = BatchHeader::parse(batch).unwrap();
        batch_records(&header, batch)
            .unwrap()
            .into_iter()
            .map(|r| (r.offset_delta, r.key, r.value))
            .collect()
    }

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_is_rewritten_into_every_other_with_the_same_records() {
        for from in ALL {
            let original = batch(from, 50);
            for to in ALL {
                let level = match to {
                    Compression::Gzip => 9,
                    Compression::Lz4 => 17,
                    Compression::Zstd => 19,
                    _ => 0,
                };
                let out = recompress(
                    original.clone(),
                    TopicCodec {
                        compression: to,
                        level,
                    },
                )
                .unwrap();
                let header = BatchHeader::parse(&out).unwrap();
                assert_eq!(header.compression(), to, "{from:?} -> {to:?}");
                assert_eq!(header.total_size(), out.len());
                verify_crc(&header, &out).unwrap();
                assert_eq!(
                    records_of(&out),
                    records_of(&original),
                    "{from:?} -> {to:?}"
                );
                let before = BatchHeader::parse(&original).unwrap();
                assert_eq!(
                    (
                        header.producer_id,
                        header.base_sequence,
                        header.max_timestamp
                    ),
                    (
                        before.producer_id,
                        before.base_sequence,
                        before.max_timestamp
                    )
                );
                if from == to {
                    assert_eq!(
                        out.as_ptr(),
                        original.as_ptr(),
                        "same codec is stored as sent"
                    );
                }
            }
        }
    }

    #[test]
    fn a_corrupted_batch_is_refused_not_given_a_fresh_crc() {
        let mut bytes = batch(Compression::None, 5).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = recompress(
            Bytes::from(bytes),
            TopicCodec {
                compression: Compression::Zstd,
                level: 3,
            },
        )
        .unwrap_err();
        assert!(matches!(err, AppendError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_record_count_that_the_block_does_not_hold_is_refused() {
        let good = batch(Compression::Gzip, 3);
        let mut header = BatchHeader::parse(&good).unwrap();
        header.records_count = 4;
        let mut bytes = Vec::new();
        header.write_to(&mut bytes);
        bytes.extend_from_slice(&good[BatchHeader::SIZE..]);
        fix_crc(&mut bytes);
        let err = recompress(
            Bytes::from(bytes),
            TopicCodec {
                compression: Compression::Lz4,
                level: 9,
            },
        )
        .unwrap_err();
        assert!(matches!(err, AppendError::InvalidRecord(_)), "{err}");
    }
}
