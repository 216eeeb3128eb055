//! Backpressure: with a small `buffer.memory`, `send` waits for room instead of growing memory, and resumes
//! when buffered records are delivered.

mod common;

use std::time::Duration;

use common::{consume_all, TestBroker};
use futures::FutureExt;
use strom_client::{Error, Producer, ProducerConfig, ProducerRecord};

const BUFFER: usize = 4096;

fn record(i: usize) -> ProducerRecord {
    // ~1,000 bytes buffered: four fit in the buffer, a fifth does not.
    ProducerRecord::new("bp")
        .partition(0)
        .value(format!("{i:04}{}", "v".repeat(990)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_waits_for_buffer_memory_and_resumes_after_delivery() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("test finished in time");
}

async fn run() {
    let broker = TestBroker::start().await;
    broker.create_topic("bp", 1).await;
    let mut config = ProducerConfig::new(&broker.bootstrap);
    config
        .set("buffer.memory", &BUFFER.to_string())
        .unwrap()
        // Nothing leaves on its own for a minute: only flush() sends.
        .set("linger.ms", "60000")
        .unwrap()
        .set("batch.size", "1000000")
        .unwrap()
        .set("max.block.ms", "30000")
        .unwrap();
    let producer = Producer::new(config).await.expect("producer");

    let mut deliveries = Vec::new();
    for i in 0..4 {
        deliveries.push(producer.send(record(i)).await.unwrap());
    }
    assert!(producer.available_memory() < 1024, "the buffer is full");

    // The fifth send cannot get memory: its first poll stays pending.
    let mut fifth = Box::pin(producer.send(record(4)));
    assert!(
        (&mut fifth).now_or_never().is_none(),
        "send waits when full"
    );
    assert!(producer.available_memory() < 1024);

    // Delivering the buffered records frees memory and lets the fifth send through.
    let (_, fifth) = tokio::join!(producer.flush(), fifth);
    deliveries.push(fifth.unwrap());
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap();
    }
    assert_eq!(producer.available_memory(), BUFFER, "all memory returned");

    // Many more records than fit, sent back to back: memory in use never exceeds buffer.memory, and every
    // record arrives.
    let mut pending = Vec::new();
    for i in 5..200 {
        let send = producer.send(record(i));
        let mut send = Box::pin(send);
        let d = match (&mut send).now_or_never() {
            Some(r) => r.unwrap(),
            None => {
                // Full: make room by flushing, as a linger expiry would.
                let (_, r) = tokio::join!(producer.flush(), send);
                r.unwrap()
            }
        };
        assert!(BUFFER - producer.available_memory() <= BUFFER);
        pending.push(d);
    }
    producer.flush().await;
    for d in pending {
        d.await.unwrap();
    }
    producer.close().await;
    let consumed = consume_all(&broker, "bp", 1, 200).await;
    assert_eq!(consumed.len(), 200);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_gives_up_after_max_block_ms_and_rejects_records_larger_than_the_buffer() {
    let broker = TestBroker::start().await;
    broker.create_topic("bp", 1).await;
    let mut config = ProducerConfig::new(&broker.bootstrap);
    config
        .set("buffer.memory", &BUFFER.to_string())
        .unwrap()
        .set("linger.ms", "60000")
        .unwrap()
        .set("batch.size", "1000000")
        .unwrap()
        .set("max.block.ms", "200")
        .unwrap();
    let producer = Producer::new(config).await.expect("producer");
    for i in 0..4 {
        producer.send(record(i)).await.unwrap();
    }
    let err = producer.send(record(4)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let err = producer
        .send(ProducerRecord::new("bp").value(vec![0u8; BUFFER * 2]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    producer.close().await;
    broker.stop().await;
}
