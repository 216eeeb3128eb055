//! A minimal blocking Kafka-protocol client over a raw socket, for tests that must send exact (or broken) bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use strom_protocol::codec::{decode_response, split_response};
use strom_protocol::kafka::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use strom_protocol::kafka::protocol::{Encodable, StrBytes};

pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Writes bytes as they are (no framing added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed the connection; callers check the effect, not this write.
        let _ = self.stream.write_all(bytes);
    }

    /// Encodes a request frame exactly as a client would.
    pub fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut payload = BytesMut::new();
        header
            .encode(&mut payload, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut payload, version).unwrap();
        let mut frame = BytesMut::with_capacity(payload.len() + 4);
        frame.put_i32(payload.len() as i32);
        frame.put_slice(&payload);
        frame.freeze()
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = Self::encode(api_key, version, correlation_id, &body);
        self.stream.write_all(&frame).expect("send request");
        let (got, body) = self.read_frame(api_key, version).expect("a response");
        assert_eq!(got, correlation_id, "responses come back in request order");
        decode_response(api_key, version, body).expect("decodable response")
    }

    /// Reads one response frame: (correlation id, body). `None` when the broker closed the connection.
    pub fn read_frame(&mut self, api_key: ApiKey, version: i16) -> Option<(i32, Bytes)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(split_response(Bytes::from(body), api_key, version).expect("response header"))
    }

    /// Reads one whole response frame of any API, or `None` if the connection closed or `timeout` passed.
    pub fn read_any_frame(&mut self, timeout: Duration) -> Option<Bytes> {
        self.stream.set_read_timeout(Some(timeout)).ok()?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let size = usize::try_from(i32::from_be_bytes(len)).ok()?;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True once the broker has closed the connection (a read returns end-of-stream or a reset).
    #[allow(clippy::disallowed_methods)] // a plain read is how end-of-stream is observed
    pub fn wait_closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// A RecordBatch v2 of `records` records (keys k0.., values v0..), optionally from an idempotent producer
/// `(producer id, epoch, base sequence)`.
pub fn record_batch(records: usize, producer: Option<(i64, i16, i32)>) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes, so a batch without a producer
            // counts up from -1 (its base sequence stays -1) to remain one batch.
            sequence: if base_sequence < 0 {
                i as i32 - 1
            } else {
                base_sequence + i as i32
            },
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produces `records` to one partition with acks=all; returns (error code, base offset).
pub fn produce(client: &mut RawClient, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let data = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![data]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) =
        client.request(ApiKey::Produce, 8, RequestKind::Produce(request))
    else {
        panic!("wrong response type")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// OffsetFetch at `version` for the offset `group` committed on `topic`-0.
pub fn offset_fetch(
    client: &mut RawClient,
    group: &str,
    topic: &str,
    version: i16,
) -> strom_protocol::kafka::messages::OffsetFetchResponse {
    use strom_protocol::kafka::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use strom_protocol::kafka::messages::{GroupId, OffsetFetchRequest, TopicName};
    let name = |v: &str| StrBytes::from_string(v.to_string());
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partition_indexes(vec![0])]));
    let ResponseKind::OffsetFetch(r) = client.request(
        ApiKey::OffsetFetch,
        version,
        RequestKind::OffsetFetch(request),
    ) else {
        panic!("wrong response type")
    };
    r
}
