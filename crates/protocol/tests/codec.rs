//! Codec properties: requests round-trip through encode/decode at every served version, and every truncated
//! prefix of a valid request fails cleanly instead of panicking.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use strom_protocol::kafka::messages::{
    fetch_request, metadata_request, produce_request, ApiKey, FetchRequest, MetadataRequest,
    ProduceRequest, RequestHeader, RequestKind, TopicName,
};
use strom_protocol::kafka::protocol::{Encodable, StrBytes};
use strom_protocol::{apis, decode_request, DecodeError};

fn encode_request(api_key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("codec-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn served_versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let a = apis::lookup(key as i16).unwrap();
    a.serve_min_version..=a.max_version
}

fn metadata(topics: &[String]) -> RequestKind {
    let topics = topics
        .iter()
        .map(|t| {
            metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
        })
        .collect();
    RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)))
}

fn produce(topic: &str, partitions: i32, payload: &[u8]) -> RequestKind {
    let data = (0..partitions)
        .map(|p| {
            produce_request::PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(Bytes::copy_from_slice(payload)))
        })
        .collect();
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(data);
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![topic]),
    )
}

fn fetch(topic: &str, partitions: i32) -> RequestKind {
    let parts = (0..partitions)
        .map(|p| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(p as i64 * 10)
        })
        .collect();
    let topic = fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(parts);
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_topics(vec![topic]),
    )
}

fn check_roundtrip_and_prefixes(api_key: ApiKey, body: RequestKind) {
    for version in served_versions(api_key) {
        let frame = encode_request(api_key, version, 7, &body);
        let decoded = decode_request(frame.clone()).unwrap();
        assert_eq!(decoded.api_key, api_key);
        assert_eq!(decoded.api_version, version);
        assert_eq!(decoded.correlation_id, 7);
        assert_eq!(decoded.client_id.as_deref(), Some("codec-test"));
        // Re-encoding the decoded body reproduces the exact bytes.
        assert_eq!(
            encode_request(api_key, version, 7, &decoded.body),
            frame,
            "{api_key:?} v{version}"
        );
        for cut in 0..frame.len() {
            assert!(
                decode_request(frame.slice(..cut)).is_err(),
                "{api_key:?} v{version} prefix {cut} decoded"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn metadata_roundtrips(topics in proptest::collection::vec("[a-z][a-z0-9._-]{0,20}", 1..4)) {
        check_roundtrip_and_prefixes(ApiKey::Metadata, metadata(&topics));
    }

    #[test]
    fn produce_roundtrips(topic in "[a-z]{1,12}", partitions in 1..4i32, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_roundtrip_and_prefixes(ApiKey::Produce, produce(&topic, partitions, &payload));
    }

    #[test]
    fn fetch_roundtrips(topic in "[a-z]{1,12}", partitions in 1..4i32) {
        check_roundtrip_and_prefixes(ApiKey::Fetch, fetch(&topic, partitions));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(bytes));
    }

    #[test]
    fn garbage_after_a_valid_header_never_panics(key in 0i16..70, version in 0i16..14, tail in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut buf = BytesMut::new();
        buf.put_i16(key);
        buf.put_i16(version);
        buf.put_i32(1);
        buf.put_slice(&tail);
        let _ = decode_request(buf.freeze());
    }
}

#[test]
fn unknown_api_key_is_reported_with_its_correlation_id() {
    let mut buf = BytesMut::new();
    buf.put_i16(999);
    buf.put_i16(0);
    buf.put_i32(42);
    assert_eq!(
        decode_request(buf.freeze()),
        Err(DecodeError::UnknownApiKey {
            api_key: 999,
            correlation_id: 42
        })
    );
}

#[test]
fn advertised_but_unserved_produce_versions_are_refused() {
    let frame = encode_request(ApiKey::Produce, 3, 5, &produce("t", 1, b"x"));
    let mut raw = BytesMut::from(&frame[..]);
    raw[2..4].copy_from_slice(&2i16.to_be_bytes());
    assert!(matches!(
        decode_request(raw.freeze()),
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            version: 2,
            correlation_id: 5
        })
    ));
}

#[test]
fn api_versions_fallback_is_a_v0_response_with_unsupported_version() {
    let frame = strom_protocol::codec::unsupported_api_versions_response(9).freeze();
    let (correlation_id, body) =
        strom_protocol::codec::split_response(frame.slice(4..), ApiKey::ApiVersions, 0).unwrap();
    assert_eq!(correlation_id, 9);
    let response = strom_protocol::codec::decode_response(ApiKey::ApiVersions, 0, body).unwrap();
    let strom_protocol::kafka::messages::ResponseKind::ApiVersions(resp) = response else {
        panic!("unexpected {response:?}")
    };
    assert_eq!(resp.error_code, 35);
    assert_eq!(resp.api_keys.len(), apis::SUPPORTED_APIS.len());
}
