//! End-to-end: librdkafka (through the rdkafka crate) produces to and consumes from a real Strom broker.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{block_on, client_config, consume, delivered, enqueue, TestBroker};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::Offset;

fn send(
    producer: &rdkafka::producer::FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> (i32, i64) {
    block_on(producer.send(record, Duration::from_secs(20)))
        .map(|d| (d.partition, d.offset))
        .expect("delivered")
}

#[test]
fn keys_headers_and_timestamps_survive_a_round_trip_across_partitions() {
    let broker = TestBroker::start();
    broker.create_topic("orders", 3, &[]);
    let producer = broker.producer(&[]);
    let base_ts = 1_700_000_000_000i64;
    let mut sent = Vec::new();
    for i in 0..90i64 {
        let partition = (i % 3) as i32;
        let key = format!("key-{i}").into_bytes();
        let value = format!("value-{i}")
            .repeat((i as usize % 5) + 1)
            .into_bytes();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(format!("t{i}").as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to("orders")
            .partition(partition)
            .key(&key[..])
            .payload(&value[..])
            .timestamp(base_ts + i)
            .headers(headers);
        let (p, offset) = send(&producer, record);
        assert_eq!(p, partition);
        sent.push((partition, offset, key, value, base_ts + i));
    }

    let consumer = broker.consumer(&[]);
    let got = consume(
        &consumer,
        "orders",
        &[0, 1, 2],
        Offset::Beginning,
        sent.len(),
    );
    assert_eq!(got.len(), sent.len());
    for (partition, offset, key, value, ts) in &sent {
        let record = got
            .iter()
            .find(|r| r.partition == *partition && r.offset == *offset)
            .expect("record consumed");
        assert_eq!(record.key.as_ref(), Some(key));
        assert_eq!(record.value.as_ref(), Some(value));
        assert_eq!(record.timestamp, Some(*ts));
        let i = &String::from_utf8_lossy(key)[4..];
        assert_eq!(
            record.headers,
            vec![
                ("trace".to_string(), Some(format!("t{i}").into_bytes())),
                ("empty".to_string(), None)
            ]
        );
    }
    // Offsets within each partition are dense and ordered as produced.
    for p in 0..3 {
        let offsets: Vec<i64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..30).collect::<Vec<_>>());
    }
}

#[test]
fn every_compression_codec_is_stored_and_served() {
    let broker = TestBroker::start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        broker.create_topic(&topic, 1, &[]);
        let producer = broker.producer(&[("compression.type", codec), ("linger.ms", "50")]);
        let futures: Vec<_> = (0..200)
            .map(|i| {
                let value = format!("{codec} record {i} ").repeat(20);
                enqueue(
                    &producer,
                    FutureRecord::to(&topic)
                        .key(&format!("k{i}"))
                        .payload(&value),
                )
            })
            .collect();
        for f in futures {
            delivered(f).expect("delivered");
        }
        let consumer = broker.consumer(&[]);
        let got = consume(&consumer, &topic, &[0], Offset::Beginning, 200);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(
                r.value.as_deref(),
                Some(format!("{codec} record {i} ").repeat(20).as_bytes())
            );
        }
    }
}

#[test]
fn producing_to_an_unknown_topic_creates_it() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 2);
    let producer = broker.producer(&[]);
    let (_, offset) = send(
        &producer,
        FutureRecord::to("auto-created")
            .partition(1)
            .payload(&b"hello"[..]),
    );
    assert_eq!(offset, 0);
    let topic = broker
        .broker()
        .state()
        .topics
        .get("auto-created")
        .expect("topic exists");
    assert_eq!(topic.partition_count(), 2);
}

/// Whether librdkafka's latest statistics show a Fetch sent and a request still awaiting its response.
#[derive(Default)]
struct FetchWatch {
    parked: AtomicBool,
}

impl ClientContext for FetchWatch {
    fn stats(&self, statistics: Statistics) {
        let parked = statistics
            .brokers
            .values()
            .any(|b| b.req.get("Fetch").is_some_and(|n| *n > 0) && b.waitresp_cnt > 0);
        self.parked.store(parked, Ordering::Relaxed);
    }
}

impl ConsumerContext for FetchWatch {}

#[test]
fn a_waiting_consumer_gets_records_appended_after_it_started_polling() {
    let broker = TestBroker::start();
    broker.create_topic("live", 1, &[]);
    // Its fetch of the empty partition parks for 50 s (below socket.timeout.ms, 60 s, whose expiry would reconnect
    // and fetch anew), so a record that arrives within 30 s came because the append woke the fetch.
    let consumer: BaseConsumer<FetchWatch> = client_config(&broker.bootstrap())
        .set("group.id", "strom-tests-unused")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50000")
        .set("statistics.interval.ms", "1000")
        .create_with_context(FetchWatch::default())
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("live", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    // Statistics arrive once a second, through poll: wait until they show the first fetch parked.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !consumer.context().parked.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "librdkafka's statistics never showed a Fetch awaiting its response"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            panic!("nothing was produced yet, got {:?}", m.map(|m| m.offset()));
        }
    }
    let producer = broker.producer(&[("linger.ms", "0")]);
    send(&producer, FutureRecord::to("live").payload(&b"wake up"[..]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(m) => break m.expect("consume"),
            None => assert!(
                Instant::now() < deadline,
                "the append did not wake the parked fetch within 30 s (its fetch.wait.max.ms is 50 s)"
            ),
        }
    };
    assert_eq!(got.payload(), Some(&b"wake up"[..]));
}

#[test]
fn data_survives_a_clean_restart_without_recovery() {
    let broker = TestBroker::start();
    broker.create_topic("durable", 2, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..50 {
        send(
            &producer,
            FutureRecord::to("durable")
                .partition(i % 2)
                .payload(format!("r{i}").as_bytes()),
        );
    }
    drop(producer);
    let temp = broker.stop().unwrap();

    let broker = TestBroker::start_in(temp.path(), |_| {});
    let topic = broker
        .broker()
        .state()
        .topics
        .get("durable")
        .expect("topic survives restart");
    for p in &topic.local {
        let recovered = p.with_log(|log| Ok(log.recovered_on_open())).unwrap();
        assert!(
            !recovered,
            "a clean shutdown must let the next start skip recovery"
        );
        assert_eq!(p.high_watermark(), 25);
    }
    let consumer = broker.consumer(&[]);
    let got = consume(&consumer, "durable", &[0, 1], Offset::Beginning, 50);
    assert_eq!(got.len(), 50);
    drop(broker);
}

#[test]
fn idempotent_producer_writes_each_record_once_in_order() {
    let broker = TestBroker::start();
    broker.create_topic("idem", 1, &[]);
    let producer = broker.producer(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "2"),
    ]);
    let futures: Vec<_> = (0..2000)
        .map(|i| {
            enqueue(
                &producer,
                FutureRecord::to("idem")
                    .key(&format!("{i}"))
                    .payload(&format!("{i}")),
            )
        })
        .collect();
    let mut offsets: Vec<i64> = futures
        .into_iter()
        .map(|f| delivered(f).expect("delivered").1)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 2000);
    let consumer = broker.consumer(&[]);
    let got = consume(&consumer, "idem", &[0], Offset::Beginning, 2000);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.value.as_deref(),
            Some(i.to_string().as_bytes()),
            "record {i} in order, once"
        );
    }
}

#[test]
fn a_batch_over_max_message_bytes_is_refused_and_nothing_is_stored() {
    let broker = TestBroker::start();
    broker.create_topic("small", 1, &[("max.message.bytes", "10000")]);
    let producer = broker.producer(&[
        ("linger.ms", "0"),
        ("message.max.bytes", "1000000"),
        ("retries", "0"),
    ]);
    let big = vec![7u8; 50_000];
    let result = block_on(producer.send(
        FutureRecord::to("small").payload(&big[..]).key(&b"k"[..]),
        Duration::from_secs(20),
    ));
    let (err, _) = result.expect_err("too large");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge),
        "{err:?}"
    );
    let (_, offset) = send(&producer, FutureRecord::to("small").payload(&b"fits"[..]));
    assert_eq!(offset, 0, "the refused batch took no offset");
}

#[test]
fn a_record_stamped_too_far_in_the_future_gets_invalid_timestamp() {
    let broker = TestBroker::start();
    broker.create_topic("clocked", 1, &[("message.timestamp.after.max.ms", "60000")]);
    let producer = broker.producer(&[("linger.ms", "0"), ("retries", "0")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let result = delivered(enqueue(
        &producer,
        FutureRecord::<str, str>::to("clocked")
            .payload("late")
            .timestamp(now + 3_600_000),
    ));
    let err = result.expect_err("refused");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidTimestamp),
        "{err:?}"
    );
    let (_, offset) = delivered(enqueue(
        &producer,
        FutureRecord::<str, str>::to("clocked")
            .payload("now")
            .timestamp(now),
    ))
    .unwrap();
    assert_eq!(offset, 0);
}
