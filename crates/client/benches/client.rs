//! Producer-side micro-benchmarks: the per-record work of the client before anything reaches a socket.
//!
//! - `partition_murmur2/16B_keys`: [`murmur2_partition`] (the Java-compatible keyed partitioner) over 1,024
//!   distinct 16-byte keys, 12 partitions.
//! - `build_batch/1000x100B`: encoding one RecordBatch v2 of 1,000 records of 100 bytes, uncompressed. The
//!   producer's batch type (`producer::accumulator::Batch::encode`) is crate-private, so this benchmarks what it
//!   does through the public re-export of the same encoder: turn each pending record into a `Record` (taking its
//!   key, value and headers) and hand them to `RecordBatchEncoder` with a buffer sized to the batch. If
//!   `Batch::encode` changes, change this to match.
//!
//! Throughput is in records (elements). Run with `cargo bench -p strom-client` (add `-- --quick` for a rough
//! figure).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strom_client::partitioner::{murmur2, murmur2_partition};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const KEYS: usize = 1024;
const PARTITIONS: u32 = 12;
const BATCH_RECORDS: usize = 1000;
const VALUE_BYTES: usize = 100;

fn keys() -> Vec<[u8; 16]> {
    (0..KEYS as u64)
        .map(|i| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.to_le_bytes());
            key[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            key
        })
        .collect()
}

fn partition(c: &mut Criterion) {
    let keys = keys();
    // The Java client's test vector (`UtilsTest.testMurmur2`), so the bench runs the real hash.
    assert_eq!(murmur2(b"21"), -973_932_308);
    let mut hits = [0usize; PARTITIONS as usize];
    for key in &keys {
        hits[murmur2_partition(key, PARTITIONS) as usize] += 1;
    }
    assert!(
        hits.iter().all(|&n| n > 0),
        "keys spread over every partition: {hits:?}"
    );

    let mut group = c.benchmark_group("partition_murmur2");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("16B_keys", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for key in black_box(&keys) {
                sum = sum.wrapping_add(murmur2_partition(key, PARTITIONS));
            }
            sum
        })
    });
    group.finish();
}

/// What the producer holds for one record before encoding: the fields `Batch::encode` takes.
struct Pending {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    timestamp: i64,
}

fn pending_records() -> Vec<Pending> {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    (0..BATCH_RECORDS)
        .map(|i| Pending {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

/// Mirrors `Batch::encode` for a non-idempotent producer (producer id -1, sequence -1).
fn encode_batch(pending: &mut [Pending], size_hint: usize) -> Bytes {
    let records: Vec<Record> = pending
        .iter_mut()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes: keep it constant even at -1.
            sequence: (i as i32).wrapping_sub(1),
            timestamp: r.timestamp,
            key: r.key.take(),
            value: r.value.take(),
            headers: std::mem::take(&mut r.headers)
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::with_capacity(size_hint + 64);
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("an uncompressed batch encodes");
    buf.freeze()
}

fn build_batch(c: &mut Criterion) {
    // The producer's running `size` estimate: value bytes plus a small per-record overhead.
    let size_hint = BATCH_RECORDS * (VALUE_BYTES + 16);
    let encoded = encode_batch(&mut pending_records(), size_hint);
    let info = RecordBatchDecoder::decode_batch_info(&mut encoded.clone()).expect("decodes");
    assert_eq!(info.len(), 1, "one batch");
    assert_eq!(info[0].record_count as usize, BATCH_RECORDS);
    let decoded = RecordBatchDecoder::decode(&mut encoded.clone()).expect("the batch decodes");
    assert!(decoded
        .records
        .iter()
        .all(|r| r.value.as_ref().map(Bytes::len) == Some(VALUE_BYTES)));

    let mut group = c.benchmark_group("build_batch");
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    group.bench_function("1000x100B", |b| {
        b.iter_batched_ref(
            pending_records,
            |pending| encode_batch(pending, size_hint),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = partition, build_batch
}
criterion_main!(benches);
