//! The chunked response encoding ([`encode_response_frame`]) writes exactly the bytes of the contiguous one
//! ([`encode_response`]), and a fetched partition's records reach the frame without a copy.

use bytes::{Buf, Bytes};
use proptest::prelude::*;
use strom_protocol::kafka::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use strom_protocol::kafka::messages::metadata_response::MetadataResponseTopic;
use strom_protocol::kafka::messages::{
    ApiKey, FetchResponse, MetadataResponse, ProducerId, ResponseKind, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::{encode_response, encode_response_frame, ResponseFrame, SPLICE_MIN_BYTES};

fn records(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

/// One topic per entry of `topics`, one partition per records value.
fn fetch_response(topics: &[(&str, Vec<Option<Bytes>>)]) -> ResponseKind {
    let responses = topics
        .iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .iter()
                .enumerate()
                .map(|(i, records)| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_high_watermark(1000 + i as i64)
                        .with_last_stable_offset(1000 + i as i64)
                        .with_aborted_transactions(Some(vec![
                            AbortedTransaction::default().with_producer_id(ProducerId(7))
                        ]))
                        .with_records(records.clone())
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::Fetch(
        FetchResponse::default()
            .with_throttle_time_ms(3)
            .with_session_id(0)
            .with_responses(responses),
    )
}

fn assert_same_bytes(api_key: ApiKey, version: i16, body: &ResponseKind) -> ResponseFrame {
    let contiguous = encode_response(api_key, version, 42, body).unwrap();
    let frame = encode_response_frame(api_key, version, 42, body).unwrap();
    assert_eq!(frame.len(), contiguous.len());
    assert_eq!(
        frame.to_contiguous(),
        contiguous.freeze(),
        "{api_key:?} v{version}"
    );
    frame
}

fn partitions(body: &ResponseKind) -> Vec<&PartitionData> {
    let ResponseKind::Fetch(fetch) = body else {
        panic!("not a fetch response")
    };
    fetch.responses.iter().flat_map(|t| &t.partitions).collect()
}

#[test]
fn fetch_frames_match_the_contiguous_encoding_at_v4_v11_v12() {
    let body = fetch_response(&[
        (
            "orders",
            vec![
                Some(records(SPLICE_MIN_BYTES * 3, 1)),
                Some(Bytes::new()),
                None,
                Some(records(100, 2)),
            ],
        ),
        ("empty-topic", vec![]),
        ("payments", vec![Some(records(SPLICE_MIN_BYTES, 3)), None]),
    ]);
    for version in [4, 11, 12] {
        let frame = assert_same_bytes(ApiKey::Fetch, version, &body);
        // Header+fields, records, fields, records, trailing fields: one chunk per large records value and the
        // encoded bytes between them.
        assert_eq!(frame.chunks().count(), 5, "v{version}");
    }
}

#[test]
fn large_records_share_memory_with_the_response_body() {
    let body = fetch_response(&[(
        "t",
        vec![
            Some(records(SPLICE_MIN_BYTES + 1, 1)),
            Some(records(5000, 2)),
        ],
    )]);
    let frame = assert_same_bytes(ApiKey::Fetch, 12, &body);
    for data in partitions(&body) {
        let records = data.records.as_ref().unwrap();
        let shared = frame
            .chunks()
            .find(|c| c.as_ptr() == records.as_ptr())
            .expect("the records are a chunk of the frame, not a copy");
        assert_eq!(shared.len(), records.len());
    }
}

#[test]
fn the_same_bytes_in_two_partitions_are_spliced_twice() {
    let shared = records(4096, 9);
    let body = fetch_response(&[("t", vec![Some(shared.clone()), Some(shared.clone())])]);
    let frame = assert_same_bytes(ApiKey::Fetch, 11, &body);
    let spliced = frame
        .chunks()
        .filter(|c| c.as_ptr() == shared.as_ptr())
        .count();
    assert_eq!(spliced, 2);
}

#[test]
fn non_fetch_responses_are_one_chunk() {
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("orders"))));
    let body = ResponseKind::Metadata(MetadataResponse::default().with_topics(vec![topic]));
    for version in [1, 9, 12] {
        let frame = assert_same_bytes(ApiKey::Metadata, version, &body);
        assert_eq!(frame.chunks().count(), 1);
    }
}

#[test]
fn a_frame_written_through_its_buf_yields_the_same_bytes() {
    let body = fetch_response(&[("t", vec![Some(records(3000, 1)), Some(records(10, 2))])]);
    let mut frame = encode_response_frame(ApiKey::Fetch, 12, 1, &body).unwrap();
    let expected = encode_response(ApiKey::Fetch, 12, 1, &body).unwrap();
    let mut written = Vec::new();
    // Like a socket taking a few bytes per write.
    while frame.has_remaining() {
        let n = frame.chunk().len().min(700);
        written.extend_from_slice(&frame.chunk()[..n]);
        frame.advance(n);
    }
    assert_eq!(written, expected.to_vec());
}

proptest! {
    #[test]
    fn any_fetch_response_encodes_identically(
        version in 4i16..=12,
        sizes in proptest::collection::vec(proptest::option::of(0usize..3 * SPLICE_MIN_BYTES), 0..8),
    ) {
        let parts = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| s.map(|len| records(len, i as u8)))
            .collect();
        let body = fetch_response(&[("t", parts)]);
        let contiguous = encode_response(ApiKey::Fetch, version, 7, &body).unwrap();
        let frame = encode_response_frame(ApiKey::Fetch, version, 7, &body).unwrap();
        prop_assert_eq!(frame.to_contiguous(), contiguous.freeze());
    }
}
