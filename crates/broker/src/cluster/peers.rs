//! Connections to the other controllers: one outgoing connection per voter carries this node's Raft messages,
//! and [`RpcClient`] carries requests to the active controller.
//!
//! Raft messages are fire-and-forget: a queue that is full or a connection that is down drops them, and Raft's
//! own retries (heartbeats, probes) recover. Nothing here waits on a slow peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use strom_metadata::{node_id, RaftMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::wire::{Frame, PeerRequest, PeerResponse};

const QUEUE: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// A peer that refused this node (another cluster, other voters) will refuse it again until an operator acts:
/// ask rarely, and say so rarely.
const REFUSED_BACKOFF: Duration = Duration::from_secs(5);

/// Who this node is, sent first on every connection it opens.
#[derive(Clone)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: i32,
    /// `controller.quorum.voters` as `id@host:port`, sorted.
    pub voters: Vec<String>,
}

pub struct Peers {
    senders: HashMap<i32, mpsc::Sender<RaftMessage>>,
}

impl Peers {
    /// Starts a sender task for each voter but this node.
    pub fn start(
        identity: Identity,
        voters: &HashMap<i32, String>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let mut senders = HashMap::new();
        for (id, addr) in voters {
            if *id == identity.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(send_loop(
                identity.clone(),
                addr.clone(),
                rx,
                shutdown.clone(),
            ));
            senders.insert(*id, tx);
        }
        Self { senders }
    }

    pub fn send(&self, message: RaftMessage) {
        if let Some(tx) = self.senders.get(&node_id(message.to)) {
            // Full means the peer is not keeping up or is down: dropping is what the network would do.
            let _ = tx.try_send(message);
        }
    }
}

async fn connect(identity: &Identity, addr: &str) -> std::io::Result<TcpStream> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let hello = Frame::Hello {
        cluster_id: identity.cluster_id.clone(),
        node_id: identity.node_id,
        voters: identity.voters.clone(),
    };
    stream.write_all(&hello.encode()).await?;
    Ok(stream)
}

async fn send_loop(
    identity: Identity,
    addr: String,
    mut rx: mpsc::Receiver<RaftMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned = false;
    loop {
        let stream = tokio::select! {
            s = connect(&identity, &addr) => s,
            _ = shutdown.changed() => return,
        };
        let stream = match stream {
            Ok(s) => {
                warned = false;
                s
            }
            Err(e) => {
                if !warned {
                    tracing::debug!(peer = %addr, error = %e, "cannot reach controller");
                    warned = true;
                }
                // Messages queued while the peer is unreachable are stale by the time it is back.
                while rx.try_recv().is_ok() {}
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_BACKOFF) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let (mut read, mut write) = stream.into_split();
        // The peer writes only to refuse us; read that to say why, and to notice a closed connection.
        let peer = addr.clone();
        let mut reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                match read.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
                if let Ok(Some(Frame::Refused { message })) = Frame::decode(&mut buf) {
                    tracing::error!(peer = %peer, "controller refused this node: {message}");
                    return true;
                }
            }
        });
        let mut refused = false;
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { return };
                    if write.write_all(&Frame::Raft(m).encode()).await.is_err() {
                        break;
                    }
                }
                r = &mut reader => {
                    refused = r.unwrap_or(false);
                    break;
                }
                _ = shutdown.changed() => return,
            }
        }
        reader.abort();
        // Never reconnect in a tight loop: a peer that closes at once would otherwise be hammered.
        while rx.try_recv().is_ok() {}
        let backoff = if refused {
            REFUSED_BACKOFF
        } else {
            RECONNECT_BACKOFF
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Requests to one controller over one connection, matched to responses by id.
pub struct RpcClient {
    identity: Identity,
    addr: String,
    conn: tokio::sync::Mutex<Option<Conn>>,
    next_id: AtomicU64,
}

struct Conn {
    tx: mpsc::Sender<bytes::Bytes>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<PeerResponse>>>>,
    alive: watch::Receiver<bool>,
}

impl RpcClient {
    pub fn new(identity: Identity, addr: String) -> Self {
        Self {
            identity,
            addr,
            conn: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    pub async fn call(
        &self,
        body: PeerRequest,
        timeout: Duration,
    ) -> std::io::Result<PeerResponse> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut conn = self.conn.lock().await;
            if conn.as_ref().is_none_or(|c| !*c.alive.borrow()) {
                *conn = Some(self.open().await?);
            }
            let c = conn.as_ref().expect("just opened");
            c.pending.lock().insert(id, tx);
            if c.tx
                .send(Frame::Request { id, body }.encode())
                .await
                .is_err()
            {
                *conn = None;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "controller connection closed",
                ));
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("connection to controller {} closed", self.addr),
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("controller {} did not answer", self.addr),
            )),
        }
    }

    async fn open(&self) -> std::io::Result<Conn> {
        let stream = connect(&self.identity, &self.addr).await?;
        let (mut read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(256);
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<PeerResponse>>>> = Arc::default();
        let (alive_tx, alive) = watch::channel(true);
        let alive_tx = Arc::new(alive_tx);
        let writer_alive = alive_tx.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write.write_all(&frame).await.is_err() {
                    break;
                }
            }
            writer_alive.send_replace(false);
        });
        let reader_pending = pending.clone();
        let addr = self.addr.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(4096);
            'read: loop {
                match read.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    match Frame::decode(&mut buf) {
                        Ok(Some(Frame::Response { id, body })) => {
                            if let Some(tx) = reader_pending.lock().remove(&id) {
                                let _ = tx.send(body);
                            }
                        }
                        Ok(Some(Frame::Refused { message })) => {
                            tracing::error!(controller = %addr, "controller refused this node: {message}");
                            break 'read;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(controller = %addr, error = %e, "bad frame from controller");
                            break 'read;
                        }
                    }
                }
            }
            alive_tx.send_replace(false);
            // Dropping the senders tells every waiting call that the connection is gone.
            reader_pending.lock().clear();
        });
        Ok(Conn { tx, pending, alive })
    }
}
