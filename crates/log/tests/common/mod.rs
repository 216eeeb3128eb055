//! Test helpers: build real record batches with kafka-protocol's encoder and inspect what the log returns.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KTs,
};
use strom_log::{AppendOptions, AppendOutcome, BatchHeader, Compression, Log, LogConfig};

pub const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// One record to encode: key, value, timestamp.
#[derive(Debug, Clone)]
pub struct Rec {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub ts: i64,
}

pub fn rec(key: &str, value: &str, ts: i64) -> Rec {
    Rec {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        ts,
    }
}

pub fn tombstone(key: &str, ts: i64) -> Rec {
    Rec {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: None,
        ts,
    }
}

pub fn keyless(value: &str, ts: i64) -> Rec {
    Rec {
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        ts,
    }
}

fn kcodec(c: Compression) -> KCompression {
    match c {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    }
}

/// Encodes one batch. `producer`: (producer id, epoch, base sequence), or None for a non-idempotent batch.
pub fn encode(recs: &[Rec], codec: Compression, producer: Option<(i64, i16, i32)>) -> Bytes {
    encode_with(recs, codec, producer, false)
}

/// A batch of `n` records in a transaction of producer `pid`.
pub fn transactional(pid: i64, epoch: i16, base_seq: i32, n: usize) -> Bytes {
    let recs: Vec<Rec> = (0..n)
        .map(|i| rec(&format!("k{i}"), "t", 1_000 + i as i64))
        .collect();
    encode_with(&recs, Compression::None, Some((pid, epoch, base_seq)), true)
}

fn encode_with(
    recs: &[Rec],
    codec: Compression,
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
) -> Bytes {
    let (pid, epoch, base_seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"hv")),
            );
            Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: KTs::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep records in one batch.
                sequence: base_seq.wrapping_add(i as i32),
                timestamp: r.ts,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: kcodec(codec),
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// `n` keyed records with timestamps `ts, ts+1, ...`, uncompressed, no producer id.
pub fn simple(n: usize, ts: i64) -> Bytes {
    let recs: Vec<Rec> = (0..n)
        .map(|i| rec(&format!("k{i}"), &format!("v{i}"), ts + i as i64))
        .collect();
    encode(&recs, Compression::None, None)
}

/// A batch of `n` records for an idempotent producer.
pub fn idem(pid: i64, epoch: i16, base_seq: i32, n: usize) -> Bytes {
    let recs: Vec<Rec> = (0..n)
        .map(|i| rec(&format!("k{i}"), "v", 1_000 + i as i64))
        .collect();
    encode(&recs, Compression::None, Some((pid, epoch, base_seq)))
}

pub fn opts(now_ms: i64) -> AppendOptions {
    AppendOptions {
        leader_epoch: 3,
        now_ms,
    }
}

/// Small segments and an index entry per batch, so tests exercise rolling and index lookups.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

pub fn appended(outcome: AppendOutcome) -> (i64, i64) {
    match outcome {
        AppendOutcome::Appended {
            base_offset,
            last_offset,
            ..
        } => (base_offset, last_offset),
        other => panic!("expected Appended, got {other:?}"),
    }
}

/// Splits stored bytes into batches using only the header framing (stored compacted batches may have fewer
/// records than their offset range, which `split_batches` rejects for client input).
pub fn stored_batches(bytes: &Bytes) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).expect("stored batch header");
        out.push((h, bytes.slice(pos..pos + h.total_size())));
        pos += h.total_size();
    }
    out
}

/// Everything from the log start offset to the end, in as many reads as needed.
pub fn read_all(log: &Log) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        let batches = stored_batches(&r.records);
        assert!(
            !batches.is_empty(),
            "read at {offset} returned nothing before the end"
        );
        offset = batches
            .last()
            .map(|(h, _)| h.last_offset() + 1)
            .unwrap_or(offset);
        out.extend_from_slice(&r.records);
    }
    out.freeze()
}

/// Decoded records: (offset, timestamp, key, value).
pub fn decode(bytes: &Bytes) -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode stored batches")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (r.offset, r.timestamp, r.key, r.value))
        .collect()
}

/// Compares a stored batch with the batch the client sent: identical except baseOffset and leader epoch.
pub fn same_except_offset(stored: &[u8], sent: &[u8]) -> bool {
    stored.len() == sent.len() && stored[8..12] == sent[8..12] && stored[16..] == sent[16..]
}
