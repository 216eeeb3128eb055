//! This node's place in the cluster: the metadata quorum it votes in, the image it serves from, and the way its
//! requests reach the active controller.
//!
//! Every node of a Strom cluster today is a controller (it votes in the Raft metadata quorum and keeps the log
//! under `<data-dir>/__cluster_metadata-0/`), and, with `process.roles=broker,controller`, also a broker. Every
//! broker answers clients from the same committed image; writes go to the active controller (the quorum
//! leader), locally or over the controller listener, and are answered once this node has applied them, so a
//! created topic is visible here when the client hears it was created.

mod lifecycle;
mod listener;
mod observer;
mod peers;
pub mod quorum_driver;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strom_metadata::{
    codes, ControllerConfig, ControllerError, ControllerReply, ControllerRequest, MetaProperties,
    MetadataDisk, MetadataImage, QuorumConfig, QuorumNode, QuorumStatus,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::BrokerConfig;
use peers::{Identity, Peers, RpcClient};
use quorum_driver::{Command, OnApplied, QuorumDriver};
use wire::{PeerRequest, PeerResponse};

pub use lifecycle::BrokerLifecycle;

/// Where the metadata log lives inside the data directory (Kafka's name for it).
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// The node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Config(String),
    #[error("metadata log: {0}")]
    Disk(String),
    #[error("metadata quorum: {0}")]
    Quorum(#[from] strom_metadata::QuorumError),
    #[error("controller listener: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Cluster {
    pub node_id: i32,
    pub cluster_id: String,
    image: watch::Receiver<Arc<MetadataImage>>,
    leader: watch::Receiver<Option<i32>>,
    /// The quorum driver, on a controller; a broker-only node has none.
    commands: Option<mpsc::Sender<Command>>,
    /// Controller listener addresses by voter id.
    voters: Arc<Mutex<HashMap<i32, String>>>,
    rpc: Mutex<HashMap<i32, Arc<RpcClient>>>,
    identity: Identity,
    /// The controller listener's bound address, when this node has one.
    pub controller_addr: Option<SocketAddr>,
}

/// How long an admin request waits for the quorum before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Reads or creates this node's identity, loads its metadata log and starts voting. `on_applied` runs for
    /// every committed batch before the image is published.
    pub async fn start(
        config: &BrokerConfig,
        controller_listener: Option<TcpListener>,
        on_applied: OnApplied,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), ClusterError> {
        if !config.roles.controller {
            return Self::start_observer(config, on_applied, shutdown).await;
        }
        let voters = voter_addresses(config, controller_listener.as_ref())?;
        let meta = identity(config, voters.len() == 1)?;
        let dir = config.data_dir.join(METADATA_DIR);
        let data_dir = config.data_dir.clone();
        let voter_ids: Vec<i32> = config.voter_ids();
        let (node_id, ids) = (config.node_id, voter_ids.clone());
        let (disk, durable) = tokio::task::spawn_blocking(move || {
            let mut disk = MetadataDisk::open(&dir).map_err(|e| e.to_string())?;
            let durable = match disk.load().map_err(|e| e.to_string())? {
                Some(d) => d,
                None => crate::metadata::initial_state(&data_dir, node_id, &ids, &mut disk)
                    .map_err(|e| e.to_string())?,
            };
            Ok::<_, String>((disk, durable))
        })
        .await
        .map_err(|e| ClusterError::Disk(e.to_string()))?
        .map_err(ClusterError::Disk)?;
        let mut quorum = QuorumConfig::new(config.node_id, voter_ids.clone(), rand_seed());
        quorum.election_ticks = 10;
        quorum.heartbeat_ticks = 2;
        let tick = Duration::from_millis((config.quorum_election_timeout_ms / 10).max(1));
        let committed = durable.hard_state.commit;
        let node = QuorumNode::restart(quorum, durable)?;
        let (image_tx, image) = watch::channel(Arc::new(node.image().clone()));
        let (leader_tx, leader) = watch::channel(node.leader());
        let mut voter_list: Vec<String> = voters
            .iter()
            .filter(|(_, addr)| !addr.is_empty())
            .map(|(id, addr)| format!("{id}@{addr}"))
            .collect();
        voter_list.sort();
        let identity = Identity {
            cluster_id: meta.cluster_id.clone(),
            node_id: config.node_id,
            voters: voter_list.clone(),
        };
        let peers = Peers::start(identity.clone(), &voters, shutdown.clone());
        let (commands, commands_rx) = mpsc::channel(4096);
        let controller_addr = match controller_listener {
            Some(l) => {
                let addr = l.local_addr()?;
                listener::spawn(
                    l,
                    listener::ListenerContext {
                        refusals_logged: Default::default(),
                        cluster_id: meta.cluster_id.clone(),
                        node_id: config.node_id,
                        voter_list,
                        voters: voter_ids.iter().copied().collect::<HashSet<_>>(),
                        commands: commands.clone(),
                    },
                    shutdown.clone(),
                );
                Some(addr)
            }
            None => None,
        };
        // The first image (snapshot plus the log replayed) is applied before anything serves from it.
        {
            let image = node.image().clone();
            let on_applied = on_applied.clone();
            tokio::task::spawn_blocking(move || on_applied(&image, &[]))
                .await
                .map_err(|e| ClusterError::Disk(e.to_string()))?;
        }
        let driver = QuorumDriver {
            node,
            disk: Arc::new(Mutex::new(disk)),
            peers,
            controller_config: ControllerConfig {
                session_timeout_ms: config.broker_session_timeout_ms,
                default_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                leader_rebalance: config.auto_leader_rebalance_enable.then_some((
                    config.leader_imbalance_check_interval_ms,
                    config.leader_imbalance_per_broker_percentage,
                )),
                min_insync_replicas: config.min_insync_replicas,
                unclean_leader_election: config.unclean_leader_election_enable,
            },
            tick,
            image_tx,
            leader_tx,
            on_applied,
        }
        .spawn(commands_rx, shutdown);
        // Serve nothing before the log this node already committed is applied: committed offsets, topics
        // created before a restart and the broker's own registration all live there.
        let mut applied = image.clone();
        applied
            .wait_for(|i| i.applied_index >= committed)
            .await
            .map_err(|_| ClusterError::Disk("the metadata log could not be replayed".into()))?;
        Ok((
            Self {
                node_id: config.node_id,
                cluster_id: meta.cluster_id,
                image,
                leader,
                commands: Some(commands),
                voters: Arc::new(Mutex::new(voters)),
                rpc: Mutex::new(HashMap::new()),
                identity,
                controller_addr,
            },
            driver,
        ))
    }

    /// A broker-only node: follows the log from the controllers (`controller.quorum.voters` or
    /// `controller.quorum.bootstrap.servers`) and sends its requests to the active controller.
    async fn start_observer(
        config: &BrokerConfig,
        on_applied: OnApplied,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), ClusterError> {
        let mut voters: HashMap<i32, String> = config
            .quorum_voters
            .iter()
            .map(|v| (v.node_id, format!("{}:{}", v.host, v.port)))
            .collect();
        if voters.contains_key(&config.node_id) {
            return Err(ClusterError::Config(format!(
                "node.id {} is one of controller.quorum.voters, but process.roles has no controller role",
                config.node_id
            )));
        }
        let mut bootstrap: Vec<String> = voters.values().cloned().collect();
        bootstrap.sort();
        bootstrap.extend(config.quorum_bootstrap_servers.iter().cloned());
        if bootstrap.is_empty() {
            return Err(ClusterError::Config(
                "a broker-only node needs controller.quorum.voters or controller.quorum.bootstrap.servers".into(),
            ));
        }
        // Two nodes with one id must not both be formatted: a broker-only node is formatted like a voter.
        let meta = identity(config, false)?;
        let mut voter_list: Vec<String> =
            voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
        voter_list.sort();
        let identity = Identity {
            cluster_id: meta.cluster_id.clone(),
            node_id: config.node_id,
            voters: voter_list,
        };
        let (image_tx, image) = watch::channel(Arc::new(MetadataImage::default()));
        let (leader_tx, leader) = watch::channel(None);
        let (caught_up_tx, mut caught_up) = watch::channel(false);
        let shared_voters = Arc::new(Mutex::new(std::mem::take(&mut voters)));
        let task = observer::Observer {
            identity: identity.clone(),
            bootstrap,
            on_applied,
            image_tx,
            leader_tx,
            voters: shared_voters.clone(),
            caught_up: caught_up_tx,
        }
        .spawn(shutdown);
        let _ = caught_up.wait_for(|c| *c).await;
        Ok((
            Self {
                node_id: config.node_id,
                cluster_id: meta.cluster_id,
                image,
                leader,
                commands: None,
                voters: shared_voters,
                rpc: Mutex::new(HashMap::new()),
                identity,
                controller_addr: None,
            },
            task,
        ))
    }

    /// Whether this node votes in the metadata quorum.
    pub fn is_controller(&self) -> bool {
        self.commands.is_some()
    }

    /// The committed metadata this node has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub fn image_watch(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The controller id Metadata and DescribeCluster name: the active controller when it is a live broker, else
    /// this broker. Kafka names a live broker there: clients send admin requests to it, and any broker forwards
    /// them to the active controller.
    pub fn controller_for_clients(&self, image: &MetadataImage) -> i32 {
        self.leader()
            .filter(|l| image.brokers.get(l).is_some_and(|b| !b.fenced))
            .unwrap_or(self.node_id)
    }

    /// The active controller, as far as this node knows.
    pub fn leader(&self) -> Option<i32> {
        *self.leader.borrow()
    }

    pub fn voter_ids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.voters.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The controller listener of every voter: (node id, host, port).
    pub fn voter_endpoints(&self) -> Vec<(i32, String, u16)> {
        let mut v: Vec<(i32, String, u16)> = self
            .voters
            .lock()
            .iter()
            .filter_map(|(id, addr)| {
                let (host, port) = addr.rsplit_once(':')?;
                Some((*id, host.to_string(), port.parse().ok()?))
            })
            .collect();
        v.sort();
        v
    }

    /// Sends a request to the active controller, wherever it is, and returns its reply once this node has
    /// applied the records it wrote. Retries across leader changes until `timeout`.
    pub async fn request(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<(ControllerReply, u64), ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut leader = self.leader.clone();
        let mut last_error = None;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                let why = last_error.map_or_else(
                    || {
                        "the metadata quorum has no leader (is a majority of controllers running?)"
                            .to_string()
                    },
                    |e: ControllerError| e.message,
                );
                return Err(ControllerError::new(
                    codes::REQUEST_TIMED_OUT,
                    format!("no answer from the active controller within {timeout:?}: {why}"),
                ));
            }
            let current = *leader.borrow_and_update();
            let result = match current {
                // Bounded like a remote request: a proposal of this node's may wait for a majority that never
                // comes back (the other voters stopped), and its outcome is then unknown, as after a timeout.
                Some(id) if id == self.node_id => {
                    match tokio::time::timeout(remaining, self.local(request.clone())).await {
                        Ok(result) => result,
                        Err(_) => Err(ControllerError::new(
                            codes::REQUEST_TIMED_OUT,
                            format!(
                                "no answer from the active controller (this node) within {timeout:?}: its \
                                 proposal was not committed"
                            ),
                        )),
                    }
                }
                Some(id) => self.remote(id, request.clone(), remaining).await,
                None => Err(quorum_driver::not_controller(None)),
            };
            match result {
                Ok((reply, index)) => {
                    self.wait_applied(index, deadline).await?;
                    return Ok((reply, index));
                }
                Err(e) if e.code == codes::NOT_CONTROLLER => {
                    last_error = Some(e);
                    // Wait for news of a leader, but not forever: a leader we cannot reach is no news.
                    let wait = remaining.min(Duration::from_millis(200));
                    let _ = tokio::time::timeout(wait, leader.changed()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn local(
        &self,
        request: ControllerRequest,
    ) -> Result<(ControllerReply, u64), ControllerError> {
        let commands = self
            .commands
            .as_ref()
            .ok_or_else(|| quorum_driver::not_controller(None))?;
        let (tx, rx) = oneshot::channel();
        commands
            .send(Command::Controller { request, reply: tx })
            .await
            .map_err(|_| quorum_driver::not_controller(None))?;
        rx.await
            .unwrap_or_else(|_| Err(quorum_driver::not_controller(None)))
    }

    fn rpc_client(&self, id: i32) -> Option<Arc<RpcClient>> {
        let addr = self.voters.lock().get(&id)?.clone();
        Some(
            self.rpc
                .lock()
                .entry(id)
                .or_insert_with(|| Arc::new(RpcClient::new(self.identity.clone(), addr)))
                .clone(),
        )
    }

    async fn remote(
        &self,
        id: i32,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<(ControllerReply, u64), ControllerError> {
        let client = self
            .rpc_client(id)
            .ok_or_else(|| quorum_driver::not_controller(None))?;
        match client.call(PeerRequest::Controller(request), timeout).await {
            Ok(PeerResponse::Controller(result)) => result,
            Ok(other) => Err(ControllerError::new(
                codes::UNKNOWN_SERVER_ERROR,
                format!("unexpected answer from controller {id}: {other:?}"),
            )),
            // Unreachable or gone: treat as no leader, and look again.
            Err(e) => Err(ControllerError::new(
                codes::NOT_CONTROLLER,
                format!("controller {id} is unreachable: {e}"),
            )),
        }
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ControllerError> {
        let mut image = self.image.clone();
        let reached =
            tokio::time::timeout_at(deadline, image.wait_for(|i| i.applied_index >= index)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ControllerError::new(
                codes::REQUEST_TIMED_OUT,
                format!(
                    "committed at metadata index {index}, but this node has not applied it yet"
                ),
            )),
        }
    }

    /// The quorum as the active controller sees it.
    pub async fn quorum_status(&self) -> Result<QuorumStatus, ControllerError> {
        let local = async {
            let (tx, rx) = oneshot::channel();
            self.commands
                .as_ref()?
                .send(Command::Status { reply: tx })
                .await
                .ok()?;
            rx.await.ok()
        };
        let status = match local.await {
            Some(s) => s,
            // A broker-only node asks the leader it knows of.
            None => QuorumStatus {
                leader: self.leader(),
                term: 0,
                commit_index: 0,
                last_index: 0,
                voters: Vec::new(),
            },
        };
        match status.leader {
            Some(id) if id != self.node_id => {
                let client = self
                    .rpc_client(id)
                    .ok_or_else(|| quorum_driver::not_controller(None))?;
                match client
                    .call(PeerRequest::QuorumStatus, Duration::from_secs(5))
                    .await
                {
                    Ok(PeerResponse::QuorumStatus(s)) => Ok(s),
                    _ => Err(quorum_driver::not_controller(Some(id))),
                }
            }
            Some(_) => Ok(status),
            None => Err(quorum_driver::not_controller(None)),
        }
    }

    /// Asks the quorum to move leadership off this node (before it stops).
    pub async fn resign(&self) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Resign).await;
        }
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `controller.quorum.voters` as addresses, checked against this node's own configuration.
fn voter_addresses(
    config: &BrokerConfig,
    listener: Option<&TcpListener>,
) -> Result<HashMap<i32, String>, ClusterError> {
    if config.quorum_voters.is_empty() {
        return Ok(HashMap::from([(config.node_id, String::new())]));
    }
    if !config
        .quorum_voters
        .iter()
        .any(|v| v.node_id == config.node_id)
    {
        return Err(ClusterError::Config(format!(
            "node.id {} is not in controller.quorum.voters ({}); a controller must be one of the voters",
            config.node_id,
            config
                .quorum_voters
                .iter()
                .map(|v| format!("{}@{}:{}", v.node_id, v.host, v.port))
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    let Some(listener) = listener else {
        return Err(ClusterError::Config(
            "controller.quorum.voters names other voters, but listeners has no controller listener \
             (add CONTROLLER://host:port to listeners)"
                .into(),
        ));
    };
    let me = config
        .quorum_voters
        .iter()
        .find(|v| v.node_id == config.node_id)
        .expect("checked above");
    let bound = listener.local_addr()?;
    if let Some((host, port)) = &config.advertised_controller {
        // Reached through the advertised endpoint (a proxy, NAT): that is what the voters must name.
        if me.host != *host || me.port != *port {
            return Err(ClusterError::Config(format!(
                "controller.quorum.voters says node {} listens on {}:{}, but advertised.listeners gives its controller listener as {host}:{port}",
                me.node_id, me.host, me.port
            )));
        }
    } else {
        let other_host = me
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| !bound.ip().is_unspecified() && ip != bound.ip());
        if config.controller_listen.is_some_and(|c| c.port() != 0)
            && (bound.port() != me.port || other_host)
        {
            return Err(ClusterError::Config(format!(
                "controller.quorum.voters says node {} listens on {}:{}, but this node's controller listener is {bound}",
                me.node_id, me.host, me.port
            )));
        }
    }
    Ok(config
        .quorum_voters
        .iter()
        .map(|v| (v.node_id, format!("{}:{}", v.host, v.port)))
        .collect())
}

/// This node's `meta.properties`: read it (and check it matches the config), or create it for a node that is
/// the whole quorum. A node of a larger quorum must be formatted first, so that every node of the cluster
/// shares one cluster id chosen once.
fn identity(config: &BrokerConfig, alone: bool) -> Result<MetaProperties, ClusterError> {
    let disk = |e: strom_metadata::DiskError| ClusterError::Disk(e.to_string());
    std::fs::create_dir_all(&config.data_dir)?;
    match MetaProperties::read(&config.data_dir).map_err(disk)? {
        Some(meta) => {
            if meta.node_id != config.node_id {
                return Err(ClusterError::Config(format!(
                    "{} was formatted for node.id {}, but this node is configured as node.id {}; \
                     nothing was changed (use that node's data directory, or format a new one)",
                    config.data_dir.display(),
                    meta.node_id,
                    config.node_id
                )));
            }
            Ok(meta)
        }
        None if alone => {
            let legacy = crate::metadata::legacy_identity(&config.data_dir)?;
            if let Some((_, node_id)) = legacy.as_ref().filter(|(_, id)| *id != config.node_id) {
                return Err(ClusterError::Config(format!(
                    "{} belongs to node.id {node_id}, but this node is node.id {}; nothing was changed",
                    config.data_dir.join("cluster-metadata.json").display(),
                    config.node_id
                )));
            }
            let meta = MetaProperties {
                cluster_id: legacy
                    .map(|(cluster_id, _)| cluster_id)
                    .unwrap_or_else(strom_metadata::generate_cluster_id),
                node_id: config.node_id,
            };
            meta.write(&config.data_dir).map_err(disk)?;
            Ok(meta)
        }
        None => Err(ClusterError::Config(format!(
            "{} is not formatted; run `strom storage format --cluster-id <ID> --config <FILE>` on every node \
             of the cluster with the same cluster id first (`strom storage random-uuid` makes one)",
            config.data_dir.display()
        ))),
    }
}

/// Writes `meta.properties` for a new node (`strom storage format`). Refuses a directory that already belongs
/// to a cluster, so formatting never overwrites data.
pub fn format(data_dir: &Path, cluster_id: &str, node_id: i32) -> Result<(), ClusterError> {
    let disk = |e: strom_metadata::DiskError| ClusterError::Disk(e.to_string());
    std::fs::create_dir_all(data_dir)?;
    if let Some(meta) = MetaProperties::read(data_dir).map_err(disk)? {
        return Err(ClusterError::Config(format!(
            "{} is already formatted (cluster {}, node {}); nothing was changed",
            data_dir.display(),
            meta.cluster_id,
            meta.node_id
        )));
    }
    MetaProperties {
        cluster_id: cluster_id.to_string(),
        node_id,
    }
    .write(data_dir)
    .map_err(disk)
}
