//! Request decoding and response encoding around the `kafka-protocol` message types.
//!
//! Decoding never panics and never trusts a count from the wire: the header is read with explicit length checks
//! (the upstream helper indexes the buffer blindly), the API and version are checked against [`SUPPORTED_APIS`]
//! before the body is touched, and the body decoder is the vendored one whose arrays reserve at most as many
//! elements as there are bytes left.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::apis::{self, SUPPORTED_APIS};
use crate::frame::LENGTH_PREFIX;
use crate::response_frame::ResponseFrame;
use crate::splice_buf::SpliceBuf;

/// A decoded request: its header fields and its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: RequestKind,
}

/// Why a frame could not be turned into a [`Request`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("request of {0} bytes is shorter than a request header")]
    Truncated(usize),
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

impl DecodeError {
    /// The correlation id to answer with, when the header got that far.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            DecodeError::Truncated(_) => None,
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// Decodes one frame body (without its length prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    // api_key (2) + api_version (2) + correlation_id (4) are fixed in every header version.
    if frame.len() < 8 {
        return Err(DecodeError::Truncated(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);

    let Some(support) = apis::lookup(raw_key) else {
        return Err(DecodeError::UnknownApiKey {
            api_key: raw_key,
            correlation_id,
        });
    };
    let api_key = support.key;
    if !support.serves(version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };

    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body =
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(format!("{e:#}")))?;
    Ok(Request {
        api_key,
        api_version: version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body,
    })
}

/// Encodes a response frame, length prefix included, as chunks for a vectored write: the serving path.
///
/// A Fetch response's partition `records` (at least [`crate::SPLICE_MIN_BYTES`] long) become chunks of their own that
/// share memory with the `Bytes` in `body`, so the record batches read from the log are not copied again on the
/// way to the socket. Every other response, and every other field, is one contiguous chunk. The bytes are
/// exactly those of [`encode_response`].
pub fn encode_response_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    // `ResponseKind::encode` only writes into a `BytesMut`; the typed message encoders take any `ByteBufMut`.
    let ResponseKind::Fetch(fetch) = body else {
        return encode_response(api_key, version, correlation_id, body).map(ResponseFrame::from);
    };
    let mut out = SpliceBuf::with_capacity(256);
    for topic in &fetch.responses {
        for records in topic.partitions.iter().filter_map(|p| p.records.as_ref()) {
            out.register(records);
        }
    }
    encode_framed(&mut out, api_key, version, correlation_id, |out| {
        fetch.encode(out, version)
    })?;
    Ok(out.finish())
}

/// Encodes a response frame, length prefix included, into one buffer (copying every field, records too): for
/// clients, tests, and responses whose size does not matter.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::with_capacity(256);
    encode_framed(&mut out, api_key, version, correlation_id, |out| {
        body.encode(out, version)
    })?;
    Ok(out)
}

/// Writes the length prefix, the response header and the body, then patches the prefix with the size.
fn encode_framed<B: ByteBufMut, E: std::fmt::Display>(
    out: &mut B,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    encode_body: impl FnOnce(&mut B) -> Result<(), E>,
) -> Result<(), EncodeError> {
    let error = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let start = out.offset();
    out.put_i32(0);
    header
        .encode(out, header_version)
        .map_err(|e| error(format!("{e:#}")))?;
    encode_body(out).map_err(|e| error(format!("{e:#}")))?;
    let size = i32::try_from(out.offset() - start - LENGTH_PREFIX)
        .map_err(|_| error("response over 2 GiB".into()))?;
    out.range(start..start + LENGTH_PREFIX)
        .copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// A response could not be encoded: a broker bug (for example a field the chosen version cannot carry).
#[derive(Debug, Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// The KIP-511 answer to an ApiVersions request at a version Strom does not know: always encoded in the v0
/// format, carrying UNSUPPORTED_VERSION and the full list so the client can retry with a version it shares.
pub fn unsupported_api_versions_response(correlation_id: i32) -> BytesMut {
    let body = api_versions_body(kafka_protocol::ResponseError::UnsupportedVersion.code());
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
    .expect("an ApiVersions v0 response always encodes")
}

/// The ApiVersions response body listing every served API.
pub fn api_versions_body(error_code: i16) -> kafka_protocol::messages::ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min_version)
                .with_max_version(a.max_version)
        })
        .collect();
    kafka_protocol::messages::ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// Splits an encoded response (without length prefix) into its correlation id and body, for clients and tests.
pub fn split_response(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(i32, Bytes), ResponseDecodeError> {
    if frame.remaining() < 4 {
        return Err(ResponseDecodeError(
            "response shorter than its header".into(),
        ));
    }
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(|e| ResponseDecodeError(format!("{e:#}")))?;
    Ok((header.correlation_id, frame))
}

/// Decodes a response body of a known API and version.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    mut body: Bytes,
) -> Result<ResponseKind, ResponseDecodeError> {
    ResponseKind::decode(api_key, &mut body, version)
        .map_err(|e| ResponseDecodeError(format!("{e:#}")))
}

/// A response did not decode.
#[derive(Debug, Error)]
#[error("cannot decode response: {0}")]
pub struct ResponseDecodeError(pub String);
