//! Exactly-once with the Strom client under `kill -9` (issue 12): a consume-transform-produce app reads an input
//! topic at read_committed and writes each record, transformed, to an output topic in transactions that carry its
//! consumer offsets. The app is a child process (this test binary run again for this test, told by an
//! environment variable to be the app) killed with SIGKILL ten times at random points of its progress and
//! restarted with the same transactional.id, which fences the killed instance and aborts its open transaction; a
//! last instance runs until the output is complete. Read at read_committed, the output holds every input record
//! exactly once.
//!
//! Kill points come from a seeded generator; the seed is printed and `STROM_TEST_SEED=<n>` replays it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{transactional, Rng, TestBroker};
use strom_client::admin::{Admin, OffsetSpec};
use strom_client::consumer::{
    Consumer, ConsumerConfig, IsolationLevel, OffsetAndMetadata, OffsetReset, TopicPartition,
};
use strom_client::{Producer, ProducerConfig, ProducerRecord};

const INPUT: &str = "ctp-input";
const OUTPUT: &str = "ctp-output";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 3_000;
const KILLS: usize = 10;
/// Input records per transaction of the app.
const TRANSACTION_RECORDS: usize = 50;
const TRANSACTIONAL_ID: &str = "strom-ctp-app";
/// The app's group: it assigns itself every input partition and keeps its offsets there.
const GROUP: &str = "strom-ctp-app";
/// Set for the child process: the bootstrap address of the broker under test.
const APP_BOOTSTRAP: &str = "STROM_CTP_APP_BOOTSTRAP";
const TIMEOUT: Duration = Duration::from_secs(90);

/// The app (the test below, run again as a child process): consume, transform, produce and send the consumed
/// offsets in one transaction per chunk of records, until killed.
async fn app(bootstrap: &str) {
    // First: fences a killed instance and waits until its open transaction is aborted (or its commit completed),
    // so the offsets read next are the last committed ones.
    let producer = transactional(bootstrap, TRANSACTIONAL_ID).await;
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.group_id = Some(GROUP.into());
    cc.enable_auto_commit = false;
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.isolation_level = IsolationLevel::ReadCommitted;
    cc.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(cc).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(INPUT, p))
        .collect();
    consumer.assign(partitions).await.unwrap();
    println!("ready");
    // The next offset to process per partition, as committed by the app's last transaction.
    let mut processed: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    loop {
        let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
        // A poll can return the whole input: transactions of a few records each keep the kills landing all along.
        for chunk in records.chunks(TRANSACTION_RECORDS) {
            producer.begin_transaction().unwrap();
            for r in chunk {
                let value = format!(
                    "{}|transformed",
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                );
                let mut record = ProducerRecord::new(OUTPUT).value(value);
                if let Some(key) = &r.key {
                    record = record.key(key.clone());
                }
                producer.send(record).await.unwrap();
                processed.insert(
                    TopicPartition::new(&*r.topic, r.partition),
                    OffsetAndMetadata {
                        offset: r.offset + 1,
                        metadata: String::new(),
                    },
                );
            }
            producer
                .send_offsets_to_transaction(&processed, &consumer.group_metadata().unwrap())
                .await
                .unwrap();
            producer.commit_transaction().await.unwrap();
        }
    }
}

/// The app's process, killed when dropped: a failing test leaves no app running.
struct App(Child);

impl App {
    /// `kill -9`, and waits for it to be gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the app against `bootstrap`: this test binary, running only this test, as the app.
fn start_app(bootstrap: &str) -> App {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(APP_BOOTSTRAP, bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the app");
    App(child)
}

/// The sum of the output partitions' last stable offsets: committed records and markers, a progress measure.
async fn stable_end(admin: &Admin) -> i64 {
    let partitions: Vec<(String, i32)> = (0..PARTITIONS).map(|p| (OUTPUT.to_string(), p)).collect();
    admin
        .list_offsets(&partitions, OffsetSpec::LastStable)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.result.ok().and_then(|o| o.offset).unwrap_or(0))
        .sum()
}

/// Every committed output value, read from the beginning at read_committed once `at_least` arrived and the
/// output's last stable offsets are reached.
async fn read_output(bootstrap: &str, at_least: usize) -> Vec<String> {
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.isolation_level = IsolationLevel::ReadCommitted;
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(cc).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(OUTPUT, p))
        .collect();
    consumer.assign(partitions.clone()).await.unwrap();
    let admin = Admin::connect(bootstrap).await.unwrap();
    let names: Vec<(String, i32)> = (0..PARTITIONS).map(|p| (OUTPUT.to_string(), p)).collect();
    let deadline = Instant::now() + TIMEOUT;
    let mut values = Vec::new();
    loop {
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
        if values.len() >= at_least {
            let ends = admin
                .list_offsets(&names, OffsetSpec::LastStable)
                .await
                .unwrap();
            let caught_up = ends.iter().all(|e| {
                let end = e.result.as_ref().ok().and_then(|o| o.offset).unwrap_or(0);
                consumer
                    .position(&TopicPartition::new(OUTPUT, e.partition))
                    .is_some_and(|p| p >= end)
            });
            if caught_up {
                return values;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of at least {at_least} committed output records read after {TIMEOUT:?}",
            values.len()
        );
    }
}

/// This test's name, which the app process runs.
const TEST_NAME: &str = "a_killed_consume_transform_produce_app_writes_every_record_exactly_once";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consume_transform_produce_app_writes_every_record_exactly_once() {
    if let Ok(bootstrap) = std::env::var(APP_BOOTSTRAP) {
        // This process is the app the test started: it runs until killed.
        app(&bootstrap).await;
        return;
    }
    let broker = TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
        c.group_initial_rebalance_delay_ms = 0;
    })
    .await;
    broker.create_topic(INPUT, PARTITIONS).await;
    broker.create_topic(OUTPUT, PARTITIONS).await;
    let producer = Producer::new(ProducerConfig::new(&broker.bootstrap))
        .await
        .unwrap();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = ProducerRecord::new(INPUT)
            .key(format!("k{i}"))
            .value(format!("in-{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }

    let mut rng = Rng::seeded("kill points");
    let admin = Admin::connect(&broker.bootstrap).await.unwrap();
    let mut kill_points = Vec::new();
    for kill in 0..KILLS {
        let mut app = start_app(&broker.bootstrap);
        // Kill once the output has grown by a random step (up to a thirtieth of the input), so the kills land
        // all along the run: between transactions, while records are sent, during a commit.
        let from = stable_end(&admin).await;
        let step = 1 + (rng.next_u64() % (RECORDS as u64 / 30)) as i64;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = app.0.try_wait().unwrap() {
                panic!("the app exited by itself ({status}) before kill {kill}");
            }
            let now = stable_end(&admin).await;
            if now >= from + step || now >= (RECORDS + RECORDS) as i64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the output stayed at {now} (from {from}, waiting for {step} more) for {TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Then a random moment more, so the kill also lands inside transactions and commits, not only after one.
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 20)).await;
        app.kill();
        kill_points.push(stable_end(&admin).await);
    }
    println!("killed at output stable ends {kill_points:?}");

    // The last instance runs until every input record is in the output.
    let mut app = start_app(&broker.bootstrap);
    let values = read_output(&broker.bootstrap, RECORDS).await;
    app.kill();
    // Read again once the app is gone: nothing it did last may have added a duplicate.
    let values = {
        let again = read_output(&broker.bootstrap, values.len()).await;
        assert!(again.len() >= values.len());
        again
    };

    let expected: BTreeSet<String> = (0..RECORDS)
        .map(|i| format!("in-{i}|transformed"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &values {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let lost: Vec<_> = expected
        .iter()
        .filter(|v| !counts.contains_key(v.as_str()))
        .collect();
    let unexpected: Vec<_> = counts.keys().filter(|v| !expected.contains(**v)).collect();
    println!(
        "inputs {RECORDS}, outputs read {}, duplicates {}, losses {}, kills {KILLS}",
        values.len(),
        duplicates.len(),
        lost.len()
    );
    assert!(
        duplicates.is_empty(),
        "{} duplicates, first {:?}",
        duplicates.len(),
        duplicates.first()
    );
    assert!(
        lost.is_empty(),
        "{} lost, first {:?}",
        lost.len(),
        lost.first()
    );
    assert!(unexpected.is_empty(), "unexpected values {unexpected:?}");
    assert_eq!(values.len(), RECORDS);
}
