//! Measures join-to-stable time for a consumer group: three librdkafka consumers subscribe to a 6-partition topic at
//! the same moment; the time until every member holds its 2 partitions is reported (median of several runs, each a
//! fresh group), for `group.initial.rebalance.delay.ms` 0 and Kafka's default 3000.
//!
//! `cargo run --release -p strom --example group_rebalance_time -- [runs]`

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use strom_broker::{Broker, BrokerConfig};

fn main() {
    if std::env::var_os("STROM_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("STROM_LOG"))
            .init();
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    for delay in [0u64, 3000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let broker = runtime.block_on(async {
            let config = BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                num_partitions: 6,
                group_initial_rebalance_delay_ms: delay,
                ..Default::default()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Broker::start(config, listener).await.unwrap()
        });
        let bootstrap = broker.local_addr().to_string();
        let mut times: Vec<Duration> = (0..runs)
            .map(|run| join_to_stable(&bootstrap, &format!("g-{delay}-{run}")))
            .collect();
        times.sort();
        let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
        println!(
            "group.initial.rebalance.delay.ms={delay}: 3 members join-to-stable median {} ms (runs: {ms:?})",
            times[times.len() / 2].as_millis()
        );
        runtime.block_on(broker.shutdown());
    }
}

fn join_to_stable(bootstrap: &str, group: &str) -> Duration {
    let consumers: Vec<BaseConsumer> = (0..3)
        .map(|_| {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("allow.auto.create.topics", "true")
                .set("topic.metadata.refresh.interval.ms", "1000")
                .create()
                .expect("consumer")
        })
        .collect();
    // Make the topic exist before timing.
    let md = consumers[0]
        .fetch_metadata(Some("rebalance-timing"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 6);
    let start = Instant::now();
    for c in &consumers {
        c.subscribe(&["rebalance-timing"]).expect("subscribe");
    }
    loop {
        for c in &consumers {
            let _ = c.poll(Duration::from_millis(5));
        }
        let counts: Vec<usize> = consumers
            .iter()
            .map(|c| c.assignment().map(|a| a.count()).unwrap_or(0))
            .collect();
        if counts.iter().all(|n| *n == 2) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no stable group after 60 s: {counts:?}"
        );
    }
}
