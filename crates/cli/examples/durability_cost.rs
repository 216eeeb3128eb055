//! Measures what the default durability policy costs: produce throughput with acks=1 (acknowledged once in the
//! log, no fsync wait) against acks=all (acknowledged after a group-committed fsync), same broker, same run.
//!
//! `cargo run --release -p strom --example durability_cost -- [records] [record-bytes] [partitions]`
//!
//! The load client is librdkafka (rdkafka crate). A fuller benchmark suite is `strom bench` (a later issue).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use strom_broker::{Broker, BrokerConfig};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let records = args.first().copied().unwrap_or(200_000) as usize;
    let record_bytes = args.get(1).copied().unwrap_or(1024) as usize;
    let partitions = args.get(2).copied().unwrap_or(6) as i32;

    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = runtime.block_on(async {
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            num_partitions: partitions,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Broker::start(config, listener).await.unwrap()
    });
    let bootstrap = broker.local_addr().to_string();
    println!(
        "records={records} record_bytes={record_bytes} partitions={partitions} data_dir={}",
        dir.path().display()
    );

    let mut results = Vec::new();
    for acks in ["1", "all", "1", "all"] {
        let topic = format!("durability-{acks}-{}", results.len());
        let (rate, mb) = run(&bootstrap, &topic, acks, records, record_bytes);
        println!("acks={acks:<3} {rate:>10.0} rec/s {mb:>8.1} MB/s");
        results.push((acks, rate));
    }
    let best = |a: &str| {
        results
            .iter()
            .filter(|(k, _)| *k == a)
            .map(|(_, r)| *r)
            .fold(0.0, f64::max)
    };
    println!(
        "acks=all / acks=1 throughput ratio (best of 2 each): {:.2}",
        best("all") / best("1")
    );
    runtime.block_on(broker.shutdown());
}

fn run(
    bootstrap: &str,
    topic: &str,
    acks: &str,
    records: usize,
    record_bytes: usize,
) -> (f64, f64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let payload = vec![b'x'; record_bytes];
    // Warm up: topic auto-creation and metadata.
    futures::executor::block_on(producer.send(
        FutureRecord::to(topic).key("warm").payload(&payload[..]),
        Duration::from_secs(30),
    ))
    .expect("warm-up record");
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..records {
        let key = (i % 1024).to_string();
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload[..])) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((_, _)) => {
                    // Local queue full: wait for the oldest delivery, which frees room.
                    if let Some(f) = pending.pop_front() {
                        futures::executor::block_on(f)
                            .expect("delivery")
                            .expect("delivered");
                    }
                }
            }
        }
    }
    for f in pending {
        futures::executor::block_on(f)
            .expect("delivery")
            .expect("delivered");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let secs = start.elapsed().as_secs_f64();
    let rate = records as f64 / secs;
    (rate, rate * record_bytes as f64 / 1e6)
}
