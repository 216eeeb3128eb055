//! Replicated partitions across three real `strom broker` processes, driven with librdkafka and `kill -9`:
//!
//! - records acknowledged with acks=all (idempotent producer, replication factor 3, min.insync.replicas 2) survive
//!   five kills of their partition's leader, none lost and none duplicated, and the replicas' logs end up
//!   byte-identical;
//! - a leader killed under acks=1 traffic comes back as a follower, truncates what only it had, and its log ends
//!   up identical to the new leader's;
//! - when the group coordinator's broker dies, another broker serves the group with every committed offset, and
//!   the old one serves the later commits after it returns and leads again;
//! - `strom topic describe --under-replicated` and `strom cluster elect-leaders` as an operator uses them.
//!
//! The tests wait on what they check (Metadata, acknowledgements, log files), never on fixed sleeps, and print the
//! figures they measure (acknowledged, lost, duplicated, unavailability per kill).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{
    create_topic, describe_output, metadata, random_cluster_id, request, wait_until,
    with_port_retry, Layout, MetadataView, PartitionView, TestCluster,
};
use common::proxy::{Plane, Proxy};
use common::{client_config, client_log_config, delivered, enqueue, ClientLog};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strom_protocol::kafka::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
use strom_protocol::kafka::protocol::StrBytes;

/// A killed broker is fenced after two seconds without heartbeats, and its partitions get new leaders; a broker
/// back in its partitions' ISR gets their leadership back within a second (preferred leader rebalance).
const FAILOVER: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=2000",
    "min.insync.replicas=2",
    "leader.imbalance.check.interval.seconds=1",
];

/// Generous bound for anything a loaded machine does slowly: an election, a restart, a catch-up.
const PATIENCE: Duration = Duration::from_secs(90);

/// One three-broker cluster of this file at a time: five at once (15 brokers and their clients on two cores)
/// would fence live brokers whose heartbeats run late (`broker.session.timeout.ms` is 2 s here), which tests
/// the machine rather than the failover.
fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every node's client address, for clients that may bootstrap from any of them.
fn bootstrap_all(cluster: &TestCluster) -> String {
    cluster
        .ids()
        .iter()
        .map(|id| cluster.bootstrap(*id))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata through the first of `nodes` that answers.
fn metadata_from(cluster: &TestCluster, nodes: &[i32]) -> Result<MetadataView, String> {
    let mut errors = Vec::new();
    for &id in nodes {
        match metadata(cluster.addr(id)) {
            Ok(view) => return Ok(view),
            Err(e) => errors.push(format!("node {id}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Waits until every partition of `topic` has a leader and all `rf` replicas in its ISR, as `via` reports it.
#[track_caller]
fn wait_fully_replicated(cluster: &TestCluster, via: &[i32], topic: &str) -> MetadataView {
    wait_until(
        &format!("every partition of {topic} to have its whole ISR"),
        PATIENCE,
        || {
            let view = metadata_from(cluster, via)?;
            let t = view
                .topics
                .get(topic)
                .ok_or_else(|| format!("no topic {topic}"))?;
            match t
                .partitions
                .iter()
                .find(|(_, p)| p.leader < 0 || p.isr.len() != p.replicas.len())
            {
                None => Ok(view),
                Some((i, p)) => Err(format!("{topic}[{i}]: {p:?}")),
            }
        },
    )
}

/// Every `.log` segment of one replica of `topic-partition`, in offset order, concatenated: replicas agree when
/// these bytes are equal (segments may be rolled at different offsets on different brokers).
fn replica_bytes(data_dir: &Path, topic: &str, partition: i32) -> Vec<u8> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Waits until the three replicas of every partition of `topic` hold the same bytes; returns each partition's size.
#[track_caller]
fn wait_identical_replicas(cluster: &TestCluster, topic: &str, partitions: i32) -> Vec<usize> {
    (0..partitions)
        .map(|p| {
            wait_until(
                &format!("the replicas of {topic}-{p} to hold identical logs"),
                PATIENCE,
                || {
                    let logs: Vec<(i32, Vec<u8>)> = cluster
                        .ids()
                        .into_iter()
                        .map(|id| (id, replica_bytes(&cluster.node(id).data_dir, topic, p)))
                        .collect();
                    if logs.iter().all(|(_, b)| b == &logs[0].1) {
                        Ok(logs[0].1.len())
                    } else {
                        Err(logs
                            .iter()
                            .map(|(id, b)| format!("node {id}: {} bytes", b.len()))
                            .collect::<Vec<_>>()
                            .join(", "))
                    }
                },
            )
        })
        .collect()
}

/// What the background producer has seen: sequence number -> (partition, offset) of each acknowledged record,
/// the records that failed, and when each partition last acknowledged a record (offset, time).
#[derive(Default)]
struct Acks {
    acked: BTreeMap<u64, (i32, i64)>,
    failed: Vec<(u64, String)>,
    /// Per partition: the last offset acknowledged, and when its record was sent.
    latest: BTreeMap<i32, (i64, Instant)>,
}

/// librdkafka producing keyed records `0, 1, 2, ...` to `topic` as fast as `in_flight` unacknowledged ones allow,
/// until stopped.
struct BackgroundProducer {
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl BackgroundProducer {
    fn start(bootstrap: String, topic: &str, settings: &[(&str, &str)], in_flight: usize) -> Self {
        let producer: FutureProducer<ClientLog> = {
            let mut c = client_log_config(&bootstrap);
            c.set("linger.ms", "2")
                .set("message.timeout.ms", "180000")
                .set("retry.backoff.ms", "50");
            for (k, v) in settings {
                c.set(*k, *v);
            }
            c.create_with_context(ClientLog).expect("producer")
        };
        let acks = Arc::new(Mutex::new(Acks::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let topic = topic.to_string();
        let thread = {
            let (acks, stop) = (acks.clone(), stop.clone());
            std::thread::spawn(move || {
                let settle = |(seq, sent, f): (u64, Instant, _)| {
                    let result = delivered(f);
                    let mut acks = acks.lock().unwrap();
                    match result {
                        Ok((p, offset)) => {
                            acks.acked.insert(seq, (p, offset));
                            acks.latest.insert(p, (offset, sent));
                        }
                        Err(e) => acks.failed.push((seq, e.to_string())),
                    }
                };
                let mut pending = VecDeque::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if pending.len() >= in_flight {
                        settle(pending.pop_front().unwrap());
                    }
                    let (key, value) = (format!("key-{seq}"), seq.to_string());
                    let f = enqueue(
                        &producer,
                        FutureRecord::to(&topic).key(&key).payload(&value),
                    );
                    pending.push_back((seq, Instant::now(), f));
                    seq += 1;
                }
                pending.into_iter().for_each(settle);
                seq
            })
        };
        Self {
            acks,
            stop,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().unwrap().acked.len()
    }

    /// The last offset acknowledged on `partition`, and when its record was sent.
    fn latest(&self, partition: i32) -> Option<(i64, Instant)> {
        self.acks.lock().unwrap().latest.get(&partition).copied()
    }

    /// The highest sequence number acknowledged so far (records after it were acknowledged later, if at all).
    fn max_acked_seq(&self) -> u64 {
        self.acks
            .lock()
            .unwrap()
            .acked
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `more` records beyond those acknowledged now are acknowledged.
    #[track_caller]
    fn wait_for_progress(&self, more: usize) {
        let target = self.acked() + more;
        wait_until(
            &format!("{target} records acknowledged"),
            PATIENCE,
            || match self.acked() {
                n if n >= target => Ok(()),
                n => Err(format!(
                    "{n} acknowledged, failures: {:?}",
                    self.acks.lock().unwrap().failed.first()
                )),
            },
        );
    }

    /// Stops producing, waits for every record sent, and returns how many were sent and what was acknowledged.
    fn finish(mut self) -> (u64, Acks) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.thread.take().unwrap().join().expect("producer thread");
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        (sent, acks)
    }
}

impl Drop for BackgroundProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until each partition's high watermark passes the last offset acknowledged on it. A new leader's high
/// watermark starts where it stood on that replica as a follower and catches up as its followers fetch, so records
/// the previous leader acknowledged can be invisible for a moment (as in Kafka); one that stays below fails here,
/// naming the partition and where its high watermark stopped.
fn wait_acknowledged_visible(bootstrap: &str, topic: &str, acks: &[&Acks]) {
    let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
    for (_, (p, offset)) in acks.iter().flat_map(|a| a.acked.iter()) {
        let end = needed.entry(*p).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    for (p, needed) in needed {
        wait_until(
            &format!(
                "the high watermark of {topic}-{p} to pass offset {}, the last acknowledged there",
                needed - 1
            ),
            PATIENCE,
            || match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) if high >= needed => Ok(()),
                Ok((_, high)) => Err(format!("high watermark {high}")),
                Err(e) => Err(e.to_string()),
            },
        );
    }
}

/// (log start offset, high watermark) of `topic`-`p` as `consumer` gets them, asking again while leadership moves
/// (NOT_LEADER_OR_FOLLOWER is retriable).
fn watermarks(consumer: &BaseConsumer, topic: &str, p: i32) -> (i64, i64) {
    wait_until(
        &format!("the high watermark of {topic}-{p}"),
        PATIENCE,
        || {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| e.to_string())
        },
    )
}

/// Reads every partition of `topic` from the beginning up to its high watermark: (partition, offset, value).
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = {
        let mut c = client_config(bootstrap);
        // auto.offset.reset=error: a position the broker calls out of range must fail the read, never jump
        // over records (librdkafka's default, latest, would make them look lost).
        c.set("enable.auto.commit", "false")
            .set("group.id", "strom-tests-unused")
            .set("auto.offset.reset", "error");
        c.create().expect("consumer")
    };
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        // Leadership may still be moving back to preferred replicas.
        let (_, high) = watermarks(&consumer, topic, p);
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while next.iter().any(|(p, o)| *o < ends[p]) {
        assert!(
            Instant::now() < deadline,
            "read {} records of {topic}; positions {next:?}, high watermarks {ends:?}; errors: {errors:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8(m.payload().expect("a value").to_vec()).unwrap();
                next.insert(m.partition(), m.offset() + 1);
                out.push((m.partition(), m.offset(), value));
            }
            // librdkafka retries what a leadership move interrupts; the records must still all arrive.
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    if !errors.is_empty() {
        eprintln!("reading {topic}: errors on the way (retried): {errors:?}");
    }
    out
}

// Known bug, open: with other clusters running on the machine, acks=all on a partition can stall for good after a
// failover (the new leader's high watermark stops moving; nothing acknowledged is lost). The tests here take turns
// (`one_cluster_at_a_time`) so the suite does not load itself into it; see the closing note of 2026-12-04 and
// STROM_TEST_BROKER_LOG for debugging a stall.
#[test]
fn acknowledged_records_survive_five_leader_kills_with_none_lost_or_duplicated() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "survives";
    const PARTITIONS: i32 = 3;
    const KILLS: usize = 5;
    let mut cluster = TestCluster::start(3, FAILOVER);
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, PARTITIONS, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    wait_fully_replicated(&cluster, &[1], TOPIC);

    let bootstrap = bootstrap_all(&cluster);
    let producer = BackgroundProducer::start(
        bootstrap.clone(),
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
        200,
    );

    let mut unavailable = Vec::new();
    for kill in 1..=KILLS {
        producer.wait_for_progress(300);
        let view = wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
        let victim = view.topic(TOPIC).partitions[&0].leader;
        let survivors: Vec<i32> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != victim)
            .collect();
        let acked_before = producer.latest(0).map_or(-1, |(offset, _)| offset);
        cluster.kill_9(victim);
        let killed = Instant::now();

        let new_leader = wait_until(
            &format!("a new leader of {TOPIC}-0 after broker {victim} was killed"),
            PATIENCE,
            || {
                let p = metadata_from(&cluster, &survivors)?.topic(TOPIC).partitions[&0].clone();
                if p.leader >= 0 && p.leader != victim {
                    Ok(p.leader)
                } else {
                    Err(format!("{p:?}"))
                }
            },
        );
        let elected = killed.elapsed();
        let first_ack = wait_until(
            &format!(
                "a record sent after the kill acknowledged on {TOPIC}-0 by broker {new_leader}"
            ),
            PATIENCE,
            // Sent after the kill, so the new leader acknowledged it (acknowledgements are collected in send
            // order, so one collected after the kill may still be the old leader's).
            || match producer.latest(0) {
                Some((offset, sent)) if offset > acked_before && sent > killed => {
                    Ok(killed.elapsed())
                }
                other => Err(format!("last acknowledged: {other:?}")),
            },
        );
        eprintln!(
            "kill {kill}: broker {victim} led {TOPIC}-0; broker {new_leader} elected after {} ms, \
             first record sent after the kill acknowledged after {} ms",
            elected.as_millis(),
            first_ack.as_millis()
        );
        unavailable.push(first_ack);
        cluster.restart(victim);
    }
    producer.wait_for_progress(300);
    wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
    let (sent, acks) = producer.finish();
    assert!(
        acks.failed.is_empty(),
        "{} of {sent} records failed, first: {:?}",
        acks.failed.len(),
        acks.failed.first()
    );

    let sizes = wait_identical_replicas(&cluster, TOPIC, PARTITIONS);
    wait_acknowledged_visible(&bootstrap, TOPIC, &[&acks]);
    let read = read_all(&bootstrap, TOPIC, PARTITIONS);
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for (p, offset, value) in &read {
        let seq: u64 = value.parse().expect("a sequence number");
        at.insert((*p, *offset), seq);
        *copies.entry(seq).or_default() += 1;
    }
    let lost: Vec<_> = acks
        .acked
        .iter()
        .filter(|(seq, placed)| at.get(placed) != Some(seq))
        .collect();
    let duplicated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    // Acknowledged at or above the final high watermark: on disk perhaps, but not readable (a leader's high
    // watermark that stopped short); below it and not there: gone.
    let consumer: BaseConsumer = client_config(&bootstrap).create().expect("consumer");
    let hw: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, watermarks(&consumer, TOPIC, p).1))
        .collect();
    let invisible = lost
        .iter()
        .filter(|(_, (p, offset))| *offset >= hw[p])
        .count();
    if !lost.is_empty() {
        eprintln!(
            "{} acknowledged records lost, {invisible} of them at or above the final high watermarks {hw:?}",
            lost.len()
        );
    }
    eprintln!(
        "{sent} sent, {} acknowledged, {} read, {} lost, {} duplicated; replica logs identical ({sizes:?} bytes); \
         unavailability of {TOPIC}-0 per kill: {:?} ms",
        acks.acked.len(),
        read.len(),
        lost.len(),
        duplicated.len(),
        unavailable.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    assert_eq!(acks.acked.len() as u64, sent, "every record acknowledged");
    assert!(
        lost.is_empty(),
        "acknowledged records missing or elsewhere: {:?}; what the log holds at those offsets: {:?}",
        &lost[..lost.len().min(10)],
        lost.iter()
            .take(10)
            .map(|(_, placed)| (placed, at.get(placed)))
            .collect::<Vec<_>>()
    );
    assert!(
        duplicated.is_empty(),
        "records stored more than once: {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(read.len() as u64, sent, "the log holds nothing else");
    // Per partition: offsets from 0 without a gap, and records in the order they were sent.
    for p in 0..PARTITIONS {
        let records: Vec<(i64, u64)> = at
            .iter()
            .filter(|((q, _), _)| *q == p)
            .map(|((_, offset), seq)| (*offset, *seq))
            .collect();
        for (i, (offset, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64, "{TOPIC}-{p}: no gap in offsets");
        }
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "{TOPIC}-{p}: records in the order they were sent"
        );
    }
}

#[test]
fn a_leader_killed_under_acks_1_truncates_what_only_it_had_when_it_returns() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "diverges";
    // No rebalance back to the returning broker: under acks=1 a leadership move may drop acknowledged records,
    // as in Kafka, and this test checks the records acknowledged after the failover.
    let settings = [FAILOVER, &["auto.leader.rebalance.enable=false"]].concat();
    let mut cluster = TestCluster::start(3, &settings);
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, 1, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    let view = wait_fully_replicated(&cluster, &[1], TOPIC);
    let victim = view.topic(TOPIC).partitions[&0].leader;
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let bootstrap = bootstrap_all(&cluster);

    // acks=1: the leader answers alone, so at the kill it usually holds records no follower has yet.
    let producer = BackgroundProducer::start(
        bootstrap.clone(),
        TOPIC,
        &[("acks", "1"), ("enable.idempotence", "false")],
        500,
    );
    producer.wait_for_progress(2_000);
    cluster.kill_9(victim);
    let new_leader = wait_until(&format!("a new leader of {TOPIC}-0"), PATIENCE, || {
        let p = metadata_from(&cluster, &survivors)?.topic(TOPIC).partitions[&0].clone();
        if p.leader >= 0 && p.leader != victim {
            Ok(p.leader)
        } else {
            Err(format!("{p:?}"))
        }
    });
    // The new leader writes in its own epoch over the offsets the old one may also have used.
    producer.wait_for_progress(1_000);
    cluster.restart(victim);
    wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
    // From here on no broker fails and no leadership moves: every record acknowledged now must stay.
    let settled = producer.max_acked_seq();
    producer.wait_for_progress(500);
    let (sent, acks) = producer.finish();

    let sizes = wait_identical_replicas(&cluster, TOPIC, 1);
    let truncated = cluster
        .log(victim)
        .iter()
        .any(|l| l.contains("truncated divergent log tail"));
    let read = read_all(&bootstrap, TOPIC, 1);
    eprintln!(
        "{sent} sent, {} acknowledged by leaders {victim} then {new_leader}, {} failed; broker {victim} truncated \
         a divergent tail on return: {truncated}; {} records in every replica ({sizes:?} bytes)",
        acks.acked.len(),
        acks.failed.len(),
        read.len()
    );
    let at: BTreeMap<(i32, i64), String> = read.into_iter().map(|(p, o, v)| ((p, o), v)).collect();
    let missing: Vec<_> = acks
        .acked
        .iter()
        .filter(|(seq, placed)| **seq > settled && at.get(placed) != Some(&seq.to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "records acknowledged after the ISR was whole again are missing: {:?}",
        &missing[..missing.len().min(10)]
    );
}

/// The broker FindCoordinator (v4) names for `group`, asked of node `via`.
fn coordinator(cluster: &TestCluster, via: i32, group: &str) -> Result<i32, String> {
    let body = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
    let ResponseKind::FindCoordinator(response) = request(
        cluster.addr(via),
        ApiKey::FindCoordinator,
        4,
        RequestKind::FindCoordinator(body),
        Duration::from_secs(20),
    )?
    else {
        return Err("not a FindCoordinator response".into());
    };
    let c = response.coordinators.first().ok_or("no coordinator")?;
    match c.error_code {
        0 => Ok(c.node_id.0),
        code => Err(format!("FindCoordinator error {code}")),
    }
}

/// The offsets `group` has committed for partitions 0..3 of `topic`, read through `bootstrap`.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Result<Vec<i64>, String> {
    common::group_committed(bootstrap, group, topic, 0..3, Duration::from_secs(10))?
        .into_iter()
        .map(|(p, offset)| match offset {
            Ok(Offset::Offset(o)) => Ok(o),
            Ok(other) => Err(format!("partition {p}: {other:?}")),
            Err(err) => Err(format!("partition {p}: {err}")),
        })
        .collect()
}

/// Commits `offsets` for partitions 0..3 of `topic` as `group`, through `bootstrap`.
fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[i64]) -> Result<(), String> {
    let consumer: BaseConsumer = {
        let mut c = client_config(bootstrap);
        c.set("enable.auto.commit", "false").set("group.id", group);
        c.create().map_err(|e| e.to_string())?
    };
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| e.to_string())
}

#[test]
fn committed_offsets_survive_the_coordinator_s_death_and_its_return() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "orders";
    const GROUP: &str = "billing";
    let mut cluster =
        TestCluster::start(3, &[FAILOVER, &["offsets.topic.num.partitions=6"]].concat());
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, 3, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    wait_fully_replicated(&cluster, &[1], TOPIC);
    let bootstrap = bootstrap_all(&cluster);

    wait_until("the first commit", PATIENCE, || {
        commit(&bootstrap, GROUP, TOPIC, &[5, 7, 9])
    });
    // The offsets topic exists now (created by the first FindCoordinator); every replica of its partitions in
    // sync, so the coordinator's death loses nothing.
    wait_fully_replicated(&cluster, &[1], "__consumer_offsets");
    let victim = wait_until("the group's coordinator", PATIENCE, || {
        coordinator(&cluster, 1, GROUP)
    });
    let survivors: Vec<i32> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let through_survivors = survivors
        .iter()
        .map(|id| cluster.bootstrap(*id))
        .collect::<Vec<_>>()
        .join(",");
    cluster.kill_9(victim);
    let killed = Instant::now();

    let successor = wait_until(
        &format!("a coordinator for {GROUP} other than broker {victim}"),
        PATIENCE,
        || match coordinator(&cluster, survivors[0], GROUP)? {
            c if c == victim => Err(format!("still broker {victim}")),
            c => Ok(c),
        },
    );
    let offsets = wait_until(
        &format!("broker {successor} to serve {GROUP}'s committed offsets"),
        PATIENCE,
        || committed(&through_survivors, GROUP, TOPIC),
    );
    eprintln!(
        "coordinator {victim} killed; broker {successor} served the committed offsets after {} ms",
        killed.elapsed().as_millis()
    );
    assert_eq!(offsets, [5, 7, 9], "every committed offset");

    // Commits go on at the new coordinator; the old one, back and leading its offsets partition again (preferred
    // leader rebalance), has copied them as a follower.
    commit(&through_survivors, GROUP, TOPIC, &[11, 13, 15]).expect("commit to the new coordinator");
    cluster.restart(victim);
    wait_until(
        &format!("broker {victim} to coordinate {GROUP} again"),
        PATIENCE,
        || match coordinator(&cluster, victim, GROUP)? {
            c if c == victim => Ok(()),
            c => Err(format!("broker {c} coordinates")),
        },
    );
    let offsets = wait_until(
        &format!("broker {victim} to serve {GROUP}'s committed offsets"),
        PATIENCE,
        || committed(&cluster.bootstrap(victim), GROUP, TOPIC),
    );
    assert_eq!(offsets, [11, 13, 15], "the commits made while it was down");
}

/// `strom --format json topic describe <topic>` through `via`: partition -> (leader, replicas, isr).
fn describe(cluster: &TestCluster, via: i32, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = cluster.strom(
        via,
        &[&["--format", "json", "topic", "describe"], args].concat(),
    );
    if !out.status.success() {
        return Err(describe_output(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", describe_output(&out)))
}

#[test]
fn an_operator_sees_under_replicated_partitions_and_moves_leaders_back_with_elect_leaders() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "ops";
    let mut cluster = TestCluster::start(
        3,
        &[
            "controller.quorum.election.timeout.ms=500",
            "broker.heartbeat.interval.ms=200",
            "broker.session.timeout.ms=2000",
            // Leaders stay where failover put them until the operator moves them.
            "auto.leader.rebalance.enable=false",
        ],
    );
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, 6, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    let view = wait_fully_replicated(&cluster, &[1], TOPIC);
    let preferred: BTreeMap<i32, i32> = view
        .topic(TOPIC)
        .partitions
        .iter()
        .map(|(p, v)| (*p, v.replicas[0]))
        .collect();
    assert_eq!(
        view.topic(TOPIC).leaders(),
        preferred,
        "new partitions are led by their preferred replica"
    );
    let controller = cluster.active_controller(1);
    let victim = *cluster.ids().iter().find(|id| **id != controller).unwrap();
    let led: BTreeSet<i32> = preferred
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !led.is_empty(),
        "broker {victim} leads some of {preferred:?}"
    );

    cluster.kill_9(victim);
    let under = wait_until(
        &format!("every partition of {TOPIC} under-replicated without broker {victim}"),
        PATIENCE,
        || {
            let json = describe(&cluster, controller, &[TOPIC, "--under-replicated"])?;
            let parts = json["partitions"].as_array().cloned().unwrap_or_default();
            let without_victim = parts.iter().all(|p| {
                p["leader"] != victim
                    && p["under_replicated"] == true
                    && !p["isr"].as_array().unwrap().contains(&victim.into())
            });
            if parts.len() == 6 && without_victim {
                Ok(json)
            } else {
                Err(json.to_string())
            }
        },
    );
    assert!(
        under["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["isr"].as_array().unwrap().len() == 2),
        "{under}"
    );
    let table = cluster.strom(
        controller,
        &["topic", "describe", TOPIC, "--under-replicated"],
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", describe_output(&table));
    assert_eq!(text.matches("under-replicated").count(), 6, "{text}");

    cluster.restart(victim);
    let view = wait_fully_replicated(&cluster, &[controller], TOPIC);
    assert!(
        view.led_by(victim).is_empty(),
        "no automatic rebalance: broker {victim} leads nothing yet: {view:?}"
    );
    let json = describe(&cluster, controller, &[TOPIC, "--under-replicated"]).unwrap();
    assert_eq!(
        json["partitions"],
        serde_json::json!([]),
        "none under-replicated: {json}"
    );

    let out = cluster.strom(controller, &["cluster", "elect-leaders", "--topic", TOPIC]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("elected preferred leader").count(),
        led.len(),
        "{text}"
    );
    assert_eq!(
        text.matches("already led by its preferred replica").count(),
        6 - led.len(),
        "{text}"
    );
    wait_until(
        &format!("every partition of {TOPIC} led by its preferred replica"),
        PATIENCE,
        || match metadata(cluster.addr(victim))?.topic(TOPIC).leaders() {
            l if l == preferred => Ok(()),
            l => Err(format!("{l:?}")),
        },
    );

    // Nothing left to move: every partition reports it, and the command succeeds.
    let out = cluster.strom(
        controller,
        &[
            "--format",
            "json",
            "cluster",
            "elect-leaders",
            "--topic",
            TOPIC,
            "--partition",
            "0",
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["elected"], false, "{json}");
}

#[test]
fn a_rolling_restart_under_acks_all_load_loses_nothing_and_fails_no_record() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "rolling";
    const PARTITIONS: i32 = 3;
    let mut cluster = TestCluster::start(3, FAILOVER);
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, PARTITIONS, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    wait_fully_replicated(&cluster, &[1], TOPIC);
    let bootstrap = bootstrap_all(&cluster);
    let producer = BackgroundProducer::start(
        bootstrap.clone(),
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
        200,
    );

    for id in cluster.ids() {
        producer.wait_for_progress(300);
        wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
        let stopping = Instant::now();
        let (status, log) = cluster
            .sigterm(id)
            .wait_exit_within(Duration::from_secs(60));
        assert!(
            status.success(),
            "broker {id} exits 0 after a controlled shutdown: {status}\n{}",
            log.join("\n")
        );
        eprintln!(
            "broker {id} stopped after {} ms; restarting",
            stopping.elapsed().as_millis()
        );
        cluster.restart(id);
    }
    producer.wait_for_progress(300);
    wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
    let (sent, acks) = producer.finish();
    assert!(
        acks.failed.is_empty(),
        "a rolling restart fails no record: {} of {sent} failed, first: {:?}",
        acks.failed.len(),
        acks.failed.first()
    );
    wait_identical_replicas(&cluster, TOPIC, PARTITIONS);
    wait_acknowledged_visible(&bootstrap, TOPIC, &[&acks]);
    let read = read_all(&bootstrap, TOPIC, PARTITIONS);
    let at: BTreeMap<(i32, i64), u64> = read
        .iter()
        .map(|(p, o, v)| ((*p, *o), v.parse().expect("a sequence number")))
        .collect();
    let lost = acks
        .acked
        .iter()
        .filter(|(seq, placed)| at.get(placed) != Some(seq))
        .count();
    eprintln!(
        "rolling restart: {sent} sent, {} acknowledged, {} read, {lost} lost",
        acks.acked.len(),
        read.len()
    );
    assert_eq!(
        lost, 0,
        "every acknowledged record where it was acknowledged"
    );
    assert_eq!(read.len() as u64, sent, "each record once");
}

/// Partition reassignment under acks=all load: `strom topic reassign --wait` moves a replication-factor-2
/// partition off its leader onto the broker that had no copy; the new replica copies the log before the old
/// leader's copy goes, leadership moves, no record fails or is lost, and the replicas end identical.
#[test]
fn a_reassignment_copies_the_log_to_the_new_replica_before_the_old_one_leaves() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "moving";
    let cluster = TestCluster::start(3, FAILOVER);
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, 1, 2, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    let view = wait_fully_replicated(&cluster, &cluster.ids(), TOPIC);
    let before = view.topic(TOPIC).partitions[&0].clone();
    let outsider = *cluster
        .ids()
        .iter()
        .find(|id| !before.replicas.contains(id))
        .expect("a broker without a replica");
    let staying = *before
        .replicas
        .iter()
        .find(|id| **id != before.leader)
        .expect("a follower");
    let target = [outsider, staying];

    let bootstrap = bootstrap_all(&cluster);
    let producer = BackgroundProducer::start(
        bootstrap.clone(),
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
        200,
    );
    producer.wait_for_progress(2_000);
    let started = Instant::now();
    let out = reassign_and_wait(&cluster, outsider, TOPIC, &[outsider, staying]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completed"), "{text}");
    let took = started.elapsed();

    let after = wait_until(
        &format!("{TOPIC}-0 on brokers {target:?} only, led by one of them"),
        PATIENCE,
        || {
            let p = metadata_from(&cluster, &target)?.topic(TOPIC).partitions[&0].clone();
            let mut replicas = p.replicas.clone();
            replicas.sort_unstable();
            let mut want = target.to_vec();
            want.sort_unstable();
            if replicas == want && target.contains(&p.leader) && p.isr.len() == 2 {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    assert_eq!(
        after.replicas, target,
        "the target's order: its preferred leader first"
    );
    // The old leader's copy is deleted once the reassignment completes.
    let gone = cluster
        .node(before.leader)
        .data_dir
        .join(format!("{TOPIC}-0"));
    wait_until(
        &format!("{} to be deleted", gone.display()),
        PATIENCE,
        || {
            (!gone.exists())
                .then_some(())
                .ok_or_else(|| "still there".to_string())
        },
    );
    producer.wait_for_progress(500);
    let (sent, acks) = producer.finish();
    assert!(
        acks.failed.is_empty(),
        "{} of {sent} records failed, first: {:?}",
        acks.failed.len(),
        acks.failed.first()
    );
    let listed = cluster.strom(outsider, &["--format", "json", "topic", "reassignments"]);
    assert!(listed.status.success(), "{}", describe_output(&listed));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");

    let sizes: Vec<usize> = wait_until(
        &format!("the replicas of {TOPIC}-0 on {target:?} to hold identical logs"),
        PATIENCE,
        || {
            let logs: Vec<Vec<u8>> = target
                .iter()
                .map(|id| replica_bytes(&cluster.node(*id).data_dir, TOPIC, 0))
                .collect();
            if logs[0] == logs[1] {
                Ok(logs.iter().map(Vec::len).collect())
            } else {
                Err(format!("{} and {} bytes", logs[0].len(), logs[1].len()))
            }
        },
    );
    let read = read_all(&bootstrap, TOPIC, 1);
    let at: BTreeMap<(i32, i64), u64> = read
        .iter()
        .map(|(p, offset, value)| ((*p, *offset), value.parse().expect("a sequence number")))
        .collect();
    let misplaced: Vec<(&u64, &(i32, i64))> = acks
        .acked
        .iter()
        .filter(|(seq, placed)| at.get(placed) != Some(seq))
        .collect();
    let lost = misplaced.len();
    if lost > 0 {
        // Where each of the first ones really is, and what is at the offset its acknowledgement named: a wrong
        // offset in the acknowledgement, or a record overwritten.
        let found: BTreeMap<u64, (i32, i64)> =
            at.iter().map(|(placed, seq)| (*seq, *placed)).collect();
        for (seq, placed) in misplaced.iter().take(10) {
            eprintln!(
                "record {seq}: acknowledged at {placed:?}, found at {:?}; at {placed:?} is record {:?}",
                found.get(seq),
                at.get(placed)
            );
        }
        let (first, last) = (
            misplaced.iter().map(|m| m.1 .1).min(),
            misplaced.iter().map(|m| m.1 .1).max(),
        );
        eprintln!("{lost} misplaced, acknowledged at offsets {first:?}..={last:?}");
    }
    eprintln!(
        "reassigned {TOPIC}-0 from {:?} (leader {}) to {:?} (leader {}) under load in {} ms: {sent} sent, \
         {} acknowledged, {} read, {lost} lost; replica logs identical ({sizes:?} bytes)",
        before.replicas,
        before.leader,
        after.replicas,
        after.leader,
        took.as_millis(),
        acks.acked.len(),
        read.len()
    );
    assert_eq!(lost, 0, "acknowledged records missing");
    assert_eq!(read.len() as u64, sent, "every record once");
}

/// Three nodes reached only through fault-injecting proxies (`common/proxy.rs`): the controller listeners through
/// `controller.quorum.voters`, the client listeners through `advertised.listeners`.
struct ProxiedCluster {
    cluster: TestCluster,
    controller: BTreeMap<i32, Proxy>,
    kafka: BTreeMap<i32, Proxy>,
}

impl ProxiedCluster {
    fn start(settings: &[&str]) -> Self {
        with_port_retry(|| {
            let layout = Layout::new(3, settings);
            let ids: Vec<i32> = layout.nodes.iter().map(|n| n.id).collect();
            let controller: BTreeMap<i32, Proxy> = layout
                .nodes
                .iter()
                .map(|n| {
                    let target = SocketAddr::from(([127, 0, 0, 1], n.controller_port));
                    (n.id, Proxy::start(target, Plane::Controller))
                })
                .collect();
            let kafka: BTreeMap<i32, Proxy> = layout
                .nodes
                .iter()
                .map(|n| (n.id, Proxy::start(n.addr(), Plane::Kafka)))
                .collect();
            let voters = ids
                .iter()
                .map(|id| format!("{id}@127.0.0.1:{}", controller[id].port()))
                .collect::<Vec<_>>()
                .join(",");
            for id in &ids {
                let advertised = format!(
                    "advertised.listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    kafka[id].port(),
                    controller[id].port()
                );
                layout.write_config(*id, &voters, &[&advertised]);
            }
            let cluster_id = random_cluster_id();
            layout.format_all(&cluster_id);
            let mut cluster = TestCluster::launched(layout, cluster_id);
            for id in ids {
                cluster.try_wait_ready(id)?;
            }
            Ok(ProxiedCluster {
                cluster,
                controller,
                kafka,
            })
        })
    }

    /// Cuts `node` off from every other node, on the controller and the replication links both ways; clients
    /// still reach every node.
    fn isolate(&self, node: i32) {
        let others: Vec<i32> = self
            .cluster
            .ids()
            .into_iter()
            .filter(|id| *id != node)
            .collect();
        for proxies in [&self.controller, &self.kafka] {
            for (id, proxy) in proxies {
                if *id == node {
                    proxy.cut(&others);
                } else {
                    proxy.cut(&[node]);
                }
            }
        }
    }

    fn heal(&self) {
        for proxy in self.controller.values().chain(self.kafka.values()) {
            proxy.heal();
        }
    }
}

/// The partition leader is cut off from the controller and its followers while clients still reach it, twice:
/// once a leader that is not the active controller, once the active controller itself. The majority elects a new
/// leader; the isolated one still leads in its own view and takes writes, but cannot shrink its ISR without the
/// controller, so it acknowledges none of them (they time out, or fail as NOT_LEADER once it learns better, and
/// are retried). After healing it truncates what only it had, and every acknowledged record of both producers
/// (one bootstrapped to every broker, one to the first isolated leader only) is in the log at the offset it was
/// acknowledged at, exactly once.
#[test]
fn an_isolated_leader_acknowledges_nothing_that_is_lost() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "isolated";
    let proxied = ProxiedCluster::start(FAILOVER);
    let cluster = &proxied.cluster;
    let (code, message, _) =
        create_topic(cluster.addr(1), TOPIC, 1, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    let first_leader = lead_from(cluster, TOPIC, |leader, controller| {
        (leader != controller)
            .then_some(leader)
            .or_else(|| cluster.ids().into_iter().find(|id| *id != controller))
    });

    let settings = [("acks", "all"), ("enable.idempotence", "true")];
    let everywhere = BackgroundProducer::start(bootstrap_all(cluster), TOPIC, &settings, 50);
    let to_leader =
        BackgroundProducer::start(cluster.bootstrap(first_leader), TOPIC, &settings, 50);
    let mut rounds = Vec::new();
    for round in 1..=2 {
        let leader = if round == 1 {
            first_leader
        } else {
            lead_from(cluster, TOPIC, |_, controller| Some(controller))
        };
        let controller = metadata_from(cluster, &cluster.ids())
            .expect("metadata")
            .controller_id;
        everywhere.wait_for_progress(300);
        to_leader.wait_for_progress(300);
        let others: Vec<i32> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        let truncations_before = truncations(cluster, leader);

        proxied.isolate(leader);
        let cut = Instant::now();
        let new_leader = wait_until(
            &format!("a new leader of {TOPIC}-0 on the majority side of broker {leader}"),
            PATIENCE,
            || {
                let p = metadata_from(cluster, &others)?.topic(TOPIC).partitions[&0].clone();
                if others.contains(&p.leader) {
                    Ok(p.leader)
                } else {
                    Err(format!("{p:?}"))
                }
            },
        );
        let elected = cut.elapsed();
        // Two leaders now: the isolated one still leads in its own (stale) metadata and takes writes. Whether the
        // producers make progress meanwhile is up to the client: librdkafka may keep asking the isolated broker
        // for metadata, whose answers wait behind its produce requests (a connection answers in order).
        let isolated_view =
            metadata(cluster.addr(leader)).expect("the isolated broker answers clients");
        assert_eq!(
            isolated_view.topic(TOPIC).partitions[&0].leader,
            leader,
            "the isolated broker still leads in its own view"
        );

        proxied.heal();
        wait_fully_replicated(cluster, &cluster.ids(), TOPIC);
        everywhere.wait_for_progress(300);
        to_leader.wait_for_progress(300);
        let truncated = truncations(cluster, leader) > truncations_before;
        rounds.push(format!(
            "round {round}: broker {leader} isolated (active controller {controller}), broker {new_leader} elected \
             after {} ms, healed after {} ms, the isolated leader truncated a tail it had taken: {truncated}",
            elected.as_millis(),
            cut.elapsed().as_millis()
        ));
    }
    let (sent_everywhere, acks_everywhere) = everywhere.finish();
    let (sent_to_leader, acks_to_leader) = to_leader.finish();
    for (side, sent, acks) in [
        ("bootstrapped everywhere", sent_everywhere, &acks_everywhere),
        (
            "bootstrapped to the leader",
            sent_to_leader,
            &acks_to_leader,
        ),
    ] {
        assert!(
            acks.failed.is_empty(),
            "producer {side}: {} of {sent} records failed, first: {:?}",
            acks.failed.len(),
            acks.failed.first()
        );
    }

    let sizes = wait_identical_replicas(cluster, TOPIC, 1);
    wait_acknowledged_visible(
        &bootstrap_all(cluster),
        TOPIC,
        &[&acks_everywhere, &acks_to_leader],
    );
    let read = read_all(&bootstrap_all(cluster), TOPIC, 1);
    let at: BTreeMap<i64, String> = read
        .iter()
        .map(|(_, offset, value)| (*offset, value.clone()))
        .collect();
    for (i, offset) in at.keys().enumerate() {
        assert_eq!(*offset, i as i64, "{TOPIC}-0: no gap in offsets");
    }
    let lost = |acks: &Acks| {
        acks.acked
            .iter()
            .filter(|(seq, (_, offset))| at.get(offset) != Some(&seq.to_string()))
            .count()
    };
    let (lost_everywhere, lost_to_leader) = (lost(&acks_everywhere), lost(&acks_to_leader));
    eprintln!(
        "{}; producers: {sent_everywhere} sent, {} acknowledged, {lost_everywhere} lost and {sent_to_leader} sent, \
         {} acknowledged, {lost_to_leader} lost; {} records read; replica logs identical ({sizes:?} bytes)",
        rounds.join("; "),
        acks_everywhere.acked.len(),
        acks_to_leader.acked.len(),
        read.len()
    );
    assert_eq!(
        lost_everywhere + lost_to_leader,
        0,
        "acknowledged records lost"
    );
    assert_eq!(
        read.len() as u64,
        sent_everywhere + sent_to_leader,
        "every record exactly once"
    );
}

/// How many times node `id` has truncated a divergent log tail.
fn truncations(cluster: &TestCluster, id: i32) -> usize {
    cluster
        .log(id)
        .iter()
        .filter(|l| l.contains("truncated divergent log tail"))
        .count()
}

/// Makes the broker `choose(leader, active controller)` picks the leader of `topic`-0 and its preferred replica, as
/// an operator would: `strom topic reassign` puts it first among the same replicas, `strom cluster elect-leaders`
/// moves the leadership there. Returns the leader.
fn lead_from(cluster: &TestCluster, topic: &str, choose: impl Fn(i32, i32) -> Option<i32>) -> i32 {
    let view = wait_fully_replicated(cluster, &cluster.ids(), topic);
    let p = view.topic(topic).partitions[&0].clone();
    let target = choose(p.leader, view.controller_id).expect("a broker to lead");
    // Leading is not enough: a leader that is not the preferred replica (the first) is moved away by the automatic
    // leader rebalance (`leader.imbalance.check.interval.seconds`), perhaps just as the test isolates it.
    if p.leader == target && p.replicas.first() == Some(&target) {
        return target;
    }
    let order: Vec<String> = std::iter::once(target)
        .chain(p.replicas.iter().copied().filter(|r| *r != target))
        .map(|r| r.to_string())
        .collect();
    let out = cluster.strom(
        target,
        &[
            "topic",
            "reassign",
            topic,
            "--replicas",
            &order.join(","),
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = cluster.strom(target, &["cluster", "elect-leaders", "--topic", topic]);
    assert!(out.status.success(), "{}", describe_output(&out));
    wait_partition(
        cluster,
        &cluster.ids(),
        topic,
        &format!("broker {target} to lead {topic}-0"),
        |p| p.leader == target,
    )
    .leader
}

/// Waits until partition 0 of `topic`, as the first answering node of `via` reports it, passes `ok`.
#[track_caller]
fn wait_partition(
    cluster: &TestCluster,
    via: &[i32],
    topic: &str,
    what: &str,
    ok: impl Fn(&PartitionView) -> bool,
) -> PartitionView {
    wait_until(what, PATIENCE, || {
        let p = metadata_from(cluster, via)?.topic(topic).partitions[&0].clone();
        if ok(&p) {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    })
}

/// Kafka 4's eligible leader replicas (KIP-966) with real brokers: a replica that leaves an ISR smaller than
/// min.insync.replicas may lead once the ISR is gone, because the high watermark stood still without it.
/// Broker B stops copying (its replication link to the leader is cut, it stays a voter), so the ISR is
/// {leader, A}; A shuts down cleanly, so the ISR is {leader} and A is eligible; the leader is killed. When A
/// returns, it leads while the old leader is still down, and every acknowledged record is there.
#[test]
fn a_clean_eligible_replica_leads_when_the_last_in_sync_replica_dies() {
    let _slot = one_cluster_at_a_time();
    const TOPIC: &str = "eligible";
    let settings: Vec<&str> = FAILOVER
        .iter()
        .copied()
        .chain(["replica.lag.time.max.ms=2000"])
        .collect();
    let mut proxied = ProxiedCluster::start(&settings);
    let (code, message, _) =
        create_topic(proxied.cluster.addr(1), TOPIC, 1, 3, 30_000).expect("CreateTopics");
    assert_eq!(code, 0, "create {TOPIC}: {message:?}");
    let view = wait_fully_replicated(&proxied.cluster, &proxied.cluster.ids(), TOPIC);
    let leader = view.topic(TOPIC).partitions[&0].leader;
    let followers: Vec<i32> = view.topic(TOPIC).partitions[&0]
        .replicas
        .iter()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let (a, b) = (followers[0], followers[1]);

    let producer = BackgroundProducer::start(
        bootstrap_all(&proxied.cluster),
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
        50,
    );
    producer.wait_for_progress(1_000);
    let (sent, acks) = producer.finish();
    assert!(acks.failed.is_empty(), "{:?}", acks.failed.first());

    // B stops copying: it leaves the ISR, which keeps two members.
    proxied.kafka[&leader].cut(&[b]);
    let isr_without = |cluster: &TestCluster, gone: i32| {
        let what = format!("broker {gone} out of the ISR of {TOPIC}-0");
        wait_partition(cluster, &[leader], TOPIC, &what, |p| !p.isr.contains(&gone))
    };
    isr_without(&proxied.cluster, b);
    // A shuts down cleanly: the ISR is the leader alone, below min.insync.replicas, and A is eligible.
    let (status, log) = proxied
        .cluster
        .sigterm(a)
        .wait_exit_within(Duration::from_secs(60));
    assert!(status.success(), "{}", log.join("\n"));
    isr_without(&proxied.cluster, a);
    // The leader dies. B alone is no quorum: the cluster waits for a voter.
    proxied.cluster.kill_9(leader);
    proxied.cluster.restart(a);
    let p = wait_partition(
        &proxied.cluster,
        &[a, b],
        TOPIC,
        &format!("broker {a} (eligible) to lead {TOPIC}-0 while broker {leader} is down"),
        |p| p.leader == a,
    );
    // B copies from A now (its link to A was never cut) and the ISR grows back.
    wait_partition(
        &proxied.cluster,
        &[a, b],
        TOPIC,
        &format!("broker {b} back in the ISR of {TOPIC}-0"),
        |p| p.isr.contains(&b),
    );
    let read = read_all(
        &format!(
            "{},{}",
            proxied.cluster.bootstrap(a),
            proxied.cluster.bootstrap(b)
        ),
        TOPIC,
        1,
    );
    let at: BTreeMap<i64, String> = read
        .iter()
        .map(|(_, offset, value)| (*offset, value.clone()))
        .collect();
    let lost = acks
        .acked
        .iter()
        .filter(|(seq, (_, offset))| at.get(offset) != Some(&seq.to_string()))
        .count();
    eprintln!(
        "broker {leader} led with ISR [{leader}] after {b} fell behind and {a} stopped cleanly; killed, and {a} \
         led while it was down (ISR then {:?}); {sent} sent, {} acknowledged, {} read, {lost} lost",
        p.isr,
        acks.acked.len(),
        read.len()
    );
    assert_eq!(lost, 0, "acknowledged records lost");
    proxied.heal();
}

/// Issue 14: replication throttles. A reassignment's new replica (out of the ISR until it has caught up) copies a
/// topic named by `leader.replication.throttled.replicas` no faster than the leader's
/// `leader.replication.throttled.rate`, and one named by `follower.replication.throttled.replicas` no faster than
/// the follower's `follower.replication.throttled.rate`; a topic named by neither is not held back.
///
/// The bound checked is a lower one (the copy cannot be faster than the rate allows), which a busy machine only
/// makes easier to meet. 600 KiB at 100 kB/s, with the first window's 100 kB free: at least 5 s; checked as 2.5 s.
#[test]
fn a_throttled_reassignment_copies_no_faster_than_the_throttled_rate() {
    let _slot = one_cluster_at_a_time();
    const RECORDS: usize = 600;
    const RATE: u64 = 100_000;
    let settings = [
        FAILOVER,
        &[
            "replication.quota.window.num=2",
            "replication.quota.window.size.seconds=1",
            // Follower fetches of at most 16 KiB per partition, so the rate is checked between small steps.
            "replica.fetch.max.bytes=16384",
        ],
    ]
    .concat();
    let cluster = TestCluster::start(3, &settings);
    let bootstrap = bootstrap_all(&cluster);
    // The rates are set on the running brokers, as `kafka-reassign-partitions.sh --throttle` does: a dynamic
    // config per broker, through any broker.
    let admin: AdminClient<DefaultClientContext> =
        client_config(&bootstrap).create().expect("admin client");
    let rate = RATE.to_string();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for id in cluster.ids() {
        // One broker resource per request: librdkafka sends each to its broker.
        let alter = AlterConfig::new(ResourceSpecifier::Broker(id))
            .set("leader.replication.throttled.rate", &rate)
            .set("follower.replication.throttled.rate", &rate);
        for r in futures::executor::block_on(admin.alter_configs([&alter], &options)).unwrap() {
            r.expect("throttle rates set");
        }
    }
    // Each broker applies them when its metadata image has them, which its DescribeConfigs shows.
    for id in cluster.ids() {
        wait_until(
            &format!("broker {id} to apply the throttle rates"),
            PATIENCE,
            || {
                let node = ResourceSpecifier::Broker(id);
                let results =
                    futures::executor::block_on(admin.describe_configs([&node], &options))
                        .map_err(|e| e.to_string())?;
                let resource = results
                    .into_iter()
                    .next()
                    .ok_or("no result")?
                    .map_err(|e| format!("{e:?}"))?;
                let applied = [
                    "leader.replication.throttled.rate",
                    "follower.replication.throttled.rate",
                ]
                .iter()
                .all(|key| {
                    resource.get(key).and_then(|e| e.value.as_deref()) == Some(rate.as_str())
                });
                applied.then_some(()).ok_or_else(|| "not yet".to_string())
            },
        );
    }
    let mut took = BTreeMap::new();
    for (topic, config) in [
        ("by-leader", Some("leader.replication.throttled.replicas=*")),
        (
            "by-follower",
            Some("follower.replication.throttled.replicas=*"),
        ),
        ("unthrottled", None),
    ] {
        let mut args = vec!["topic", "create", topic, "-p", "1", "-r", "1"];
        if let Some(config) = config {
            args.extend(["-c", config]);
        }
        let out = cluster.strom(1, &args);
        assert!(out.status.success(), "{}", describe_output(&out));
        let view = wait_fully_replicated(&cluster, &cluster.ids(), topic);
        let leader = view.topic(topic).partitions[&0].leader;
        let newcomer = *cluster.ids().iter().find(|id| **id != leader).unwrap();

        // 1 KiB records in batches of eight, so the follower's 16 KiB fetches take a few batches each.
        let producer: FutureProducer = client_config(&bootstrap)
            .set("acks", "1")
            .set("batch.num.messages", "8")
            .set("linger.ms", "1")
            .create()
            .expect("producer");
        let value = "v".repeat(1024);
        let futures: Vec<_> = (0..RECORDS)
            .map(|i| {
                enqueue(
                    &producer,
                    FutureRecord::to(topic).key(&i.to_string()).payload(&value),
                )
            })
            .collect();
        for f in futures {
            delivered(f).expect("acknowledged");
        }

        let started = Instant::now();
        let out = reassign_and_wait(&cluster, leader, topic, &[leader, newcomer]);
        assert!(out.status.success(), "{}", describe_output(&out));
        took.insert(topic, started.elapsed());
        let p = wait_fully_replicated(&cluster, &[leader], topic)
            .topic(topic)
            .partitions[&0]
            .clone();
        assert_eq!(p.isr.len(), 2, "{topic}: {p:?}");
    }
    eprintln!("{RECORDS} KiB copied to a new replica at {RATE} B/s throttles: {took:?}");
    for topic in ["by-leader", "by-follower"] {
        assert!(
            took[topic] >= Duration::from_millis(2_500),
            "{topic}: {RECORDS} KiB copied in {:?}, faster than {RATE} B/s allows",
            took[topic]
        );
    }
}

/// `strom topic reassign <topic> --replicas ... --wait` through node `via`.
fn reassign_and_wait(
    cluster: &TestCluster,
    via: i32,
    topic: &str,
    replicas: &[i32],
) -> std::process::Output {
    let replicas: Vec<String> = replicas.iter().map(i32::to_string).collect();
    let replicas = replicas.join(",");
    cluster.strom(
        via,
        &[
            "topic",
            "reassign",
            topic,
            "--replicas",
            &replicas,
            "--wait",
        ],
    )
}
