//! Fetch at the wire level, at the lowest (v4), a middle (v8) and the highest (v12) served version: the long
//! poll (`min_bytes` / `max_wait_ms`), the per-partition and per-response byte limits (KIP-74), offsets at and out
//! of range, unknown partitions, leader epochs, the watermarks, and that the bytes handed out are exactly the
//! batches producers sent (apart from the two header fields the broker stamps).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{produce, record_batch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, FetchRequest, FetchResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// Lowest, a middle and the highest Fetch version Strom serves.
const VERSIONS: [i16; 3] = [4, 8, 12];

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// One partition to fetch: (partition, fetch offset, partition_max_bytes).
type Want = (i32, i64, i32);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn fetch_request(
    topics: &[(&str, &[Want])],
    min_bytes: i32,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    let topics = topics
        .iter()
        .map(|(name, wants)| {
            FetchTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(
                    wants
                        .iter()
                        .map(|&(partition, offset, max)| {
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(max)
                        })
                        .collect(),
                )
        })
        .collect();
    FetchRequest::default()
        .with_min_bytes(min_bytes)
        .with_max_wait_ms(max_wait_ms)
        .with_max_bytes(max_bytes)
        .with_topics(topics)
}

fn fetch(client: &mut RawClient, version: i16, request: FetchRequest) -> FetchResponse {
    let ResponseKind::Fetch(r) =
        client.request(ApiKey::Fetch, version, RequestKind::Fetch(request))
    else {
        panic!("wrong response type")
    };
    assert_eq!(r.error_code, NONE, "v{version}: top-level error");
    assert_eq!(
        r.session_id, 0,
        "v{version}: Strom creates no fetch sessions"
    );
    r
}

/// A quick fetch of one partition: no waiting, 1 MiB limits.
fn fetch_one(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> PartitionData {
    let r = fetch(
        client,
        version,
        fetch_request(&[(topic, &[(partition, offset, 1 << 20)])], 0, 0, 1 << 20),
    );
    only_partition(&r)
}

fn only_partition(r: &FetchResponse) -> PartitionData {
    assert_eq!(r.responses.len(), 1, "one topic answered");
    assert_eq!(r.responses[0].partitions.len(), 1, "one partition answered");
    r.responses[0].partitions[0].clone()
}

fn records(p: &PartitionData) -> Bytes {
    p.records.clone().unwrap_or_default()
}

/// The complete batches in a records blob, in order. Kafka may end a response with a partial batch (clients drop
/// it), so a trailing fragment is not an error; it is reported as the second value (its length).
fn split_batches(records: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while records.len() - pos >= 12 {
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap());
        assert!(len > 0, "batch length at {pos} is {len}");
        let end = pos + 12 + len as usize;
        if end > records.len() {
            break;
        }
        out.push(&records[pos..end]);
        pos = end;
    }
    (out, records.len() - pos)
}

fn base_offset(batch: &[u8]) -> i64 {
    i64::from_be_bytes(batch[0..8].try_into().unwrap())
}

/// `fetched` is `produced` as the broker stored it: identical except baseOffset (bytes 0..8, stamped with
/// `offset`) and partitionLeaderEpoch (bytes 12..16, stamped with the leader epoch, 0 on a single broker).
fn assert_same_batch(fetched: &[u8], produced: &[u8], offset: i64) {
    assert_eq!(fetched.len(), produced.len(), "batch length");
    assert_eq!(base_offset(fetched), offset, "baseOffset");
    assert_eq!(&fetched[8..12], &produced[8..12], "batchLength");
    assert_eq!(
        i32::from_be_bytes(fetched[12..16].try_into().unwrap()),
        0,
        "partitionLeaderEpoch"
    );
    assert_eq!(
        &fetched[16..],
        &produced[16..],
        "magic, CRC, attributes, producer fields and records are untouched"
    );
}

/// One RecordBatch v2 of `n` records without a producer id. (`common::raw::record_batch(n, None)` encodes one
/// batch per record: kafka-protocol's encoder starts a new batch whenever `offset - sequence` changes, and a
/// non-idempotent record's sequence is -1. Giving record i the sequence i - 1 keeps them in one batch whose base
/// sequence, taken from the first record, is still -1.)
fn one_batch(n: usize) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-of-{n}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let batch = buf.freeze();
    assert_eq!(split_batches(&batch).0.len(), 1, "one batch");
    batch
}

fn delete_records(client: &mut RawClient, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])]);
    let ResponseKind::DeleteRecords(r) = client.request(
        ApiKey::DeleteRecords,
        1,
        RequestKind::DeleteRecords(request),
    ) else {
        panic!("wrong response type")
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// Produces `sizes.len()` batches (of `sizes[i]` records) to one partition; returns them with their base offsets.
fn produce_batches(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    sizes: &[usize],
) -> Vec<(i64, Bytes)> {
    sizes
        .iter()
        .map(|&n| {
            let batch = one_batch(n);
            let (code, offset) = produce(client, topic, partition, batch.clone());
            assert_eq!(code, NONE, "produce to {topic}-{partition}");
            (offset, batch)
        })
        .collect()
}

#[test]
fn long_poll_with_nothing_to_return_answers_empty_after_max_wait() {
    let broker = TestBroker::start();
    broker.create_topic("idle", 1, &[]);
    broker.create_topic("busy", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "busy", 0, &[3]);
    for v in VERSIONS {
        // Empty partition: nothing arrives, so the poll ends at max_wait with no records and no error.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("idle", &[(0, 0, 1 << 20)])], 1, 300, 1 << 20),
        );
        let p = only_partition(&r);
        assert_eq!(p.error_code, NONE, "v{v}");
        assert!(records(&p).is_empty(), "v{v}: no records");
        assert_eq!(p.high_watermark, 0, "v{v}");

        // Waiting at the end of a partition that has data: also empty.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("busy", &[(0, 3, 1 << 20)])], 1, 300, 1 << 20),
        );
        let p = only_partition(&r);
        assert_eq!(p.error_code, NONE, "v{v}");
        assert!(
            records(&p).is_empty(),
            "v{v}: nothing after the high watermark"
        );
        assert_eq!(p.high_watermark, 3, "v{v}");

        // min_bytes larger than what exists: after max_wait the response carries what there is.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("busy", &[(0, 0, 1 << 20)])], 1 << 20, 300, 1 << 20),
        );
        let p = only_partition(&r);
        assert_eq!(p.error_code, NONE, "v{v}");
        let data = records(&p);
        let (batches, rest) = split_batches(&data);
        assert_eq!(
            (batches.len(), rest),
            (1, 0),
            "v{v}: the one batch there is"
        );
    }
}

#[test]
fn long_poll_returns_as_soon_as_another_connection_produces() {
    let broker = TestBroker::start();
    broker.create_topic("wake", 1, &[]);
    let mut producer = RawClient::connect(broker.addr);
    let mut next_offset = 0;
    for v in VERSIONS {
        let topic = "wake";
        let mut waiter = RawClient::connect(broker.addr);
        // max_wait is far beyond how long the append takes; the read timeout of RawClient is 20 s.
        let request = fetch_request(&[(topic, &[(0, next_offset, 1 << 20)])], 1, 15_000, 1 << 20);
        let frame = RawClient::encode(ApiKey::Fetch, v, 1, &RequestKind::Fetch(request));
        let started = Instant::now();
        waiter.send_raw(&frame);
        let handle = std::thread::spawn(move || {
            let (correlation_id, body) = waiter.read_frame(ApiKey::Fetch, v).expect("a response");
            assert_eq!(correlation_id, 1);
            let ResponseKind::Fetch(r) =
                strom_protocol::codec::decode_response(ApiKey::Fetch, v, body).expect("decodes")
            else {
                panic!("wrong response type")
            };
            (r, started.elapsed())
        });
        let batch = one_batch(4);
        let (code, offset) = produce(&mut producer, topic, 0, batch.clone());
        assert_eq!((code, offset), (NONE, next_offset));
        let (r, waited) = handle.join().expect("fetch thread");
        assert!(
            waited < Duration::from_secs(10),
            "v{v}: the append woke the fetch (waited {waited:?} of a 15 s max_wait)"
        );
        let p = only_partition(&r);
        assert_eq!(p.error_code, NONE, "v{v}");
        let data = records(&p);
        let (batches, rest) = split_batches(&data);
        assert_eq!((batches.len(), rest), (1, 0), "v{v}");
        assert_same_batch(batches[0], &batch, next_offset);
        assert_eq!(p.high_watermark, next_offset + 4, "v{v}");
        next_offset += 4;
    }
}

#[test]
fn partition_max_bytes_below_the_first_batch_still_returns_that_whole_batch_and_only_it() {
    let broker = TestBroker::start();
    broker.create_topic("kip74", 2, &[]);
    let mut client = RawClient::connect(broker.addr);
    let p0 = produce_batches(&mut client, "kip74", 0, &[5, 5, 5]);
    let p1 = produce_batches(&mut client, "kip74", 1, &[3]);
    for v in VERSIONS {
        // One partition, limit far below the first batch: exactly that batch, nothing of the next.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("kip74", &[(0, 0, 10)])], 1, 0, 1 << 20),
        );
        let p = only_partition(&r);
        assert_eq!(p.error_code, NONE, "v{v}");
        let data = records(&p);
        assert_eq!(data.len(), p0[0].1.len(), "v{v}: exactly the first batch");
        assert_same_batch(&data, &p0[0].1, 0);

        // Starting at a later batch: that batch alone.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("kip74", &[(0, p0[1].0, 10)])], 1, 0, 1 << 20),
        );
        let data = records(&only_partition(&r));
        assert_eq!(data.len(), p0[1].1.len(), "v{v}");
        assert_same_batch(&data, &p0[1].1, p0[1].0);

        // Only the first partition with data may exceed its limit; the next one gets no complete batch and no
        // more than its limit (Kafka may send a partial batch there, which clients discard).
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("kip74", &[(0, 0, 10), (1, 0, 10)])], 1, 0, 1 << 20),
        );
        let parts = &r.responses[0].partitions;
        assert_eq!(parts.len(), 2);
        let first = records(&parts[0]);
        assert_eq!(first.len(), p0[0].1.len(), "v{v}");
        let second = records(&parts[1]);
        assert_eq!(parts[1].error_code, NONE, "v{v}");
        assert!(
            second.len() <= 10,
            "v{v}: partition 1 stays within its limit"
        );
        assert!(split_batches(&second).0.is_empty(), "v{v}");
        assert_eq!(parts[1].high_watermark, p1.len() as i64 * 3, "v{v}");
    }
}

#[test]
fn response_max_bytes_caps_the_total_across_partitions() {
    let broker = TestBroker::start();
    broker.create_topic("capped", 3, &[]);
    let mut client = RawClient::connect(broker.addr);
    let mut produced = Vec::new();
    for p in 0..3 {
        produced.push(produce_batches(&mut client, "capped", p, &[4, 4]));
    }
    let batch_len = produced[0][0].1.len() as i32;
    for v in VERSIONS {
        // Room for two and a half batches: partition 0 gets both of its batches, the rest of the response holds
        // no further complete batch, and the total never exceeds max_bytes.
        let max_bytes = batch_len * 5 / 2;
        let wants: &[Want] = &[(0, 0, 1 << 20), (1, 0, 1 << 20), (2, 0, 1 << 20)];
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("capped", wants)], 1, 0, max_bytes),
        );
        let parts = &r.responses[0].partitions;
        assert_eq!(
            parts.len(),
            3,
            "v{v}: every requested partition is answered"
        );
        let total: usize = parts.iter().map(|p| records(p).len()).sum();
        assert!(total <= max_bytes as usize, "v{v}: {total} > {max_bytes}");
        let complete: Vec<usize> = parts
            .iter()
            .map(|p| split_batches(&records(p)).0.len())
            .collect();
        assert_eq!(
            complete,
            vec![2, 0, 0],
            "v{v}: complete batches per partition"
        );
        for p in parts {
            assert_eq!(p.error_code, NONE, "v{v}");
            assert_eq!(p.high_watermark, 8, "v{v}");
        }
        let first = records(&parts[0]);
        let (batches, _) = split_batches(&first);
        assert_same_batch(batches[0], &produced[0][0].1, 0);
        assert_same_batch(batches[1], &produced[0][1].1, 4);

        // max_bytes below a single batch: the first batch is still returned whole (KIP-74), nothing else.
        let r = fetch(
            &mut client,
            v,
            fetch_request(&[("capped", wants)], 1, 0, 10),
        );
        let sizes: Vec<usize> = r.responses[0]
            .partitions
            .iter()
            .map(|p| records(p).len())
            .collect();
        assert_eq!(sizes[0], batch_len as usize, "v{v}");
        assert_eq!(
            &sizes[1..],
            &[0, 0],
            "v{v}: no room left after the first batch"
        );
    }
}

#[test]
fn fetch_at_the_high_watermark_is_empty_without_error_and_reports_watermarks() {
    let broker = TestBroker::start();
    broker.create_topic("hw", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "hw", 0, &[2, 3]);
    for v in VERSIONS {
        let p = fetch_one(&mut client, v, "hw", 0, 5);
        assert_eq!(p.error_code, NONE, "v{v}");
        assert!(records(&p).is_empty(), "v{v}");
        assert_eq!(p.high_watermark, 5, "v{v}");
        assert_eq!(p.last_stable_offset, 5, "v{v}: no transactions, LSO = HW");
        if v >= 5 {
            assert_eq!(p.log_start_offset, 0, "v{v}");
        }
        // Reading from the start reports the same watermarks.
        let p = fetch_one(&mut client, v, "hw", 0, 0);
        assert_eq!(
            (p.error_code, p.high_watermark, p.last_stable_offset),
            (NONE, 5, 5),
            "v{v}"
        );
        assert_eq!(split_batches(&records(&p)).0.len(), 2, "v{v}");
    }

    // After DeleteRecords the log start offset moves (reported from v5) and the high watermark stays.
    assert_eq!(delete_records(&mut client, "hw", 0, 2), (NONE, 2));
    for v in VERSIONS {
        let p = fetch_one(&mut client, v, "hw", 0, 2);
        assert_eq!(p.error_code, NONE, "v{v}");
        assert_eq!((p.high_watermark, p.last_stable_offset), (5, 5), "v{v}");
        if v >= 5 {
            assert_eq!(p.log_start_offset, 2, "v{v}");
        }
        let data = records(&p);
        let (batches, rest) = split_batches(&data);
        assert_eq!((batches.len(), rest), (1, 0), "v{v}");
        assert_eq!(base_offset(batches[0]), 2, "v{v}");
    }
}

#[test]
fn offsets_above_the_high_watermark_or_below_the_log_start_are_out_of_range() {
    let broker = TestBroker::start();
    broker.create_topic("range", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "range", 0, &[3, 3, 3]);
    for v in VERSIONS {
        for offset in [10, 1000] {
            let p = fetch_one(&mut client, v, "range", 0, offset);
            assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "v{v} offset {offset}");
            assert!(records(&p).is_empty(), "v{v}");
        }
    }
    assert_eq!(delete_records(&mut client, "range", 0, 6), (NONE, 6));
    for v in VERSIONS {
        for offset in [0, 5] {
            let p = fetch_one(&mut client, v, "range", 0, offset);
            assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "v{v} offset {offset}");
            assert!(records(&p).is_empty(), "v{v}");
        }
        // The log start offset itself is in range.
        let p = fetch_one(&mut client, v, "range", 0, 6);
        assert_eq!(p.error_code, NONE, "v{v}");
        assert_eq!(base_offset(split_batches(&records(&p)).0[0]), 6, "v{v}");
    }
    // An out-of-range error on one partition ends the long poll at once (as in Kafka), even with min_bytes unmet.
    let started = Instant::now();
    let r = fetch(
        &mut client,
        12,
        fetch_request(&[("range", &[(0, 50, 1 << 20)])], 1 << 20, 15_000, 1 << 20),
    );
    assert_eq!(only_partition(&r).error_code, OFFSET_OUT_OF_RANGE);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Apache Kafka answers OFFSET_OUT_OF_RANGE from `createLogReadResult(exception)`, which reports the
/// high watermark, last stable offset and log start offset as -1 (UnifiedLog.UnknownOffset); only the tiered-storage
/// path fills them in. A client learns the valid range from ListOffsets instead.
#[test]
fn out_of_range_partitions_report_unknown_watermarks_like_kafka() {
    let broker = TestBroker::start();
    broker.create_topic("range-wm", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "range-wm", 0, &[3, 3]);
    assert_eq!(delete_records(&mut client, "range-wm", 0, 3), (NONE, 3));
    for v in VERSIONS {
        for offset in [0, 7] {
            let p = fetch_one(&mut client, v, "range-wm", 0, offset);
            assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "v{v} offset {offset}");
            assert_eq!(
                (p.high_watermark, p.last_stable_offset, p.log_start_offset),
                (-1, -1, -1),
                "v{v} offset {offset}: (high_watermark, last_stable_offset, log_start_offset)"
            );
        }
    }
}

#[test]
fn unknown_topics_and_partitions_are_unknown_topic_or_partition() {
    let broker = TestBroker::start();
    broker.create_topic("known", 2, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "known", 0, &[2]);
    for v in VERSIONS {
        let r = fetch(
            &mut client,
            v,
            fetch_request(
                &[
                    ("known", &[(0, 0, 1 << 20), (7, 0, 1 << 20)]),
                    ("no-such-topic", &[(0, 0, 1 << 20)]),
                ],
                0,
                0,
                1 << 20,
            ),
        );
        assert_eq!(r.responses.len(), 2, "v{v}");
        let known = &r.responses[0].partitions;
        assert_eq!(known[0].error_code, NONE, "v{v}");
        assert_eq!(known[0].high_watermark, 2, "v{v}");
        for p in [&known[1], &r.responses[1].partitions[0]] {
            assert_eq!(p.error_code, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
            assert!(records(p).is_empty(), "v{v}");
            assert_eq!(
                (p.high_watermark, p.last_stable_offset),
                (-1, -1),
                "v{v}: unknown watermarks"
            );
            if v >= 5 {
                assert_eq!(p.log_start_offset, -1, "v{v}");
            }
        }
        assert_eq!(r.responses[0].partitions[1].partition_index, 7);
    }
    // Fetch never creates topics, even with auto-creation on.
    assert!(broker
        .broker()
        .state()
        .topics
        .get("no-such-topic")
        .is_none());
}

#[test]
fn current_leader_epoch_is_checked_from_v9() {
    let broker = TestBroker::start();
    broker.create_topic("epochs", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    produce_batches(&mut client, "epochs", 0, &[2]);
    let with_epoch = |epoch: i32| {
        let mut request = fetch_request(&[("epochs", &[(0, 0, 1 << 20)])], 0, 0, 1 << 20);
        request.topics[0].partitions[0].current_leader_epoch = epoch;
        request
    };
    for v in [9, 10, 12] {
        for (epoch, expected) in [
            (-1, NONE),
            (0, NONE),
            (1, UNKNOWN_LEADER_EPOCH),
            (5, UNKNOWN_LEADER_EPOCH),
        ] {
            let p = only_partition(&fetch(&mut client, v, with_epoch(epoch)));
            assert_eq!(p.error_code, expected, "v{v} current_leader_epoch {epoch}");
            if expected == NONE {
                assert_eq!(split_batches(&records(&p)).0.len(), 1, "v{v}");
            } else {
                assert!(records(&p).is_empty(), "v{v}");
            }
        }
    }
    // Before v9 the field is not on the wire, so no epoch check can happen.
    for v in [4, 8] {
        let p = fetch_one(&mut client, v, "epochs", 0, 0);
        assert_eq!(p.error_code, NONE, "v{v}");
    }
}

#[test]
fn fetched_bytes_are_exactly_the_produced_batches() {
    let broker = TestBroker::start();
    broker.create_topic("exact", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let mut produced = produce_batches(&mut client, "exact", 0, &[3, 5, 1]);
    // An idempotent producer's batch too: producer id, epoch and sequence must come back unchanged.
    let ResponseKind::InitProducerId(init) = client.request(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            kafka_protocol::messages::InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
    ) else {
        panic!("wrong response type")
    };
    assert_eq!(init.error_code, NONE);
    let batch = record_batch(2, Some((init.producer_id.0, init.producer_epoch, 0)));
    let (code, offset) = produce(&mut client, "exact", 0, batch.clone());
    assert_eq!((code, offset), (NONE, 9));
    produced.push((offset, batch));

    for v in VERSIONS {
        let p = fetch_one(&mut client, v, "exact", 0, 0);
        assert_eq!(p.error_code, NONE, "v{v}");
        let data = records(&p);
        let (batches, rest) = split_batches(&data);
        assert_eq!(rest, 0, "v{v}: whole batches only");
        assert_eq!(batches.len(), produced.len(), "v{v}");
        for (fetched, (offset, sent)) in batches.iter().zip(&produced) {
            assert_same_batch(fetched, sent, *offset);
        }
        assert_eq!(
            data.len(),
            produced.iter().map(|(_, b)| b.len()).sum::<usize>(),
            "v{v}: nothing but the batches"
        );

        // A fetch offset inside a batch returns that whole batch first (consumers skip the records before it).
        let p = fetch_one(&mut client, v, "exact", 0, 6);
        let data = records(&p);
        let (batches, _) = split_batches(&data);
        assert_eq!(batches.len(), 3, "v{v}");
        assert_same_batch(batches[0], &produced[1].1, 3);
    }
}
