//! One client connection: framing in, responses out, in request order.
//!
//! The reader half checks each frame's length prefix against `socket.request.max.bytes` before buffering its body,
//! decodes it, and hands it to the handler. Handlers do their ordered work (an append) before returning, and return
//! a future for the rest (waiting for an fsync, a fetch long poll); the writer half awaits those futures in
//! request order, so pipelined requests overlap their waiting while responses keep Kafka's ordering guarantee.
//! A bounded queue between the two halves is the backpressure: a client that pipelines more than
//! [`MAX_IN_FLIGHT`] requests without reading responses stops being read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use strom_protocol::codec::unsupported_api_versions_response;
use strom_protocol::kafka::messages::ApiKey;
use strom_protocol::{decode_request, encode_response, frame, DecodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::handlers;
use crate::server::BrokerState;

/// Requests read but not yet answered, per connection.
pub const MAX_IN_FLIGHT: usize = 32;

/// What the writer half sends for one request: `None` for acks=0 produce, which gets no response.
type PendingResponse = BoxFuture<'static, Option<BytesMut>>;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_responses(writer, rx));
    let max_frame = state.config.socket_request_max_bytes;
    let idle = Duration::from_millis(state.config.connections_max_idle_ms);
    let mut buf = BytesMut::with_capacity(64 * 1024);

    'connection: loop {
        // Hand over every complete frame already buffered.
        loop {
            match frame::check(&buf, max_frame) {
                Ok(Some(size)) => {
                    buf.advance(frame::LENGTH_PREFIX);
                    let body = buf.split_to(size).freeze();
                    let Some(pending) = dispatch(&state, body, peer) else {
                        break 'connection;
                    };
                    if tx.send(pending).await.is_err() {
                        break 'connection;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    break 'connection;
                }
            }
        }
        // Reserve room for the frame being received, bounded by the validated announced size.
        let wanted =
            frame::announced_size(&buf, max_frame).map_or(4096, |s| s + frame::LENGTH_PREFIX);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(wanted.saturating_sub(buf.len()).clamp(4096, 1 << 20));
        }
        tokio::select! {
            read = tokio::time::timeout(idle, reader.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Decodes one frame and starts handling it. `None` closes the connection, as Kafka does for requests it cannot
/// parse.
fn dispatch(
    state: &Arc<BrokerState>,
    body: bytes::Bytes,
    peer: SocketAddr,
) -> Option<PendingResponse> {
    let request = match decode_request(body) {
        Ok(request) => request,
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            correlation_id,
            version,
        }) => {
            tracing::debug!(%peer, version, "ApiVersions at an unknown version; answering in v0 (KIP-511)");
            let response = unsupported_api_versions_response(correlation_id);
            return Some(Box::pin(async move { Some(response) }));
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection on a request that cannot be served");
            return None;
        }
    };
    let (api_key, version, correlation_id) =
        (request.api_key, request.api_version, request.correlation_id);
    let handling = handlers::handle(state, request, peer);
    Some(Box::pin(async move {
        let body = handling.await?;
        match encode_response(api_key, version, correlation_id, &body) {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::error!(error = %e, "dropping a response that cannot be encoded");
                None
            }
        }
    }))
}

async fn write_responses(
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<PendingResponse>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(pending) = rx.recv().await {
        if let Some(frame) = pending.await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        // Coalesce responses that are already queued into one write; flush when the queue runs dry.
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}
