//! The murmur2 partitioner agrees with librdkafka's `murmur2_random` on 10,000 random keys for several
//! partition counts: each key is produced with rdkafka, and the partition librdkafka chose (from its delivery
//! report) is compared with ours.

mod common;

use std::time::{Duration, Instant};

use common::{client_config, Rng, TestBroker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_client::partitioner::murmur2_partition;

const KEYS: usize = 10_000;
const PARTITION_COUNTS: [i32; 6] = [1, 2, 3, 7, 16, 100];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn murmur2_matches_librdkafka_murmur2_random() {
    let started = Instant::now();
    let broker = TestBroker::start().await;
    let mut rng = Rng::new(0x5eed_1234_abcd);
    // Random lengths 0..40 cover every tail length of the hash and the empty key.
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|_| {
            let len = (rng.next_u64() % 40) as usize;
            rng.bytes(len)
        })
        .collect();
    let producer: FutureProducer = client_config(&broker.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("rdkafka producer");
    for count in PARTITION_COUNTS {
        let topic = format!("agree-{count}");
        broker.create_topic(&topic, count).await;
        let deliveries: Vec<_> = keys
            .iter()
            .map(|k| {
                producer
                    .send_result(FutureRecord::to(&topic).key(k.as_slice()).payload(&b""[..]))
                    .map_err(|(e, _)| e)
                    .expect("enqueued")
            })
            .collect();
        let mut mismatches = Vec::new();
        for (key, d) in keys.iter().zip(deliveries) {
            let delivery = tokio::time::timeout(Duration::from_secs(30), d)
                .await
                .expect("delivery report in time")
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("delivered");
            let ours = murmur2_partition(key, count as u32) as i32;
            if ours != delivery.partition {
                mismatches.push((key.clone(), delivery.partition, ours));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {KEYS} keys differ for {count} partitions, first: {:?}",
            mismatches.len(),
            mismatches.first()
        );
    }
    eprintln!(
        "{} keys x {:?} partitions agree with librdkafka in {:?}",
        KEYS,
        PARTITION_COUNTS,
        started.elapsed()
    );
    broker.stop().await;
}
