//! Idempotence: with responses lost on the wire (a proxy drops the connection instead of forwarding some
//! responses), the producer retries batches the broker already wrote; every record still arrives exactly
//! once and in send order per partition.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{consume_all, TestBroker};
use strom_client::{Producer, ProducerConfig, ProducerRecord};

const RECORDS: usize = 2_000;
const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_batches_are_written_exactly_once_and_in_order() {
    tokio::time::timeout(Duration::from_secs(90), run())
        .await
        .expect("test finished in time");
}

async fn run() {
    // Every 9th response chunk from the broker is lost, and the connection with it.
    let (broker, loss) = TestBroker::start_behind_lossy_proxy(9).await;
    broker.create_topic("idem", PARTITIONS).await;
    let mut config = ProducerConfig::new(&broker.bootstrap);
    config
        .set("linger.ms", "1")
        .unwrap()
        .set("batch.size", "2048")
        .unwrap()
        .set("retry.backoff.ms", "10")
        .unwrap()
        .set("request.timeout.ms", "5000")
        .unwrap();
    assert!(config.enable_idempotence, "idempotence is on by default");
    let producer = Producer::new(config).await.expect("producer");

    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let partition = (i % PARTITIONS as usize) as i32;
        let record = ProducerRecord::new("idem")
            .partition(partition)
            .value(format!("{partition}:{i:06}:{}", "p".repeat(100)));
        deliveries.push(producer.send(record).await.expect("accepted"));
    }
    let mut offsets = HashMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = d.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        if meta.offset >= 0 {
            assert!(
                offsets.insert((meta.partition, meta.offset), i).is_none(),
                "two records acknowledged at {}-{}",
                meta.partition,
                meta.offset
            );
        }
    }
    producer.close().await;
    let lost = loss.dropped.load(Ordering::Relaxed);
    assert!(
        lost > 0,
        "the proxy lost no responses; the test forced no retry"
    );
    // The checking consumer reads through a reliable wire.
    loss.drop_every.store(0, Ordering::Relaxed);

    let consumed = consume_all(&broker, "idem", PARTITIONS, RECORDS).await;
    let mut per_partition: HashMap<i32, Vec<usize>> = HashMap::new();
    for c in &consumed {
        let value = String::from_utf8(c.value.clone().unwrap()).unwrap();
        let mut parts = value.split(':');
        let p: i32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(p, c.partition);
        per_partition
            .entry(p)
            .or_default()
            .push(parts.next().unwrap().parse().unwrap());
    }
    for (p, seen) in &per_partition {
        let expected: Vec<usize> = (0..RECORDS)
            .filter(|i| (*i % PARTITIONS as usize) as i32 == *p)
            .collect();
        assert_eq!(seen, &expected, "partition {p}: exactly once, in order");
    }
    // Nothing beyond the expected records: read the end offsets through a fresh consumer.
    let total: usize = per_partition.values().map(Vec::len).sum();
    assert_eq!(total, RECORDS);
    eprintln!("{lost} responses lost on the wire; {RECORDS} records exactly once");
    broker.stop().await;
}
