//! `strom dev-cluster`: a cluster of N nodes on this machine for development and tests.
//!
//! Each node is a `strom broker` child process with both roles (broker and controller), its own data directory
//! `DIR/node-<id>/`, its config file `DIR/node-<id>.properties` (the same file a real deployment would use) and
//! its log `DIR/node-<id>.log`. Node ids are 1..=N; node i listens for clients on `base-port + 2(i-1)` and for
//! the other controllers on the port after it. The first run formats every node with one new cluster id; a
//! later run with the same directory starts the same cluster again. Ctrl-C stops every node (controlled
//! shutdown: SIGTERM, then wait).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct DevClusterArgs {
    /// Number of nodes (each a broker and a controller).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the nodes keep their data, configs and logs.
    #[arg(long, default_value = "./strom-dev-cluster")]
    dir: PathBuf,
    /// Node 1's client port; node i uses base + 2(i-1), and the port after it for the controller listener.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Extra config for every node, as in a config file: --set num.partitions=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

struct Node {
    id: u16,
    kafka_port: u16,
    controller_port: u16,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

pub fn run(args: DevClusterArgs) -> Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let ports: Vec<(u16, u16)> = (1..=args.nodes)
        .map(|id| {
            let kafka_port = args.base_port + 2 * (id - 1);
            (kafka_port, kafka_port + 1)
        })
        .collect();
    let mut cluster = DevCluster::start(&args.dir, &ports, &args.overrides)?;
    println!(
        "Strom dev cluster of {} nodes is up.\n  bootstrap servers: {}\n  data, configs and logs: {}\n\
         Try: strom --brokers {} cluster info\nCtrl-C stops every node.",
        ports.len(),
        cluster.bootstrap(),
        cluster.dir.display(),
        cluster.bootstrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { super::broker::shutdown_signal().await });
    println!("stopping {} nodes", cluster.children.len());
    cluster.stop(true);
    Ok(())
}

/// N nodes of one cluster running as child processes (what `strom dev-cluster` runs, and what `strom bench`'s
/// replicated scenarios measure). Dropping it stops every node.
pub struct DevCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    children: Vec<(u16, Child)>,
}

impl DevCluster {
    /// Writes each node's config under `dir` (node i gets `ports[i - 1]`: client port, controller port), formats
    /// the nodes not yet formatted with one cluster id, starts them and waits until each is ready.
    pub fn start(dir: &Path, ports: &[(u16, u16)], overrides: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let nodes: Vec<Node> = ports
            .iter()
            .zip(1u16..)
            .map(|(&(kafka_port, controller_port), id)| Node {
                id,
                kafka_port,
                controller_port,
                data_dir: dir.join(format!("node-{id}")),
                config: dir.join(format!("node-{id}.properties")),
                log: dir.join(format!("node-{id}.log")),
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        for n in &nodes {
            let mut text = format!(
                "# strom dev-cluster node {id}\nnode.id={id}\nprocess.roles=broker,controller\n\
                 listeners=PLAINTEXT://127.0.0.1:{kp},CONTROLLER://127.0.0.1:{cp}\n\
                 controller.listener.names=CONTROLLER\ncontroller.quorum.voters={voters}\nlog.dirs={data}\n",
                id = n.id,
                kp = n.kafka_port,
                cp = n.controller_port,
                data = n.data_dir.display(),
            );
            for kv in overrides {
                text.push_str(kv);
                text.push('\n');
            }
            std::fs::write(&n.config, text)
                .with_context(|| format!("cannot write {}", n.config.display()))?;
        }
        let exe = std::env::current_exe().context("cannot find the strom executable")?;
        format_nodes(&exe, &nodes)?;
        let mut cluster = DevCluster {
            dir,
            nodes,
            children: Vec::new(),
        };
        for i in 0..cluster.nodes.len() {
            let child = launch(&exe, &cluster.nodes[i])?;
            cluster.children.push((cluster.nodes[i].id, child));
        }
        let from = vec![0; cluster.nodes.len()];
        wait_ready(
            &cluster.nodes,
            &mut cluster.children,
            Duration::from_secs(60),
            &from,
        )?;
        Ok(cluster)
    }

    /// Every node's client address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.kafka_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kill -9` of node `id`.
    pub fn kill(&mut self, id: i32) -> Result<()> {
        let i = self
            .children
            .iter()
            .position(|(n, _)| i32::from(*n) == id)
            .with_context(|| format!("node {id} is not running"))?;
        let (_, mut child) = self.children.remove(i);
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts node `id` again (after [`DevCluster::kill`]) and waits until it is ready.
    pub fn restart(&mut self, id: i32) -> Result<()> {
        let exe = std::env::current_exe().context("cannot find the strom executable")?;
        let i = self
            .nodes
            .iter()
            .position(|n| i32::from(n.id) == id)
            .with_context(|| format!("no node {id}"))?;
        let node = &self.nodes[i];
        // The log keeps the earlier life's lines: only a ready line after them counts.
        let before = std::fs::metadata(&node.log).map_or(0, |m| m.len() as usize);
        let mut running = vec![(node.id, launch(&exe, node)?)];
        let ready = wait_ready(
            std::slice::from_ref(node),
            &mut running,
            Duration::from_secs(60),
            &[before],
        );
        self.children.append(&mut running);
        ready
    }

    /// SIGTERM to every node (a controlled shutdown), then waits for each; `report` prints how each stopped.
    pub fn stop(&mut self, report: bool) {
        stop(&mut self.children, report);
        self.children.clear();
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// Starts one node, its output appended to its log file (a restarted node's log keeps the earlier life's).
fn launch(exe: &Path, n: &Node) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .with_context(|| format!("cannot open {}", n.log.display()))?;
    // Whatever STROM_LOG asks for, the ready line must reach the log: it is how this command knows.
    let filter = match std::env::var("STROM_LOG") {
        Ok(f) if !f.is_empty() => format!("{f},strom_broker::server=info"),
        _ => "info".to_string(),
    };
    Command::new(exe)
        .env("STROM_LOG", filter)
        .arg("broker")
        .arg("--config")
        .arg(&n.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start node {}", n.id))
}

/// Formats every node not yet formatted, all with one cluster id (the one already on disk, if any node has it).
fn format_nodes(exe: &Path, nodes: &[Node]) -> Result<()> {
    let existing = nodes
        .iter()
        .filter_map(|n| {
            strom_metadata::MetaProperties::read(&n.data_dir)
                .ok()
                .flatten()
        })
        .map(|m| m.cluster_id)
        .next();
    let cluster_id = existing.unwrap_or_else(strom_metadata::generate_cluster_id);
    for n in nodes {
        if strom_metadata::MetaProperties::read(&n.data_dir)?.is_some() {
            continue;
        }
        let out = Command::new(exe)
            .args(["storage", "format", "--cluster-id", &cluster_id, "--config"])
            .arg(&n.config)
            .output()?;
        if !out.status.success() {
            bail!(
                "formatting node {} failed: {}",
                n.id,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Waits until every node has logged that it is ready: it has joined the quorum and the controller lists it. (Its
/// client port accepts connections earlier, before it serves them, so a connect proves nothing.)
/// `from[i]`: where in node i's log to look from (its size before this start).
fn wait_ready(
    nodes: &[Node],
    children: &mut [(u16, Child)],
    limit: Duration,
    from: &[usize],
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<(&Node, usize)> = nodes.iter().zip(from.iter().copied()).collect();
    while !pending.is_empty() {
        for (id, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = nodes.iter().find(|n| n.id == *id).map(|n| n.log.clone());
                let tail = log
                    .as_ref()
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .map(|text| {
                        let lines: Vec<&str> = text.lines().collect();
                        lines[lines.len().saturating_sub(5)..].join("\n")
                    })
                    .unwrap_or_default();
                bail!(
                    "node {id} exited ({status}) before it was ready; see {}:\n{tail}",
                    log.map_or_else(String::new, |l| l.display().to_string())
                );
            }
        }
        pending.retain(|(n, from)| {
            !std::fs::read(&n.log).is_ok_and(|log| {
                String::from_utf8_lossy(log.get(*from..).unwrap_or_default())
                    .contains("Strom broker ready")
            })
        });
        if Instant::now() > deadline {
            bail!(
                "nodes {:?} were not ready within {limit:?}; see their logs in the cluster directory",
                pending.iter().map(|(n, _)| n.id).collect::<Vec<_>>()
            );
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn stop(children: &mut [(u16, Child)], report: bool) {
    for (_, child) in children.iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for (id, child) in children.iter_mut() {
        match child.wait() {
            Ok(status) if report => println!("node {id} stopped ({status})"),
            Ok(_) => {}
            Err(e) => eprintln!("node {id}: {e}"),
        }
    }
}
