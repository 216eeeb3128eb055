//! Harness for the streams tests that need a broker: an in-process Strom broker on 127.0.0.1 port 0 with its own
//! temp data dir, and helpers that create topics, produce input and read output with the Strom client.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use strom_broker::{Broker, BrokerConfig, RunningBroker};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, TopicPartition,
};
use strom_client::{Producer, ProducerConfig, ProducerRecord};
use tokio::net::TcpListener;

pub struct TestBroker {
    pub bootstrap: String,
    broker: Option<RunningBroker>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A broker with some settings of the test's own.
    pub async fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            // Members of a test group join within milliseconds of each other; no need to wait 3 s for more.
            group_initial_rebalance_delay_ms: 0,
            ..BrokerConfig::default()
        };
        configure(&mut config);
        let broker = Broker::start(config, listener)
            .await
            .expect("broker starts");
        Self {
            bootstrap: broker.local_addr().to_string(),
            broker: Some(broker),
            _dir: dir,
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin = Admin::connect(&self.bootstrap).await.unwrap();
        let results = admin
            .create_topics(&[NewTopic::new(name).partitions(partitions)], false)
            .await
            .unwrap();
        for r in results {
            r.result.unwrap_or_else(|e| panic!("create {name}: {e}"));
        }
    }

    /// Produces records (key, value, timestamp) in order and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: Vec<(Option<Bytes>, Option<Bytes>, i64)>) {
        let producer = Producer::new(ProducerConfig::new(&self.bootstrap))
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for (key, value, ts) in records {
            let mut r = ProducerRecord::new(topic).timestamp(ts);
            r.key = key;
            r.value = value;
            deliveries.push(producer.send(r).await.unwrap());
        }
        for d in deliveries {
            d.await.unwrap();
        }
        producer.close().await;
    }

    /// Reads `topic` from the beginning until `done` holds for what was read, or panics after `timeout` naming
    /// what was seen.
    pub async fn read_until(
        &self,
        topic: &str,
        timeout: Duration,
        done: impl Fn(&[ConsumerRecord]) -> bool,
    ) -> Vec<ConsumerRecord> {
        self.read_at(topic, IsolationLevel::ReadUncommitted, timeout, done)
            .await
    }

    /// [`read_until`](Self::read_until) at an isolation level.
    pub async fn read_at(
        &self,
        topic: &str,
        isolation: IsolationLevel,
        timeout: Duration,
        done: impl Fn(&[ConsumerRecord]) -> bool,
    ) -> Vec<ConsumerRecord> {
        let mut config = ConsumerConfig::new(&self.bootstrap);
        config.auto_offset_reset = OffsetReset::Earliest;
        config.isolation_level = isolation;
        let mut consumer = Consumer::new(config).await.unwrap();
        let info = consumer
            .cluster()
            .wait_for_topic(topic, Duration::from_secs(30))
            .await
            .unwrap();
        let partitions = (0..info.partition_count() as i32).map(|p| TopicPartition::new(topic, p));
        consumer.assign(partitions).await.unwrap();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        while !done(&seen) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{topic}: condition not met after {timeout:?}; read {} records: {:?}",
                seen.len(),
                seen.iter().rev().take(5).collect::<Vec<_>>()
            );
            seen.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        }
        seen
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(b.shutdown());
            }
        }
    }
}

pub fn text(b: &Option<Bytes>) -> String {
    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
}

pub fn long(b: &Option<Bytes>) -> i64 {
    i64::from_be_bytes(b.as_deref().expect("a value").try_into().expect("8 bytes"))
}

/// The last value per key of `records` (a table's final state), decoded by `decode`.
pub fn latest<T>(
    records: &[ConsumerRecord],
    decode: impl Fn(&Option<Bytes>) -> T,
) -> BTreeMap<String, T> {
    records
        .iter()
        .map(|r| (text(&r.key), decode(&r.value)))
        .collect()
}

impl TestBroker {
    /// The high watermark of each partition of `topic`.
    pub async fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let admin = Admin::connect(&self.bootstrap).await.unwrap();
        let info = admin
            .cluster()
            .wait_for_topic(topic, Duration::from_secs(30))
            .await
            .unwrap();
        let partitions: Vec<(String, i32)> = (0..info.partition_count() as i32)
            .map(|p| (topic.to_string(), p))
            .collect();
        admin
            .list_offsets(&partitions, strom_client::admin::OffsetSpec::Latest)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let offset = r
                    .result
                    .unwrap_or_else(|e| panic!("{topic}-{}: {e}", r.partition));
                (r.partition, offset.offset.expect("a high watermark"))
            })
            .collect()
    }

    /// Every record of `topic` up to the high watermarks as they are when called, in offset order per partition.
    pub async fn read_all(&self, topic: &str, timeout: Duration) -> Vec<ConsumerRecord> {
        let ends = self.end_offsets(topic).await;
        let total: i64 = ends.values().sum();
        let mut config = ConsumerConfig::new(&self.bootstrap);
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(config).await.unwrap();
        consumer
            .assign(ends.keys().map(|p| TopicPartition::new(topic, *p)))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        let done = |c: &Consumer| {
            ends.iter().all(|(p, end)| {
                *end == 0 || c.position(&TopicPartition::new(topic, *p)).unwrap_or(0) >= *end
            })
        };
        while !done(&consumer) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{topic}: read {} of {total} records in {timeout:?}",
                seen.len()
            );
            seen.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        }
        seen.retain(|r| r.offset < ends[&r.partition]);
        seen
    }

    /// The offsets `group` committed, per partition of `topic` (absent: nothing committed).
    pub async fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let admin = Admin::connect(&self.bootstrap).await.unwrap();
        admin
            .list_group_offsets(group)
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.topic == topic)
            .filter_map(|o| Some((o.partition, o.committed?)))
            .collect()
    }

    /// Waits until `group` committed the end of every partition of each of `topics`: everything they hold was
    /// processed, and (at-least-once commits come after the outputs are acknowledged) every output written.
    pub async fn wait_until_committed(&self, group: &str, topics: &[&str], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for topic in topics {
                let committed = self.committed(group, topic).await;
                for (p, end) in self.end_offsets(topic).await {
                    let at = committed.get(&p).copied().unwrap_or(0);
                    if at < end {
                        behind.push(format!("{topic}-{p}: {at} of {end}"));
                    }
                }
            }
            if behind.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group} has not committed everything after {timeout:?}: {behind:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Prints the library's logs when `STROM_TEST_LOG` is set (an env filter, e.g. `strom_streams=info`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("STROM_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
