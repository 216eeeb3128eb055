//! Records produced with the Strom producer read back with rdkafka (librdkafka), field by field, for every
//! compression codec.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{consume_all, TestBroker};
use strom_client::{Producer, ProducerConfig, ProducerRecord};

const RECORDS: usize = 300;
const PARTITIONS: i32 = 3;

async fn roundtrip(codec: &str) {
    let broker = TestBroker::start().await;
    let topic = format!("roundtrip-{codec}");
    broker.create_topic(&topic, PARTITIONS).await;

    let mut config = ProducerConfig::new(&broker.bootstrap);
    config
        .set("compression.type", codec)
        .unwrap()
        .set("linger.ms", "5")
        .unwrap()
        .set("batch.size", "4096")
        .unwrap();
    let producer = Producer::new(config).await.expect("producer");

    let mut expected = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let mut record = ProducerRecord::new(&topic)
            .value(format!("value-{i}-{}", "x".repeat(i % 50)))
            .timestamp(1_700_000_000_000 + i as i64)
            .header("index", Some(Bytes::from(i.to_string())))
            .header("empty", None);
        // A mix of keyed, keyless and explicitly placed records.
        match i % 3 {
            0 => record = record.key(format!("key-{i}")),
            1 => record = record.partition((i % PARTITIONS as usize) as i32),
            _ => {}
        }
        expected.push(record.clone());
        deliveries.push(producer.send(record).await.expect("accepted"));
    }
    let mut delivered = Vec::new();
    for d in deliveries {
        delivered.push(d.await.expect("delivered"));
    }
    producer.close().await;

    let consumed = consume_all(&broker, &topic, PARTITIONS, RECORDS).await;
    assert_eq!(consumed.len(), RECORDS);
    for (record, meta) in expected.iter().zip(&delivered) {
        assert_eq!(meta.topic, topic);
        let c = consumed
            .iter()
            .find(|c| c.partition == meta.partition && c.offset == meta.offset)
            .unwrap_or_else(|| panic!("no consumed record at {meta:?}"));
        assert_eq!(c.key.as_deref(), record.key.as_deref());
        assert_eq!(c.value.as_deref(), record.value.as_deref());
        assert_eq!(c.timestamp, record.timestamp);
        assert_eq!(meta.timestamp, record.timestamp.unwrap());
        let headers: Vec<(String, Option<Vec<u8>>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
            .collect();
        assert_eq!(c.headers, headers);
        if let Some(p) = record.partition {
            assert_eq!(meta.partition, p);
        }
        if let Some(k) = &record.key {
            assert_eq!(
                meta.partition as u32,
                strom_client::partitioner::murmur2_partition(k, PARTITIONS as u32)
            );
        }
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roundtrip_uncompressed() {
    tokio::time::timeout(Duration::from_secs(60), roundtrip("none"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roundtrip_gzip() {
    tokio::time::timeout(Duration::from_secs(60), roundtrip("gzip"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roundtrip_snappy() {
    tokio::time::timeout(Duration::from_secs(60), roundtrip("snappy"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roundtrip_lz4() {
    tokio::time::timeout(Duration::from_secs(60), roundtrip("lz4"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roundtrip_zstd() {
    tokio::time::timeout(Duration::from_secs(60), roundtrip("zstd"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_0_and_1_deliver_too() {
    let broker = TestBroker::start().await;
    broker.create_topic("acks", 1).await;
    for acks in ["0", "1"] {
        let mut config = ProducerConfig::new(&broker.bootstrap);
        config.set("acks", acks).unwrap();
        let producer = Producer::new(config).await.unwrap();
        let d = producer
            .send(ProducerRecord::new("acks").value(format!("acks={acks}")))
            .await
            .unwrap();
        let meta = tokio::time::timeout(Duration::from_secs(10), d)
            .await
            .unwrap()
            .unwrap();
        if acks == "0" {
            assert_eq!(meta.offset, -1, "acks=0 has no offset");
        } else {
            assert!(meta.offset >= 0);
        }
        producer.close().await;
    }
    let consumed = consume_all(&broker, "acks", 1, 2).await;
    assert_eq!(consumed[0].value.as_deref(), Some(&b"acks=0"[..]));
    assert_eq!(consumed[1].value.as_deref(), Some(&b"acks=1"[..]));
    broker.stop().await;
}
