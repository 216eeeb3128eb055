//! The same-client ceiling: a bare Kafka-speaking sink in this process that librdkafka produces into. It answers
//! ApiVersions and Metadata (one node, itself, leading every partition), and for Produce only splits the record
//! batches, checks each one's CRC-32C and appends it to a file, then acknowledges with offsets. No validation beyond
//! the CRC, no indexes, no producer state, no flush, no partitions on disk: the least a server can do and still
//! take librdkafka's load, so "Strom as a fraction of the sink" is the broker's own overhead under the same client.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use strom_protocol::codec::api_versions_body;
use strom_protocol::kafka::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use strom_protocol::kafka::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use strom_protocol::kafka::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestKind, ResponseKind,
};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::ResponseError;
use strom_protocol::{decode_request, encode_response, frame};

/// The largest request the sink reads (librdkafka's default message.max.bytes is 1 MB per batch).
const MAX_REQUEST: usize = 100 << 20;
/// Record batch header offsets (Kafka's v2 batch layout).
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const HEADER_BYTES: usize = 61;

/// A running sink: a listener thread and one thread per connection.
pub struct Sink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Sink {
    /// Starts a sink serving `topic` with `partitions` partitions on an ephemeral loopback port.
    pub fn start(topic: &str, partitions: i32) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the sink's temp dir")?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Served {
            addr,
            topic: topic.to_string(),
            partitions,
            path: dir.path().join("sink.log"),
        };
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let served = served.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = served.serve(stream) {
                            eprintln!("sink: connection ended: {e:#}");
                        }
                    });
                }
            });
        }
        Ok(Sink {
            addr,
            stop,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Wakes the accept loop so it sees the flag; connection threads end when their clients disconnect.
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

#[derive(Clone)]
struct Served {
    addr: SocketAddr,
    topic: String,
    partitions: i32,
    path: std::path::PathBuf,
}

impl Served {
    fn serve(&self, stream: TcpStream) -> Result<()> {
        stream.set_nodelay(true)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .context("opening the sink's file")?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        // Next offset per partition, as librdkafka reads them from the acknowledgements.
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        loop {
            let mut prefix = [0u8; frame::LENGTH_PREFIX];
            match reader.read_exact(&mut prefix) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let size = u32::from_be_bytes(prefix) as usize;
            if size > MAX_REQUEST {
                bail!("request of {size} bytes");
            }
            let mut body = BytesMut::zeroed(size);
            reader.read_exact(&mut body)?;
            let request = decode_request(body.freeze())?;
            let response = match request.body {
                RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions()),
                RequestKind::Metadata(_) => ResponseKind::Metadata(self.metadata()),
                RequestKind::Produce(produce) => {
                    let acks = produce.acks;
                    let response = self.produce(produce, &mut file, &mut next_offsets)?;
                    if acks == 0 {
                        continue;
                    }
                    ResponseKind::Produce(response)
                }
                other => bail!("the sink serves ApiVersions, Metadata and Produce, not {other:?}"),
            };
            let encoded = encode_response(
                request.api_key,
                request.api_version,
                request.correlation_id,
                &response,
            )?;
            writer.write_all(&encoded)?;
        }
    }

    fn metadata(&self) -> MetadataResponse {
        let partitions = (0..self.partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(0))
                    .with_replica_nodes(vec![BrokerId(0)])
                    .with_isr_nodes(vec![BrokerId(0)])
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(StrBytes::from_string(self.topic.clone()).into()))
            .with_partitions(partitions);
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_string(self.addr.ip().to_string()))
                .with_port(i32::from(self.addr.port()))])
            .with_controller_id(BrokerId(0))
            .with_topics(vec![topic])
    }

    fn produce(
        &self,
        request: ProduceRequest,
        file: &mut std::fs::File,
        next_offsets: &mut HashMap<i32, i64>,
    ) -> Result<ProduceResponse> {
        let mut topics = Vec::new();
        for topic in request.topic_data {
            let mut partitions = Vec::new();
            for data in topic.partition_data {
                let records = data.records.unwrap_or_default();
                let next = next_offsets.entry(data.index).or_insert(0);
                let base_offset = *next;
                let error_code = match append(&records, file, next) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("sink: refusing a batch: {e:#}");
                        ResponseError::CorruptMessage.code()
                    }
                };
                partitions.push(
                    PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_error_code(error_code)
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(0),
                );
            }
            topics.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(partitions),
            );
        }
        Ok(ProduceResponse::default().with_responses(topics))
    }
}

/// Checks every batch's CRC-32C, then appends them all with one write, advancing `next_offset` past them.
fn append(records: &Bytes, file: &mut std::fs::File, next_offset: &mut i64) -> Result<()> {
    let mut at = 0;
    let mut offsets = 0i64;
    while at < records.len() {
        let batch = &records[at..];
        if batch.len() < HEADER_BYTES {
            bail!(
                "a batch of {} bytes is shorter than its header",
                batch.len()
            );
        }
        if batch[MAGIC_AT] != 2 {
            bail!(
                "record batch magic {} (the sink takes v2 batches only)",
                batch[MAGIC_AT]
            );
        }
        let length = i32::from_be_bytes(batch[LENGTH_AT..LENGTH_AT + 4].try_into()?);
        let total = LENGTH_AT + 4 + usize::try_from(length).context("negative batch length")?;
        if total > batch.len() || total < HEADER_BYTES {
            bail!("batch length {length} does not fit the request");
        }
        let crc = u32::from_be_bytes(batch[CRC_AT..CRC_AT + 4].try_into()?);
        if crc32c::crc32c(&batch[ATTRIBUTES_AT..total]) != crc {
            bail!("batch failed its CRC-32C check");
        }
        let last_offset_delta =
            i32::from_be_bytes(batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].try_into()?);
        offsets += i64::from(last_offset_delta) + 1;
        at += total;
    }
    file.write_all(records)?;
    *next_offset += offsets;
    Ok(())
}

/// ApiVersions listing what the sink serves, at the versions Strom serves them. Fetch is listed though never
/// served: librdkafka only writes v2 record batches to a broker that has both Produce v3+ and Fetch v4+, and falls
/// back to the old message format otherwise.
fn api_versions() -> ApiVersionsResponse {
    let served = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
    ];
    let mut body = api_versions_body(0);
    body.api_keys
        .retain(|a| served.iter().any(|&key| key as i16 == a.api_key));
    body
}
