//! Retention and compaction through the broker: topics configured with Kafka's names, records produced by
//! librdkafka, a maintenance pass run, and the result read back by a consumer.

mod common;

use std::collections::HashMap;

use common::{consume, delivered, enqueue, TestBroker};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use std::time::{Duration, Instant};

/// A retention pass and a cleaner pass, run now rather than on their timers.
fn run_maintenance(broker: &TestBroker) {
    strom_broker::maintenance::run_once(broker.broker().state());
    strom_broker::maintenance::clean_once(broker.broker().state());
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_original_offset() {
    // The cleaner runs here when the test says (its own timer would race the size measured before it).
    let broker = TestBroker::start_with(|c| c.log_cleaner_enable = false);
    broker.create_topic(
        "latest",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "2048"),
            ("delete.retention.ms", "0"),
        ],
    );
    let producer = broker.producer(&[("linger.ms", "0"), ("compression.type", "snappy")]);
    let mut latest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for round in 0..20 {
        for k in 0..10 {
            let key = format!("user-{k}");
            // Key 9 ends as a tombstone; the others keep their last value.
            let value = if k == 9 && round == 19 {
                None
            } else {
                Some(format!("{key}-v{round}"))
            };
            let mut record = FutureRecord::to("latest").key(&key);
            if let Some(v) = &value {
                record = record.payload(v.as_str());
            }
            let (_, offset) = delivered(enqueue(&producer, record)).unwrap();
            latest.insert(key, (offset, value));
        }
    }
    // Enough records of another key to roll past the segment holding the tail above: only closed segments are
    // compacted, as in Kafka.
    let filler = "f".repeat(64);
    let mut last_offset = 0;
    for _ in 0..60 {
        last_offset = delivered(enqueue(
            &producer,
            FutureRecord::to("latest").key("filler").payload(&filler),
        ))
        .unwrap()
        .1;
    }
    let before = broker.broker().state().topics.get("latest").unwrap().local[0]
        .with_log(|l| Ok(l.size_bytes()))
        .unwrap();
    run_maintenance(&broker);
    let after = broker.broker().state().topics.get("latest").unwrap().local[0]
        .with_log(|l| Ok(l.size_bytes()))
        .unwrap();
    assert!(
        after < before,
        "compaction shrank the log ({before} -> {after} bytes)"
    );

    let consumer = broker.consumer(&[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("latest", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.last().map(|r: &common::Consumed| r.offset) != Some(last_offset) {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} records",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(common::Consumed::from_message(&m.unwrap()));
        }
    }
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for r in &got {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        seen.insert(
            key,
            (
                r.offset,
                r.value.clone().map(|v| String::from_utf8(v).unwrap()),
            ),
        );
    }
    for (key, (offset, value)) in &latest {
        if value.is_none() {
            assert!(
                !seen.contains_key(key),
                "tombstone for {key} removed after delete.retention.ms=0"
            );
            continue;
        }
        assert_eq!(
            seen.get(key),
            Some(&(*offset, value.clone())),
            "{key}: latest value at its original offset"
        );
    }
    assert!(
        got.len() < 100,
        "superseded values were removed ({} records left)",
        got.len()
    );
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets stay increasing"
    );
}

/// Issue 14: the log cleaner's own cadence under the broker's defaults (log.cleaner.backoff.ms 15 s,
/// min.cleanable.dirty.ratio 0.5), not the retention check's five minutes. The topic of the report:
/// segment.ms 300, min.compaction.lag.ms 0, delete.retention.ms 500, 1,000 records over 20 keys and a tombstone.
/// Nothing runs the cleaner by hand: the test waits for it (Kafka's target, and the issue's, is within 30 s).
#[test]
fn the_cleaner_compacts_a_compacted_topic_on_its_own_under_the_defaults() {
    let broker = TestBroker::start();
    broker.create_topic(
        "changelog",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "300"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "500"),
        ],
    );
    let producer = broker.producer(&[("linger.ms", "5")]);
    let mut latest: HashMap<String, i64> = HashMap::new();
    let mut pending = Vec::new();
    for i in 0..1000 {
        let key = format!("key-{}", i % 20);
        let value = format!("{key}-{i}");
        pending.push((
            key.clone(),
            enqueue(
                &producer,
                FutureRecord::to("changelog").key(&key).payload(&value),
            ),
        ));
    }
    for (key, delivery) in pending {
        let (_, offset) = delivered(delivery).unwrap();
        latest.insert(key, offset);
    }
    let (_, tombstone_offset) = delivered(enqueue(
        &producer,
        FutureRecord::<str, str>::to("changelog").key("key-19"),
    ))
    .unwrap();
    latest.remove("key-19");
    let written = Instant::now();

    let partition = broker
        .broker()
        .state()
        .topics
        .get("changelog")
        .unwrap()
        .local[0]
        .clone();
    let size = || partition.with_log(|l| Ok(l.size_bytes())).unwrap();
    let full = size();
    let deadline = written + Duration::from_secs(120);
    while size() * 10 > full {
        assert!(
            Instant::now() < deadline,
            "not compacted {:?} after the last write: {} of {full} bytes left",
            written.elapsed(),
            size()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "compacted by the cleaner {} ms after the last write ({full} -> {} bytes)",
        written.elapsed().as_millis(),
        size()
    );

    let consumer = broker.consumer(&[]);
    let (_, high) = consumer
        .fetch_watermarks("changelog", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, tombstone_offset + 1);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("changelog", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got: Vec<common::Consumed> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Up to the last live record: every live key once, and perhaps the tombstone before it is dropped (kept until
    // delete.retention.ms has passed at a clean).
    let last_live = *latest.values().max().unwrap();
    while got.last().is_none_or(|r| r.offset < last_live) {
        assert!(Instant::now() < deadline, "read {} records", got.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(common::Consumed::from_message(&m.unwrap()));
        }
    }
    let live: HashMap<String, i64> = got
        .iter()
        .filter(|r| r.value.is_some())
        .map(|r| (String::from_utf8(r.key.clone().unwrap()).unwrap(), r.offset))
        .collect();
    assert_eq!(live, latest, "the latest value of each key, at its offset");
    assert_eq!(got.len(), latest.len(), "nothing superseded is left");
}

#[test]
fn retention_bytes_and_retention_ms_delete_whole_old_segments() {
    let broker = TestBroker::start();
    broker.create_topic(
        "by-size",
        1,
        &[("retention.bytes", "4096"), ("segment.bytes", "1024")],
    );
    broker.create_topic(
        "by-age",
        1,
        &[("retention.ms", "60000"), ("segment.bytes", "1024")],
    );
    let producer = broker.producer(&[("linger.ms", "0")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..200i64 {
        let value = format!("{i:0>64}");
        delivered(enqueue(
            &producer,
            FutureRecord::to("by-size").key("k").payload(&value),
        ))
        .unwrap();
        // The first 150 records are a day old, the rest are fresh.
        let ts = if i < 150 { now - 86_400_000 } else { now };
        delivered(enqueue(
            &producer,
            FutureRecord::to("by-age")
                .key("k")
                .payload(&value)
                .timestamp(ts),
        ))
        .unwrap();
    }
    run_maintenance(&broker);
    let consumer = broker.consumer(&[]);

    let (low, high) = consumer
        .fetch_watermarks("by-size", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 200);
    assert!(low > 0, "old segments were deleted by retention.bytes");
    let size = broker.broker().state().topics.get("by-size").unwrap().local[0]
        .with_log(|l| Ok(l.size_bytes()))
        .unwrap();
    assert!(
        size <= 4096 + 1024,
        "log size {size} stays near retention.bytes"
    );
    let got = consume(
        &consumer,
        "by-size",
        &[0],
        Offset::Beginning,
        (high - low) as usize,
    );
    assert_eq!(
        got[0].offset, low,
        "a consumer from the beginning starts at the new log start offset"
    );

    let (low, high) = consumer
        .fetch_watermarks("by-age", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 200);
    assert!(
        low > 0 && low <= 150,
        "day-old segments deleted, fresh ones kept (log start offset {low})"
    );
}
