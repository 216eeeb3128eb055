//! A Strom cluster of real `strom broker` processes on 127.0.0.1, each node a broker and a controller, as
//! `strom dev-cluster` lays it out: its own data directory, its own config file with Kafka's key names, a client
//! port and a controller port. And the questions tests ask one node at a time (Metadata, DescribeQuorum,
//! DescribeCluster, CreateTopics), sent to exactly that node rather than to whichever broker a client picks.
//!
//! Ports: every voter's controller port is in every node's `controller.quorum.voters`, so it must be known
//! before any node starts. [`Layout::new`] binds 127.0.0.1:0 for each port and releases it; another process can
//! take a released port before the broker binds it, so [`TestCluster::start`] starts the whole cluster again on
//! new ports (up to three times) when a node fails with `Address already in use`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::codec::{decode_response, split_response};
use strom_protocol::kafka::messages::create_topics_request::CreatableTopic;
use strom_protocol::kafka::messages::describe_quorum_request::{PartitionData, TopicData};
use strom_protocol::kafka::messages::{
    ApiKey, CreateTopicsRequest, DescribeClusterRequest, DescribeQuorumRequest, MetadataRequest,
    RequestKind, ResponseKind, TopicName,
};
use strom_protocol::kafka::protocol::StrBytes;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

use super::process::{BrokerProcess, StartFailure, Starting};
use super::raw::RawClient;
use super::{client_config, consume, delivered, enqueue};

/// How long a node may take to print its ready line: it needs a quorum and its registration, on a machine that
/// may be running several clusters at once.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings for tests that need failures noticed quickly: a dead controller is replaced after about half a
/// second, a dead broker is fenced after two.
pub const FAST_FAILURE_DETECTION: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=2000",
];

/// One node's ports and files.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: i32,
    pub kafka_port: u16,
    pub controller_port: u16,
    pub data_dir: PathBuf,
    pub config: PathBuf,
}

impl NodeConfig {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.kafka_port))
    }

    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    pub fn meta_properties(&self) -> PathBuf {
        self.data_dir.join("meta.properties")
    }
}

/// The files and ports of an N-node cluster, nothing running.
pub struct Layout {
    dir: tempfile::TempDir,
    pub nodes: Vec<NodeConfig>,
    settings: Vec<String>,
}

impl Layout {
    /// Picks 2N free ports and writes each node's config: `settings` are extra `key=value` lines for every node.
    pub fn new(nodes: usize, settings: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * nodes);
        let nodes: Vec<NodeConfig> = (0..nodes)
            .map(|i| {
                let id = i as i32 + 1;
                NodeConfig {
                    id,
                    kafka_port: ports[2 * i],
                    controller_port: ports[2 * i + 1],
                    data_dir: dir.path().join(format!("node-{id}")),
                    config: dir.path().join(format!("node-{id}.properties")),
                }
            })
            .collect();
        let layout = Self {
            dir,
            nodes,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        let voters = layout.voters();
        for n in &layout.nodes {
            layout.write_config(n.id, &voters, &[]);
        }
        layout
    }

    pub fn node(&self, id: i32) -> &NodeConfig {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `controller.quorum.voters` naming every node of the layout.
    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// (Re)writes node `id`'s config file with the given voters and extra lines (after the layout's settings,
    /// so they win).
    pub fn write_config(&self, id: i32, voters: &str, extra: &[&str]) {
        let n = self.node(id);
        let mut text = format!(
            "node.id={id}\nprocess.roles=broker,controller\n\
             listeners=PLAINTEXT://127.0.0.1:{kp},CONTROLLER://127.0.0.1:{cp}\n\
             controller.listener.names=CONTROLLER\ncontroller.quorum.voters={voters}\nlog.dirs={data}\n",
            kp = n.kafka_port,
            cp = n.controller_port,
            data = n.data_dir.display(),
        );
        for line in self
            .settings
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
        {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&n.config, text).expect("write node config");
    }

    /// `strom storage format --cluster-id <cluster_id> --config <node's config>`.
    pub fn format(&self, id: i32, cluster_id: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["storage", "format", "--cluster-id", cluster_id, "--config"])
            .arg(&self.node(id).config)
            .output()
            .expect("run strom storage format")
    }

    /// Formats every node with `cluster_id`; panics with the output if one fails.
    pub fn format_all(&self, cluster_id: &str) {
        for n in &self.nodes {
            let out = self.format(n.id, cluster_id);
            assert!(
                out.status.success(),
                "formatting node {} failed: {}",
                n.id,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts node `id` from its config file, not waiting for anything.
    pub fn launch(&self, id: i32) -> Starting {
        let config = self.node(id).config.clone();
        BrokerProcess::launch(&["--config".as_ref(), config.as_os_str()])
    }
}

/// Binds `count` distinct ports on 127.0.0.1 at once (so they differ) and releases them.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A new cluster id, from the binary (`strom storage random-uuid`), so tests use the ids operators would.
pub fn random_cluster_id() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["storage", "random-uuid"])
        .output()
        .expect("run strom storage random-uuid");
    assert!(out.status.success(), "strom storage random-uuid failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

enum NodeState {
    Down,
    Starting(Starting),
    Running(BrokerProcess),
}

/// A running cluster: its layout, its cluster id, and each node's process.
pub struct TestCluster {
    pub layout: Layout,
    pub cluster_id: String,
    nodes: BTreeMap<i32, NodeState>,
    /// The logs of earlier processes of each node (killed, stopped or restarted), for failure reports.
    history: BTreeMap<i32, Vec<Arc<Mutex<Vec<String>>>>>,
}

impl TestCluster {
    /// Formats and starts `nodes` nodes with `settings` in every config, and waits until every node is ready.
    pub fn start(nodes: usize, settings: &[&str]) -> Self {
        with_port_retry(|| {
            let layout = Layout::new(nodes, settings);
            let cluster_id = random_cluster_id();
            layout.format_all(&cluster_id);
            let mut cluster = Self::launched(layout, cluster_id);
            for id in cluster.ids() {
                cluster.try_wait_ready(id)?;
            }
            Ok(cluster)
        })
    }

    /// Launches every node of an already prepared layout (formatted as the test wants), waiting for nothing.
    pub fn launched(layout: Layout, cluster_id: String) -> Self {
        let nodes = layout
            .nodes
            .iter()
            .map(|n| (n.id, NodeState::Starting(layout.launch(n.id))))
            .collect();
        Self {
            layout,
            cluster_id,
            nodes,
            history: BTreeMap::new(),
        }
    }

    pub fn ids(&self) -> Vec<i32> {
        self.nodes.keys().copied().collect()
    }

    pub fn node(&self, id: i32) -> &NodeConfig {
        self.layout.node(id)
    }

    pub fn addr(&self, id: i32) -> SocketAddr {
        self.node(id).addr()
    }

    pub fn bootstrap(&self, id: i32) -> String {
        self.node(id).bootstrap()
    }

    /// Waits for node `id`'s ready line; a port another process took is reported as such (for a retry), any
    /// other failure panics with the node's log.
    pub fn try_wait_ready(&mut self, id: i32) -> Result<(), PortTaken> {
        let state = self.nodes.insert(id, NodeState::Down).expect("known node");
        let NodeState::Starting(starting) = state else {
            panic!("node {id} was not starting");
        };
        match starting.wait_ready(READY_TIMEOUT) {
            Ok(process) => {
                assert_eq!(
                    process.addr,
                    self.addr(id),
                    "node {id} listens where its config says"
                );
                self.nodes.insert(id, NodeState::Running(process));
                Ok(())
            }
            Err(failure) if failure.port_taken() => Err(PortTaken(failure)),
            Err(failure) => panic!("node {id}: {failure}"),
        }
    }

    pub fn wait_ready(&mut self, id: i32) {
        if let Err(PortTaken(failure)) = self.try_wait_ready(id) {
            panic!("node {id} could not bind its port (taken by another process): {failure}");
        }
    }

    /// Starts a stopped node again on its data directory and ports, not waiting.
    pub fn launch(&mut self, id: i32) {
        assert!(
            matches!(self.nodes.get(&id), Some(NodeState::Down)),
            "node {id} is not down"
        );
        let starting = self.layout.launch(id);
        self.nodes.insert(id, NodeState::Starting(starting));
    }

    /// Starts a stopped node again and waits until it is ready.
    pub fn restart(&mut self, id: i32) {
        self.launch(id);
        self.wait_ready(id);
    }

    fn take_running(&mut self, id: i32) -> BrokerProcess {
        match self.nodes.insert(id, NodeState::Down) {
            Some(NodeState::Running(p)) => {
                self.history.entry(id).or_default().push(p.log.clone());
                p
            }
            _ => panic!("node {id} is not running"),
        }
    }

    pub fn kill_9(&mut self, id: i32) {
        self.take_running(id).kill_9();
    }

    /// SIGTERM without waiting; returns the process, for [`BrokerProcess::wait_exit`].
    pub fn sigterm(&mut self, id: i32) -> BrokerProcess {
        let process = self.take_running(id);
        process.sigterm();
        process
    }

    /// The process of a node still starting (not ready), for tests of nodes that must never get ready.
    pub fn starting(&mut self, id: i32) -> &mut Starting {
        match self.nodes.get_mut(&id) {
            Some(NodeState::Starting(s)) => s,
            _ => panic!("node {id} is not starting"),
        }
    }

    /// Takes a starting node's process out of the cluster (the node counts as down afterwards).
    pub fn take_starting(&mut self, id: i32) -> Starting {
        match self.nodes.insert(id, NodeState::Down) {
            Some(NodeState::Starting(s)) => {
                self.history.entry(id).or_default().push(s.log_handle());
                s
            }
            _ => panic!("node {id} is not starting"),
        }
    }

    /// Every line node `id` logged (its current process; empty when down).
    pub fn log(&self, id: i32) -> Vec<String> {
        match self.nodes.get(&id) {
            Some(NodeState::Running(p)) => p.log_lines(),
            Some(NodeState::Starting(s)) => s.log_lines(),
            _ => Vec::new(),
        }
    }

    /// The active controller, as node `via` reports it (waits until one is known).
    pub fn active_controller(&self, via: i32) -> i32 {
        wait_until(
            &format!("node {via} to name the active controller"),
            Duration::from_secs(60),
            || describe_quorum(self.addr(via)).map(|q| q.leader),
        )
    }

    /// Runs the `strom` CLI with `--brokers <node via>` and `args`.
    pub fn strom(&self, via: i32, args: &[&str]) -> Output {
        strom(&self.bootstrap(via), args)
    }
}

impl Drop for TestCluster {
    /// A failing test shows what every node logged, earlier processes included.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in self.ids() {
            for (n, log) in self.history.get(&id).into_iter().flatten().enumerate() {
                let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                eprintln!(
                    "======== node {id}, process {} (stopped by the test):\n{lines}",
                    n + 1
                );
            }
            eprintln!(
                "======== node {id}, current process:\n{}",
                self.log(id).join("\n")
            );
        }
    }
}

/// A node failed because another process took its port: start the cluster again on new ports.
#[derive(Debug)]
pub struct PortTaken(pub StartFailure);

/// Runs `attempt` (which builds and starts a cluster) up to three times while it fails only because a port
/// it picked was taken before the broker bound it.
pub fn with_port_retry<T>(mut attempt: impl FnMut() -> Result<T, PortTaken>) -> T {
    const ATTEMPTS: usize = 3;
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(t) => return t,
            Err(PortTaken(failure)) if n < ATTEMPTS => {
                eprintln!("a node's port was taken (attempt {n}); starting the cluster again on new ports\n{failure}");
            }
            Err(PortTaken(failure)) => {
                panic!("a node's port was taken in all {ATTEMPTS} attempts: {failure}")
            }
        }
    }
    unreachable!()
}

/// Runs the `strom` CLI against `brokers`.
pub fn strom(brokers: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("--brokers")
        .arg(brokers)
        .args(args)
        .output()
        .expect("run strom")
}

/// Calls `probe` every 50 ms until it returns Ok, or fails the test after `timeout` with `what` and the last
/// thing the probe saw.
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    wait_until_every(what, timeout, Duration::from_millis(50), probe)
}

#[track_caller]
pub fn wait_until_every<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(t) => return t,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// Sends one request to the broker at `addr` on a new connection and reads its response.
pub fn request(
    addr: SocketAddr,
    api: ApiKey,
    version: i16,
    body: RequestKind,
    timeout: Duration,
) -> Result<ResponseKind, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(&RawClient::encode(api, version, 1, &body))
        .map_err(|e| format!("cannot send {api:?} to {addr}: {e}"))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("no {api:?} response from {addr}: {e}"))?;
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut frame)
        .map_err(|e| format!("truncated {api:?} response from {addr}: {e}"))?;
    let (_, body) = split_response(Bytes::from(frame), api, version)
        .map_err(|e| format!("bad {api:?} response header from {addr}: {e:?}"))?;
    decode_response(api, version, body)
        .map_err(|e| format!("bad {api:?} response from {addr}: {e:?}"))
}

/// The quorum as one node reports it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    /// Voter id -> log end offset.
    pub voters: BTreeMap<i32, i64>,
}

impl Quorum {
    pub fn lag(&self, id: i32) -> Option<i64> {
        self.voters.get(&id).map(|leo| self.high_watermark - leo)
    }
}

/// DescribeQuorum through the node at `addr`: Err with the node's error message while it knows no leader.
pub fn describe_quorum(addr: SocketAddr) -> Result<Quorum, String> {
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let ResponseKind::DescribeQuorum(response) = request_to(
        addr,
        ApiKey::DescribeQuorum,
        2,
        RequestKind::DescribeQuorum(request),
    )?
    else {
        return Err("not a DescribeQuorum response".into());
    };
    if response.error_code != 0 {
        return Err(format!("DescribeQuorum error {}", response.error_code));
    }
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("DescribeQuorum answered no partition")?;
    if p.error_code != 0 || p.leader_id.0 < 0 {
        return Err(format!(
            "DescribeQuorum error {} leader {}: {}",
            p.error_code,
            p.leader_id.0,
            p.error_message.as_ref().map_or("", |m| m.as_str())
        ));
    }
    Ok(Quorum {
        leader: p.leader_id.0,
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
    })
}

fn request_to(
    addr: SocketAddr,
    api: ApiKey,
    version: i16,
    body: RequestKind,
) -> Result<ResponseKind, String> {
    request(addr, api, version, body, Duration::from_secs(20))
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub error_code: i16,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub error_code: i16,
    pub topic_id: String,
    pub partitions: BTreeMap<i32, PartitionView>,
}

impl TopicView {
    /// Partition -> leader.
    pub fn leaders(&self) -> BTreeMap<i32, i32> {
        self.partitions
            .iter()
            .map(|(p, v)| (*p, v.leader))
            .collect()
    }
}

/// What one node's Metadata (every topic) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataView {
    pub brokers: BTreeSet<i32>,
    pub controller_id: i32,
    pub topics: BTreeMap<String, TopicView>,
}

impl MetadataView {
    #[track_caller]
    pub fn topic(&self, name: &str) -> &TopicView {
        self.topics
            .get(name)
            .unwrap_or_else(|| panic!("Metadata lists no topic {name}: {:?}", self.topics.keys()))
    }

    /// Every (topic, partition) a broker leads.
    pub fn led_by(&self, broker: i32) -> BTreeSet<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .filter(|(_, p)| p.leader == broker)
                    .map(|(p, _)| (name.clone(), *p))
            })
            .collect()
    }
}

/// Metadata v12 for every topic through the node at `addr` (never creating topics).
pub fn metadata(addr: SocketAddr) -> Result<MetadataView, String> {
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(response) =
        request_to(addr, ApiKey::Metadata, 12, RequestKind::Metadata(request))?
    else {
        return Err("not a Metadata response".into());
    };
    Ok(MetadataView {
        brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
        controller_id: response.controller_id.0,
        topics: response
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            PartitionView {
                                error_code: p.error_code,
                                leader: p.leader_id.0,
                                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            },
                        )
                    })
                    .collect();
                Some((
                    name,
                    TopicView {
                        error_code: t.error_code,
                        topic_id: t.topic_id.to_string(),
                        partitions,
                    },
                ))
            })
            .collect(),
    })
}

/// Brokers as DescribeCluster v2 (with fenced brokers) through `addr` reports them: (running, fenced).
pub fn describe_cluster(addr: SocketAddr) -> Result<(BTreeSet<i32>, BTreeSet<i32>), String> {
    let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let ResponseKind::DescribeCluster(response) = request_to(
        addr,
        ApiKey::DescribeCluster,
        2,
        RequestKind::DescribeCluster(request),
    )?
    else {
        return Err("not a DescribeCluster response".into());
    };
    if response.error_code != 0 {
        return Err(format!("DescribeCluster error {}", response.error_code));
    }
    let (fenced, running): (Vec<_>, Vec<_>) = response.brokers.iter().partition(|b| b.is_fenced);
    Ok((
        running.iter().map(|b| b.broker_id.0).collect(),
        fenced.iter().map(|b| b.broker_id.0).collect(),
    ))
}

/// CreateTopics v7 through `addr` for one topic, asking the broker to give up after `timeout_ms`: the error code
/// (0 = created), the error message and the topic id.
pub fn create_topic(
    addr: SocketAddr,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    timeout_ms: i32,
) -> Result<(i16, Option<String>, String), String> {
    let body = CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)]);
    let ResponseKind::CreateTopics(response) = request(
        addr,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(body),
        Duration::from_millis(timeout_ms as u64) + Duration::from_secs(20),
    )?
    else {
        return Err("not a CreateTopics response".into());
    };
    let t = response
        .topics
        .first()
        .ok_or("CreateTopics answered no topic")?;
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
        t.topic_id.to_string(),
    ))
}

/// The exit status and stderr of a finished process, for messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// librdkafka produces `records` keyed records to `topic` bootstrapped from `produce_via` only, reads them all
/// back bootstrapped from `consume_via` only, and checks each arrived exactly once where it was acknowledged.
pub fn rdkafka_roundtrip(
    produce_via: &str,
    consume_via: &str,
    topic: &str,
    partitions: i32,
    records: usize,
) {
    let producer: FutureProducer = {
        let mut c = client_config(produce_via);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000");
        c.create().expect("producer")
    };
    let pending: Vec<_> = (0..records)
        .map(|i| {
            let key = format!("rd-{topic}-{i}");
            let value = format!("value-{i}");
            let f = enqueue(&producer, FutureRecord::to(topic).key(&key).payload(&value));
            (key, f)
        })
        .collect();
    let mut acked: BTreeMap<String, (i32, i64)> = BTreeMap::new();
    for (key, f) in pending {
        let placed = delivered(f).unwrap_or_else(|e| panic!("{topic}: {key} not delivered: {e}"));
        assert!(
            acked.insert(key.clone(), placed).is_none(),
            "{key} acknowledged twice"
        );
    }
    drop(producer);
    let used: BTreeSet<i32> = acked.values().map(|(p, _)| *p).collect();
    assert_eq!(
        used,
        (0..partitions).collect(),
        "{topic}: keyed records went to every partition, so to every leader"
    );

    let consumer: BaseConsumer = {
        let mut c = client_config(consume_via);
        c.set("enable.auto.commit", "false")
            .set("group.id", "strom-tests-unused");
        c.create().expect("consumer")
    };
    let all: Vec<i32> = (0..partitions).collect();
    let got = consume(&consumer, topic, &all, Offset::Beginning, records);
    let mut seen: BTreeMap<String, (i32, i64)> = BTreeMap::new();
    for r in &got {
        let key = String::from_utf8(r.key.clone().expect("a key")).unwrap();
        let value = String::from_utf8(r.value.clone().expect("a value")).unwrap();
        let i = key.rsplit('-').next().unwrap();
        assert_eq!(value, format!("value-{i}"), "{topic}: value of {key}");
        assert_eq!(
            acked.get(&key),
            Some(&(r.partition, r.offset)),
            "{topic}: {key} read where it was acknowledged"
        );
        assert!(
            seen.insert(key.clone(), (r.partition, r.offset)).is_none(),
            "{topic}: {key} delivered twice"
        );
    }
    assert_eq!(seen.len(), records, "{topic}: every key once");
    let stored: i64 = all
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(20))
                .expect("watermarks");
            high - low
        })
        .sum();
    assert_eq!(
        stored, records as i64,
        "{topic}: the partitions hold nothing else"
    );
}
