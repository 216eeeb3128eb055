//! read_committed against a broker whose log holds transactions (issue 12): a committed transaction's records are
//! read, an aborted one's never, and an open one holds readers at the last stable offset until it ends. Checked
//! with librdkafka and the Strom consumer. The transactions are written straight into the partition (batches
//! with the transactional attribute, then markers), as the transaction coordinator will.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{client_config, TestBroker};
use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, TopicPartition};
use strom_log::txn::{ControlType, Marker};
use strom_protocol::kafka::protocol::StrBytes;
use strom_protocol::kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const TOPIC: &str = "txns";

/// One batch of `values` from producer `pid` (sequence from 0), in a transaction or not.
fn batch(pid: i64, transactional: bool, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if pid >= 0 { i as i32 } else { -1 },
            timestamp: now_ms(),
            key: Some(Bytes::from(format!("k{v}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: [(StrBytes::from_static_str("h"), None)]
                .into_iter()
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn marker(control: ControlType) -> Marker {
    Marker {
        control,
        coordinator_epoch: 0,
    }
}

fn rdkafka_read(bootstrap: &str, isolation: &str, count: usize) -> Vec<(i64, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("reader-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "rdkafka ({isolation}) timed out with {out:?}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            out.push((m.offset(), value));
        }
    }
    out
}

fn values(read: &[(i64, String)]) -> Vec<&str> {
    read.iter().map(|(_, v)| v.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_committed_skips_aborted_transactions_and_waits_at_an_open_one() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let bootstrap = broker.bootstrap.clone();
    let partition = broker
        .state()
        .topics
        .get(TOPIC)
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    let append = |records: Bytes| {
        partition.append(records, now_ms(), i64::MAX).unwrap();
    };
    // 0 p0 | 1-2 A (aborted) | 3-4 B (committed) | 5 p1 | 6 abort A | 7 commit B | 8 C (open) | 9 p2
    append(batch(-1, false, &["p0"]));
    append(batch(100, true, &["a1", "a2"]));
    append(batch(200, true, &["b1", "b2"]));
    append(batch(-1, false, &["p1"]));
    assert_eq!(
        partition
            .append_marker(100, 0, marker(ControlType::Abort), now_ms())
            .unwrap()
            .0,
        6
    );
    assert_eq!(
        partition
            .append_marker(200, 0, marker(ControlType::Commit), now_ms())
            .unwrap()
            .0,
        7
    );
    append(batch(300, true, &["c1"]));
    append(batch(-1, false, &["p2"]));
    assert_eq!(partition.high_watermark(), 10);
    assert_eq!(partition.last_stable_offset().unwrap(), 8);

    // read_uncommitted sees every data record, aborted ones too; never a marker.
    let b = bootstrap.clone();
    let uncommitted = tokio::task::spawn_blocking(move || rdkafka_read(&b, "read_uncommitted", 8))
        .await
        .unwrap();
    assert_eq!(
        values(&uncommitted),
        ["p0", "a1", "a2", "b1", "b2", "p1", "c1", "p2"]
    );

    // The Strom consumer, read_committed: up to the open transaction, without the aborted one.
    let mut cc = ConsumerConfig::new(&bootstrap);
    cc.isolation_level = IsolationLevel::ReadCommitted;
    cc.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(cc).await.unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign([tp.clone()]).await.unwrap();
    consumer.seek(&tp, 0).unwrap();
    let mut strom = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while consumer.position(&tp) != Some(8) {
        assert!(tokio::time::Instant::now() < deadline, "read {strom:?}");
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            strom.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    assert_eq!(values(&strom), ["p0", "b1", "b2", "p1"]);
    assert!(
        consumer
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "nothing past the last stable offset while C is open"
    );
    assert_eq!(consumer.position(&tp), Some(8));

    // C commits: its record and what followed become readable.
    assert_eq!(
        partition
            .append_marker(300, 0, marker(ControlType::Commit), now_ms())
            .unwrap()
            .0,
        10
    );
    assert_eq!(partition.last_stable_offset().unwrap(), 11);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while strom.len() < 6 {
        assert!(tokio::time::Instant::now() < deadline, "read {strom:?}");
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            strom.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    assert_eq!(values(&strom), ["p0", "b1", "b2", "p1", "c1", "p2"]);

    // librdkafka read_committed reads the same: the aborted transaction never shows.
    let b = bootstrap.clone();
    let committed = tokio::task::spawn_blocking(move || rdkafka_read(&b, "read_committed", 6))
        .await
        .unwrap();
    assert_eq!(committed, strom);
    broker.stop().await;
}
