//! Partition log micro-benchmarks: the produce and fetch paths of one [`Log`], without sockets.
//!
//! - `append_1MiB_batch/create_time`: [`Log::append`] of ~1 MiB batches of 1 KiB records (CreateTime, the
//!   stamped-prefix vectored write) into a log in a temporary directory, rolling 64 MiB segments as it goes.
//!   Retention keeps the directory small; it runs between timed appends and is not measured. No fsync: this is
//!   the cost up to the page cache, as the broker pays it on the request path.
//! - `validate_1MiB_batch/split_batches`: header parse + CRC-32C + record-count checks of one ~1 MiB batch
//!   ([`split_batches`], the first step of every append).
//! - `read_1MiB/page_cache`: [`Log::read`] of 1 MiB (one whole batch) from a 64 MiB log that was just written,
//!   so it is in the page cache; reads cycle through the log rather than rereading one batch from CPU cache.
//!
//! Throughput is in batch bytes. Run with `cargo bench -p strom-log` (add `-- --quick` for a rough figure).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTimestampType,
};
use strom_log::{split_batches, AppendOptions, AppendOutcome, Log, LogConfig};

const MIB: usize = 1 << 20;
const RECORD_VALUE_BYTES: usize = 1024;
/// The records' CreateTime, and the broker clock: equal, so the timestamp bounds always accept the batch.
const NOW_MS: i64 = 1_700_000_000_000;
const SEGMENT_BYTES: u64 = 64 << 20;
/// The append bench deletes old segments once the log is past this (plus the active segment).
const RETAINED_BYTES: u64 = 4 * SEGMENT_BYTES;
/// Batches written before the read bench: 64 MiB, more than any last-level cache.
const READ_LOG_BATCHES: i64 = 64;

fn encode_batch(count: usize) -> Bytes {
    let value = Bytes::from(vec![b'x'; RECORD_VALUE_BYTES]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KTimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes: keep it constant even at -1.
            sequence: (i as i32).wrapping_sub(1),
            timestamp: NOW_MS,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: KCompression::None,
        },
    )
    .expect("an uncompressed batch encodes");
    buf.freeze()
}

/// The largest batch of 1 KiB records that fits in 1 MiB (so a 1 MiB read returns exactly one batch), and its
/// record count. A record's encoded size only grows with its index (varint deltas), so sizing by the average of
/// a larger batch never overshoots.
fn batch_of_about_1mib() -> (Bytes, i64) {
    let first_guess = MIB / RECORD_VALUE_BYTES;
    let sized = encode_batch(first_guess);
    let per_record = (sized.len() - 61).div_ceil(first_guess);
    let count = (MIB - 61) / per_record;
    let batch = encode_batch(count);
    assert!(batch.len() <= MIB, "batch of {} bytes", batch.len());
    (batch, count as i64)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        retention_ms: -1,
        retention_bytes: RETAINED_BYTES as i64,
        ..LogConfig::default()
    }
}

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 1,
        now_ms: NOW_MS,
    }
}

/// Appends and checks that the batch got the next `count` offsets.
fn append_checked(log: &mut Log, batch: &Bytes, count: i64) {
    let expected_base = log.log_end_offset();
    match log.append(batch.clone(), opts()) {
        Ok(AppendOutcome::Appended {
            base_offset,
            last_offset,
            ..
        }) => assert_eq!(
            (base_offset, last_offset),
            (expected_base, expected_base + count - 1)
        ),
        other => panic!("append failed: {other:?}"),
    }
}

fn append(c: &mut Criterion) {
    let (batch, count) = batch_of_about_1mib();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), config(), NOW_MS).expect("open log");
    append_checked(&mut log, &batch, count);

    let mut group = c.benchmark_group("append_1MiB_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    // Counted so the check below holds only when the bench ran (a name filter may skip it).
    let mut appended = 0u64;
    group.bench_function("create_time", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            appended += iters;
            for _ in 0..iters {
                if log.size_bytes() > RETAINED_BYTES + SEGMENT_BYTES {
                    log.enforce_retention(NOW_MS).expect("retention");
                }
                let start = Instant::now();
                let outcome = log.append(black_box(batch.clone()), opts());
                timed += start.elapsed();
                assert!(
                    matches!(outcome, Ok(AppendOutcome::Appended { .. })),
                    "{outcome:?}"
                );
            }
            timed
        })
    });
    group.finish();
    assert!(
        appended == 0 || log.segment_count() > 1,
        "the bench rolled segments as intended"
    );
    log.close().expect("close log");
}

fn validate(c: &mut Criterion) {
    let (batch, count) = batch_of_about_1mib();
    let batches = split_batches(&batch).expect("valid batch");
    assert_eq!(batches.len(), 1);
    assert_eq!(i64::from(batches[0].0.records_count), count);

    let mut group = c.benchmark_group("validate_1MiB_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("split_batches", |b| {
        b.iter(|| split_batches(black_box(&batch)))
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let (batch, count) = batch_of_about_1mib();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), config(), NOW_MS).expect("open log");
    for _ in 0..READ_LOG_BATCHES {
        append_checked(&mut log, &batch, count);
    }
    let high_watermark = log.log_end_offset();
    let first = log
        .read(0, MIB, high_watermark, false)
        .expect("read the first batch");
    assert_eq!(first.records.len(), batch.len(), "one whole batch per read");
    assert_eq!(first.records[16..], batch[16..], "the stored batch as sent");

    let mut group = c.benchmark_group("read_1MiB");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    let mut next = 0;
    group.bench_function("page_cache", |b| {
        b.iter(|| {
            let offset = next * count;
            next = (next + 1) % READ_LOG_BATCHES;
            log.read(black_box(offset), MIB, high_watermark, false)
        })
    });
    group.finish();
    log.close().expect("close log");
}

fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = append, validate, read
}
criterion_main!(benches);
