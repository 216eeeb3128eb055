//! Codec micro-benchmarks: the protocol crate's share of a produce and a fetch.
//!
//! - `decode_produce_v9/*`: [`decode_request`] of a Produce v9 frame holding one partition with a ~1 MiB record
//!   batch (of 1 KiB or of 100-byte records). The records stay one `Bytes` slice of the frame, so the cost should
//!   not grow with the batch: this measures the header and field parsing around it.
//! - `encode_fetch_v12_6x1MiB/*`: a Fetch v12 response of 6 partitions × ~1 MiB of records, once as the chunked
//!   [`encode_response_frame`] the broker serves with and once as the contiguous [`encode_response`]. The
//!   difference is the 6 MiB copy that the chunked frame saves.
//!
//! Throughput is in frame bytes. Run with `cargo bench -p strom-protocol` (add `-- --quick` for a rough figure).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strom_protocol::kafka::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use strom_protocol::kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
use strom_protocol::kafka::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use strom_protocol::kafka::protocol::{Encodable, StrBytes};
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_protocol::{decode_request, encode_response, encode_response_frame};

const MIB: usize = 1 << 20;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const FETCH_PARTITIONS: usize = 6;

fn encode_batch(count: usize, value_len: usize) -> Bytes {
    let value = Bytes::from(vec![b'x'; value_len]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
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
            timestamp: 1_700_000_000_000 + i as i64,
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
            compression: Compression::None,
        },
    )
    .expect("an uncompressed batch encodes");
    let batch = buf.freeze();
    let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("decodes");
    assert_eq!(info.len(), 1, "one batch");
    assert_eq!(info[0].record_count as usize, count);
    batch
}

/// The largest uncompressed batch of `value_len`-byte records that fits in 1 MiB. A record's encoded size only
/// grows with its index (varint deltas), so sizing by the average of a larger batch never overshoots.
fn batch_of_about_1mib(value_len: usize) -> Bytes {
    let first_guess = MIB / value_len;
    let sized = encode_batch(first_guess, value_len);
    let per_record = (sized.len() - 61).div_ceil(first_guess);
    let batch = encode_batch((MIB - 61) / per_record, value_len);
    assert!(
        batch.len() <= MIB && batch.len() > MIB - MIB / 50,
        "batch of {} bytes",
        batch.len()
    );
    batch
}

/// A Produce request frame body (header and body, no length prefix): what `decode_request` receives.
fn produce_frame(records: Bytes) -> Bytes {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data(vec![partition]);
    let body = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]),
    );
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut buf = BytesMut::new();
    header
        .encode(
            &mut buf,
            ApiKey::Produce.request_header_version(PRODUCE_VERSION),
        )
        .expect("header encodes");
    body.encode(&mut buf, PRODUCE_VERSION)
        .expect("produce encodes");
    buf.freeze()
}

/// The records of the only partition of a decoded Produce request.
fn produced_records(body: &RequestKind) -> Option<&Bytes> {
    let RequestKind::Produce(produce) = body else {
        return None;
    };
    produce
        .topic_data
        .first()?
        .partition_data
        .first()?
        .records
        .as_ref()
}

fn decode_produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_produce_v9");
    for (name, value_len) in [("1KiB_records", 1024), ("100B_records", 100)] {
        let batch = batch_of_about_1mib(value_len);
        let frame = produce_frame(batch.clone());
        let decoded = decode_request(frame.clone()).expect("the bench frame decodes");
        assert_eq!(decoded.api_version, PRODUCE_VERSION);
        assert_eq!(produced_records(&decoded.body), Some(&batch));
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_request(black_box(frame.clone())))
        });
    }
    group.finish();
}

fn fetch_response(batches: &[Bytes]) -> ResponseKind {
    let partitions = batches
        .iter()
        .enumerate()
        .map(|(i, records)| {
            PartitionData::default()
                .with_partition_index(i as i32)
                .with_high_watermark(1_000_000)
                .with_last_stable_offset(1_000_000)
                .with_records(Some(records.clone()))
        })
        .collect();
    let topic = FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(partitions);
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]))
}

fn encode_fetch(c: &mut Criterion) {
    // Six separate buffers, as six log reads would return, so nothing is shared between partitions.
    let batches: Vec<Bytes> = (0..FETCH_PARTITIONS)
        .map(|_| batch_of_about_1mib(1024))
        .collect();
    let body = fetch_response(&batches);
    let contiguous = encode_response(ApiKey::Fetch, FETCH_VERSION, 1, &body).expect("encodes");
    let frame = encode_response_frame(ApiKey::Fetch, FETCH_VERSION, 1, &body).expect("encodes");
    assert_eq!(frame.to_contiguous(), contiguous.clone().freeze());
    let spliced = frame
        .chunks()
        .filter(|chunk| batches.iter().any(|b| b.as_ptr() == chunk.as_ptr()))
        .count();
    assert_eq!(
        spliced, FETCH_PARTITIONS,
        "every partition's records are spliced, not copied"
    );

    let mut group = c.benchmark_group("encode_fetch_v12_6x1MiB");
    group.throughput(Throughput::Bytes(contiguous.len() as u64));
    group.bench_function("chunked_frame", |b| {
        b.iter(|| encode_response_frame(ApiKey::Fetch, FETCH_VERSION, 1, black_box(&body)))
    });
    group.bench_function("contiguous", |b| {
        b.iter(|| encode_response(ApiKey::Fetch, FETCH_VERSION, 1, black_box(&body)))
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
    targets = decode_produce, encode_fetch
}
criterion_main!(benches);
