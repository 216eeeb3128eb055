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
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let nodes: Vec<Node> = (1..=args.nodes)
        .map(|id| {
            let kafka_port = args.base_port + 2 * (id - 1);
            Node {
                id,
                kafka_port,
                controller_port: kafka_port + 1,
                data_dir: dir.join(format!("node-{id}")),
                config: dir.join(format!("node-{id}.properties")),
                log: dir.join(format!("node-{id}.log")),
            }
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
        for kv in &args.overrides {
            text.push_str(kv);
            text.push('\n');
        }
        std::fs::write(&n.config, text)
            .with_context(|| format!("cannot write {}", n.config.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the strom executable")?;
    format_nodes(&exe, &nodes)?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for n in &nodes {
        let log = std::fs::File::create(&n.log)
            .with_context(|| format!("cannot create {}", n.log.display()))?;
        // Whatever STROM_LOG asks for, the ready line must reach the log: it is how this command knows.
        let filter = match std::env::var("STROM_LOG") {
            Ok(f) if !f.is_empty() => format!("{f},strom_broker::server=info"),
            _ => "info".to_string(),
        };
        let child = Command::new(&exe)
            .env("STROM_LOG", filter)
            .arg("broker")
            .arg("--config")
            .arg(&n.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {}", n.id))?;
        children.push((n.id, child));
    }
    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.kafka_port))
        .collect::<Vec<_>>()
        .join(",");
    let ready = wait_ready(&nodes, &mut children, Duration::from_secs(60));
    if let Err(e) = ready {
        stop(&mut children);
        return Err(e);
    }
    println!(
        "Strom dev cluster of {} nodes is up.\n  bootstrap servers: {bootstrap}\n  data, configs and logs: {}\n\
         Try: strom --brokers {bootstrap} cluster info\nCtrl-C stops every node.",
        nodes.len(),
        dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(super::broker::shutdown_signal());
    println!("stopping {} nodes", children.len());
    stop(&mut children);
    Ok(())
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
fn wait_ready(nodes: &[Node], children: &mut [(u16, Child)], limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<&Node> = nodes.iter().collect();
    while !pending.is_empty() {
        for (id, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = nodes.iter().find(|n| n.id == *id).map(|n| n.log.clone());
                bail!(
                    "node {id} exited ({status}) before it was ready; see {}",
                    log.map_or_else(String::new, |l| l.display().to_string())
                );
            }
        }
        pending.retain(|n| {
            !std::fs::read_to_string(&n.log).is_ok_and(|log| log.contains("Strom broker ready"))
        });
        if Instant::now() > deadline {
            bail!(
                "nodes {:?} were not ready within {limit:?}; see their logs in the cluster directory",
                pending.iter().map(|n| n.id).collect::<Vec<_>>()
            );
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn stop(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for (id, child) in children.iter_mut() {
        match child.wait() {
            Ok(status) => println!("node {id} stopped ({status})"),
            Err(e) => eprintln!("node {id}: {e}"),
        }
    }
}
