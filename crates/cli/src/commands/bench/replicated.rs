//! The replicated scenarios, against a 3-node cluster of this binary started as child processes (the
//! `strom dev-cluster` launcher, with `default.replication.factor=3` and `min.insync.replicas=2`):
//! - `produce-replicated`: what `produce-durable` does (1 KiB records, acks=all, 6 partitions), every record on
//!   all three replicas before it is acknowledged, compared with the single broker's `produce-durable` of the same
//!   run;
//! - `failover`: an idempotent acks=all producer sends to one partition at a steady rate, its leader is killed
//!   with SIGKILL, and the figure is the pause: from the kill to the acknowledgement of the first record sent
//!   after it (the controller fences the dead broker after `broker.session.timeout.ms`, Kafka's 9 s by default,
//!   and elects a leader from the ISR).

use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::figures::{Figures, Latency};
use super::produce::{self, client_config};
use crate::commands::dev_cluster::DevCluster;

/// Settings of the bench's cluster beyond the launcher's.
pub const CLUSTER_SETTINGS: &[&str] = &["default.replication.factor=3", "min.insync.replicas=2"];

/// Records per second the failover producer sends.
const FAILOVER_RATE: u64 = 2_000;
/// How long it sends before the kill, and at most after it.
const FAILOVER_WARMUP: Duration = Duration::from_secs(3);
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

pub struct BenchCluster {
    cluster: DevCluster,
    // The nodes' data, configs and logs; dropped (deleted) after the cluster.
    _dir: tempfile::TempDir,
}

impl BenchCluster {
    /// Starts the cluster on free ports; again on new ones (up to three times) when another process took one
    /// between the bench picking it and a node binding it.
    pub fn start(extra: &[String]) -> Result<Self> {
        let mut settings: Vec<String> = CLUSTER_SETTINGS.iter().map(|s| s.to_string()).collect();
        settings.extend(extra.iter().cloned());
        let mut attempt = 1;
        loop {
            let dir = tempfile::tempdir().context("creating the cluster's temp dir")?;
            let ports = free_ports(3)?;
            match DevCluster::start(dir.path(), &ports, &settings) {
                Ok(cluster) => return Ok(Self { cluster, _dir: dir }),
                Err(e) if attempt < 3 && format!("{e:#}").contains("in use") => {
                    eprintln!("note: a port of the bench cluster was taken ({e:#}); starting it on new ports");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap()
    }
}

/// Three (client, controller) port pairs free right now (bound to port 0 and released: another process could
/// take one in between, which makes the start fail with a message naming the port).
fn free_ports(nodes: usize) -> Result<Vec<(u16, u16)>> {
    let listeners: Vec<TcpListener> = (0..2 * nodes)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free loopback ports")?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    Ok(ports.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// One delivery report of the failover producer: when its record was sent, when it was acknowledged, and whether
/// it failed.
#[derive(Default)]
struct Acks(Mutex<Vec<(Instant, Instant, bool)>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        self.0
            .lock()
            .unwrap()
            .push((*sent, Instant::now(), result.is_ok()));
    }
}

/// The failover scenario: see the module doc. `figures.latency_ms` holds the acknowledgement latencies of every
/// record (the ones in flight at the kill included), `figures.pause_ms` the pause.
pub fn failover(bench: &mut BenchCluster, topic: &str) -> Result<Figures> {
    let bootstrap = bench.bootstrap();
    produce::create_topic(&bootstrap, topic, 1)?;
    let producer: ThreadedProducer<Acks> = client_config(&bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "1000")
        // The killed broker's refused connections are expected; every delivery report is checked below.
        .set("log_level", "2")
        .create_with_context(Acks::default())
        .context("creating the producer")?;
    let payload = vec![b'x'; 1024];
    let interval = Duration::from_micros(1_000_000 / FAILOVER_RATE);
    let send = |n: u64| -> Result<()> {
        let key = n.to_string();
        let record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .partition(0)
            .key(&key)
            .payload(&payload);
        producer
            .send(record)
            .map_err(|(e, _)| e)
            .context("sending a record")
    };
    let start = Instant::now();
    let mut sent = 0u64;
    let pace = |until: Instant, sent: &mut u64| -> Result<()> {
        while Instant::now() < until {
            send(*sent)?;
            *sent += 1;
            let next = start + interval * (*sent as u32);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    };
    pace(start + FAILOVER_WARMUP, &mut sent)?;
    let leader = partition_leader(&bootstrap, topic)?;
    bench.cluster.kill(leader)?;
    let killed = Instant::now();
    // Until a record sent after the kill is acknowledged, and a little after.
    let mut pause = None;
    while pause.is_none() {
        if killed.elapsed() > FAILOVER_LIMIT {
            bail!("no record sent after the kill was acknowledged within {FAILOVER_LIMIT:?}");
        }
        let step = Instant::now() + Duration::from_millis(100);
        pace(step, &mut sent)?;
        pause = producer
            .context()
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _, ok)| *ok && *s > killed)
            .map(|(_, acked, _)| *acked - killed)
            .min();
    }
    let after = Instant::now() + Duration::from_secs(1);
    pace(after, &mut sent)?;
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the last acknowledgements")?;
    let elapsed = start.elapsed();
    bench.cluster.restart(leader)?;

    let acks = std::mem::take(&mut *producer.context().0.lock().unwrap());
    let failed = acks.iter().filter(|(_, _, ok)| !ok).count();
    if failed > 0 || acks.len() as u64 != sent {
        bail!(
            "{} of {sent} records acknowledged, {failed} failed",
            acks.len() - failed
        );
    }
    let mut latencies: Vec<u32> = acks
        .iter()
        .map(|(s, a, _)| u32::try_from((*a - *s).as_micros()).unwrap_or(u32::MAX))
        .collect();
    let mut figures = Figures::new(sent as usize, sent * 1024, elapsed);
    figures.latency_ms = Latency::from_micros(&mut latencies);
    figures.pause_ms = pause.map(|p| p.as_secs_f64() * 1000.0);
    figures.note = Some(
        "kill -9 of the partition's leader: pause = to the first acknowledgement of a record sent after the kill",
    );
    Ok(figures)
}

/// The broker leading partition 0 of `topic`, as the cluster's metadata says.
fn partition_leader(bootstrap: &str, topic: &str) -> Result<i32> {
    let consumer: BaseConsumer = client_config(bootstrap).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let leader = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .map(|p| p.leader())
        .filter(|l| *l >= 0)
        .with_context(|| format!("{topic}-0 has no leader"))?;
    Ok(leader)
}
