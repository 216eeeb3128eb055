//! The Strom consumer against a real broker: interop with librdkafka both ways (every codec), a group of two
//! splitting a topic with commits, replay by timestamp, resuming from a commit, pause/resume, offset reset.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::client_config;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_broker::{Broker, BrokerConfig, RunningBroker};
use strom_client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use tokio::net::TcpListener;

/// A broker whose groups rebalance without Kafka's 3 s initial delay, so group tests stay fast.
struct Broker2 {
    bootstrap: String,
    broker: Option<RunningBroker>,
    _dir: tempfile::TempDir,
}

impl Broker2 {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            group_initial_rebalance_delay_ms: 50,
            ..BrokerConfig::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = Broker::start(config, listener).await.expect("broker");
        Self {
            bootstrap: broker.local_addr().to_string(),
            broker: Some(broker),
            _dir: dir,
        }
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

    fn consumer_config(&self, extra: &[(&str, &str)]) -> ConsumerConfig {
        let mut c = ConsumerConfig::new(&self.bootstrap);
        c.set("fetch.max.wait.ms", "100").unwrap();
        c.set("heartbeat.interval.ms", "100").unwrap();
        c.set("session.timeout.ms", "6000").unwrap();
        for (k, v) in extra {
            c.set(k, v).unwrap();
        }
        c
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }
}

/// Polls until `count` records arrived (30 s bound, failing with what was read).
async fn read(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {} of {count} records",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

async fn produce(bootstrap: &str, records: Vec<ProducerRecord>) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut deliveries = Vec::new();
    for r in records {
        deliveries.push(producer.send(r).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
}

fn all_partitions(topic: &str, n: i32) -> Vec<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

async fn rdkafka_to_strom(codec: &str) {
    let broker = Broker2::start().await;
    let topic = format!("from-rdkafka-{codec}");
    broker.create_topic(&topic, 2).await;
    let producer: FutureProducer = client_config(&broker.bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..200i64 {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i as usize % 40));
        let mut record = FutureRecord::to(&topic)
            .payload(&value)
            .timestamp(1_700_000_000_000 + i)
            .headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "index",
                        value: Some(&i.to_string()),
                    })
                    .insert(Header::<&str> {
                        key: "nil",
                        value: None,
                    }),
            );
        if i % 4 != 0 {
            record = record.key(&key);
        }
        // Enqueued without waiting, so librdkafka batches (and compresses) many records together.
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut consumer = Consumer::new(broker.consumer_config(&[])).await.unwrap();
    consumer.assign(all_partitions(&topic, 2)).await.unwrap();
    consumer.seek_to_beginning(&[]).await.unwrap();
    let records = read(&mut consumer, 200).await;
    assert_eq!(records.len(), 200, "{codec}");
    for d in deliveries {
        let d = d.await.unwrap().map_err(|(e, _)| e).unwrap();
        let (partition, offset) = (d.partition, d.offset);
        let r = records
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .unwrap_or_else(|| panic!("{codec}: nothing at {partition}/{offset}"));
        let i: i64 = std::str::from_utf8(r.headers[0].1.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.timestamp, 1_700_000_000_000 + i);
        assert_eq!(
            r.value.as_deref(),
            Some(format!("value-{i}-{}", "x".repeat(i as usize % 40)).as_bytes())
        );
        if i % 4 == 0 {
            assert_eq!(r.key, None);
        } else {
            assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
        }
        assert_eq!(r.headers[1], ("nil".to_string(), None));
    }
    assert_eq!(
        consumer.lag().values().sum::<i64>(),
        0,
        "everything read: no lag"
    );
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_what_rdkafka_produced_with_every_codec() {
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        tokio::time::timeout(Duration::from_secs(60), rdkafka_to_strom(codec))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rdkafka_and_strom_read_the_same_records_from_the_strom_producer() {
    let broker = Broker2::start().await;
    broker.create_topic("from-strom", 3).await;
    let records: Vec<ProducerRecord> = (0..150)
        .map(|i| {
            ProducerRecord::new("from-strom")
                .key(format!("k{i}"))
                .value(format!("v{i}"))
                .timestamp(1_600_000_000_000 + i)
                .header("h", Some(Bytes::from(format!("{i}"))))
        })
        .collect();
    produce(&broker.bootstrap, records).await;
    let theirs = consume_all_on(&broker.bootstrap, "from-strom", 3, 150).await;
    let mut consumer = Consumer::new(broker.consumer_config(&[])).await.unwrap();
    consumer
        .assign(all_partitions("from-strom", 3))
        .await
        .unwrap();
    consumer.seek_to_beginning(&[]).await.unwrap();
    let ours = read(&mut consumer, 150).await;
    let ours: BTreeSet<_> = ours
        .iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.key.as_ref().map(|b| b.to_vec()),
                r.value.as_ref().map(|b| b.to_vec()),
                Some(r.timestamp),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let theirs: BTreeSet<_> = theirs
        .into_iter()
        .map(|c| {
            (
                c.partition,
                c.offset,
                c.key,
                c.value,
                c.timestamp,
                c.headers,
            )
        })
        .collect();
    assert_eq!(ours.len(), 150);
    assert_eq!(ours, theirs);
    consumer.close().await.unwrap();
    broker.stop().await;
}

/// Reads `count` records from the beginning of every partition with librdkafka.
async fn consume_all_on(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<common::Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "rdkafka-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while out.len() < count {
            assert!(std::time::Instant::now() < deadline, "rdkafka timed out");
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.unwrap();
                out.push(common::Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_two_splits_four_partitions_and_processes_every_record_once() {
    let broker = Broker2::start().await;
    broker.create_topic("work", 4).await;
    const RECORDS: usize = 400;
    let (assigned_tx, mut assigned_rx) = tokio::sync::watch::channel([0usize; 2]);
    // Each member's latest assignment, read before the members are told to stop: once one leaves, the other
    // may legitimately take over every partition.
    let owned_by: Arc<Mutex<[BTreeSet<i32>; 2]>> = Arc::default();
    let assigned_tx = Arc::new(assigned_tx);
    let processed: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut members = Vec::new();
    for i in 0..2 {
        let config = broker.consumer_config(&[
            ("group.id", "workers"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ]);
        let (assigned_tx, processed, done_rx, owned_by) = (
            assigned_tx.clone(),
            processed.clone(),
            done_rx.clone(),
            owned_by.clone(),
        );
        members.push(tokio::spawn(async move {
            let mut consumer = Consumer::new(config).await.unwrap();
            consumer.subscribe(&["work"]).unwrap();
            while !*done_rx.borrow() {
                let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
                processed
                    .lock()
                    .unwrap()
                    .extend(records.iter().map(|r| (r.partition, r.offset)));
                if !records.is_empty() {
                    consumer.commit_sync().await.unwrap();
                }
                let assignment = consumer.assignment();
                owned_by.lock().unwrap()[i] = assignment.iter().map(|tp| tp.partition).collect();
                assigned_tx.send_modify(|a| a[i] = assignment.len());
            }
            consumer.close().await.unwrap();
        }));
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        assigned_rx.wait_for(|a| a == &[2, 2]),
    )
    .await
    .expect("both members get two partitions")
    .unwrap();
    let records = (0..RECORDS)
        .map(|i| ProducerRecord::new("work").key(format!("{i}")).value("x"))
        .collect();
    produce(&broker.bootstrap, records).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // The members run in their own tasks; the count is read each time one of them reports an assignment.
    while processed.lock().unwrap().len() < RECORDS {
        assert!(tokio::time::Instant::now() < deadline, "not all processed");
        let _ = tokio::time::timeout_at(deadline, assigned_rx.changed()).await;
    }
    let snapshot = owned_by.lock().unwrap().clone();
    done_tx.send(true).unwrap();
    for m in members {
        m.await.unwrap();
    }
    let mut owned = BTreeSet::new();
    for member in &snapshot {
        for p in member {
            assert!(owned.insert(*p), "partition {p} owned twice: {snapshot:?}");
        }
    }
    assert_eq!(owned, (0..4).collect());
    let processed = processed.lock().unwrap().clone();
    let unique: BTreeSet<_> = processed.iter().copied().collect();
    assert_eq!(unique.len(), RECORDS);
    assert_eq!(processed.len(), RECORDS, "no record processed twice");

    // The commits cover everything: a new member of the group finds nothing left.
    let mut checker = Consumer::new(broker.consumer_config(&[("group.id", "workers")]))
        .await
        .unwrap();
    let committed = checker.committed(&all_partitions("work", 4)).await.unwrap();
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, _) in &processed {
        *per_partition.entry(*p).or_default() += 1;
    }
    for (tp, offset) in committed {
        assert_eq!(offset, per_partition.get(&tp.partition).copied(), "{tp}");
    }
    checker.assign(all_partitions("work", 4)).await.unwrap();
    assert!(checker
        .poll(Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seek_to_timestamp_replays_exactly_the_records_at_or_after_it() {
    let broker = Broker2::start().await;
    broker.create_topic("replay", 3).await;
    let t0 = 1_650_000_000_000i64;
    let records = (0..300)
        .map(|i| {
            ProducerRecord::new("replay")
                .key(format!("k{i}"))
                .value(format!("{i}"))
                .timestamp(t0 + i * 10)
        })
        .collect();
    produce(&broker.bootstrap, records).await;
    let mut consumer = Consumer::new(broker.consumer_config(&[])).await.unwrap();
    consumer.assign(all_partitions("replay", 3)).await.unwrap();
    for cut in [0i64, 1, 1495, 1500, 2990] {
        let at = t0 + cut;
        consumer.seek_to_timestamp(&[], at).await.unwrap();
        let expected: BTreeSet<i64> = (0..300).filter(|i| t0 + i * 10 >= at).collect();
        let got = read(&mut consumer, expected.len()).await;
        let got_values: BTreeSet<i64> = got
            .iter()
            .map(|r| {
                std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "cut {cut}");
        assert_eq!(got_values, expected, "cut {cut}");
        assert!(got.iter().all(|r| r.timestamp >= at));
        assert!(consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty());
    }
    // After the last record: positioned at the end, nothing to read.
    consumer.seek_to_timestamp(&[], t0 + 10_000).await.unwrap();
    assert!(consumer
        .poll(Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_consumer_resumes_from_the_commit() {
    let broker = Broker2::start().await;
    broker.create_topic("resume", 1).await;
    let records = (0..20)
        .map(|i| ProducerRecord::new("resume").value(format!("{i}")))
        .collect();
    produce(&broker.bootstrap, records).await;
    let tp = TopicPartition::new("resume", 0);
    let config = broker.consumer_config(&[
        ("group.id", "resumers"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ]);
    let mut first = Consumer::new(config.clone()).await.unwrap();
    first.assign([tp.clone()]).await.unwrap();
    let got = read(&mut first, 20).await;
    assert_eq!(
        got[0].offset, 0,
        "no commit yet: auto.offset.reset=earliest"
    );
    first
        .commit_offsets_sync(&[(tp.clone(), 12)].into())
        .await
        .unwrap();
    assert_eq!(first.committed(&[]).await.unwrap()[&tp], Some(12));
    first.close().await.unwrap();

    let mut second = Consumer::new(config).await.unwrap();
    second.subscribe(&["resume"]).unwrap();
    let got = read(&mut second, 8).await;
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (12..20).collect::<Vec<_>>());
    assert_eq!(second.assignment(), vec![tp.clone()]);
    second.commit_async().unwrap().await.unwrap();
    assert_eq!(second.committed(&[]).await.unwrap()[&tp], Some(20));
    second.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_partitions_are_not_fetched_until_resumed() {
    let broker = Broker2::start().await;
    broker.create_topic("pausing", 2).await;
    let records = (0..40)
        .map(|i| {
            ProducerRecord::new("pausing")
                .partition(i % 2)
                .value(format!("{i}"))
        })
        .collect();
    produce(&broker.bootstrap, records).await;
    let mut consumer = Consumer::new(broker.consumer_config(&[])).await.unwrap();
    let (p0, p1) = (
        TopicPartition::new("pausing", 0),
        TopicPartition::new("pausing", 1),
    );
    consumer.assign([p0.clone(), p1.clone()]).await.unwrap();
    consumer.seek_to_beginning(&[]).await.unwrap();
    consumer.pause(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.paused(), vec![p0.clone()]);
    let got = read(&mut consumer, 20).await;
    assert!(got.iter().all(|r| r.partition == 1));
    assert!(consumer
        .poll(Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(consumer.lag().get(&p1), Some(&0));
    assert_eq!(consumer.lag().get(&p0), None, "never fetched while paused");
    consumer.resume(std::slice::from_ref(&p0)).unwrap();
    let got = read(&mut consumer, 20).await;
    assert!(got.iter().all(|r| r.partition == 0));
    assert_eq!(consumer.position(&p0), Some(20));
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_out_of_range_position_resets_per_auto_offset_reset() {
    let broker = Broker2::start().await;
    broker.create_topic("reset", 1).await;
    let records = (0..10)
        .map(|i| ProducerRecord::new("reset").value(format!("{i}")))
        .collect();
    produce(&broker.bootstrap, records).await;
    let tp = TopicPartition::new("reset", 0);
    let mut consumer = Consumer::new(broker.consumer_config(&[("auto.offset.reset", "earliest")]))
        .await
        .unwrap();
    consumer.assign([tp.clone()]).await.unwrap();
    consumer.seek(&tp, 1000).unwrap();
    let got = read(&mut consumer, 10).await;
    assert_eq!(got[0].offset, 0);

    let mut strict = Consumer::new(broker.consumer_config(&[("auto.offset.reset", "none")]))
        .await
        .unwrap();
    strict.assign([tp.clone()]).await.unwrap();
    strict.seek(&tp, 1000).unwrap();
    // The error comes from the first fetch's answer; the timeout only bounds a poll that never gets one.
    let err = strict.poll(Duration::from_secs(60)).await.unwrap_err();
    assert!(err.to_string().contains("auto.offset.reset=none"), "{err}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn return_before_rejoin_gives_the_owner_one_poll_to_commit_before_partitions_move() {
    let broker = Broker2::start().await;
    broker.create_topic("moving", 4).await;
    let config = |_: usize| {
        let mut c =
            broker.consumer_config(&[("group.id", "movers"), ("enable.auto.commit", "false")]);
        c.return_before_rejoin = true;
        c
    };
    let mut first = Consumer::new(config(0)).await.unwrap();
    first.subscribe(&["moving"]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first.assignment().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first member never got the partitions"
        );
        first.poll(Duration::from_millis(100)).await.unwrap();
    }
    let mut second = Consumer::new(config(1)).await.unwrap();
    second.subscribe(&["moving"]).unwrap();
    let joiner = tokio::spawn(async move {
        while second.assignment().is_empty() {
            second.poll(Duration::from_millis(100)).await.unwrap();
        }
        second
    });
    // The first member's poll comes back with the rebalance pending and its partitions still its own: the
    // moment to commit. The poll after that rejoins and gives up two partitions.
    let mut announced = false;
    while first.assignment().len() == 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first member never rejoined"
        );
        first.poll(Duration::from_millis(100)).await.unwrap();
        if first.rebalance_pending() {
            assert_eq!(first.assignment().len(), 4, "returned before rejoining");
            announced = true;
        }
    }
    assert!(announced, "poll rejoined without returning first");
    assert_eq!(first.assignment().len(), 2);
    let second = joiner.await.unwrap();
    assert_eq!(second.assignment().len(), 2);
    broker.stop().await;
}

/// `poll` sends the next fetch ahead when it returns records; a seek or a pause in between must win over it:
/// the records it brought back from the old position are never handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seek_or_pause_after_a_poll_discards_the_fetch_sent_ahead() {
    let broker = Broker2::start().await;
    broker.create_topic("ahead", 1).await;
    // One batch per record, and a fetch of one batch at a time, so each poll returns a few records and the
    // fetch sent ahead has more to bring.
    let producer = Producer::new(ProducerConfig::new(&broker.bootstrap))
        .await
        .unwrap();
    for i in 0..30 {
        let record = ProducerRecord::new("ahead").value(format!("{i}"));
        producer.send(record).await.unwrap().await.unwrap();
    }
    producer.close().await;
    let tp = TopicPartition::new("ahead", 0);
    let mut consumer = Consumer::new(broker.consumer_config(&[
        ("max.partition.fetch.bytes", "1"),
        ("auto.offset.reset", "earliest"),
    ]))
    .await
    .unwrap();
    consumer.assign([tp.clone()]).await.unwrap();

    let first = read(&mut consumer, 1).await;
    assert_eq!(first[0].offset, 0);
    let next = first.last().unwrap().offset + 1;
    assert_eq!(consumer.position(&tp), Some(next));
    // The fetch sent ahead asked for `next`; after the seek to 0 the records start at 0 again.
    consumer.seek(&tp, 0).unwrap();
    let again = read(&mut consumer, 1).await;
    assert_eq!(
        again[0].offset, 0,
        "the seek wins over the fetch sent ahead"
    );
    for pair in again.windows(2) {
        assert_eq!(pair[1].offset, pair[0].offset + 1);
    }

    // Paused right after a poll that sent a fetch ahead: nothing more arrives until resumed.
    let position = consumer.position(&tp).unwrap();
    consumer.pause(std::slice::from_ref(&tp)).unwrap();
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(consumer.position(&tp), Some(position));
    consumer.resume(std::slice::from_ref(&tp)).unwrap();
    let rest = read(&mut consumer, 30 - position as usize).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (position..30).collect::<Vec<_>>());
    consumer.close().await.unwrap();
    broker.stop().await;
}
