//! One TCP connection to one broker: the ApiVersions handshake, then pipelined requests matched to responses
//! by correlation id.
//!
//! Two tasks own the socket halves. The writer drains a bounded queue of encoded frames (flushing when the
//! queue runs dry, so pipelined requests share syscalls); the reader reads whole frames and hands each body to
//! the waiter registered under its correlation id. Callers never touch the socket: they encode, register a
//! waiter, queue the frame and await their own response with a timeout. When either half fails, every
//! in-flight request fails with the same [`Error::ConnectionClosed`], and later requests fail at once.
//!
//! The 4-byte length prefix of a response is checked against `max_response_bytes` before the body is
//! allocated, so a hostile or confused peer cannot make the client reserve gigabytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use strom_protocol::kafka::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader,
};
use strom_protocol::kafka::protocol::{Decodable, Encodable, Request, StrBytes};
use strom_protocol::kafka::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::Error;

/// Settings of one broker connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id`: sent in every request header, shown in broker logs and quotas.
    pub client_id: String,
    /// `request.timeout.ms`: how long one request waits for its response.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: TCP connect plus the ApiVersions handshake.
    pub connect_timeout: Duration,
    /// Largest response accepted; a larger announced size closes the connection before any allocation.
    pub max_response_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "strom-client".into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            // Fetch responses are bounded by fetch.max.bytes (50 MiB in Kafka); leave room above it.
            max_response_bytes: 100 * 1024 * 1024,
        }
    }
}

/// The versions this client can encode: what kafka-protocol 0.18 knows, capped where a newer version changes
/// the addressing model (Produce and Fetch v13 name topics by id only, which this client does not track yet).
pub fn client_versions(api: ApiKey) -> (i16, i16) {
    let valid = api.valid_versions();
    let cap = match api {
        ApiKey::Fetch => 12,
        // v4+ is the broker-to-broker form (KIP-890); clients send v0-3, as Kafka's own producer does.
        ApiKey::AddPartitionsToTxn => 3,
        // Produce v12, EndTxn v5 and TxnOffsetCommit v5 are transaction version 2 (KIP-890 part 2: the broker
        // bumps the epoch at each EndTxn and adds partitions implicitly), which this client's transactional
        // producer does not speak yet: it adds partitions itself and keeps its epoch.
        ApiKey::Produce => 11,
        ApiKey::EndTxn => 4,
        ApiKey::TxnOffsetCommit => 4,
        _ => valid.max,
    };
    (valid.min, valid.max.min(cap))
}

/// Picks the highest version both sides support, if their ranges overlap.
pub fn negotiate(client: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let low = client.0.max(broker.0);
    let high = client.1.min(broker.1);
    (low <= high).then_some(high)
}

/// A handle to one broker connection; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Unique for the life of the process: tells a reconnection apart from the connection it replaced.
    id: u64,
    addr: String,
    config: ConnectionConfig,
    /// Broker's advertised range per raw API key, filled by the handshake.
    broker_versions: HashMap<i16, (i16, i16)>,
    next_correlation_id: AtomicI32,
    state: Arc<Mutex<State>>,
    outbound: mpsc::Sender<Outbound>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: nobody can await a response any more, so stop both halves and close the socket.
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Default)]
struct State {
    waiting: HashMap<i32, oneshot::Sender<Result<Bytes, Error>>>,
    /// Set once, when the connection fails; every later request gets this error.
    closed: Option<Error>,
}

impl State {
    fn fail_all(&mut self, error: Error) {
        if self.closed.is_none() {
            self.closed = Some(error.clone());
        }
        for (_, waiter) in self.waiting.drain() {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

struct Outbound {
    frame: Bytes,
    /// For requests without a response (Produce with acks=0): told once the frame is written.
    written: Option<oneshot::Sender<Result<(), Error>>>,
}

impl Connection {
    /// Connects to `addr` (host:port) and performs the ApiVersions handshake.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Self, Error> {
        let timeout = config.connect_timeout;
        let attempt = async {
            let stream = TcpStream::connect(addr).await.map_err(|e| Error::Connect {
                addr: addr.to_string(),
                source: Arc::new(e),
            })?;
            let _ = stream.set_nodelay(true);
            let mut stream = stream;
            let broker_versions = handshake(addr, &mut stream, &config).await?;
            Ok::<_, Error>(Self::start(addr, stream, config.clone(), broker_versions))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: format!("connecting to {addr}"),
                timeout,
            }),
        }
    }

    fn start(
        addr: &str,
        stream: TcpStream,
        config: ConnectionConfig,
        broker_versions: HashMap<i16, (i16, i16)>,
    ) -> Self {
        let (read, write) = stream.into_split();
        let state = Arc::new(Mutex::new(State::default()));
        // Bounded so a burst of requests waits for the socket instead of queueing without limit.
        let (tx, rx) = mpsc::channel(256);
        let writer = tokio::spawn(write_loop(addr.to_string(), write, rx, state.clone()));
        let reader = tokio::spawn(read_loop(
            addr.to_string(),
            read,
            config.max_response_bytes,
            state.clone(),
        ));
        Self {
            shared: Arc::new(Shared {
                id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
                addr: addr.to_string(),
                config,
                broker_versions,
                // The handshake used correlation ids 0 and 1.
                next_correlation_id: AtomicI32::new(2),
                state,
                outbound: tx,
                tasks: [writer, reader],
            }),
        }
    }

    /// This connection's process-wide unique id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection has failed; a pool replaces such a connection.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().unwrap().closed.is_some()
    }

    /// The broker's advertised version range for `api`, if it serves it.
    pub fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.shared.broker_versions.get(&(api as i16)).copied()
    }

    /// The version this connection uses for `api`: the highest both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16, Error> {
        let client = client_versions(api);
        let broker = self.broker_versions(api);
        broker
            .and_then(|b| negotiate(client, b))
            .ok_or_else(|| Error::UnsupportedVersion {
                addr: self.shared.addr.clone(),
                api,
                broker,
                client_min: client.0,
                client_max: client.1,
            })
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Response, Error>
    where
        R::Response: Send + 'static,
    {
        let api = api_key_of::<R>();
        let version = self.version(api)?;
        self.request_at(request, version).await
    }

    /// Sends `request` at an explicit version (which must be one the broker supports).
    pub async fn request_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, Error>
    where
        R::Response: Send + 'static,
    {
        self.start_request_at(request, version).await?.await
    }

    /// Queues `request` at the negotiated version and returns a future of its response. Requests queued
    /// one after another on a connection reach the broker in that order, which is what the producer needs
    /// for pipelined batches of one partition.
    pub async fn start_request<R: Request>(
        &self,
        request: &R,
    ) -> Result<impl std::future::Future<Output = Result<R::Response, Error>> + Send + 'static, Error>
    where
        R::Response: Send + 'static,
    {
        let version = self.version(api_key_of::<R>())?;
        self.start_request_at(request, version).await
    }

    async fn start_request_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<impl std::future::Future<Output = Result<R::Response, Error>> + Send + 'static, Error>
    where
        R::Response: Send + 'static,
    {
        let api = api_key_of::<R>();
        let (correlation_id, frame) = self.encode(request, version)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.state.lock().unwrap();
            if let Some(e) = &state.closed {
                return Err(e.clone());
            }
            state.waiting.insert(correlation_id, tx);
        }
        if self
            .shared
            .outbound
            .send(Outbound {
                frame,
                written: None,
            })
            .await
            .is_err()
        {
            return Err(self.forget(correlation_id));
        }
        let this = self.clone();
        Ok(async move {
            let timeout = this.shared.config.request_timeout;
            let body = match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => return Err(this.forget(correlation_id)),
                Err(_) => {
                    // As Kafka's clients do, a request that timed out takes its connection down, failing every
                    // request still in flight on it: a later response must not succeed on a connection whose
                    // earlier request was given up (an idempotent producer retrying the timed-out batch would
                    // otherwise see later batches acknowledged first, and its retry fall out of the broker's
                    // window of recent sequences).
                    let error = Error::RequestTimeout {
                        addr: this.shared.addr.clone(),
                        api,
                        timeout,
                    };
                    this.shared.state.lock().unwrap().fail_all(error.clone());
                    for task in &this.shared.tasks {
                        task.abort();
                    }
                    return Err(error);
                }
            };
            let decode_error = |reason: String| Error::Decode {
                addr: this.shared.addr.clone(),
                api,
                reason,
            };
            let (_, mut body) = strom_protocol::codec::split_response(body, api, version)
                .map_err(|e| decode_error(e.0))?;
            R::Response::decode(&mut body, version).map_err(|e| decode_error(format!("{e:#}")))
        })
    }

    /// Sends a request the broker will not answer (Produce with acks=0); returns once it is written.
    pub async fn send_without_response<R: Request>(&self, request: &R) -> Result<(), Error> {
        let api = api_key_of::<R>();
        let version = self.version(api)?;
        let (_, frame) = self.encode(request, version)?;
        if let Some(e) = &self.shared.state.lock().unwrap().closed {
            return Err(e.clone());
        }
        let (tx, rx) = oneshot::channel();
        let queued = self
            .shared
            .outbound
            .send(Outbound {
                frame,
                written: Some(tx),
            })
            .await;
        if queued.is_err() {
            return Err(self.closed_error());
        }
        match tokio::time::timeout(self.shared.config.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::RequestTimeout {
                addr: self.shared.addr.clone(),
                api,
                timeout: self.shared.config.request_timeout,
            }),
        }
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes), Error> {
        let api = api_key_of::<R>();
        let correlation_id = self
            .shared
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(
            api,
            version,
            correlation_id,
            &self.shared.config.client_id,
            |buf| request.encode(buf, version),
        )?;
        Ok((correlation_id, frame))
    }

    /// Removes a waiter that will not be answered and returns why the connection is unusable.
    fn forget(&self, correlation_id: i32) -> Error {
        let mut state = self.shared.state.lock().unwrap();
        state.waiting.remove(&correlation_id);
        state
            .closed
            .clone()
            .unwrap_or_else(|| Error::ConnectionClosed {
                addr: self.shared.addr.clone(),
                reason: "connection tasks stopped".into(),
            })
    }

    fn closed_error(&self) -> Error {
        self.shared
            .state
            .lock()
            .unwrap()
            .closed
            .clone()
            .unwrap_or_else(|| Error::ConnectionClosed {
                addr: self.shared.addr.clone(),
                reason: "connection tasks stopped".into(),
            })
    }
}

fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("every kafka-protocol request type has a known API key")
}

/// Encodes a request frame, length prefix included.
fn encode_frame<E: std::fmt::Display>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, Error> {
    let encode_error = |e: &dyn std::fmt::Display| Error::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| encode_error(&e))?;
    body(&mut buf).map_err(|e| encode_error(&e))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| Error::Encode {
        api,
        version,
        reason: "request over 2 GiB".into(),
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Reads one response frame body, checking the announced size before allocating it.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    read: &mut R,
    addr: &str,
    max: usize,
) -> Result<Bytes, Error> {
    let closed = |e: std::io::Error| Error::ConnectionClosed {
        addr: addr.to_string(),
        reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "closed by the broker".into()
        } else {
            e.to_string()
        },
    };
    let mut prefix = [0u8; 4];
    read.read_exact(&mut prefix).await.map_err(closed)?;
    let size = i32::from_be_bytes(prefix);
    let size = usize::try_from(size).map_err(|_| Error::ConnectionClosed {
        addr: addr.to_string(),
        reason: format!("negative response size {size}"),
    })?;
    if size > max {
        return Err(Error::ResponseTooLarge {
            addr: addr.to_string(),
            size,
            max,
        });
    }
    if size < 4 {
        return Err(Error::ConnectionClosed {
            addr: addr.to_string(),
            reason: format!("response of {size} bytes has no correlation id"),
        });
    }
    let mut body = vec![0u8; size];
    read.read_exact(&mut body).await.map_err(closed)?;
    Ok(Bytes::from(body))
}

async fn read_loop(addr: String, read: OwnedReadHalf, max: usize, state: Arc<Mutex<State>>) {
    let mut read = BufReader::new(read);
    loop {
        match read_frame(&mut read, &addr, max).await {
            Ok(frame) => {
                let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let waiter = state.lock().unwrap().waiting.remove(&correlation_id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok(frame));
                    }
                    None => tracing::debug!(%addr, correlation_id, "response nobody waits for"),
                }
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connection read side ends");
                state.lock().unwrap().fail_all(e);
                return;
            }
        }
    }
}

async fn write_loop(
    addr: String,
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    state: Arc<Mutex<State>>,
) {
    let mut write = BufWriter::new(write);
    let mut written_notices = Vec::new();
    while let Some(mut out) = rx.recv().await {
        loop {
            if let Err(e) = write.write_all(&out.frame).await {
                return fail_writer(&addr, e, &state, written_notices);
            }
            written_notices.extend(out.written.take());
            match rx.try_recv() {
                Ok(next) => out = next,
                Err(_) => break,
            }
        }
        if let Err(e) = write.flush().await {
            return fail_writer(&addr, e, &state, written_notices);
        }
        for n in written_notices.drain(..) {
            let _ = n.send(Ok(()));
        }
    }
    let _ = write.shutdown().await;
}

fn fail_writer(
    addr: &str,
    e: std::io::Error,
    state: &Mutex<State>,
    notices: Vec<oneshot::Sender<Result<(), Error>>>,
) {
    let error = Error::ConnectionClosed {
        addr: addr.to_string(),
        reason: format!("write failed: {e}"),
    };
    for n in notices {
        let _ = n.send(Err(error.clone()));
    }
    state.lock().unwrap().fail_all(error);
}

/// ApiVersions before anything else: v3 first; a broker that does not know v3 answers in the v0 format with
/// UNSUPPORTED_VERSION and its own range (KIP-511), and the client retries at the highest version it shares.
async fn handshake(
    addr: &str,
    stream: &mut TcpStream,
    config: &ConnectionConfig,
) -> Result<HashMap<i16, (i16, i16)>, Error> {
    let client_max = client_versions(ApiKey::ApiVersions).1;
    let first = api_versions_exchange(addr, stream, config, 0, client_max).await?;
    let response = match first {
        Exchange::Answer(r) => r,
        Exchange::Unsupported(broker_max) => {
            let version = broker_max.min(client_max);
            match api_versions_exchange(addr, stream, config, 1, version).await? {
                Exchange::Answer(r) => r,
                Exchange::Unsupported(_) => {
                    return Err(Error::UnsupportedVersion {
                        addr: addr.to_string(),
                        api: ApiKey::ApiVersions,
                        broker: None,
                        client_min: 0,
                        client_max,
                    })
                }
            }
        }
    };
    if let Some(e) = Error::kafka(
        response.error_code,
        format!("ApiVersions handshake with {addr}"),
    ) {
        return Err(e);
    }
    Ok(response
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect())
}

enum Exchange {
    Answer(ApiVersionsResponse),
    /// The broker refused the version; its highest ApiVersions version.
    Unsupported(i16),
}

/// One ApiVersions round trip on the raw stream, before the connection tasks exist.
async fn api_versions_exchange(
    addr: &str,
    stream: &mut TcpStream,
    config: &ConnectionConfig,
    correlation_id: i32,
    version: i16,
) -> Result<Exchange, Error> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strom-client"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let frame = encode_frame(
        ApiKey::ApiVersions,
        version,
        correlation_id,
        &config.client_id,
        |buf| request.encode(buf, version),
    )?;
    let io_error = |e: std::io::Error| Error::Connect {
        addr: addr.to_string(),
        source: Arc::new(e),
    };
    stream.write_all(&frame).await.map_err(io_error)?;
    let body = read_frame(stream, addr, config.max_response_bytes).await?;
    let decode_error = |reason: String| Error::Decode {
        addr: addr.to_string(),
        api: ApiKey::ApiVersions,
        reason,
    };
    // The ApiVersions response header is always v0 (no tagged fields), whatever the request version.
    let (_, body) = strom_protocol::codec::split_response(body, ApiKey::ApiVersions, version)
        .map_err(|e| decode_error(e.0))?;
    if body.len() >= 2 {
        let code = i16::from_be_bytes([body[0], body[1]]);
        if code == ResponseError::UnsupportedVersion.code() && version > 0 {
            let mut v0 = body.clone();
            let response = ApiVersionsResponse::decode(&mut v0, 0)
                .map_err(|e| decode_error(format!("{e:#}")))?;
            let broker_max = response
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map_or(0, |k| k.max_version);
            return Ok(Exchange::Unsupported(broker_max));
        }
    }
    let mut body = body;
    ApiVersionsResponse::decode(&mut body, version)
        .map(Exchange::Answer)
        .map_err(|e| decode_error(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_shared_version() {
        assert_eq!(negotiate((3, 12), (0, 9)), Some(9));
        assert_eq!(negotiate((3, 12), (0, 13)), Some(12));
        assert_eq!(negotiate((3, 12), (0, 2)), None);
        assert_eq!(negotiate((0, 3), (3, 4)), Some(3));
    }

    #[test]
    fn produce_and_transactions_are_capped_at_transaction_version_1() {
        assert_eq!(client_versions(ApiKey::Produce), (3, 11));
        assert_eq!(client_versions(ApiKey::EndTxn).1, 4);
        assert_eq!(client_versions(ApiKey::TxnOffsetCommit).1, 4);
        assert_eq!(client_versions(ApiKey::AddPartitionsToTxn).1, 3);
    }

    #[tokio::test]
    async fn oversized_response_is_refused_before_allocation() {
        let mut data: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let err = read_frame(&mut data, "peer", 1024).await.unwrap_err();
        assert!(
            matches!(err, Error::ResponseTooLarge { size, max: 1024, .. } if size == i32::MAX as usize)
        );
    }

    #[tokio::test]
    async fn truncated_frame_is_a_closed_connection() {
        let mut data: &[u8] = &[0, 0, 0, 10, 1, 2];
        let err = read_frame(&mut data, "peer", 1024).await.unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed { .. }), "{err}");
    }
}
