//! Transactions across a three-broker cluster (issue 12): the coordinator of a transactional id is one broker,
//! the transaction's partitions are led by all three, so the coordinator writes most markers through the other
//! leaders' WriteTxnMarkers. librdkafka's transactional producer commits and aborts; read_committed consumers see
//! every committed record and no aborted one, which needs every marker on every partition.

mod common;

use std::time::Duration;

use common::client_config;
use common::cluster::{create_topic, wait_until, TestCluster};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

const SETTINGS: &[&str] = &[
    "controller.quorum.election.timeout.ms=500",
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=10000",
    "transaction.state.log.num.partitions=3",
    "offsets.topic.num.partitions=3",
];
const TOPIC: &str = "txc";
const PARTITIONS: i32 = 6;
const TIMEOUT: Duration = Duration::from_secs(60);

fn send(producer: &BaseProducer, prefix: &str, n: usize) {
    for i in 0..n {
        let (key, value) = (format!("k{i}"), format!("{prefix}-{i}"));
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
}

#[test]
fn a_transaction_over_partitions_of_three_leaders_commits_and_aborts_on_all() {
    let cluster = TestCluster::start(3, SETTINGS);
    let (code, message, _) = create_topic(cluster.addr(1), TOPIC, PARTITIONS, 3, 30_000).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let bootstrap = cluster.bootstrap(1);
    // Every partition has a leader before the producer starts, and the leaders are several brokers (so the
    // coordinator, whichever it is, writes markers through others).
    let leaders = wait_until("partition leaders", TIMEOUT, || {
        let consumer: BaseConsumer = client_config(&bootstrap).create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let topic = &metadata.topics()[0];
        let leaders: Vec<i32> = topic.partitions().iter().map(|p| p.leader()).collect();
        if leaders.len() == PARTITIONS as usize && leaders.iter().all(|l| *l >= 0) {
            Ok(leaders)
        } else {
            Err(format!("leaders {leaders:?}"))
        }
    });
    let distinct: std::collections::BTreeSet<i32> = leaders.iter().copied().collect();
    assert!(distinct.len() >= 2, "leaders {leaders:?}");

    let producer: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", "cluster-tx")
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "committed-a", 60);
    producer.commit_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "aborted", 30);
    producer.abort_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "committed-b", 30);
    producer.commit_transaction(TIMEOUT).unwrap();

    let consumer: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "cluster-tx-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut read: Vec<String> = Vec::new();
    let mut partitions_seen = std::collections::BTreeSet::new();
    while read.len() < 90 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 90 committed records read (a partition's marker is missing?)",
            read.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            partitions_seen.insert(m.partition());
            read.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    assert!(
        read.iter().all(|v| v.starts_with("committed")),
        "aborted records read: {read:?}"
    );
    assert!(
        partitions_seen.len() > 3,
        "the records spread over the partitions: {partitions_seen:?}"
    );
}
