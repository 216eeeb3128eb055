//! The controller listener: accepts connections from the other nodes, checks who they are, passes their Raft
//! messages to the quorum driver and answers their requests.

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use strom_metadata::raft_id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::quorum_driver::Command;
use super::wire::{Frame, MetadataDelta, PeerRequest, PeerResponse};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ListenerContext {
    /// When a refusal of each node id was last logged: a refused node retries, and one line per retry is noise.
    pub refusals_logged:
        std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<i32, std::time::Instant>>>,
    pub cluster_id: String,
    pub node_id: i32,
    /// This node's `controller.quorum.voters`, `id@host:port`, sorted.
    pub voter_list: Vec<String>,
    pub voters: HashSet<i32>,
    pub commands: mpsc::Sender<Command>,
}

impl ListenerContext {
    fn log_refusal(&self, node_id: i32, message: &str) {
        let mut logged = self.refusals_logged.lock();
        let due = logged
            .get(&node_id)
            .is_none_or(|at| at.elapsed() > Duration::from_secs(30));
        if due {
            tracing::error!("refusing a connection: {message}");
            logged.insert(node_id, std::time::Instant::now());
        }
    }
}

pub fn spawn(
    listener: TcpListener,
    context: ListenerContext,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let context = context.clone();
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, context, shutdown).await {
                                tracing::debug!(%peer, error = %e, "controller connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "controller listener accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    })
}

async fn serve(
    mut stream: TcpStream,
    context: ListenerContext,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut stream, &mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no Hello"))??;
    let Some(Frame::Hello {
        cluster_id,
        node_id,
        voters,
    }) = hello
    else {
        return refuse(&mut stream, "the first frame must be Hello".into()).await;
    };
    if cluster_id != context.cluster_id {
        let message = format!(
            "node {node_id} belongs to cluster {cluster_id}, but node {} belongs to cluster {}: \
             a node never joins another cluster's data (check controller.quorum.voters and the data directory's meta.properties)",
            context.node_id, context.cluster_id
        );
        context.log_refusal(node_id, &message);
        return refuse(&mut stream, message).await;
    }
    // A broker-only node that found the controllers through controller.quorum.bootstrap.servers knows no voter
    // list; every other node must have this one.
    let knows_voters = !voters.is_empty() || context.voters.contains(&node_id);
    if knows_voters && voters != context.voter_list {
        let message = format!(
            "node {node_id} has controller.quorum.voters={}, but node {} has {}: every node must list the same voters",
            voters.join(","),
            context.node_id,
            context.voter_list.join(",")
        );
        context.log_refusal(node_id, &message);
        return refuse(&mut stream, message).await;
    }
    if node_id == context.node_id {
        let message = format!(
            "another node claims this node's id {node_id}: node ids must be unique in a cluster"
        );
        context.log_refusal(node_id, &message);
        return refuse(&mut stream, message).await;
    }
    let (mut read, mut write) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<bytes::Bytes>(256);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if write.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let is_voter = context.voters.contains(&node_id);
    loop {
        let frame = tokio::select! {
            f = read_from(&mut read, &mut buf) => f?,
            _ = shutdown.changed() => break,
        };
        let Some(frame) = frame else { break };
        match frame {
            Frame::Raft(m) => {
                // A Raft message must come from the voter that said hello, and be for this node.
                if !is_voter || m.from != raft_id(node_id) {
                    tracing::warn!(
                        from = node_id,
                        "dropping a Raft message from a node that is not that voter"
                    );
                    continue;
                }
                if context.commands.send(Command::Raft(m)).await.is_err() {
                    break;
                }
            }
            Frame::Request { id, body } => {
                let commands = context.commands.clone();
                let voter_list = context.voter_list.clone();
                let out = out_tx.clone();
                tokio::spawn(async move {
                    let response = answer(body, &commands, voter_list).await;
                    let _ = out
                        .send(Frame::Response { id, body: response }.encode())
                        .await;
                });
            }
            _ => {}
        }
    }
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

async fn answer(
    body: PeerRequest,
    commands: &mpsc::Sender<Command>,
    voters: Vec<String>,
) -> PeerResponse {
    let gone = || {
        strom_metadata::ControllerError::new(
            strom_metadata::codes::NOT_CONTROLLER,
            "this controller is shutting down",
        )
    };
    match body {
        PeerRequest::Controller(request) => {
            let (tx, rx) = oneshot::channel();
            if commands
                .send(Command::Controller { request, reply: tx })
                .await
                .is_err()
            {
                return PeerResponse::Controller(Err(gone()));
            }
            PeerResponse::Controller(rx.await.unwrap_or_else(|_| Err(gone())))
        }
        PeerRequest::FetchMetadata { from, max_wait_ms } => {
            let (tx, rx) = oneshot::channel();
            if commands
                .send(Command::FetchMetadata { from, reply: tx })
                .await
                .is_err()
            {
                return PeerResponse::Controller(Err(gone()));
            }
            let wait = Duration::from_millis(max_wait_ms.min(30_000));
            let (image, batches, leader) = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(_)) => return PeerResponse::Controller(Err(gone())),
                // Nothing new in time: an empty answer, and the follower asks again.
                Err(_) => (None, Vec::new(), None),
            };
            PeerResponse::Metadata(MetadataDelta {
                image,
                batches,
                leader,
                voters,
            })
        }
        PeerRequest::QuorumStatus => {
            let (tx, rx) = oneshot::channel();
            let _ = commands.send(Command::Status { reply: tx }).await;
            match rx.await {
                Ok(status) => PeerResponse::QuorumStatus(status),
                Err(_) => PeerResponse::Controller(Err(gone())),
            }
        }
    }
}

async fn refuse(stream: &mut TcpStream, message: String) -> std::io::Result<()> {
    stream
        .write_all(&Frame::Refused { message }.encode())
        .await?;
    stream.shutdown().await
}

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Option<Frame>> {
    read_from(stream, buf).await
}

async fn read_from<R: AsyncReadExt + Unpin>(
    read: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Frame>> {
    loop {
        match Frame::decode(buf) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if read.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
