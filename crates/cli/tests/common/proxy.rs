//! A fault-injecting TCP proxy for network partitions between Strom nodes on one machine.
//!
//! One proxy stands in front of each of a node's listeners, and the node is configured to be reached through it
//! (`controller.quorum.voters` names the controller proxies, `advertised.listeners` the client proxy). The proxy
//! tells who is calling from the first frame of each connection, before it forwards anything:
//! - on a controller listener, the `Hello` every node sends first carries the sender's node id;
//! - on a client listener, a follower's fetch connection carries the client id `strom-replica-<node id>`; any
//!   other client id is a client, which partitions never cut.
//!
//! [`Proxy::cut`] separates the proxied node from the given peers: their open connections through this proxy
//! are shut down and new ones closed once identified, in both directions of the link when both nodes' proxies
//! are cut (see `isolate` in the tests). [`Proxy::heal`] lets everything through again.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which listener a proxy stands in front of: how it identifies the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// A node's controller listener: `[u32 length][u8 kind = 0][JSON {"node_id": N, ...}]` first.
    Controller,
    /// A node's client (Kafka) listener: a Kafka request header first.
    Kafka,
}

/// The largest first frame the proxy reads to identify a caller (a Hello, an ApiVersions or Fetch request).
const MAX_FIRST_FRAME: usize = 1 << 20;

#[derive(Default)]
struct Shared {
    /// Peers cut off from the node behind this proxy.
    cut: BTreeSet<i32>,
    /// Open proxied connections: (peer node id, or None for a client; both sockets).
    open: Vec<(Option<i32>, TcpStream, TcpStream)>,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a new port) and forwards to `target`.
    pub fn start(target: SocketAddr, plane: Plane) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || connect(client, target, plane, &shared));
            }
        });
        Proxy { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cuts `peers` off: their connections through this proxy close now, and new ones close once identified.
    pub fn cut(&self, peers: &[i32]) {
        let mut shared = self.shared.lock().unwrap();
        shared.cut.extend(peers);
        shared.open.retain(|(peer, a, b)| {
            let keep = !peer.is_some_and(|p| peers.contains(&p));
            if !keep {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
            keep
        });
    }

    /// Lets every peer through again.
    pub fn heal(&self) {
        self.shared.lock().unwrap().cut.clear();
    }
}

/// Identifies the caller from its first frame, then forwards both ways until either side closes.
fn connect(mut client: TcpStream, target: SocketAddr, plane: Plane, shared: &Mutex<Shared>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((first, peer)) = first_frame(&mut client, plane) else {
        return;
    };
    let _ = client.set_read_timeout(None);
    if peer.is_some_and(|p| shared.lock().unwrap().cut.contains(&p)) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    if server.write_all(&first).is_err() {
        return;
    }
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut shared = shared.lock().unwrap();
        // Cut while this connection was being set up: do not let it through.
        if peer.is_some_and(|p| shared.cut.contains(&p)) {
            return;
        }
        shared.open.push((peer, c, s));
    }
    let (Ok(client_read), Ok(server_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pump(client_read, server_write));
    pump(server, client);
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Reads the caller's first length-prefixed frame whole: (its bytes, the peer node id or None for a client).
fn first_frame(stream: &mut TcpStream, plane: Plane) -> Option<(Vec<u8>, Option<i32>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FIRST_FRAME {
        return None;
    }
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    stream.read_exact(&mut frame[4..]).ok()?;
    let body = &frame[4..];
    let peer = match plane {
        Plane::Controller => {
            // kind 0 = Hello, then JSON with the sender's node id.
            let hello: serde_json::Value = serde_json::from_slice(body.get(1..)?).ok()?;
            Some(i32::try_from(hello["node_id"].as_i64()?).ok()?)
        }
        Plane::Kafka => {
            // api_key i16, api_version i16, correlation_id i32, client_id (i16 length, bytes).
            let id_len = i16::from_be_bytes([*body.get(8)?, *body.get(9)?]);
            let client_id = if id_len > 0 {
                std::str::from_utf8(body.get(10..10 + id_len as usize)?).ok()?
            } else {
                ""
            };
            client_id
                .strip_prefix("strom-replica-")
                .and_then(|id| id.parse().ok())
        }
    };
    Some((frame, peer))
}
