//! Exactly-once under `kill -9` (issue 12), with real clients against a real broker process.
//!
//! - The processing app killed: `clients/confluent_kafka_eos_app.py` (confluent-kafka 2.16.1) reads an input topic
//!   at read_committed and writes each record, transformed, to an output topic in transactions that carry its
//!   consumer offsets. It is killed with SIGKILL at ten random points and restarted each time with the same
//!   transactional.id, then run to the end of the input. Read at read_committed, the output holds every input
//!   record exactly once.
//! - The broker killed: librdkafka's transactional producer (the rdkafka crate) writes transactions over three
//!   partitions of each of two topics, plus a group's offset, and the broker process is killed with SIGKILL at a
//!   random moment during a commit, then restarted on its data directory. Every transaction is then either on all
//!   six partitions (with the group's offset) or on none, and every transaction whose commit returned Ok is there.
//!
//! Kill points come from a seeded generator; the seed is printed and `STROM_TEST_SEED=<n>` replays it.
//! Needs `python3` with `pip install confluent-kafka==2.16.1` (`scripts/test-deps` installs it).

mod common;
#[path = "clients/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::BrokerProcess;
use common::{admin_options, block_on, client_config, delivered, enqueue};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use wait_timeout::ChildExt;

const INSTALL: &str =
    "install confluent-kafka with `python3 -m pip install confluent-kafka==2.16.1` (or run scripts/test-deps)";
const TIMEOUT: Duration = Duration::from_secs(60);

/// SplitMix64: a few lines, and the same kill points for the same seed on every machine.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Self {
        let seed = std::env::var("STROM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: seed {seed} (STROM_TEST_SEED={seed} replays these kill points)");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A broker process on `dir`, port 0. The transaction and offsets topics get 3 partitions (not Kafka's 50) so
/// the first transactional producer and group do not wait for 50 partitions each; a new group rebalances at once.
fn spawn_broker(dir: &Path) -> BrokerProcess {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    for setting in [
        "transaction.state.log.num.partitions=3",
        "offsets.topic.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
    ] {
        args.push("--set".as_ref());
        args.push(setting.as_ref());
    }
    BrokerProcess::spawn(&args)
}

fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in block_on(admin.create_topics(&new, &admin_options())).expect("create_topics") {
        result.expect("topic created");
    }
}

/// A consumer with no group activity of its own, at `isolation` ("read_committed" or "read_uncommitted").
fn consumer(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .unwrap()
}

/// The end offset of each of `partitions` of `topic` that `consumer`'s isolation level sees: the high watermark
/// at read_uncommitted, the last stable offset at read_committed (librdkafka's ListOffsets carries the level).
fn end_offsets(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}[{p}]: {e}"))
                .1
        })
        .collect()
}

/// Waits until no transaction is open on `topics`: each partition's last stable offset is its high watermark.
fn wait_stable(bootstrap: &str, topics: &[(&str, i32)]) {
    let committed = consumer(bootstrap, "eos-watch", "read_committed");
    let uncommitted = consumer(bootstrap, "eos-watch", "read_uncommitted");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut open = Vec::new();
        for (topic, partitions) in topics {
            let lso = end_offsets(&committed, topic, *partitions);
            let hw = end_offsets(&uncommitted, topic, *partitions);
            for p in 0..*partitions as usize {
                if lso[p] != hw[p] {
                    open.push(format!("{topic}[{p}] LSO {} < HW {}", lso[p], hw[p]));
                }
            }
        }
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "transactions still open after {TIMEOUT:?}: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A record read back: where it is and its key and value as text.
struct Read {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    value: String,
}

/// Every record of `topics` from the beginning to the end `isolation` lets it see. One consumer per topic: its
/// partition-EOF events name a partition but not a topic.
fn read_all(bootstrap: &str, topics: &[(&str, i32)], isolation: &str) -> Vec<Read> {
    let mut out = Vec::new();
    for (topic, partitions) in topics {
        let consumer = consumer(bootstrap, "eos-check", isolation);
        let mut tpl = TopicPartitionList::new();
        for p in 0..*partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut open: BTreeSet<i32> = (0..*partitions).collect();
        let deadline = Instant::now() + TIMEOUT;
        while !open.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{isolation}: {topic} partitions {open:?} not read to their end in {TIMEOUT:?}"
            );
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => panic!("{isolation} consume error: {e}"),
                Some(Ok(m)) => {
                    let text = |b: Option<&[u8]>| {
                        String::from_utf8(b.unwrap_or_default().to_vec()).unwrap()
                    };
                    out.push(Read {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: text(m.key()),
                        value: text(m.payload()),
                    });
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// The processing app killed.

const INPUT: &str = "eos-input";
const INPUT_PARTITIONS: i32 = 4;
const OUTPUT: &str = "eos-output";
const OUTPUT_PARTITIONS: i32 = 3;
const APP_GROUP: &str = "eos-app";
const APP_TRANSACTIONAL_ID: &str = "eos-app-1";
const APP_KILLS: usize = 10;
const COMMIT_EVERY: usize = 50;
/// Input records produced up front; more are added before a run if less than `BACKLOG` may be left.
const RECORDS: usize = 4000;
const BACKLOG: usize = 800;

/// One run of the Python app, its output collected as it prints.
struct App {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl App {
    fn start(bootstrap: &str) -> Self {
        let script = support::clients_dir().join("confluent_kafka_eos_app.py");
        let mut child = match Command::new("python3")
            .arg(&script)
            .args([bootstrap, INPUT, OUTPUT, APP_GROUP, APP_TRANSACTIONAL_ID])
            .arg(COMMIT_EVERY.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot start python3 ({e}): {INSTALL}"),
        };
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let readers = vec![
            {
                let lines = stdout.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        lines.lock().unwrap().push(line);
                    }
                })
            },
            {
                let text = stderr.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        let mut text = text.lock().unwrap();
                        text.push_str(&line);
                        text.push('\n');
                    }
                })
            },
        ];
        Self {
            child,
            stdout,
            readers,
            stderr,
        }
    }

    /// The app's exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the app")
    }

    /// Waits for the pipes to close and returns everything the app printed.
    fn report(self) -> String {
        for reader in self.readers {
            reader.join().unwrap();
        }
        format!(
            "--- app stdout ---\n{}\n--- app stderr ---\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// How many transactions this run has committed, by its own account.
    fn commits(&self) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("committed "))
            .count()
    }

    /// SIGKILL: no chance to commit, abort or leave the group.
    fn kill_9(mut self) -> String {
        self.child.kill().expect("SIGKILL the app");
        self.child.wait().expect("reap the app");
        self.report()
    }

    /// Waits for the app to finish on its own and fails the test unless it exits 0.
    fn finish(mut self, timeout: Duration) -> String {
        let status = self.child.wait_timeout(timeout).expect("wait for the app");
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "the app did not finish within {timeout:?}; killed it\n{}",
                self.report()
            );
        };
        let report = self.report();
        if status.code() == Some(2) {
            panic!("the app cannot run: {INSTALL}\n{report}");
        }
        assert!(status.success(), "the app failed: {status}\n{report}");
        report
    }
}

/// Produces input records `from..to`: key `k<i>`, value `v<i>`, idempotent and acknowledged by the broker.
fn produce_input(bootstrap: &str, from: usize, to: usize) {
    let producer: FutureProducer = client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let pending: Vec<_> = (from..to)
        .map(|i| {
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            enqueue(&producer, FutureRecord::to(INPUT).key(&key).payload(&value))
        })
        .collect();
    for f in pending {
        delivered(f).expect("input record delivered");
    }
}

#[test]
fn consume_transform_produce_app_killed_ten_times_outputs_every_input_exactly_once() {
    let mut rng = Rng::seeded("app kills");
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn_broker(dir.path());
    let bootstrap = broker.addr.to_string();
    create_topics(
        &bootstrap,
        &[(INPUT, INPUT_PARTITIONS), (OUTPUT, OUTPUT_PARTITIONS)],
    );
    let mut inputs = RECORDS;
    produce_input(&bootstrap, 0, inputs);

    // Progress is watched on the broker: the output's last stable offsets move when a transaction commits (or
    // aborts); the high watermarks bound how much input has been taken so far.
    let lso_watch = consumer(&bootstrap, "eos-watch", "read_committed");
    let hw_watch = consumer(&bootstrap, "eos-watch", "read_uncommitted");
    let stable_end = || -> i64 {
        end_offsets(&lso_watch, OUTPUT, OUTPUT_PARTITIONS)
            .iter()
            .sum()
    };

    for kill in 1..=APP_KILLS {
        let written: i64 = end_offsets(&hw_watch, OUTPUT, OUTPUT_PARTITIONS)
            .iter()
            .sum();
        if inputs as i64 - written < BACKLOG as i64 {
            produce_input(&bootstrap, inputs, inputs + 2 * BACKLOG);
            inputs += 2 * BACKLOG;
        }
        // Kill once the output has moved on by a random amount (0 included: before or during the app's start),
        // then after a random short delay, so the kill lands anywhere in a transaction or its commit.
        let progress = rng.range(0, 200) as i64;
        let delay = Duration::from_millis(rng.range(0, 40));
        let start = stable_end();
        let mut app = App::start(&bootstrap);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = stable_end();
            if now >= start + progress {
                break;
            }
            if let Some(status) = app.exited() {
                panic!(
                    "run {kill}: the app exited ({status}) before the output moved on by {progress} \
                     (from {start}, at {now})\n{}",
                    app.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "run {kill}: the output did not move on by {progress} in {TIMEOUT:?} (from {start}, at {now})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(delay);
        let commits = app.commits();
        if let Some(status) = app.exited() {
            panic!(
                "run {kill}: the app exited ({status}) before it was killed: more input is needed\n{}",
                app.report()
            );
        }
        app.kill_9();
        println!(
            "run {kill}: killed after the output moved on by >= {progress} and {delay:?} more; the run had \
             committed {commits} transactions"
        );
    }

    let last = App::start(&bootstrap).finish(Duration::from_secs(120));
    let last_commits = last.lines().filter(|l| l.starts_with("committed ")).count();
    println!("last run: {last_commits} transactions to the end of the input");

    wait_stable(&bootstrap, &[(OUTPUT, OUTPUT_PARTITIONS)]);
    let committed = read_all(&bootstrap, &[(OUTPUT, OUTPUT_PARTITIONS)], "read_committed");
    let uncommitted = read_all(
        &bootstrap,
        &[(OUTPUT, OUTPUT_PARTITIONS)],
        "read_uncommitted",
    );

    let mut seen = vec![0usize; inputs];
    let mut foreign = Vec::new();
    for r in &committed {
        let i = r
            .value
            .strip_prefix('v')
            .and_then(|v| v.strip_suffix("|eos"))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < inputs && r.key == format!("k{i}"));
        match i {
            Some(i) => seen[i] += 1,
            None => foreign.push(format!(
                "{}[{}]@{} {}={}",
                r.topic, r.partition, r.offset, r.key, r.value
            )),
        }
    }
    let duplicates: usize = seen.iter().map(|n| n.saturating_sub(1)).sum();
    let lost: Vec<usize> = (0..inputs).filter(|i| seen[*i] == 0).collect();
    println!(
        "inputs {inputs}, outputs read (read_committed) {}, duplicates {duplicates}, losses {}, kills \
         {APP_KILLS}; read_uncommitted reads {} (aborted included)",
        committed.len(),
        lost.len(),
        uncommitted.len()
    );
    assert!(
        foreign.is_empty(),
        "outputs that are no input's: {foreign:?}"
    );
    let duplicated: Vec<String> = committed
        .iter()
        .filter(|r| {
            let i: usize = r.key[1..].parse().unwrap();
            seen[i] > 1
        })
        .take(20)
        .map(|r| format!("{}[{}]@{} {}", r.topic, r.partition, r.offset, r.value))
        .collect();
    assert_eq!(
        duplicates, 0,
        "duplicated outputs (first 20): {duplicated:?}"
    );
    assert!(
        lost.is_empty(),
        "inputs with no output: {} of them, first {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    // read_uncommitted also returns the killed runs' aborted outputs: it reads every committed record, at the
    // same place.
    let everything: HashSet<(i32, i64, &str)> = uncommitted
        .iter()
        .map(|r| (r.partition, r.offset, r.value.as_str()))
        .collect();
    assert!(uncommitted.len() >= committed.len());
    for r in &committed {
        assert!(
            everything.contains(&(r.partition, r.offset, r.value.as_str())),
            "{}[{}]@{} {} read at read_committed but not at read_uncommitted",
            r.topic,
            r.partition,
            r.offset,
            r.value
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The broker killed during a commit.

const TOPICS: [&str; 2] = ["eos-a", "eos-b"];
const TX_PARTITIONS: i32 = 3;
const PER_PARTITION: usize = 3;
const SOURCE: &str = "eos-source";
const TX_GROUP: &str = "eos-tx-group";
const TX_ID: &str = "eos-broker-kill";
const BROKER_KILLS: usize = 5;

/// What the producer knows of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// commit_transaction returned Ok: the transaction must be there.
    Committed,
    /// commit_transaction was called and failed (the broker died under it): either way is right.
    Unknown,
    /// It failed before commit_transaction was called: no commit was asked for, it must not be there.
    NeverCommitted,
}

/// Messages from the producer thread.
enum Step {
    /// commit_transaction of transaction `n` is about to be called.
    Committing(u64),
    /// Transaction `n` ended so; its commit_transaction call took this long.
    Finished(u64, Outcome, Duration),
}

fn tx_topics() -> Vec<(&'static str, i32)> {
    TOPICS.iter().map(|t| (*t, TX_PARTITIONS)).collect()
}

/// Runs transactions `first..` until one fails or `stop` is set: each writes `PER_PARTITION` records `t<n>:<i>` to
/// every partition of both topics and commits the group's offset `n + 1` on the source topic.
fn transactions(bootstrap: String, first: u64, stop: Arc<AtomicBool>, steps: mpsc::Sender<Step>) {
    let producer: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", TX_ID)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "3000")
        .set("linger.ms", "1")
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .unwrap();
    // After a restart this completes what the killed broker's coordinator had left in PrepareCommit, or aborts
    // what was still open.
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions after the broker (re)started");
    let group: BaseConsumer = client_config(&bootstrap)
        .set("group.id", TX_GROUP)
        .create()
        .unwrap();
    let metadata = group.group_metadata().expect("group metadata");
    let step = Duration::from_secs(3);
    for n in first.. {
        let written = (|| -> Result<(), String> {
            producer.begin_transaction().map_err(|e| e.to_string())?;
            for topic in TOPICS {
                for p in 0..TX_PARTITIONS {
                    for i in 0..PER_PARTITION {
                        let value = format!("t{n}:{i}");
                        producer
                            .send(
                                BaseRecord::<str, str>::to(topic)
                                    .partition(p)
                                    .payload(&value),
                            )
                            .map_err(|(e, _)| e.to_string())?;
                    }
                }
            }
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(SOURCE, 0, Offset::Offset(n as i64 + 1))
                .unwrap();
            producer
                .send_offsets_to_transaction(&offsets, &metadata, step)
                .map_err(|e| e.to_string())?;
            // Deliveries first (BaseProducer::flush would poll in 100 ms steps), so the commit is only EndTxn.
            let deadline = Instant::now() + step;
            while producer.in_flight_count() > 0 {
                if Instant::now() > deadline {
                    return Err("records not delivered".into());
                }
                producer.poll(Duration::from_millis(1));
            }
            Ok(())
        })();
        let started = Instant::now();
        let outcome = match written {
            Err(_) => Outcome::NeverCommitted,
            Ok(()) => {
                let _ = steps.send(Step::Committing(n));
                match producer.commit_transaction(step) {
                    Ok(()) => Outcome::Committed,
                    Err(_) => Outcome::Unknown,
                }
            }
        };
        let took = started.elapsed();
        // No new transaction once the broker is about to be killed: the kill is meant for this commit, and
        // librdkafka's send_offsets_to_transaction does not always return within its timeout once the broker is
        // gone (seen blocked for minutes).
        let failed = outcome != Outcome::Committed;
        if steps.send(Step::Finished(n, outcome, took)).is_err()
            || failed
            || stop.load(Ordering::SeqCst)
        {
            return;
        }
    }
}

/// Reads both topics and the group's offset after a restart and checks every transaction so far.
fn check_transactions(bootstrap: &str, outcomes: &BTreeMap<u64, Outcome>) -> (usize, usize) {
    wait_stable(bootstrap, &tx_topics());
    let records = read_all(bootstrap, &tx_topics(), "read_committed");
    // transaction -> (topic, partition) -> offsets
    let mut found: BTreeMap<u64, BTreeMap<(String, i32), Vec<i64>>> = BTreeMap::new();
    for r in &records {
        let n: u64 = r
            .value
            .strip_prefix('t')
            .and_then(|v| v.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected record {}", r.value));
        found
            .entry(n)
            .or_default()
            .entry((r.topic.clone(), r.partition))
            .or_default()
            .push(r.offset);
    }
    let partitions = TOPICS.len() * TX_PARTITIONS as usize;
    for (n, places) in &found {
        let whole = places.len() == partitions && places.values().all(|o| o.len() == PER_PARTITION);
        assert!(
            whole,
            "transaction {n} ({:?}) is partly visible at read_committed: {PER_PARTITION} records expected on \
             each of {partitions} partitions, found (partition -> offsets) {places:?}",
            outcomes.get(n)
        );
        assert!(
            outcomes.contains_key(n),
            "transaction {n} read but never written"
        );
    }
    for (n, outcome) in outcomes {
        match outcome {
            Outcome::Committed => assert!(
                found.contains_key(n),
                "transaction {n}: commit_transaction returned Ok but none of its records is read"
            ),
            Outcome::NeverCommitted => assert!(
                !found.contains_key(n),
                "transaction {n} is read though its commit was never asked for: {:?}",
                found[n]
            ),
            Outcome::Unknown => {}
        }
    }
    // Each transaction commits the group's offset n + 1 and they run one after another: the group's offset is
    // that of the last transaction read.
    let group = consumer(bootstrap, TX_GROUP, "read_committed");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(SOURCE, 0);
    let offset = group
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("the group's committed offset")
        .find_partition(SOURCE, 0)
        .unwrap()
        .offset();
    let expected = match found.keys().next_back() {
        Some(last) => Offset::Offset(*last as i64 + 1),
        None => Offset::Invalid,
    };
    assert_eq!(
        offset, expected,
        "the group's offset is not the one of the last transaction read"
    );
    let absent = outcomes.keys().filter(|n| !found.contains_key(n)).count();
    (found.len(), absent)
}

#[test]
fn broker_killed_during_commits_leaves_each_transaction_whole_or_absent() {
    let mut rng = Rng::seeded("broker kills");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = spawn_broker(dir.path());
    create_topics(
        &broker.addr.to_string(),
        &[
            (TOPICS[0], TX_PARTITIONS),
            (TOPICS[1], TX_PARTITIONS),
            (SOURCE, 1),
        ],
    );
    let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut next = 0u64;
    for kill in 1..=BROKER_KILLS {
        let bootstrap = broker.addr.to_string();
        // Kill during the commit of the k-th transaction of this round, at a random point of it: a random fraction
        // (up to 1.25, so now and then just after it) of the time the previous commit took. EndTxn takes some
        // milliseconds: the Prepare state's fsync, then the six markers' and the offset's, then Complete.
        let target = rng.range(2, 15);
        let fraction = rng.range(0, 1250) as f64 / 1000.0;
        let mut last_commit = Duration::from_millis(5);
        let mut delay = Duration::ZERO;
        let (tx, steps) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
            std::thread::spawn(move || transactions(bootstrap, next, stop, tx))
        };
        let deadline = Instant::now() + TIMEOUT;
        let mut committing = 0;
        let killed_in = loop {
            match steps.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Step::Committing(n)) => {
                    committing += 1;
                    if committing == target {
                        stop.store(true, Ordering::SeqCst);
                        delay = last_commit.mul_f64(fraction);
                        std::thread::sleep(delay);
                        break Some(n);
                    }
                }
                Ok(Step::Finished(n, outcome, took)) => {
                    outcomes.insert(n, outcome);
                    next = n + 1;
                    last_commit = took;
                    assert_eq!(
                        outcome,
                        Outcome::Committed,
                        "round {kill}: transaction {n} failed with the broker up"
                    );
                }
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("round {kill}: {committing} commits in {TIMEOUT:?}")
                }
            }
        };
        broker.kill_9();
        // The producer finds the broker gone: its commit ends with an error, or had just succeeded.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match steps.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Step::Finished(n, outcome, _)) => {
                    outcomes.insert(n, outcome);
                    next = n + 1;
                }
                Ok(Step::Committing(_)) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "round {kill}: the producer still runs {TIMEOUT:?} after the broker was killed"
                ),
            }
        }
        producer.join().unwrap();
        let last = outcomes.iter().next_back().map(|(n, o)| (*n, *o));
        println!(
            "round {kill}: killed {delay:?} into the commit of transaction {killed_in:?} (the previous commit \
             took {last_commit:?}); last outcome {last:?}"
        );

        broker = spawn_broker(dir.path());
        // A new producer with the same transactional.id settles the last transaction before it is checked.
        let bootstrap = broker.addr.to_string();
        let settle = {
            let producer: BaseProducer = client_config(&bootstrap)
                .set("transactional.id", TX_ID)
                .set("transaction.timeout.ms", "10000")
                .create()
                .unwrap();
            producer.init_transactions(TIMEOUT)
        };
        if let Err(e) = settle {
            panic!(
                "round {kill}: init_transactions after the restart: {e}; the restarted broker logged:\n{}",
                broker.log_lines().join("\n")
            );
        }
        let (present, absent) = check_transactions(&bootstrap, &outcomes);
        println!("round {kill}: after the restart {present} transactions read, {absent} absent");
    }
    let count = |o: Outcome| outcomes.values().filter(|v| **v == o).count();
    let (present, absent) = check_transactions(&broker.addr.to_string(), &outcomes);
    println!(
        "broker kills {BROKER_KILLS}: transactions {} (commit Ok {}, commit failed {}, never committed {}); read \
         {present}, absent {absent}",
        outcomes.len(),
        count(Outcome::Committed),
        count(Outcome::Unknown),
        count(Outcome::NeverCommitted)
    );
}
