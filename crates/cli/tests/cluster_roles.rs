//! Strom clusters laid out and run the other ways operators run them, next to `cluster.rs`'s three combined
//! nodes:
//! - three controller-only voters (`process.roles=controller`) with two broker-only nodes (`process.roles=broker`)
//!   that follow the quorum, one through `controller.quorum.voters`, the other through
//!   `controller.quorum.bootstrap.servers`;
//! - `strom dev-cluster` as a child process: announced up, stopped with SIGTERM, started again on its directory;
//! - kafkajs and the `strom` CLI in a three-node cluster, each bootstrapped from a single node.
//!
//! Needs `node` with `npm ci` run in `crates/cli/tests/clients` for the kafkajs half of the last test
//! (`scripts/test-deps` does both); a missing install fails that test with the hint.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{
    describe_output, free_ports, metadata, random_cluster_id, rdkafka_roundtrip, strom, wait_until,
    wait_until_every, with_port_retry, MetadataView, PortTaken, TestCluster, READY_TIMEOUT,
};
use common::process::{BrokerProcess, StartFailure, Starting};
use strom_log::Compression;

/// A quick first election, and broker sessions long enough that a loaded machine never fences a live broker
/// while a test works with it.
const STEADY: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=10000",
];

const KAFKAJS_INSTALL: &str =
    "install Node.js and run `npm ci` in crates/cli/tests/clients (or run scripts/test-deps)";

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by the tests
// ---------------------------------------------------------------------------------------------------------------

/// `strom --brokers <bootstrap> --format json <args>`: the JSON it printed, or what went wrong.
fn strom_json(bootstrap: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = strom(bootstrap, &[&["--format", "json"], args].concat());
    if !out.status.success() {
        return Err(describe_output(&out));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("not JSON ({e}): {}", describe_output(&out)))
}

/// `strom cluster info --format json` through `bootstrap`: the cluster id and broker id -> state.
fn cluster_info(bootstrap: &str) -> Result<(String, BTreeMap<i64, String>), String> {
    let json = strom_json(bootstrap, &["cluster", "info"])?;
    let brokers = json["brokers"]
        .as_array()
        .ok_or_else(|| format!("no brokers in {json}"))?
        .iter()
        .map(|b| {
            (
                b["id"].as_i64().unwrap_or(-1),
                b["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let cluster_id = json["cluster_id"].as_str().unwrap_or("?").to_string();
    Ok((cluster_id, brokers))
}

/// Waits until `strom cluster info` through `bootstrap` lists exactly `expected`, every one running; returns the
/// cluster id it reports.
#[track_caller]
fn wait_running(bootstrap: &str, expected: &[i64]) -> String {
    let want: BTreeMap<i64, String> = expected
        .iter()
        .map(|id| (*id, "running".to_string()))
        .collect();
    wait_until(
        &format!(
            "`strom cluster info` through {bootstrap} to list brokers {expected:?}, all running"
        ),
        Duration::from_secs(60),
        || match cluster_info(bootstrap)? {
            (cluster_id, brokers) if brokers == want => Ok(cluster_id),
            (_, brokers) => Err(format!("{brokers:?}")),
        },
    )
}

/// `strom cluster quorum --format json` through `bootstrap`: the leader and the voters' ids.
fn quorum(bootstrap: &str) -> Result<(i64, BTreeSet<i64>), String> {
    let json = strom_json(bootstrap, &["cluster", "quorum"])?;
    let voters = json["voters"]
        .as_array()
        .ok_or_else(|| format!("no voters in {json}"))?
        .iter()
        .map(|v| v["id"].as_i64().unwrap_or(-1))
        .collect();
    let leader = json["leader_id"]
        .as_i64()
        .ok_or_else(|| format!("no leader_id in {json}"))?;
    Ok((leader, voters))
}

/// `strom topic create` through `bootstrap`; returns the new topic's id.
#[track_caller]
fn create_topic_cli(bootstrap: &str, name: &str, partitions: i32, rf: i16) -> String {
    let json = strom_json(
        bootstrap,
        &[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            &rf.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("strom topic create {name} through {bootstrap}:\n{e}"));
    assert_eq!(json["partitions"], partitions, "{json}");
    json["topic_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no topic_id in {json}"))
        .to_string()
}

/// Waits until every node of `bootstrap` (comma-separated host:port) lists `topic` under `topic_id`: a client
/// bootstrapped from any of them then finds it (each node applies a new topic a moment after the controller
/// commits it, and the CLI's producer refuses a topic its metadata does not have).
#[track_caller]
fn wait_topic_on_all(bootstrap: &str, topic: &str, topic_id: &str) {
    for addr in bootstrap.split(',') {
        wait_topic(addr.parse().expect("host:port"), topic, topic_id);
    }
}

/// Waits until the node at `addr` lists `topic` under `topic_id` with every partition led, and returns its view.
#[track_caller]
fn wait_topic(addr: SocketAddr, topic: &str, topic_id: &str) -> MetadataView {
    wait_until(
        &format!(
            "{addr}'s Metadata to list {topic} ({topic_id}) with a leader for every partition"
        ),
        Duration::from_secs(30),
        || {
            let view = metadata(addr)?;
            match view.topics.get(topic) {
                Some(t)
                    if t.error_code == 0
                        && t.topic_id == topic_id
                        && t.partitions.values().all(|p| p.leader >= 0) =>
                {
                    Ok(view)
                }
                other => Err(format!("{topic}: {other:?}")),
            }
        },
    )
}

/// Runs the `strom` CLI against `bootstrap` with `stdin` as its input, killing it (and failing the test) after
/// `timeout`.
#[track_caller]
fn strom_with_input(bootstrap: &str, args: &[&str], stdin: &str) -> support::Finished {
    support::run(
        Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("--brokers")
            .arg(bootstrap)
            .args(args),
        Some(stdin.as_bytes().to_vec()),
        Duration::from_secs(120),
        "the strom binary is built by cargo",
    )
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Controller-only voters and broker-only nodes
// ---------------------------------------------------------------------------------------------------------------

/// The voters: controller-only nodes.
const VOTERS: [i32; 3] = [1, 2, 3];
/// A broker-only node given `controller.quorum.voters`.
const BROKER_A: i32 = 101;
/// A broker-only node given `controller.quorum.bootstrap.servers`.
const BROKER_B: i32 = 102;

/// A `strom broker` process with `process.roles=controller`. It logs "Strom controller ready" and takes no client
/// port, so [`BrokerProcess`] (which waits for the broker's ready line and reads its `listen=`) does not fit.
struct ControllerProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// From the stderr reader: true for the ready line, false once stderr closed.
    events: Receiver<bool>,
}

impl ControllerProcess {
    fn launch(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("broker")
            .arg("--config")
            .arg(config)
            .env("STROM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strom broker (controller)");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, events) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let ready = line.contains("Strom controller ready");
                lines.lock().unwrap().push(line);
                if ready {
                    let _ = tx.send(true);
                }
            }
            let _ = tx.send(false);
        });
        Self { child, log, events }
    }

    /// Waits for the ready line; on failure the process has exited or has been killed.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartFailure> {
        match self.events.recv_timeout(timeout) {
            Ok(true) => Ok(()),
            Ok(false) | Err(RecvTimeoutError::Disconnected) => Err(StartFailure {
                status: Some(self.child.wait().expect("wait for the controller")),
                log: self.log_lines(),
            }),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(StartFailure {
                    status: None,
                    log: self.log_lines(),
                })
            }
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three controller-only voters and two broker-only nodes, each with its own data directory formatted with one
/// cluster id and its own config file.
struct RolesCluster {
    _dir: tempfile::TempDir,
    cluster_id: String,
    controllers: BTreeMap<i32, ControllerProcess>,
    brokers: BTreeMap<i32, BrokerProcess>,
    /// The logs of controllers the test killed, for failure reports.
    killed: Vec<(i32, Vec<String>)>,
}

impl RolesCluster {
    fn start() -> Self {
        with_port_retry(Self::try_start)
    }

    fn try_start() -> Result<Self, PortTaken> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(VOTERS.len() + 2);
        let controller_ports: BTreeMap<i32, u16> =
            VOTERS.iter().copied().zip(ports.iter().copied()).collect();
        let voters = controller_ports
            .iter()
            .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let bootstrap_servers = controller_ports
            .values()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let write = |id: i32, lines: &[String]| -> PathBuf {
            let mut text = format!(
                "node.id={id}\ncontroller.listener.names=CONTROLLER\nlog.dirs={}\n",
                dir.path().join(format!("node-{id}")).display()
            );
            for line in lines
                .iter()
                .map(String::as_str)
                .chain(STEADY.iter().copied())
            {
                text.push_str(line);
                text.push('\n');
            }
            let path = dir.path().join(format!("node-{id}.properties"));
            std::fs::write(&path, text).expect("write node config");
            path
        };
        let mut configs: Vec<(i32, PathBuf)> = controller_ports
            .iter()
            .map(|(id, port)| {
                let lines = [
                    "process.roles=controller".to_string(),
                    format!("listeners=CONTROLLER://127.0.0.1:{port}"),
                    format!("controller.quorum.voters={voters}"),
                ];
                (*id, write(*id, &lines))
            })
            .collect();
        // Broker-only nodes have a client listener and no controller listener.
        for (id, port, quorum) in [
            (
                BROKER_A,
                ports[3],
                format!("controller.quorum.voters={voters}"),
            ),
            (
                BROKER_B,
                ports[4],
                format!("controller.quorum.bootstrap.servers={bootstrap_servers}"),
            ),
        ] {
            let lines = [
                "process.roles=broker".to_string(),
                format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
                quorum,
            ];
            configs.push((id, write(id, &lines)));
        }

        let cluster_id = random_cluster_id();
        for (id, config) in &configs {
            let out = Command::new(env!("CARGO_BIN_EXE_strom"))
                .args(["storage", "format", "--cluster-id", &cluster_id, "--config"])
                .arg(config)
                .output()
                .expect("run strom storage format");
            assert!(
                out.status.success(),
                "formatting node {id} failed: {}",
                describe_output(&out)
            );
        }

        let mut controllers: BTreeMap<i32, ControllerProcess> = BTreeMap::new();
        let mut starting: Vec<(i32, Starting)> = Vec::new();
        for (id, config) in &configs {
            if VOTERS.contains(id) {
                controllers.insert(*id, ControllerProcess::launch(config));
            } else {
                starting.push((
                    *id,
                    BrokerProcess::launch(&["--config".as_ref(), config.as_os_str()]),
                ));
            }
        }
        for (id, process) in controllers.iter_mut() {
            match process.wait_ready(READY_TIMEOUT) {
                Ok(()) => {}
                Err(failure) if failure.port_taken() => return Err(PortTaken(failure)),
                Err(failure) => panic!("controller {id}: {failure}"),
            }
        }
        let mut brokers = BTreeMap::new();
        for (id, process) in starting {
            match process.wait_ready(READY_TIMEOUT) {
                Ok(process) => {
                    brokers.insert(id, process);
                }
                Err(failure) if failure.port_taken() => return Err(PortTaken(failure)),
                Err(failure) => panic!("broker {id}: {failure}"),
            }
        }
        Ok(Self {
            _dir: dir,
            cluster_id,
            controllers,
            brokers,
            killed: Vec::new(),
        })
    }

    fn broker_addr(&self, id: i32) -> SocketAddr {
        self.brokers[&id].addr
    }

    fn bootstrap(&self, id: i32) -> String {
        self.broker_addr(id).to_string()
    }

    fn kill_9_controller(&mut self, id: i32) {
        let process = self
            .controllers
            .remove(&id)
            .unwrap_or_else(|| panic!("controller {id} is not running"));
        let log = process.log.clone();
        drop(process); // SIGKILL, then reaped
        self.killed.push((id, log.lock().unwrap().clone()));
    }
}

impl Drop for RolesCluster {
    /// A failing test shows what every node logged.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (id, log) in &self.killed {
            eprintln!(
                "======== controller {id} (killed by the test):\n{}",
                log.join("\n")
            );
        }
        for (id, process) in &self.controllers {
            eprintln!(
                "======== controller {id}:\n{}",
                process.log_lines().join("\n")
            );
        }
        for (id, process) in &self.brokers {
            eprintln!("======== broker {id}:\n{}", process.log_lines().join("\n"));
        }
    }
}

#[test]
fn controller_only_voters_and_broker_only_nodes_serve_clients_and_outlive_the_active_controller() {
    let mut cluster = RolesCluster::start();
    let (a, b) = (cluster.bootstrap(BROKER_A), cluster.bootstrap(BROKER_B));

    for (id, process) in &cluster.controllers {
        let log = process.log_lines();
        assert!(
            !log.iter().any(|l| l.contains("Strom broker ready")),
            "controller {id} serves no clients, so it never logs the broker's ready line:\n{}",
            log.join("\n")
        );
    }

    // Each broker lists the two brokers, and no controller among them; the voters are the controllers alone.
    for via in [&a, &b] {
        let cluster_id = wait_running(via, &[BROKER_A.into(), BROKER_B.into()]);
        assert_eq!(
            cluster_id, cluster.cluster_id,
            "the cluster id through {via}"
        );
        let (leader, voters) = wait_until(
            &format!("`strom cluster quorum` through {via} to name a leader"),
            Duration::from_secs(30),
            || quorum(via),
        );
        assert_eq!(voters, BTreeSet::from([1, 2, 3]), "voters through {via}");
        assert!(voters.contains(&leader), "leader {leader} through {via}");
    }

    // A topic created through A is led by both brokers, and B's Metadata shows it as A's does.
    let topic_id = create_topic_cli(&a, "roles-4", 4, 1);
    let seen_by_b = wait_topic(cluster.broker_addr(BROKER_B), "roles-4", &topic_id);
    let seen_by_a = wait_topic(cluster.broker_addr(BROKER_A), "roles-4", &topic_id);
    let both = BTreeSet::from([BROKER_A, BROKER_B]);
    for (via, view) in [(BROKER_A, &seen_by_a), (BROKER_B, &seen_by_b)] {
        assert_eq!(
            view.brokers, both,
            "Metadata brokers through {via}: {view:?}"
        );
        // Clients send admin requests to the controller Metadata names, so it must be a broker they can reach.
        assert!(
            both.contains(&view.controller_id),
            "Metadata through {via} names controller {}, not a broker",
            view.controller_id
        );
    }
    let leaders: BTreeSet<i32> = seen_by_b.topic("roles-4").leaders().into_values().collect();
    assert_eq!(
        leaders,
        both,
        "roles-4 led by both brokers: {:?}",
        seen_by_b.topic("roles-4")
    );
    assert_eq!(seen_by_a.topic("roles-4"), seen_by_b.topic("roles-4"));

    rdkafka_roundtrip(&a, &b, "roles-4", 4, 400);

    // kill -9 the active controller: the brokers follow whichever controller is elected next.
    let (active, _) = quorum(&a).expect("the quorum through broker A");
    let active = i32::try_from(active).expect("a node id");
    assert!(VOTERS.contains(&active), "active controller {active}");
    cluster.kill_9_controller(active);
    let killed_at = Instant::now();
    let topic_id = wait_until_every(
        &format!("a topic to be created through a broker after controller {active} was killed"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let args = ["topic", "create", "after-failover", "--partitions", "2"];
            match strom_json(&b, &args) {
                Ok(json) => json["topic_id"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("no topic_id in {json}")),
                // An earlier attempt that timed out can still have been committed.
                Err(e) if e.contains("TOPIC_ALREADY_EXISTS") => {
                    metadata(cluster.broker_addr(BROKER_B))?
                        .topics
                        .get("after-failover")
                        .map(|t| t.topic_id.clone())
                        .ok_or(e)
                }
                Err(e) => Err(e),
            }
        },
    );
    eprintln!(
        "FAILOVER: kill -9 of active controller {active}; a topic created through broker {BROKER_B} after {} ms",
        killed_at.elapsed().as_millis()
    );
    for via in [&a, &b] {
        wait_until(
            &format!("`strom cluster quorum` through {via} to name a leader other than {active}"),
            Duration::from_secs(30),
            || match quorum(via)? {
                (leader, _) if leader != i64::from(active) => Ok(()),
                q => Err(format!("{q:?}")),
            },
        );
    }
    // Broker A, which knows the voters from its config rather than from a controller, forwards to the new
    // leader too.
    let topic_id_a = create_topic_cli(&a, "after-failover-a", 2, 1);
    for id in [BROKER_A, BROKER_B] {
        wait_topic(cluster.broker_addr(id), "after-failover-a", &topic_id_a);
        let view = wait_topic(cluster.broker_addr(id), "after-failover", &topic_id);
        assert!(
            view.topic("after-failover")
                .leaders()
                .values()
                .all(|l| both.contains(l)),
            "{view:?}"
        );
        assert!(both.contains(&view.controller_id), "{view:?}");
    }
    rdkafka_roundtrip(&b, &a, "after-failover", 2, 100);
}

// ---------------------------------------------------------------------------------------------------------------
// 2. `strom dev-cluster`
// ---------------------------------------------------------------------------------------------------------------

const DEV_NODES: u16 = 3;

/// `strom dev-cluster` running as a child process, its output collected line by line.
struct DevCluster {
    child: Child,
    dir: PathBuf,
    base_port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

/// What the dev cluster said when it announced itself up.
struct Up {
    bootstrap: String,
    /// Nodes whose log had no ready line yet when the cluster was announced up.
    not_ready: Vec<u16>,
}

/// Why a dev cluster did not come up.
enum DevFailure {
    /// A node could not bind its port: another process took it after the test found it free.
    PortTaken(String),
}

impl DevCluster {
    fn launch(dir: &Path, base_port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("dev-cluster")
            .args(["--nodes", &DEV_NODES.to_string(), "--dir"])
            .arg(dir)
            .args(["--base-port", &base_port.to_string()])
            // The nodes inherit it: their logs must carry their ready lines.
            .env("STROM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strom dev-cluster");
        let stdout = collect_lines(child.stdout.take().unwrap());
        let stderr = collect_lines(child.stderr.take().unwrap());
        Self {
            child,
            dir: dir.to_path_buf(),
            base_port,
            stdout,
            stderr,
            exited: None,
        }
    }

    fn node_log(&self, id: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{id}.log"))).unwrap_or_default()
    }

    fn port_taken(&self) -> Option<String> {
        (1..=DEV_NODES)
            .map(|id| self.node_log(id))
            .find(|log| log.contains("Address already in use"))
    }

    /// Everything it and its nodes printed, for failure messages.
    fn report(&self) -> String {
        let mut out = format!(
            "strom dev-cluster --dir {} --base-port {} ({:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.dir.display(),
            self.base_port,
            self.exited,
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n"),
        );
        for id in 1..=DEV_NODES {
            out.push_str(&format!("\n--- node-{id}.log ---\n{}", self.node_log(id)));
        }
        out
    }

    /// Waits for the line saying the cluster is up, and reads the bootstrap servers after it.
    fn wait_up(&mut self) -> Result<Up, DevFailure> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let lines = self.stdout.lock().unwrap().clone();
            let bootstrap = lines
                .iter()
                .find_map(|l| l.trim().strip_prefix("bootstrap servers:"))
                .map(|s| s.trim().to_string());
            if let (true, Some(bootstrap)) = (lines.iter().any(|l| l.contains("is up")), bootstrap)
            {
                // Checked at once: a node's ready line precedes its serving clients, so a cluster announced
                // up has it in every node's log.
                let not_ready = (1..=DEV_NODES)
                    .filter(|id| !self.node_log(*id).contains("Strom broker ready"))
                    .collect();
                // A port taken by another process can pass for a node that listens.
                if let Some(log) = self.port_taken() {
                    return Err(DevFailure::PortTaken(log));
                }
                return Ok(Up {
                    bootstrap,
                    not_ready,
                });
            }
            if let Some(status) = self.child.try_wait().expect("poll strom dev-cluster") {
                self.exited = Some(status);
                if let Some(log) = self.port_taken() {
                    return Err(DevFailure::PortTaken(log));
                }
                panic!(
                    "strom dev-cluster exited before it was up:\n{}",
                    self.report()
                );
            }
            if Instant::now() >= deadline {
                panic!("strom dev-cluster not up after 120 s:\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node processes it started (its children), as they run now.
    fn nodes(&self) -> Vec<u32> {
        children_of(self.child.id())
    }

    /// SIGTERM, as Ctrl-C would; waits at most `timeout` for it to exit.
    fn sigterm_and_wait(&mut self, timeout: Duration) -> ExitStatus {
        signal(self.child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll strom dev-cluster") {
                self.exited = Some(status);
                // The readers finish once the pipes close.
                wait_until(
                    "strom dev-cluster's output to be read to the end",
                    Duration::from_secs(10),
                    || {
                        let lines = self.stdout.lock().unwrap();
                        match lines.iter().filter(|l| l.contains(" stopped (")).count() {
                            n if n == usize::from(DEV_NODES) => Ok(()),
                            _ => Err(lines.join("\n")),
                        }
                    },
                );
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "strom dev-cluster still running {timeout:?} after SIGTERM:\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DevCluster {
    /// Never leaves a node behind: the nodes first (by their pids), then dev-cluster itself.
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            for pid in self.nodes() {
                signal(pid, rustix::process::Signal::KILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

/// Reads `pipe` line by line on a thread into the returned list.
fn collect_lines(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The pids of `parent`'s live children, from /proc/<pid>/stat (field 4 is the parent's pid).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                // The command name in parentheses may hold spaces: the fields after the last ')' are fixed.
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A port P with P..P+count all free on 127.0.0.1 now. Drawn below Linux's ephemeral range (32768..) so that
/// the ports other tests get from binding port 0, and their clients' source ports, never land on them.
fn free_port_run(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (RandomState::new().build_hasher().finish() % 12_000) as u16;
        let bound: Result<Vec<TcpListener>, _> = (base..base + count)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if bound.is_ok() {
            return base;
        }
    }
    panic!("no run of {count} free ports found in 20000..32000 on 127.0.0.1");
}

/// Starts a dev cluster in a new directory under `root`, on new ports until no other process takes one.
fn start_dev_cluster(root: &Path) -> (DevCluster, Up) {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let base = free_port_run(2 * DEV_NODES);
        let mut dev = DevCluster::launch(&root.join(format!("attempt-{attempt}")), base);
        match dev.wait_up() {
            Ok(up) => return (dev, up),
            Err(DevFailure::PortTaken(log)) if attempt < ATTEMPTS => {
                eprintln!("a port of {base}.. was taken (attempt {attempt}); again on other ports:\n{log}");
            }
            Err(DevFailure::PortTaken(log)) => {
                panic!("a port was taken in all {ATTEMPTS} attempts; the last node log:\n{log}")
            }
        }
    }
    unreachable!()
}

/// `cluster.id` from a data directory's meta.properties.
fn meta_cluster_id(data_dir: &Path) -> String {
    let path = data_dir.join("meta.properties");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("cluster.id="))
        .unwrap_or_else(|| panic!("no cluster.id in {}: {text}", path.display()))
        .to_string()
}

/// Waits until nothing accepts connections on 127.0.0.1 `ports`.
#[track_caller]
fn wait_ports_closed(ports: &[u16]) {
    wait_until(
        &format!("ports {ports:?} to stop accepting connections"),
        Duration::from_secs(10),
        || {
            let open: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| {
                    TcpStream::connect_timeout(
                        &SocketAddr::from(([127, 0, 0, 1], *p)),
                        Duration::from_secs(1),
                    )
                    .is_ok()
                })
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("still accepting on {open:?}"))
            }
        },
    );
}

/// Stops the dev cluster with SIGTERM and checks it exits 0 having stopped every node, whose processes and ports
/// are gone afterwards.
#[track_caller]
fn stop_dev_cluster(dev: &mut DevCluster) {
    let nodes = dev.nodes();
    assert_eq!(
        nodes.len(),
        usize::from(DEV_NODES),
        "dev-cluster runs one process per node: {nodes:?}"
    );
    let asked = Instant::now();
    let status = dev.sigterm_and_wait(Duration::from_secs(60));
    eprintln!(
        "DEV-CLUSTER: SIGTERM -> exited {status} after {} ms",
        asked.elapsed().as_millis()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after SIGTERM:\n{}",
        dev.report()
    );
    let stdout = dev.stdout.lock().unwrap().join("\n");
    for id in 1..=DEV_NODES {
        assert!(
            stdout.contains(&format!("node {id} stopped (exit status: 0)")),
            "node {id} stopped cleanly: {stdout}"
        );
    }
    let alive: Vec<u32> = nodes
        .iter()
        .copied()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(
        alive.is_empty(),
        "node processes {alive:?} outlived dev-cluster"
    );
    let ports: Vec<u16> = (dev.base_port..dev.base_port + 2 * DEV_NODES).collect();
    wait_ports_closed(&ports);
}

#[test]
fn dev_cluster_comes_up_stops_on_sigterm_and_starts_the_same_cluster_again() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut first, up) = start_dev_cluster(root.path());
    let (dir, base) = (first.dir.clone(), first.base_port);
    let expected_bootstrap = (0..DEV_NODES)
        .map(|i| format!("127.0.0.1:{}", base + 2 * i))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(up.bootstrap, expected_bootstrap, "{}", first.report());
    let node_1 = format!("127.0.0.1:{base}");
    let all: Vec<i64> = (1..=i64::from(DEV_NODES)).collect();

    let cluster_id = wait_running(&node_1, &all);
    let data_dirs: Vec<PathBuf> = (1..=DEV_NODES)
        .map(|id| dir.join(format!("node-{id}")))
        .collect();
    let meta_before: Vec<Vec<u8>> = data_dirs
        .iter()
        .map(|d| std::fs::read(d.join("meta.properties")).expect("meta.properties"))
        .collect();
    for d in &data_dirs {
        assert_eq!(meta_cluster_id(d), cluster_id, "{}", d.display());
    }

    let topic_id = create_topic_cli(&node_1, "kept", 3, 1);
    wait_topic_on_all(&up.bootstrap, "kept", &topic_id);
    let lines: String = (0..30).map(|i| format!("k{i}|v{i}\n")).collect();
    strom_with_input(
        &up.bootstrap,
        &["produce", "kept", "--key-separator", "|"],
        &lines,
    )
    .assert_success();
    stop_dev_cluster(&mut first);
    drop(first);

    // The same directory and ports: the same cluster, its topic and records.
    let mut second = DevCluster::launch(&dir, base);
    let up_again = match second.wait_up() {
        Ok(up) => up,
        Err(DevFailure::PortTaken(log)) => {
            panic!("another process took a port of {base}.. between the two runs:\n{log}")
        }
    };
    assert_eq!(up_again.bootstrap, expected_bootstrap);
    let again = wait_running(&node_1, &all);
    assert_eq!(again, cluster_id, "the second run is the same cluster");
    for (d, before) in data_dirs.iter().zip(&meta_before) {
        assert_eq!(
            &std::fs::read(d.join("meta.properties")).unwrap(),
            before,
            "{}/meta.properties unchanged by the second run",
            d.display()
        );
    }
    wait_topic_on_all(&up_again.bootstrap, "kept", &topic_id);
    let consumed = strom_with_input(
        &up_again.bootstrap,
        &[
            "consume",
            "kept",
            "--from-beginning",
            "-n",
            "30",
            "--print-key",
        ],
        "",
    );
    consumed.assert_success();
    let mut got: Vec<&str> = consumed.stdout.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..30).map(|i| format!("k{i}\tv{i}")).collect();
    want.sort_unstable();
    assert_eq!(got, want, "the records of the first run");
    stop_dev_cluster(&mut second);

    // Checked last, so that a failure here comes after everything else about dev-cluster was checked.
    for (run, up) in [("first", &up), ("second", &up_again)] {
        assert!(
            up.not_ready.is_empty(),
            "the {run} run of strom dev-cluster printed \"is up\" while nodes {:?} had not logged \"Strom broker \
             ready\" (not yet joined the cluster: a client asking then sees them fenced or waits)",
            up.not_ready
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 3. kafkajs and the strom CLI in a three-node cluster
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn kafkajs_and_the_strom_cli_each_bootstrapped_from_one_node_of_three() {
    let cluster = TestCluster::start(3, STEADY);

    // kafkajs: creates its topics (3 partitions, replication factor 1), produces and reads back, through node 1.
    let finished = support::run(
        Command::new("node")
            .arg(support::clients_dir().join("kafkajs_roundtrip.js"))
            .arg(cluster.bootstrap(1))
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
        None,
        Duration::from_secs(240),
        KAFKAJS_INSTALL,
    );
    finished.assert_client_success(KAFKAJS_INSTALL);
    print!("{}", finished.stdout);
    // Its partitions are spread over the three nodes, and each partition's batches are on its leader alone.
    let view = metadata(cluster.addr(2)).expect("Metadata through node 2");
    for (topic, codec) in [
        ("kafkajs-plain", Compression::None),
        ("kafkajs-gzip", Compression::Gzip),
    ] {
        let t = view.topic(topic);
        let leaders: BTreeSet<i32> = t.leaders().into_values().collect();
        assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "{topic}: {t:?}");
        for (partition, p) in &t.partitions {
            assert_eq!(p.replicas, vec![p.leader], "{topic}[{partition}]: {p:?}");
            let batches =
                support::batches_on_disk(&cluster.node(p.leader).data_dir, topic, *partition);
            let records: i32 = batches.iter().map(|h| h.records_count).sum();
            assert_eq!(records, 20, "{topic}[{partition}] on node {}", p.leader);
            for h in &batches {
                assert_eq!(
                    h.compression(),
                    codec,
                    "{topic}[{partition}] batch at {}",
                    h.base_offset
                );
            }
            for other in cluster.ids().into_iter().filter(|id| *id != p.leader) {
                let dir = cluster
                    .node(other)
                    .data_dir
                    .join(format!("{topic}-{partition}"));
                assert!(!dir.exists(), "{} exists on a non-replica", dir.display());
            }
        }
    }

    // The strom CLI: a 6-partition topic, produced through node 2, consumed in a group through node 3.
    const RECORDS: usize = 600;
    let topic_id = create_topic_cli(&cluster.bootstrap(1), "cli-6", 6, 3);
    for id in [2, 3] {
        let view = wait_topic(cluster.addr(id), "cli-6", &topic_id);
        let leaders: BTreeSet<i32> = view.topic("cli-6").leaders().into_values().collect();
        assert_eq!(
            leaders,
            BTreeSet::from([1, 2, 3]),
            "cli-6 through node {id}: {view:?}"
        );
    }
    let input: String = (0..RECORDS)
        .map(|i| format!("key-{i}|value-{i}\n"))
        .collect();
    let produced = strom_with_input(
        &cluster.bootstrap(2),
        &["produce", "cli-6", "--key-separator", "|"],
        &input,
    );
    produced.assert_success();
    assert!(
        produced
            .stdout
            .contains(&format!("produced {RECORDS} records")),
        "{}",
        produced.report()
    );

    let consumed = strom_with_input(
        &cluster.bootstrap(3),
        &[
            "--format",
            "json",
            "consume",
            "cli-6",
            "--from-beginning",
            "-n",
            &RECORDS.to_string(),
            "--group",
            "g",
        ],
        "",
    );
    consumed.assert_success();
    let mut keys = BTreeSet::new();
    let mut offsets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for line in consumed.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let key = v["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key: {line}"));
        let i = key.strip_prefix("key-").unwrap_or_else(|| panic!("{line}"));
        assert_eq!(v["value"], format!("value-{i}"), "{line}");
        assert!(keys.insert(key.to_string()), "{key} consumed twice");
        offsets
            .entry(v["partition"].as_i64().unwrap())
            .or_default()
            .push(v["offset"].as_i64().unwrap());
    }
    assert_eq!(keys.len(), RECORDS, "every record once");
    assert_eq!(
        offsets.keys().copied().collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>(),
        "records in every partition"
    );
    for (p, seen) in &mut offsets {
        seen.sort_unstable();
        let want: Vec<i64> = (0..seen.len() as i64).collect();
        assert_eq!(seen, &want, "cli-6[{p}]: each offset once, none missing");
    }
    // The group committed where it stopped (the CLI commits before it exits), and the partitions hold nothing
    // more than what was read.
    wait_until(
        "group g's committed offsets to reach the log end of every partition",
        Duration::from_secs(20),
        || {
            let json = strom_json(&cluster.bootstrap(1), &["group", "describe", "g"])?;
            let rows = json["offsets"].as_array().ok_or_else(|| json.to_string())?;
            let committed: i64 = rows
                .iter()
                .filter_map(|r| r["current_offset"].as_i64())
                .sum();
            let end: i64 = rows
                .iter()
                .filter_map(|r| r["log_end_offset"].as_i64())
                .sum();
            let lag_0 = rows.iter().all(|r| r["lag"] == 0);
            if rows.len() == 6 && lag_0 && committed == RECORDS as i64 && end == RECORDS as i64 {
                Ok(())
            } else {
                Err(format!(
                    "{json}\nthe consumer's stderr:\n{}",
                    consumed.stderr
                ))
            }
        },
    );
}
