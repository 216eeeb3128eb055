//! Bad input never takes the broker down: every case below is sent by a raw socket while a well-behaved client
//! keeps working, and each ends in a clear Kafka error or a closed connection, never a panic or a stall.

mod common;

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::RawClient;
use common::TestBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

/// A healthy client can still do a full ApiVersions + Metadata round trip.
fn assert_broker_serves(broker: &TestBroker) {
    let mut client = RawClient::connect(broker.addr);
    let ResponseKind::ApiVersions(v) = client.request(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(api_versions_request()),
    ) else {
        panic!("wrong response type")
    };
    assert_eq!(v.error_code, 0);
    let ResponseKind::Metadata(m) = client.request(
        ApiKey::Metadata,
        9,
        RequestKind::Metadata(MetadataRequest::default()),
    ) else {
        panic!("wrong response type")
    };
    assert_eq!(m.brokers.len(), 1);
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("raw"))
        .with_client_software_version(StrBytes::from_static_str("1"))
}

fn batch(records: usize) -> Bytes {
    common::raw::record_batch(records, None)
}

fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> (i16, i64) {
    common::raw::produce(client, topic, 0, records)
}
#[test]
fn oversized_and_negative_length_prefixes_close_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.socket_request_max_bytes = 1024 * 1024);
    for prefix in [
        i32::MAX.to_be_bytes(),
        (2 * 1024 * 1024i32).to_be_bytes(),
        (-1i32).to_be_bytes(),
    ] {
        let mut bad = RawClient::connect(broker.addr);
        bad.send_raw(&prefix);
        assert!(
            bad.wait_closed(),
            "connection closed after prefix {prefix:?}"
        );
        assert_broker_serves(&broker);
    }
}

#[test]
fn garbage_bytes_and_unknown_api_keys_close_the_connection() {
    let broker = TestBroker::start();
    let mut garbage = RawClient::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i32(64);
    frame.put_slice(&[0xAB; 64]);
    garbage.send_raw(&frame);
    assert!(garbage.wait_closed());

    let mut unknown = RawClient::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(12345); // no such API
    frame.put_i16(0);
    frame.put_i32(7);
    frame.put_i16(-1);
    unknown.send_raw(&frame);
    assert!(unknown.wait_closed());

    let mut short = RawClient::connect(broker.addr);
    short.send_raw(&[0, 0, 0, 3, 0, 18, 0]);
    assert!(
        short.wait_closed(),
        "a frame too short for a request header is refused"
    );
    assert_broker_serves(&broker);
}

#[test]
fn api_versions_at_an_unknown_version_gets_the_kip_511_fallback() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(-1);
    frame.put_u8(0); // header tagged fields (v2 header)
    frame.put_slice(&[1, 1, 0]); // whatever a future body looks like
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    client.send_raw(&frame);
    let (correlation_id, body) = client
        .read_frame(ApiKey::ApiVersions, 0)
        .expect("a response");
    assert_eq!(correlation_id, 42);
    let ResponseKind::ApiVersions(r) =
        strom_protocol::codec::decode_response(ApiKey::ApiVersions, 0, body).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 3));
}

#[test]
fn a_huge_array_count_in_a_small_frame_is_refused_without_allocating_it() {
    let broker = TestBroker::start();
    for (api, version) in [
        (ApiKey::Metadata, 1i16),
        (ApiKey::Produce, 3),
        (ApiKey::CreateTopics, 2),
    ] {
        let mut client = RawClient::connect(broker.addr);
        let mut frame = BytesMut::new();
        frame.put_i32(96);
        frame.put_i16(api as i16);
        frame.put_i16(version);
        frame.put_i32(1);
        frame.put_i16(-1);
        if api == ApiKey::Produce {
            frame.put_i16(-1); // transactional id
            frame.put_i16(1); // acks
            frame.put_i32(1000); // timeout
        }
        frame.put_i32(i32::MAX);
        while frame.len() < 100 {
            frame.put_u8(0x41);
        }
        client.send_raw(&frame);
        assert!(client.wait_closed(), "{api:?}");
    }
    assert_broker_serves(&broker);
}

#[test]
fn a_half_sent_frame_does_not_stall_other_clients_and_idles_out() {
    let broker = TestBroker::start_with(|c| c.connections_max_idle_ms = 300);
    let mut slow = RawClient::connect(broker.addr);
    slow.send_raw(&[0, 0, 0, 100, 0, 3, 0]); // announces 100 bytes, sends 3
    assert_broker_serves(&broker);
    assert!(
        slow.wait_closed(),
        "the idle half-sent frame is dropped after connections.max.idle.ms"
    );
}

#[test]
fn corrupt_batches_get_kafka_error_codes_and_append_nothing() {
    let broker = TestBroker::start();
    broker.create_topic("guarded", 1, &[]);
    let mut client = RawClient::connect(broker.addr);

    let good = batch(3);
    // Flip a bit inside the records: CRC-32C no longer matches.
    let mut flipped = BytesMut::from(&good[..]);
    let last = flipped.len() - 2;
    flipped[last] ^= 0x01;
    assert_eq!(
        produce(&mut client, "guarded", flipped.freeze()).0,
        2,
        "CORRUPT_MESSAGE"
    );

    // Magic byte 1 (old message format) is not a RecordBatch v2.
    let mut old_magic = BytesMut::from(&good[..]);
    old_magic[16] = 1;
    let code = produce(&mut client, "guarded", old_magic.freeze()).0;
    assert!(
        code == 87 || code == 2,
        "INVALID_RECORD or CORRUPT_MESSAGE, got {code}"
    );

    // A length prefix that runs past the end of the data.
    let truncated = good.slice(..good.len() - 5);
    let code = produce(&mut client, "guarded", truncated).0;
    assert!(
        code == 87 || code == 2,
        "INVALID_RECORD or CORRUPT_MESSAGE, got {code}"
    );

    // Garbage instead of a batch.
    let code = produce(&mut client, "guarded", Bytes::from_static(&[0xFF; 80])).0;
    assert!(
        code == 87 || code == 2,
        "INVALID_RECORD or CORRUPT_MESSAGE, got {code}"
    );

    // Nothing of the above was appended: the next good batch starts at offset 0.
    assert_eq!(produce(&mut client, "guarded", good), (0, 0));
    let topic = broker.broker().state().topics.get("guarded").unwrap();
    assert_eq!(topic.local[0].high_watermark(), 3);
}

#[test]
fn many_connections_opening_and_dropping_mid_request_leave_the_broker_healthy() {
    let broker = TestBroker::start();
    let frame = RawClient::encode(
        ApiKey::Metadata,
        9,
        1,
        &RequestKind::Metadata(MetadataRequest::default()),
    );
    for cut in [1usize, 4, 6, 10, frame.len() - 1] {
        let mut stream = std::net::TcpStream::connect(broker.addr).unwrap();
        stream.write_all(&frame[..cut]).unwrap();
        drop(stream);
    }
    assert_broker_serves(&broker);
}

/// A small deterministic generator (xorshift64*), so a failure reproduces from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid requests of many APIs, as the starting points for mutation.
fn seed_requests() -> Vec<(ApiKey, i16, RequestKind)> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        CreateTopicsRequest, FetchRequest, GroupId, JoinGroupRequest, ProduceRequest, TopicName,
    };
    let topic = || TopicName(StrBytes::from_static_str("fuzzed"));
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(4)))])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![
                FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("fuzz-created")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("fuzz-group")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
        ]);
    vec![
        (
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(MetadataRequest::default()),
        ),
        (ApiKey::Produce, 3, RequestKind::Produce(produce.clone())),
        (ApiKey::Produce, 9, RequestKind::Produce(produce)),
        (ApiKey::Fetch, 4, RequestKind::Fetch(fetch.clone())),
        (ApiKey::Fetch, 12, RequestKind::Fetch(fetch)),
        (ApiKey::CreateTopics, 5, RequestKind::CreateTopics(create)),
        (ApiKey::JoinGroup, 5, RequestKind::JoinGroup(join)),
        (
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(api_versions_request()),
        ),
    ]
}

/// Panics on the broker's runtime threads: tokio would otherwise swallow them with the connection task.
static BROKER_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_broker_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                BROKER_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

#[test]
fn mutated_requests_of_every_kind_never_take_the_broker_down() {
    count_broker_panics();
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    broker.create_topic("fuzzed", 1, &[]);
    let seeds = seed_requests();
    let seed = 0x5eed_5701_u64;
    let mut rng = Rng(seed);
    for round in 0..400 {
        let (api, version, body) = &seeds[round % seeds.len()];
        let mut frame = BytesMut::from(&RawClient::encode(*api, *version, round as i32, body)[..]);
        // Mutate the body (keep the length prefix honest so the broker gets to decode it).
        match rng.below(3) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = 4 + rng.below(frame.len() - 4);
                    frame[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let keep = 4 + rng.below(frame.len() - 4);
                frame.truncate(keep);
            }
            _ => {
                let at = 4 + rng.below(frame.len() - 4);
                frame[at] = 0xFF;
                if at + 1 < frame.len() {
                    frame[at + 1] = 0xFF;
                }
            }
        }
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        let mut client = RawClient::connect(broker.addr);
        client.send_raw(&frame);
        // Wait for the broker's answer: a response, or the connection closed on a request it cannot parse.
        let _ = client.read_any_frame(std::time::Duration::from_secs(5));
        drop(client);
        if round % 50 == 0 {
            assert_broker_serves(&broker);
        }
    }
    assert_broker_serves(&broker);
    assert_eq!(
        BROKER_PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a broker task panicked (seed {seed:#x})"
    );
    // The log still takes and serves good data.
    let mut client = RawClient::connect(broker.addr);
    let (code, offset) = common::raw::produce(&mut client, "fuzzed", 0, batch(2));
    assert_eq!(code, 0, "seed {seed:#x}");
    assert!(offset >= 0);
}
