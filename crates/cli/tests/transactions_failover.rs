//! A leader killed (`kill -9`) in the middle of a transaction's commit, on a three-broker cluster (issue 12): after
//! recovery every transaction is either visible on every partition it wrote to, or on none of them.
//!
//! A librdkafka transactional producer commits transactions in a loop, each writing records tagged with the
//! transaction's number to every partition of a topic whose leaders are all three brokers (replication factor 3,
//! `min.insync.replicas` 2). Its outcome per transaction is recorded as the application sees it: committed
//! (`commit_transaction` returned Ok), aborted (`abort_transaction` returned Ok after an abortable error), or in
//! doubt (a fatal error, after which the producer is created again with the same `transactional.id`, as an
//! application would). Each round kills a broker at a moment chosen from a seeded RNG right after the producer
//! called `commit_transaction`, between EndTxn and the last marker:
//!
//! - the broker leading the id's `__transaction_state` partition (its transaction coordinator): another broker
//!   takes the partition over and must finish what the dead one prepared;
//! - the leader of one of the data partitions: the coordinator must write the marker to its new leader.
//!
//! The killed broker restarts on its data directory and the producer commits more transactions after each round.
//! Finally read_committed and read_uncommitted consumers read every partition to its end. Every wait is on an
//! event (Metadata, FindCoordinator, the producer's outcomes, the consumers' end of partition), never a fixed
//! sleep; `STROM_TEST_SEED=n` replays the same choices.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{metadata, request, strom, wait_until, MetadataView, TestCluster};
use common::{admin_options, block_on, client_config, client_log_config, ClientLog};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_protocol::kafka::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
use strom_protocol::kafka::protocol::StrBytes;

/// A killed broker is fenced after three seconds without heartbeats (a little more than the replication tests'
/// two, so that a busy machine running two of these clusters does not fence live brokers), and leadership goes
/// back to a restarted broker within a second of it rejoining the ISR.
const SETTINGS: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=3000",
    "min.insync.replicas=2",
    "leader.imbalance.check.interval.seconds=1",
    "transaction.state.log.num.partitions=5",
    "offsets.topic.num.partitions=3",
];
const TOPIC: &str = "txn-failover";
const TXN_STATE: &str = "__transaction_state";
const PARTITIONS: i32 = 6;
const RECORDS_PER_PARTITION: usize = 2;
const TRANSACTIONAL_ID: &str = "failover-app";
/// Generous bound for anything a loaded machine does slowly: an election, a restart, a catch-up, a commit.
const PATIENCE: Duration = Duration::from_secs(90);
/// One librdkafka transactional call; calls that fail retriably are repeated until [`PATIENCE`].
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Transactions committed before the first kill and after each restart.
const COMMITS_BETWEEN_KILLS: usize = 8;

/// splitmix64: the test's choices (when to kill, which data partition's leader) from one printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("STROM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        })
}

/// Kafka's placement of a transactional id: `Utils.abs(id.hashCode()) % partitions`, with Java's `String.hashCode`.
fn txn_state_partition(transactional_id: &str, partitions: i32) -> i32 {
    let h = transactional_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
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

/// Waits until every partition of `topics` has a leader and its three replicas in the ISR, as `via` report it.
#[track_caller]
fn wait_fully_replicated(cluster: &TestCluster, via: &[i32], topics: &[&str]) -> MetadataView {
    wait_until(
        &format!(
            "every partition of {topics:?} to have a leader and all three replicas in its ISR"
        ),
        PATIENCE,
        || {
            let view = metadata_from(cluster, via)?;
            for topic in topics {
                let t = view
                    .topics
                    .get(*topic)
                    .ok_or_else(|| format!("no topic {topic}"))?;
                if let Some((i, p)) = t
                    .partitions
                    .iter()
                    .find(|(_, p)| p.leader < 0 || p.replicas.len() != 3 || p.isr.len() != 3)
                {
                    return Err(format!("{topic}[{i}]: {p:?}"));
                }
            }
            Ok(view)
        },
    )
}

/// The broker FindCoordinator (v4, key type 1: a transactional id) names, asked of node `via`.
fn find_txn_coordinator(cluster: &TestCluster, via: i32) -> Result<i32, String> {
    let body = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![StrBytes::from_static_str(TRANSACTIONAL_ID)]);
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
    let c = response
        .coordinators
        .first()
        .ok_or("FindCoordinator answered no coordinator")?;
    match c.error_code {
        0 => Ok(c.node_id.0),
        code => Err(format!("node {via}: FindCoordinator error {code}")),
    }
}

/// The `__transaction_state` partition of the producer's id and the broker leading it (its coordinator), once
/// Metadata's leader of that partition and FindCoordinator's answer agree.
#[track_caller]
fn coordinator(cluster: &TestCluster, via: &[i32]) -> (i32, i32) {
    wait_until(
        &format!("Metadata and FindCoordinator to agree on the coordinator of {TRANSACTIONAL_ID}"),
        PATIENCE,
        || {
            let view = metadata_from(cluster, via)?;
            let t = view
                .topics
                .get(TXN_STATE)
                .ok_or_else(|| format!("no topic {TXN_STATE}"))?;
            let partition = txn_state_partition(TRANSACTIONAL_ID, t.partitions.len() as i32);
            let leader = t.partitions[&partition].leader;
            let found = find_txn_coordinator(cluster, via[0])?;
            if leader >= 0 && leader == found {
                Ok((partition, leader))
            } else {
                Err(format!(
                    "{TXN_STATE}[{partition}] led by {leader}, FindCoordinator names {found}"
                ))
            }
        },
    )
}

/// How the application saw a transaction end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `commit_transaction` returned Ok (possibly after retriable errors): it must be visible.
    Committed,
    /// A record or the commit failed with an abortable error and `abort_transaction` returned Ok: it must not be.
    Aborted,
    /// A fatal error before the outcome was known; the producer was created again. Either, but whole.
    InDoubt,
}

#[derive(Debug, Clone)]
struct Attempt {
    txn: u64,
    outcome: Outcome,
    /// When `commit_transaction` was first called (None if the transaction never got that far).
    commit_called: Option<Instant>,
    ended: Instant,
    errors: Vec<String>,
}

/// What the producer thread shares with the test.
#[derive(Default)]
struct Shared {
    attempts: Mutex<Vec<Attempt>>,
    stop: AtomicBool,
    /// Taken by the producer right before its next `commit_transaction`, to tell the test which transaction it
    /// is committing and when it called.
    armed: Mutex<Option<Sender<(u64, Instant)>>>,
    producers_created: AtomicUsize,
}

/// The application: a transactional producer in its own thread, one transaction after another until stopped.
struct TxnApp {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TxnApp {
    fn start(bootstrap: String) -> Self {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || run_transactions(&bootstrap, &shared))
        };
        Self {
            shared,
            thread: Some(thread),
        }
    }

    fn alive(&self) {
        assert!(
            !self.thread.as_ref().is_some_and(JoinHandle::is_finished),
            "the producer thread stopped (its panic is printed above)"
        );
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.shared.attempts.lock().unwrap().clone()
    }

    fn committed(&self) -> usize {
        self.shared
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.outcome == Outcome::Committed)
            .count()
    }

    #[track_caller]
    fn wait_committed(&self, target: usize) {
        wait_until(
            &format!("{target} transactions committed"),
            PATIENCE,
            || {
                self.alive();
                let attempts = self.attempts();
                let committed = attempts
                    .iter()
                    .filter(|a| a.outcome == Outcome::Committed)
                    .count();
                if committed >= target {
                    Ok(())
                } else {
                    Err(format!(
                        "{committed} committed of {} attempted; last: {:?}",
                        attempts.len(),
                        attempts.last()
                    ))
                }
            },
        );
    }

    /// The median time from `commit_transaction` to Ok, over the commits so far.
    fn median_commit(&self) -> Duration {
        let mut took: Vec<Duration> = self
            .attempts()
            .iter()
            .filter(|a| a.outcome == Outcome::Committed)
            .filter_map(|a| a.commit_called.map(|c| a.ended - c))
            .collect();
        took.sort();
        took.get(took.len() / 2).copied().unwrap_or_default()
    }

    /// The next transaction to call `commit_transaction` reports itself on the returned channel.
    fn arm(&self) -> Receiver<(u64, Instant)> {
        let (tx, rx) = channel();
        *self.shared.armed.lock().unwrap() = Some(tx);
        rx
    }

    /// How long after `since` the first transaction that called commit after it was committed.
    fn first_commit_after(&self, since: Instant) -> Result<Duration, String> {
        let attempts = self.attempts();
        attempts
            .iter()
            .find(|a| a.outcome == Outcome::Committed && a.commit_called.is_some_and(|c| c > since))
            .map(|a| a.ended - since)
            .ok_or_else(|| {
                format!(
                    "no commit since; last attempts: {:?}",
                    &attempts[attempts.len().saturating_sub(2)..]
                )
            })
    }

    fn outcome(&self, txn: u64) -> Option<Attempt> {
        self.attempts().into_iter().find(|a| a.txn == txn)
    }

    /// Stops after the transaction in progress and returns every attempt.
    fn finish(mut self) -> (Vec<Attempt>, usize) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Err(panic) = self.thread.take().unwrap().join() {
            std::panic::resume_unwind(panic);
        }
        (
            self.attempts(),
            self.shared.producers_created.load(Ordering::Relaxed),
        )
    }
}

impl Drop for TxnApp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// A transactional producer with the application's id, its transactions initialized (retried until they are:
/// the coordinator may be moving).
fn transactional_producer(bootstrap: &str, shared: &Shared) -> FutureProducer<ClientLog> {
    let deadline = Instant::now() + PATIENCE;
    let mut errors = Vec::new();
    loop {
        let producer: FutureProducer<ClientLog> = client_log_config(bootstrap)
            .set("transactional.id", TRANSACTIONAL_ID)
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "45000")
            .set("linger.ms", "2")
            .set("retry.backoff.ms", "50")
            .create_with_context(ClientLog)
            .expect("transactional producer");
        shared.producers_created.fetch_add(1, Ordering::Relaxed);
        match producer.init_transactions(CALL_TIMEOUT) {
            Ok(()) => return producer,
            Err(e) => {
                errors.push(e.to_string());
                assert!(
                    Instant::now() < deadline,
                    "init_transactions kept failing: {errors:?}"
                );
            }
        }
    }
}

/// (fatal, abortable, retriable) for an error of a transactional call.
fn classify(e: &KafkaError) -> (bool, bool, bool) {
    match e {
        KafkaError::Transaction(t) => (t.is_fatal(), t.txn_requires_abort(), t.is_retriable()),
        _ => (true, false, false),
    }
}

/// Aborts the current transaction, retrying retriable failures: Aborted, or InDoubt if it could not.
fn abort(producer: &FutureProducer<ClientLog>, errors: &mut Vec<String>) -> Outcome {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match producer.abort_transaction(CALL_TIMEOUT) {
            Ok(()) => return Outcome::Aborted,
            Err(e) => {
                errors.push(format!("abort: {e}"));
                let (fatal, _, retriable) = classify(&e);
                if fatal || !retriable || Instant::now() >= deadline {
                    return Outcome::InDoubt;
                }
            }
        }
    }
}

/// Commits the current transaction as an application does: retriable errors retry the commit, abortable ones
/// abort, anything else leaves it in doubt.
fn commit(producer: &FutureProducer<ClientLog>, errors: &mut Vec<String>) -> Outcome {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match producer.commit_transaction(CALL_TIMEOUT) {
            Ok(()) => return Outcome::Committed,
            Err(e) => {
                errors.push(format!("commit: {e}"));
                let (fatal, abortable, retriable) = classify(&e);
                if fatal {
                    return Outcome::InDoubt;
                } else if abortable {
                    return abort(producer, errors);
                } else if !retriable || Instant::now() >= deadline {
                    return Outcome::InDoubt;
                }
            }
        }
    }
}

/// The record value of transaction `txn` on `partition`, `i`-th of the partition.
fn value(txn: u64, partition: i32, i: usize) -> String {
    format!("t{txn}-p{partition}-r{i}")
}

/// (transaction, partition) of a record value.
fn parse(value: &str) -> (u64, i32) {
    let mut parts = value.split('-');
    let mut field = |prefix: char| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(prefix))
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("a record this test did not write: {value:?}"))
    };
    (field('t') as u64, field('p') as i32)
}

/// The producer thread: transaction `txn` writes [`RECORDS_PER_PARTITION`] records to each partition, waits for
/// their acknowledgements (so the commit that follows is EndTxn and the markers, which is what the kills hit),
/// then commits.
fn run_transactions(bootstrap: &str, shared: &Shared) {
    let mut producer = transactional_producer(bootstrap, shared);
    let mut txn = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut errors = Vec::new();
        if let Err(e) = producer.begin_transaction() {
            // Nothing was written under this number: it is used again by the next producer.
            eprintln!("begin_transaction failed ({e}); creating the producer again");
            drop(producer);
            producer = transactional_producer(bootstrap, shared);
            continue;
        }
        let mut deliveries = Vec::new();
        for p in 0..PARTITIONS {
            for i in 0..RECORDS_PER_PARTITION {
                let (key, value) = (format!("t{txn}"), value(txn, p, i));
                match producer.send_result(
                    FutureRecord::to(TOPIC)
                        .partition(p)
                        .key(&key)
                        .payload(&value),
                ) {
                    Ok(f) => deliveries.push(f),
                    Err((e, _)) => errors.push(format!("send {value}: {e}")),
                }
            }
        }
        for f in deliveries {
            match block_on(f) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => errors.push(format!("delivery: {e}")),
                Err(_) => errors.push("delivery report dropped".into()),
            }
        }
        let mut commit_called = None;
        let outcome = if errors.is_empty() {
            let called = Instant::now();
            commit_called = Some(called);
            if let Some(tx) = shared.armed.lock().unwrap().take() {
                let _ = tx.send((txn, called));
            }
            commit(&producer, &mut errors)
        } else {
            abort(&producer, &mut errors)
        };
        if !errors.is_empty() {
            eprintln!("transaction {txn}: {outcome:?} after {errors:?}");
        }
        shared.attempts.lock().unwrap().push(Attempt {
            txn,
            outcome,
            commit_called,
            ended: Instant::now(),
            errors,
        });
        txn += 1;
        if outcome == Outcome::InDoubt {
            // A new producer with the same id fences the old one and has the coordinator finish what it left.
            drop(producer);
            producer = transactional_producer(bootstrap, shared);
        }
    }
}

/// Which broker a round kills.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// The leader of the id's `__transaction_state` partition.
    Coordinator,
    /// The leader of a data partition that is not the coordinator.
    DataLeader,
}

/// What one round measured.
#[derive(Debug)]
struct Kill {
    victim: i32,
    role: String,
    txn: u64,
    after_commit_call: Duration,
    /// Whether `commit_transaction` had already returned when the broker died.
    commit_returned_before: bool,
    outcome: Outcome,
    /// Until a survivor led what the victim led (the coordinator's partition, or the data partition).
    moved: Duration,
    first_commit: Duration,
}

fn kill_mid_commit(cluster: &mut TestCluster, app: &TxnApp, rng: &mut Rng, victim: Victim) -> Kill {
    let ids = cluster.ids();
    let view = wait_fully_replicated(cluster, &ids, &[TOPIC, TXN_STATE]);
    let (txn_partition, coordinator_id) = coordinator(cluster, &ids);
    let (victim_id, role) = match victim {
        Victim::Coordinator => (
            coordinator_id,
            format!("coordinator ({TXN_STATE}[{txn_partition}])"),
        ),
        Victim::DataLeader => {
            let leaders = view.topic(TOPIC).leaders();
            let others: Vec<(i32, i32)> = leaders
                .into_iter()
                .filter(|(_, l)| *l != coordinator_id)
                .collect();
            assert!(
                !others.is_empty(),
                "a data partition led by a broker other than the coordinator {coordinator_id}"
            );
            let (p, leader) = others[rng.below(others.len() as u64) as usize];
            (
                leader,
                format!("leader of {TOPIC}[{p}] (coordinator {coordinator_id} stays)"),
            )
        }
    };
    let survivors: Vec<i32> = ids.iter().copied().filter(|id| *id != victim_id).collect();
    let led_before = view.led_by(victim_id);

    // A few more commits first, so the commit hit is not always the first after a restart, and a delay up to
    // the median commit time, so the kill lands anywhere from EndTxn to the last marker.
    app.wait_committed(app.committed() + 1 + rng.below(3) as usize);
    let median = app.median_commit();
    let delay = Duration::from_micros(rng.below(median.as_micros() as u64 + 1));
    let committing = app.arm();
    let deadline = Instant::now() + PATIENCE;
    let (txn, called) = loop {
        app.alive();
        match committing.recv_timeout(Duration::from_millis(500)) {
            Ok(report) => break report,
            Err(_) => assert!(
                Instant::now() < deadline,
                "the producer did not call commit_transaction again within {PATIENCE:?}; last attempts: {:?}",
                app.attempts().last()
            ),
        }
    };
    std::thread::sleep((called + delay).saturating_duration_since(Instant::now()));
    // The moment SIGKILL is sent (kill_9 then waits for the process to be gone).
    let killed = Instant::now();
    cluster.kill_9(victim_id);
    let commit_returned_before = app.outcome(txn).is_some_and(|a| a.ended <= killed);
    eprintln!(
        "killed broker {victim_id}, the {role}, {} µs after transaction {txn} called commit_transaction \
         (median commit {} µs); the call had {}returned",
        (killed - called).as_micros(),
        median.as_micros(),
        if commit_returned_before { "" } else { "not " }
    );

    let (moved, partitions) = wait_until(
        &format!("the survivors {survivors:?} to lead what broker {victim_id} led"),
        PATIENCE,
        || {
            let view = metadata_from(cluster, &survivors)?;
            let orphaned: Vec<_> = led_before
                .iter()
                .filter(|(t, p)| {
                    view.topics
                        .get(t)
                        .and_then(|v| v.partitions.get(p))
                        .is_none_or(|v| v.leader < 0 || v.leader == victim_id)
                })
                .collect();
            if !orphaned.is_empty() {
                return Err(format!("still without a live leader: {orphaned:?}"));
            }
            match find_txn_coordinator(cluster, survivors[0])? {
                c if c == victim_id => Err(format!("FindCoordinator still names {c}")),
                _ => Ok((killed.elapsed(), view.topic(TOPIC).partitions.clone())),
            }
        },
    );
    let mut diagnosed = Instant::now();
    let mut diagnosis = String::new();
    let first_commit = wait_until(
        &format!("a transaction committed after broker {victim_id} was killed"),
        PATIENCE,
        || {
            app.alive();
            app.first_commit_after(killed).map_err(|e| {
                // What the cluster says about the transaction, refreshed every few seconds for the timeout's
                // message.
                if diagnosed.elapsed() > Duration::from_secs(5) {
                    diagnosed = Instant::now();
                    diagnosis = diagnose(cluster, &survivors);
                }
                format!("{e}\n{diagnosis}")
            })
        },
    );
    let outcome = wait_until(
        &format!("the outcome of transaction {txn}"),
        PATIENCE,
        || {
            app.outcome(txn)
                .ok_or_else(|| "still committing".to_string())
        },
    );
    eprintln!(
        "transaction {txn}: {:?} ({:?}); survivors led everything after {} ms, first commit after the kill \
         returned after {} ms",
        outcome.outcome,
        outcome.errors,
        moved.as_millis(),
        first_commit.as_millis()
    );

    eprintln!("after the kill: {partitions:?}");
    let restart = Instant::now();
    cluster.restart(victim_id);
    wait_fully_replicated(cluster, &ids, &[TOPIC, TXN_STATE]);
    eprintln!(
        "broker {victim_id} restarted and back in every ISR after {} ms",
        restart.elapsed().as_millis()
    );
    app.wait_committed(app.committed() + COMMITS_BETWEEN_KILLS);
    Kill {
        victim: victim_id,
        role,
        txn,
        after_commit_call: killed - called,
        commit_returned_before,
        outcome: outcome.outcome,
        moved,
        first_commit,
    }
}

/// The transaction's state at its coordinator and each partition's last stable offset, as `strom` shows them.
fn diagnose(cluster: &TestCluster, via: &[i32]) -> String {
    let brokers: Vec<String> = via.iter().map(|id| cluster.bootstrap(*id)).collect();
    let brokers = brokers.join(",");
    [
        vec!["transactions", "describe", TRANSACTIONAL_ID],
        vec!["topic", "describe", TOPIC],
    ]
    .iter()
    .map(|args| {
        let out = strom(&brokers, args);
        format!(
            "$ strom {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .collect()
}

/// One record read back.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    txn: u64,
    value: String,
}

/// Each partition's end as a consumer at `isolation` sees it (for read_committed, the last stable offset:
/// librdkafka asks ListOffsets at the consumer's isolation level).
fn ends(consumer: &BaseConsumer) -> Result<BTreeMap<i32, i64>, String> {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .map(|(_, high)| (p, high))
                .map_err(|e| format!("{TOPIC}[{p}]: {e}"))
        })
        .collect()
}

fn consumer(bootstrap: &str, isolation: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", "strom-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Reads every partition from the beginning until the consumer reports the end of each.
fn read_all(consumer: &BaseConsumer, isolation: &str) -> Vec<Read> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = BTreeSet::new();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while at_end.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "{isolation}: {} records read, at the end of {at_end:?} only; errors: {errors:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8(m.payload().expect("a value").to_vec()).unwrap();
                let (txn, partition) = parse(&value);
                assert_eq!(
                    partition,
                    m.partition(),
                    "{value} read from {TOPIC}[{}]",
                    m.partition()
                );
                out.push(Read {
                    partition,
                    offset: m.offset(),
                    txn,
                    value,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    out
}

#[test]
fn a_data_partition_leader_killed_mid_commit_leaves_every_transaction_whole_or_absent() {
    transactions_through_kills(&[Victim::DataLeader, Victim::DataLeader]);
}

#[test]
fn a_coordinator_killed_mid_commit_leaves_every_transaction_whole_or_absent() {
    transactions_through_kills(&[
        Victim::Coordinator,
        Victim::DataLeader,
        Victim::Coordinator,
        Victim::DataLeader,
    ]);
}

/// The scenario of this file: transactions in a loop through one kill per round, then every partition read back.
fn transactions_through_kills(rounds: &[Victim]) {
    let started = Instant::now();
    let seed = seed();
    eprintln!("seed {seed} (STROM_TEST_SEED={seed} makes the same choices)");
    let mut rng = Rng(seed);
    let mut cluster = TestCluster::start(3, SETTINGS);
    let bootstrap = bootstrap_all(&cluster);
    let admin: AdminClient<DefaultClientContext> =
        client_config(&bootstrap).create().expect("admin client");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    for r in block_on(admin.create_topics([&topic], &admin_options())).expect("CreateTopics") {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
    drop(admin);
    let view = wait_fully_replicated(&cluster, &cluster.ids(), &[TOPIC]);
    let leaders = view.topic(TOPIC).leaders();
    let distinct: BTreeSet<i32> = leaders.values().copied().collect();
    assert!(
        distinct.len() >= 2,
        "the partitions are led by several brokers: {leaders:?}"
    );
    eprintln!(
        "cluster up after {} ms; {TOPIC} leaders {leaders:?}",
        started.elapsed().as_millis()
    );

    let app = TxnApp::start(bootstrap.clone());
    app.wait_committed(COMMITS_BETWEEN_KILLS);
    let kills: Vec<Kill> = rounds
        .iter()
        .map(|victim| kill_mid_commit(&mut cluster, &app, &mut rng, *victim))
        .collect();
    let (attempts, producers) = app.finish();

    // No transaction may stay open: the last stable offset reaches the high watermark on every partition.
    let committed_reader = consumer(&bootstrap, "read_committed");
    let uncommitted_reader = consumer(&bootstrap, "read_uncommitted");
    let (_, hw) = wait_until(
        "every partition's last stable offset to reach its high watermark (no transaction left open)",
        PATIENCE,
        || {
            let (lso, hw) = (ends(&committed_reader)?, ends(&uncommitted_reader)?);
            if lso == hw {
                Ok((lso, hw))
            } else {
                Err(format!("last stable offsets {lso:?}, high watermarks {hw:?}"))
            }
        },
    );
    let committed_read = read_all(&committed_reader, "read_committed");
    let uncommitted_read = read_all(&uncommitted_reader, "read_uncommitted");

    // Per transaction and partition, the records read at read_committed.
    let mut copies: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    let mut per_txn: BTreeMap<u64, BTreeMap<i32, usize>> = BTreeMap::new();
    for r in &committed_read {
        copies
            .entry(&r.value)
            .or_default()
            .push((r.partition, r.offset));
        *per_txn
            .entry(r.txn)
            .or_default()
            .entry(r.partition)
            .or_default() += 1;
    }
    let duplicated: Vec<_> = copies.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        duplicated.is_empty(),
        "records read more than once at read_committed (value, [(partition, offset)]): {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    let attempted: BTreeMap<u64, &Attempt> = attempts.iter().map(|a| (a.txn, a)).collect();
    let strangers: Vec<_> = per_txn
        .keys()
        .filter(|t| !attempted.contains_key(t))
        .collect();
    assert!(
        strangers.is_empty(),
        "records of transactions never attempted: {strangers:?}"
    );
    let whole: BTreeMap<i32, usize> = (0..PARTITIONS)
        .map(|p| (p, RECORDS_PER_PARTITION))
        .collect();
    let mixed: Vec<_> = per_txn
        .iter()
        .filter(|(_, partitions)| **partitions != whole)
        .map(|(t, partitions)| (t, partitions, attempted[t].outcome, &attempted[t].errors))
        .collect();
    let lost: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Committed && !per_txn.contains_key(&a.txn))
        .collect();
    let resurrected: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Aborted && per_txn.contains_key(&a.txn))
        .collect();
    let count = |o: Outcome| attempts.iter().filter(|a| a.outcome == o).count();
    let in_doubt_present = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::InDoubt && per_txn.contains_key(&a.txn))
        .count();
    eprintln!(
        "{} transactions attempted by {producers} producer(s): {} committed Ok, {} aborted, {} in doubt \
         ({in_doubt_present} of them present); read_committed: {} present, {} absent, {} mixed, {} committed \
         lost, {} aborted but present; {} records read committed, {} uncommitted; high watermarks {hw:?}",
        attempts.len(),
        count(Outcome::Committed),
        count(Outcome::Aborted),
        count(Outcome::InDoubt),
        per_txn.len(),
        attempts.len() - per_txn.len(),
        mixed.len(),
        lost.len(),
        resurrected.len(),
        committed_read.len(),
        uncommitted_read.len(),
    );
    for k in &kills {
        eprintln!(
            "kill of broker {} ({}): transaction {} killed {} µs after commit_transaction was called (the call \
             had {}returned) ended {:?}; survivors led its partitions after {} ms; first commit Ok {} ms after \
             the kill",
            k.victim,
            k.role,
            k.txn,
            k.after_commit_call.as_micros(),
            if k.commit_returned_before { "" } else { "not " },
            k.outcome,
            k.moved.as_millis(),
            k.first_commit.as_millis()
        );
    }
    eprintln!(
        "{} kills, test took {} ms",
        kills.len(),
        started.elapsed().as_millis()
    );
    assert!(
        mixed.is_empty(),
        "transactions visible on some partitions only (txn, partition -> records, outcome, errors): {mixed:?}"
    );
    assert!(
        lost.is_empty(),
        "transactions committed Ok but not visible: {lost:?}"
    );
    assert!(
        resurrected.is_empty(),
        "transactions aborted Ok but visible: {resurrected:?}"
    );

    // Within a partition committed transactions appear in the order they were committed.
    for p in 0..PARTITIONS {
        let txns: Vec<u64> = committed_read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.txn)
            .collect();
        assert!(
            txns.windows(2).all(|w| w[0] <= w[1]),
            "{TOPIC}[{p}]: transactions out of order: {txns:?}"
        );
    }
    // read_uncommitted returns everything written, so every committed record too.
    let uncommitted: BTreeSet<&str> = uncommitted_read.iter().map(|r| r.value.as_str()).collect();
    let missing: Vec<&str> = copies
        .keys()
        .copied()
        .filter(|v| !uncommitted.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "committed records read_uncommitted does not return: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(
        count(Outcome::Committed) >= (rounds.len() + 1) * COMMITS_BETWEEN_KILLS,
        "the producer committed before, between and after the kills"
    );
}
