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
