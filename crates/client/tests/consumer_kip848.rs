//! The Strom consumer with the KIP-848 consumer protocol (`group.protocol=consumer`) against a Strom broker: two
//! members split a topic, revoked partitions move with their commits, a leaving member hands its partitions over,
//! a new member resumes from the commits, and a member the broker forgot rejoins.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::client_config;
use strom_broker::{Broker, BrokerConfig, RunningBroker};
use strom_client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use tokio::net::TcpListener;
use tokio::time::Instant;

const PARTITIONS: i32 = 4;

/// A broker whose consumer-protocol members heartbeat every 200 ms, so reconciliation takes a fraction of a
/// second.
struct TestBroker {
    bootstrap: String,
    broker: Option<RunningBroker>,
    dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = Self::run(&dir, listener).await;
        Self {
            bootstrap: broker.local_addr().to_string(),
            broker: Some(broker),
            dir,
        }
    }

    async fn run(dir: &tempfile::TempDir, listener: TcpListener) -> RunningBroker {
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            group_consumer_heartbeat_interval_ms: 200,
            ..BrokerConfig::default()
        };
        Broker::start(config, listener).await.expect("broker")
    }

    /// Stops the broker and starts it again on the same address and data: the logs stay, group membership
    /// (kept in memory) is gone.
    async fn restart(&mut self) {
        self.broker.take().expect("running").shutdown().await;
        let listener = TcpListener::bind(&self.bootstrap).await.unwrap();
        self.broker = Some(Self::run(&self.dir, listener).await);
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = client_config(&self.bootstrap).create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in admin.create_topics([&topic], &options).await.unwrap() {
            r.expect("topic created");
        }
    }

    async fn consumer(&self, group: &str, topic: &str) -> Consumer {
        self.consumer_with(group, topic, &[]).await
    }

    async fn consumer_with(&self, group: &str, topic: &str, extra: &[(&str, &str)]) -> Consumer {
        let mut c = ConsumerConfig::new(&self.bootstrap);
        for (k, v) in [
            ("group.id", group),
            ("group.protocol", "consumer"),
            ("group.remote.assignor", "uniform"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "true"),
            ("fetch.max.wait.ms", "50"),
        ]
        .iter()
        .chain(extra)
        {
            c.set(k, v).unwrap();
        }
        let mut consumer = Consumer::new(c).await.unwrap();
        consumer.subscribe(&[topic]).unwrap();
        consumer
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }
}

/// Produces `count` records with values `v{first}..`, spread over the partitions by key.
async fn produce(bootstrap: &str, topic: &str, first: usize, count: usize) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut deliveries = Vec::new();
    for i in first..first + count {
        let record = ProducerRecord::new(topic)
            .key(format!("k{i}"))
            .value(format!("v{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
}

fn value(r: &ConsumerRecord) -> String {
    String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()
}

/// Polls every consumer in turn (each poll is what lets a member reconcile) until `done` holds; returns the
/// records each one read meanwhile. Fails after 30 s.
async fn poll_until(
    consumers: &mut [&mut Consumer],
    mut done: impl FnMut(&[&mut Consumer], &[Vec<ConsumerRecord>]) -> bool,
) -> Vec<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = vec![Vec::new(); consumers.len()];
    while !done(consumers, &read) {
        assert!(
            Instant::now() < deadline,
            "timed out; assignments {:?}, read {:?}",
            consumers.iter().map(|c| c.assignment()).collect::<Vec<_>>(),
            read.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for (c, out) in consumers.iter_mut().zip(&mut read) {
            out.extend(c.poll(Duration::from_millis(50)).await.unwrap());
        }
    }
    read
}

fn assigned_counts(consumers: &[&mut Consumer]) -> Vec<usize> {
    consumers.iter().map(|c| c.assignment().len()).collect()
}

/// Every value read exactly once, and exactly the expected ones.
fn assert_once(read: &[Vec<ConsumerRecord>], expected: std::ops::Range<usize>) {
    let values: Vec<String> = read.iter().flatten().map(value).collect();
    let distinct: BTreeSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), values.len(), "a record was read twice");
    let want: BTreeSet<String> = expected.map(|i| format!("v{i}")).collect();
    assert_eq!(distinct, want.iter().collect());
}

async fn committed_total(consumer: &Consumer, topic: &str) -> i64 {
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let committed: BTreeMap<TopicPartition, Option<i64>> = consumer.committed(&all).await.unwrap();
    committed.values().map(|o| o.unwrap_or(0)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_split_four_partitions_and_process_every_record_once() {
    let broker = TestBroker::start().await;
    broker.create_topic("split", PARTITIONS).await;
    let mut a = broker.consumer("split-group", "split").await;
    let mut b = broker.consumer("split-group", "split").await;
    poll_until(&mut [&mut a, &mut b], |cs, _| assigned_counts(cs) == [2, 2]).await;
    let (assigned_a, assigned_b): (BTreeSet<_>, BTreeSet<_>) = (
        a.assignment().into_iter().collect(),
        b.assignment().into_iter().collect(),
    );
    assert!(assigned_a.is_disjoint(&assigned_b));

    produce(&broker.bootstrap, "split", 0, 200).await;
    let read = poll_until(&mut [&mut a, &mut b], |_, read| {
        read.iter().map(Vec::len).sum::<usize>() >= 200
    })
    .await;
    assert_once(&read, 0..200);
    for r in &read[0] {
        assert!(assigned_a.contains(&TopicPartition::new("split", r.partition)));
    }
    for r in &read[1] {
        assert!(assigned_b.contains(&TopicPartition::new("split", r.partition)));
    }
    assert!(!read[0].is_empty() && !read[1].is_empty());
    a.commit_sync().await.unwrap();
    b.commit_sync().await.unwrap();
    assert_eq!(committed_total(&a, "split").await, 200);
    a.close().await.unwrap();
    b.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaving_member_hands_its_partitions_to_the_other() {
    let broker = TestBroker::start().await;
    broker.create_topic("handover", PARTITIONS).await;
    let mut a = broker.consumer("handover-group", "handover").await;
    let mut b = broker.consumer("handover-group", "handover").await;
    poll_until(&mut [&mut a, &mut b], |cs, _| assigned_counts(cs) == [2, 2]).await;
    produce(&broker.bootstrap, "handover", 0, 100).await;
    let first = poll_until(&mut [&mut a, &mut b], |_, read| {
        read.iter().map(Vec::len).sum::<usize>() >= 100
    })
    .await;
    assert_once(&first, 0..100);

    // Closing commits a's positions (auto-commit) and leaves with epoch -1.
    a.close().await.unwrap();
    poll_until(&mut [&mut b], |cs, _| assigned_counts(cs) == [4]).await;
    produce(&broker.bootstrap, "handover", 100, 100).await;
    let second = poll_until(&mut [&mut b], |_, read| read[0].len() >= 100).await;
    // b starts a's former partitions where a committed: nothing of the first 100 again.
    assert_once(&second, 100..200);
    b.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_member_resumes_from_the_committed_offsets() {
    let broker = TestBroker::start().await;
    broker.create_topic("resume", PARTITIONS).await;
    let mut a = broker.consumer("resume-group", "resume").await;
    produce(&broker.bootstrap, "resume", 0, 100).await;
    let first = poll_until(&mut [&mut a], |_, read| read[0].len() >= 100).await;
    assert_once(&first, 0..100);
    a.commit_sync().await.unwrap();
    assert_eq!(committed_total(&a, "resume").await, 100);
    a.close().await.unwrap();

    produce(&broker.bootstrap, "resume", 100, 50).await;
    let mut c = broker.consumer("resume-group", "resume").await;
    let second = poll_until(&mut [&mut c], |cs, read| {
        read[0].len() >= 50 && cs[0].lag().len() == PARTITIONS as usize
    })
    .await;
    assert_once(&second, 100..150);
    assert_eq!(c.lag().values().sum::<i64>(), 0, "everything read");
    c.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_partitions_move_with_their_committed_offsets() {
    let broker = TestBroker::start().await;
    broker.create_topic("revoke", PARTITIONS).await;
    // Auto-commit is on (that is what commits on revocation) but its timer never fires during the test, however
    // slow the machine.
    let mut a = broker
        .consumer_with(
            "revoke-group",
            "revoke",
            &[("auto.commit.interval.ms", "3600000")],
        )
        .await;
    produce(&broker.bootstrap, "revoke", 0, 100).await;
    let mut read = poll_until(&mut [&mut a], |_, read| read[0].len() >= 100).await;
    assert_eq!(a.assignment().len(), 4);

    // a has read everything and committed nothing yet: only the commit it makes while revoking keeps b from
    // reading a's partitions again.
    let mut b = broker.consumer("revoke-group", "revoke").await;
    let during = poll_until(&mut [&mut a, &mut b], |cs, _| assigned_counts(cs) == [2, 2]).await;
    produce(&broker.bootstrap, "revoke", 100, 100).await;
    let after = poll_until(&mut [&mut a, &mut b], |_, read| {
        read.iter().map(Vec::len).sum::<usize>() >= 100
    })
    .await;
    read.extend(during);
    read.extend(after);
    assert_once(&read, 0..200);
    a.close().await.unwrap();
    b.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_the_broker_forgot_rejoins_with_epoch_zero() {
    let mut broker = TestBroker::start().await;
    broker.create_topic("forgotten", PARTITIONS).await;
    let mut a = broker.consumer("forgotten-group", "forgotten").await;
    poll_until(&mut [&mut a], |cs, _| assigned_counts(cs) == [4]).await;

    // The restarted broker answers a's next heartbeat with UNKNOWN_MEMBER_ID; a drops its partitions and
    // rejoins. b can only get half of the topic if a is a member again.
    broker.restart().await;
    let mut b = broker.consumer("forgotten-group", "forgotten").await;
    poll_until(&mut [&mut a, &mut b], |cs, _| assigned_counts(cs) == [2, 2]).await;
    produce(&broker.bootstrap, "forgotten", 0, 100).await;
    let read = poll_until(&mut [&mut a, &mut b], |_, read| {
        read.iter().map(Vec::len).sum::<usize>() >= 100
    })
    .await;
    assert_once(&read, 0..100);
    a.close().await.unwrap();
    b.close().await.unwrap();
    broker.stop().await;
}
