//! Record-level access inside a stored batch, for the few places that need it: timestamp lookup, the
//! "compacted topics need keys" check, and compaction.
//!
//! Records are walked here rather than decoded with `kafka_protocol::records::RecordBatchDecoder` because
//! compaction must keep each surviving record's bytes exactly (its offset and timestamp deltas stay relative to
//! the original batch's base offset and base timestamp, so offsets never change), and that decoder/encoder pair
//! would recompute the base offset from the first surviving record. The codecs themselves are kafka-protocol's.
//!
//! Record v2 layout (inside the possibly compressed records block):
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint | keyLength varint | key
//! | valueLength varint | value | headerCount varint | headers...
//! ```
//! Varints are zigzag LEB128; a length of -1 means null.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};

use crate::batch::{BatchHeader, Compression, TimestampType};

/// One record, borrowed from its (decompressed) records block.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value_is_null: bool,
    pub(crate) value: Option<Bytes>,
    /// The whole record, length prefix included, exactly as stored.
    pub(crate) raw: Bytes,
}

impl RawRecord {
    pub(crate) fn offset(&self, header: &BatchHeader) -> i64 {
        header.base_offset + i64::from(self.offset_delta)
    }

    /// Kafka's rule: under LogAppendTime every record carries the batch's maxTimestamp.
    pub(crate) fn timestamp(&self, header: &BatchHeader) -> i64 {
        match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.saturating_add(self.timestamp_delta),
        }
    }
}

/// Decodes the records of one whole batch (header included in `batch`).
pub(crate) fn batch_records(header: &BatchHeader, batch: &Bytes) -> Result<Vec<RawRecord>, String> {
    let body = batch.slice(BatchHeader::SIZE..header.total_size().min(batch.len()));
    let data = decompress(header.compression(), body)?;
    parse_records(&data, header.records_count)
}

/// The most bytes one batch's records may decompress to. Decompression is where a small hostile batch costs the
/// broker the most memory (a megabyte of gzip can inflate to a gigabyte); a batch past this is refused before it
/// is inflated further. Far above what producers send: librdkafka and the Java client cut batches at
/// `batch.size` (16 KiB to 1 MB) before compression.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 128 << 20;

pub(crate) fn decompress(compression: Compression, body: Bytes) -> Result<Bytes, String> {
    decompress_at_most(compression, body, MAX_DECOMPRESSED_BATCH_BYTES)
}

fn decompress_at_most(
    compression: Compression,
    mut body: Bytes,
    limit: usize,
) -> Result<Bytes, String> {
    use std::io::Read;
    let failed =
        |e: &dyn std::fmt::Display| format!("cannot decompress {compression:?} records: {e}");
    let too_big = || {
        format!(
            "{compression:?} records decompress to more than {limit} bytes, the most one batch may hold"
        )
    };
    // Streams through the decoder, stopping one byte past the limit.
    let inflate = |reader: &mut dyn Read| -> Result<Bytes, String> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| failed(&e))?;
        if out.len() > limit {
            return Err(too_big());
        }
        Ok(Bytes::from(out))
    };
    match compression {
        Compression::None => Ok(body),
        Compression::Gzip => inflate(&mut flate2::read::GzDecoder::new(&body[..])),
        Compression::Lz4 => inflate(&mut lz4::Decoder::new(&body[..]).map_err(|e| failed(&e))?),
        Compression::Zstd => {
            inflate(&mut zstd::stream::read::Decoder::new(&body[..]).map_err(|e| failed(&e))?)
        }
        Compression::Snappy => {
            // Snappy blocks state their decompressed length up front: checked before any is inflated.
            if snappy_decompressed_len(&body).map_err(|e| failed(&e))? > limit {
                return Err(too_big());
            }
            let take = |b: &mut Bytes| Ok(std::mem::take(b));
            <codec::Snappy as Decompressor<Bytes>>::decompress(&mut body, take)
                .map_err(|e| failed(&e))
        }
    }
}

/// The xerial framing Kafka's clients write snappy in: an 8-byte magic, two 4-byte version fields, then blocks of
/// a 4-byte big-endian length and raw snappy bytes. Bodies without the magic are one raw snappy block.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;

fn snappy_decompressed_len(body: &[u8]) -> Result<usize, String> {
    let block_len = |block: &[u8]| snap::raw::decompress_len(block).map_err(|e| e.to_string());
    if !body.starts_with(XERIAL_MAGIC) {
        return block_len(body);
    }
    let mut total = 0usize;
    let mut rest = body.get(XERIAL_HEADER..).ok_or("truncated snappy header")?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or("truncated snappy block length")?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (block, tail) = tail.split_at_checked(len).ok_or("truncated snappy block")?;
        total = total.saturating_add(block_len(block)?);
        rest = tail;
    }
    Ok(total)
}

pub(crate) fn compress(compression: Compression, data: &[u8]) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    let put = |tmp: &mut BytesMut| {
        tmp.put_slice(data);
        Ok(())
    };
    let res = match compression {
        Compression::None => {
            out.put_slice(data);
            Ok(())
        }
        Compression::Gzip => <codec::Gzip as Compressor<BytesMut>>::compress(&mut out, put),
        Compression::Snappy => <codec::Snappy as Compressor<BytesMut>>::compress(&mut out, put),
        Compression::Lz4 => <codec::Lz4 as Compressor<BytesMut>>::compress(&mut out, put),
        Compression::Zstd => <codec::Zstd as Compressor<BytesMut>>::compress(&mut out, put),
    };
    res.map_err(|e| format!("cannot compress records with {compression:?}: {e}"))?;
    Ok(out)
}

/// Like [`compress`], at the codec's `level` (Kafka's `compression.<codec>.level`): gzip -1 (zlib's default) or
/// 1-9, lz4 1-17, zstd -131072 to 22. Snappy and none have no level.
pub(crate) fn compress_at_level(
    compression: Compression,
    level: i32,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let failed = |e: std::io::Error| format!("cannot compress records with {compression:?}: {e}");
    match compression {
        Compression::None | Compression::Snappy => Ok(compress(compression, data)?.to_vec()),
        Compression::Gzip => {
            let level = match u32::try_from(level) {
                Ok(l) => flate2::Compression::new(l),
                Err(_) => flate2::Compression::default(),
            };
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(level.max(1) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())
                .map_err(failed)?;
            e.write_all(data).map_err(failed)?;
            let (out, result) = e.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        Compression::Zstd => zstd::bulk::compress(data, level).map_err(failed),
    }
}

/// Walks `count` records from an uncompressed records block.
pub(crate) fn parse_records(data: &Bytes, count: i32) -> Result<Vec<RawRecord>, String> {
    let mut out = Vec::with_capacity((count.max(0) as usize).min(data.len()));
    let mut pos = 0usize;
    for i in 0..count {
        let start = pos;
        let len = read_varint(data, &mut pos)?;
        let len =
            usize::try_from(len).map_err(|_| format!("record {i} has negative length {len}"))?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| format!("record {i} of {len} bytes runs past the batch"))?;
        let body = data.slice(pos..end);
        let mut p = 1usize; // attributes byte, unused in v2
        let timestamp_delta = read_varlong(&body, &mut p)?;
        let offset_delta = read_varint(&body, &mut p)?;
        let key = read_nullable(&body, &mut p)?;
        let value = read_nullable(&body, &mut p)?;
        out.push(RawRecord {
            offset_delta,
            timestamp_delta,
            key,
            value_is_null: value.is_none(),
            value,
            raw: data.slice(start..end),
        });
        pos = end;
    }
    Ok(out)
}

fn read_nullable(b: &Bytes, pos: &mut usize) -> Result<Option<Bytes>, String> {
    let len = read_varint(b, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("invalid field length {len}"))?;
    let end = pos
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| format!("field of {len} bytes runs past the record"))?;
    let out = b.slice(*pos..end);
    *pos = end;
    Ok(Some(out))
}

fn read_unsigned(b: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *b.get(*pos).ok_or("varint runs past the end of the data")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint is too long".to_string())
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<i32, String> {
    let n = read_unsigned(b, pos, 5)? as u32;
    Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
}

fn read_varlong(b: &[u8], pos: &mut usize) -> Result<i64, String> {
    let n = read_unsigned(b, pos, 10)?;
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_decoding() {
        let mut p = 0;
        assert_eq!(read_varint(&[0x01], &mut p).unwrap(), -1);
        p = 0;
        assert_eq!(read_varint(&[0x04], &mut p).unwrap(), 2);
        p = 0;
        assert_eq!(read_varlong(&[0xd0, 0x0f], &mut p).unwrap(), 1000);
        p = 0;
        assert!(read_varint(&[0x80, 0x80], &mut p).is_err());
    }

    #[test]
    fn a_batch_that_inflates_past_the_limit_is_refused_before_it_is_inflated_whole() {
        // Four MiB of zeros: a few kilobytes compressed in every codec.
        let zeros = vec![0u8; 4 << 20];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let body = Bytes::from(compress(c, &zeros).unwrap().to_vec());
            assert!(body.len() < zeros.len() / 10, "{c:?}: {} bytes", body.len());
            let err = decompress_at_most(c, body.clone(), 1 << 20).unwrap_err();
            assert!(err.contains("more than 1048576 bytes"), "{c:?}: {err}");
            let whole = decompress_at_most(c, body, 4 << 20).unwrap();
            assert_eq!(whole.len(), zeros.len(), "{c:?}");
        }
    }

    #[test]
    fn codecs_roundtrip() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let data = b"hello hello hello compaction".repeat(10);
            let packed = compress(c, &data).unwrap().freeze();
            assert_eq!(&decompress(c, packed).unwrap()[..], &data[..], "{c:?}");
        }
    }
}
