//! The Strom client's transactional producer against the broker's transaction coordinator (issue 12): commits
//! are read by read_committed consumers (the Strom consumer and librdkafka), aborts never (read_uncommitted sees
//! them), offsets sent to a transaction are committed with it and dropped with an abort, a second producer with
//! the same transactional.id fences the first, and misuse is refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{client_config, transactional, TestBroker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, IsolationLevel, OffsetAndMetadata,
    TopicPartition,
};
use strom_client::{Error, Producer, ProducerConfig, ProducerRecord};
use strom_protocol::kafka::ResponseError;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
        c.group_initial_rebalance_delay_ms = 0;
    })
    .await
}

/// Sends `n` records `prefix-i` to `topic`, spread over its partitions by key; returns their futures.
async fn send(
    producer: &Producer,
    topic: &str,
    prefix: &str,
    n: usize,
) -> Vec<strom_client::DeliveryFuture> {
    let mut futures = Vec::new();
    for i in 0..n {
        let record = ProducerRecord::new(topic)
            .key(format!("k{i}"))
            .value(format!("{prefix}-{i}"));
        futures.push(producer.send(record).await.unwrap());
    }
    futures
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    v.sort();
    v
}

/// Every value of `topic` read from the beginning at `isolation` with the Strom consumer, once `count` arrived
/// (and nothing more within a further half second), sorted.
async fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: IsolationLevel,
    count: usize,
) -> Vec<String> {
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.isolation_level = isolation;
    cc.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(cc).await.unwrap();
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(tps.clone()).await.unwrap();
    consumer.seek_to_beginning(&tps).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{isolation:?}: {} of {count} read: {out:?}",
            out.len()
        );
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
        out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_is_read_committed_and_an_abort_only_read_uncommitted() {
    let broker = broker().await;
    broker.create_topic("txp-out", 3).await;
    let producer = transactional(&broker.bootstrap, "txp-1").await;

    // Aborted first: a read_committed reader that got past it and found the commit never saw it.
    producer.begin_transaction().unwrap();
    let aborted = send(&producer, "txp-out", "aborted", 30).await;
    producer.flush().await;
    for f in aborted {
        f.await.expect("written, then aborted");
    }
    producer.abort_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    let committed = send(&producer, "txp-out", "committed", 40).await;
    producer.commit_transaction().await.unwrap();
    for f in committed {
        assert!(
            f.await.unwrap().offset >= 0,
            "acknowledged before the commit"
        );
    }

    let got = read(
        &broker.bootstrap,
        "txp-out",
        3,
        IsolationLevel::ReadCommitted,
        40,
    )
    .await;
    assert_eq!(got, values("committed", 40));
    let got = read(
        &broker.bootstrap,
        "txp-out",
        3,
        IsolationLevel::ReadUncommitted,
        70,
    )
    .await;
    let mut all = values("aborted", 30);
    all.extend(values("committed", 40));
    all.sort();
    assert_eq!(got, all);

    // One producer runs many transactions (the coordinator's previous one may still be completing).
    for round in 0..5 {
        producer.begin_transaction().unwrap();
        send(&producer, "txp-out", &format!("round{round}"), 3).await;
        producer.commit_transaction().await.unwrap();
    }
    let got = read(
        &broker.bootstrap,
        "txp-out",
        3,
        IsolationLevel::ReadCommitted,
        55,
    )
    .await;
    assert_eq!(got.len(), 55);
    assert!(!got.iter().any(|v| v.starts_with("aborted")));
    producer.close().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_not_sent_when_the_transaction_aborts_fail_and_misuse_is_refused() {
    let broker = broker().await;
    broker.create_topic("txp-misuse", 1).await;
    let mut config = ProducerConfig::new(&broker.bootstrap);
    config.set("transactional.id", "txp-misuse").unwrap();
    // Long enough that the abort comes before the batch would be sent.
    config.set("linger.ms", "10000").unwrap();
    let producer = Producer::new(config).await.unwrap();

    let before_init = producer.begin_transaction().unwrap_err();
    assert!(
        matches!(before_init, Error::TransactionState { .. }),
        "{before_init}"
    );
    producer.init_transactions().await.unwrap();
    assert!(producer.init_transactions().await.is_err(), "only once");
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(err.to_string().contains("no transaction begun"), "{err}");
    let err = producer.abort_transaction().await.unwrap_err();
    assert!(err.to_string().contains("no transaction begun"), "{err}");
    let err = producer
        .send(ProducerRecord::new("txp-misuse").value("outside"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TransactionState { .. }), "{err}");

    producer.begin_transaction().unwrap();
    let lingering = producer
        .send(ProducerRecord::new("txp-misuse").value("never sent"))
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();
    let err = lingering.await.unwrap_err();
    assert!(err.to_string().contains("aborted"), "{err}");

    // The producer goes on with the next transaction.
    producer.begin_transaction().unwrap();
    let f = producer
        .send(ProducerRecord::new("txp-misuse").value("kept"))
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    f.await.unwrap();
    let got = read(
        &broker.bootstrap,
        "txp-misuse",
        1,
        IsolationLevel::ReadUncommitted,
        1,
    )
    .await;
    assert_eq!(got, ["kept"], "the aborted record never reached the log");

    // A producer without transactional.id has no transactions.
    let plain = Producer::new(ProducerConfig::new(&broker.bootstrap))
        .await
        .unwrap();
    let err = plain.init_transactions().await.unwrap_err();
    assert!(err.to_string().contains("transactional.id"), "{err}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_sent_to_a_transaction_commit_with_it_and_not_with_an_abort() {
    let broker = broker().await;
    broker.create_topic("txp-in", 2).await;
    broker.create_topic("txp-out2", 2).await;
    let plain = Producer::new(ProducerConfig::new(&broker.bootstrap))
        .await
        .unwrap();
    for f in send(&plain, "txp-in", "in", 20).await {
        f.await.unwrap();
    }

    let mut cc = ConsumerConfig::new(&broker.bootstrap);
    cc.set("group.id", "txp-group").unwrap();
    cc.set("enable.auto.commit", "false").unwrap();
    cc.set("auto.offset.reset", "earliest").unwrap();
    cc.set("isolation.level", "read_committed").unwrap();
    cc.set("fetch.max.wait.ms", "100").unwrap();
    let mut consumer = Consumer::new(cc).await.unwrap();
    consumer.subscribe(&["txp-in"]).unwrap();
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut read_count = 0;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while read_count < 20 {
        assert!(tokio::time::Instant::now() < deadline, "read {read_count}");
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            next.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
            read_count += 1;
        }
    }
    let group = consumer.group_metadata().unwrap();
    assert_eq!(group.group_id, "txp-group");
    assert!(group.generation_id >= 1, "a member: {group:?}");
    assert!(!group.member_id.is_empty());
    let offsets = |shift: i64| -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        next.iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(o - shift)))
            .collect()
    };

    let producer = transactional(&broker.bootstrap, "txp-ctp").await;
    // Aborted: neither the outputs nor the offsets.
    producer.begin_transaction().unwrap();
    send(&producer, "txp-out2", "out-aborted", 5).await;
    producer
        .send_offsets_to_transaction(&offsets(2), &group)
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();
    let committed = consumer.committed(&[]).await.unwrap();
    assert!(
        committed.values().all(Option::is_none),
        "an aborted transaction commits no offset: {committed:?}"
    );

    // Committed: both.
    producer.begin_transaction().unwrap();
    send(&producer, "txp-out2", "out-committed", 5).await;
    producer
        .send_offsets_to_transaction(&offsets(0), &group)
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    let committed = consumer.committed(&[]).await.unwrap();
    let expected: BTreeMap<TopicPartition, Option<i64>> =
        next.iter().map(|(tp, o)| (tp.clone(), Some(*o))).collect();
    assert_eq!(committed, expected);
    let got = read(
        &broker.bootstrap,
        "txp-out2",
        2,
        IsolationLevel::ReadCommitted,
        5,
    )
    .await;
    assert_eq!(got, values("out-committed", 5));

    // A generation the group does not have is refused, and the transaction must be aborted.
    producer.begin_transaction().unwrap();
    let stale = ConsumerGroupMetadata {
        generation_id: group.generation_id + 5,
        ..group.clone()
    };
    let err = producer
        .send_offsets_to_transaction(&offsets(0), &stale)
        .await
        .unwrap_err();
    assert_eq!(
        err.kafka_code(),
        Some(ResponseError::IllegalGeneration),
        "{err}"
    );
    let refused = producer.commit_transaction().await.unwrap_err();
    assert!(refused.to_string().contains("must be aborted"), "{refused}");
    producer.abort_transaction().await.unwrap();
    consumer.close().await.unwrap();
    broker.stop().await;
}

/// KIP-447: a read_committed consumer fetches only stable offsets. While a transaction holds offsets for its
/// group, OffsetFetch answers UNSTABLE_OFFSET_COMMIT and the consumer retries (here until its request timeout,
/// as the transaction stays open); a read_uncommitted consumer sees the last offset committed outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_committed_consumer_waits_for_offsets_a_transaction_is_committing() {
    let broker = broker().await;
    broker.create_topic("txp-stable", 1).await;
    let tp = TopicPartition::new("txp-stable", 0);
    let consumer = |isolation: &str| {
        let mut cc = ConsumerConfig::new(&broker.bootstrap);
        cc.set("group.id", "txp-stable-group").unwrap();
        cc.set("enable.auto.commit", "false").unwrap();
        cc.set("isolation.level", isolation).unwrap();
        cc.set("request.timeout.ms", "1000").unwrap();
        cc.set("retry.backoff.ms", "50").unwrap();
        Consumer::new(cc)
    };
    let committed = consumer("read_committed").await.unwrap();
    let uncommitted = consumer("read_uncommitted").await.unwrap();
    let group = ConsumerGroupMetadata {
        group_id: "txp-stable-group".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    };
    let offsets = BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(7))]);

    let producer = transactional(&broker.bootstrap, "txp-stable-id").await;
    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &group)
        .await
        .unwrap();
    let err = committed
        .committed(std::slice::from_ref(&tp))
        .await
        .unwrap_err();
    assert_eq!(
        err.kafka_code(),
        Some(ResponseError::UnstableOffsetCommit),
        "{err}"
    );
    let seen = uncommitted
        .committed(std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(seen, BTreeMap::from([(tp.clone(), None)]));

    producer.commit_transaction().await.unwrap();
    for c in [&committed, &uncommitted] {
        let seen = c.committed(std::slice::from_ref(&tp)).await.unwrap();
        assert_eq!(seen, BTreeMap::from([(tp.clone(), Some(7))]));
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_producer_with_the_id_fences_the_first_whose_writes_never_commit() {
    let broker = broker().await;
    broker.create_topic("txp-zombie", 2).await;
    let zombie = transactional(&broker.bootstrap, "txp-zombie").await;
    zombie.begin_transaction().unwrap();
    for f in send(&zombie, "txp-zombie", "zombie", 10).await {
        f.await.unwrap();
    }

    // The successor takes the id over: the zombie's open transaction is aborted with the new epoch.
    let successor = transactional(&broker.bootstrap, "txp-zombie").await;
    successor.begin_transaction().unwrap();
    send(&successor, "txp-zombie", "successor", 10).await;
    successor.commit_transaction().await.unwrap();

    // The zombie's next write is refused, and so is its commit; after that, every call says it is fenced.
    let late = zombie
        .send(
            ProducerRecord::new("txp-zombie")
                .key("k")
                .value("zombie-late"),
        )
        .await
        .unwrap();
    let err = zombie.commit_transaction().await.unwrap_err();
    let fenced = |e: &Error| {
        matches!(
            e.kafka_code(),
            Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
        )
    };
    assert!(fenced(&err), "{err}");
    assert!(err.to_string().contains("fenced"), "{err}");
    assert!(late.await.is_err(), "the late write was not acknowledged");
    assert!(zombie.is_fenced());
    for later in [
        zombie.begin_transaction().unwrap_err(),
        zombie.abort_transaction().await.unwrap_err(),
        zombie
            .send(ProducerRecord::new("txp-zombie").value("x"))
            .await
            .unwrap_err(),
    ] {
        assert!(fenced(&later), "{later}");
    }

    let got = read(
        &broker.bootstrap,
        "txp-zombie",
        2,
        IsolationLevel::ReadCommitted,
        10,
    )
    .await;
    assert_eq!(got, values("successor", 10), "none of the zombie's writes");
    successor.close().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn librdkafka_read_committed_reads_what_the_strom_producer_committed() {
    let broker = broker().await;
    broker.create_topic("txp-interop", 2).await;
    let producer = transactional(&broker.bootstrap, "txp-interop").await;
    producer.begin_transaction().unwrap();
    send(&producer, "txp-interop", "aborted", 7).await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "txp-interop", "committed", 11).await;
    producer.commit_transaction().await.unwrap();
    // A transaction left open at the end holds read_committed at its first offset.
    producer.begin_transaction().unwrap();
    send(&producer, "txp-interop", "open", 3).await;
    producer.flush().await;

    let bootstrap = broker.bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", "txp-interop-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("txp-interop", p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut quiet_until = None;
        loop {
            let now = std::time::Instant::now();
            assert!(now < deadline, "read {out:?}");
            if out.len() >= 11 {
                let until = *quiet_until.get_or_insert(now + Duration::from_millis(500));
                if now >= until {
                    break;
                }
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
        }
        out.sort();
        out
    })
    .await
    .unwrap();
    assert_eq!(got, values("committed", 11));
    producer.close().await;
    broker.stop().await;
}
