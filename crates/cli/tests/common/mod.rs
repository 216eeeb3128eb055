//! Shared test harness: a real Strom broker on 127.0.0.1 port 0 with its own temp data directory, plus rdkafka
//! client builders pointed at it.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod group;
pub mod process;
pub mod proxy;
pub mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use strom_broker::{Broker, BrokerConfig, RunningBroker};

/// A broker running in this process on its own runtime.
pub struct TestBroker {
    pub addr: std::net::SocketAddr,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    runtime: tokio::runtime::Runtime,
    broker: Option<RunningBroker>,
}

impl TestBroker {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut broker = Self::start_in(&dir, configure);
        broker._temp = Some(temp);
        broker
    }

    /// Starts a broker on an existing data directory (the caller keeps the directory alive).
    pub fn start_in(dir: &Path, configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        Self::start_at(dir, "127.0.0.1:0".parse().unwrap(), configure)
    }

    /// Starts a broker on `dir` listening on `addr` (for restarts that clients must find at the same address).
    pub fn start_at(
        dir: &Path,
        addr: std::net::SocketAddr,
        configure: impl FnOnce(&mut BrokerConfig),
    ) -> Self {
        let mut config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let broker = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            Broker::start(config, listener)
                .await
                .expect("broker starts")
        });
        Self {
            addr: broker.local_addr(),
            data_dir: dir.to_path_buf(),
            _temp: None,
            runtime,
            broker: Some(broker),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn broker(&self) -> &RunningBroker {
        self.broker.as_ref().unwrap()
    }

    /// Clean shutdown; returns the temp dir so the data can be reopened.
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(b) = self.broker.take() {
            self.runtime.block_on(b.shutdown());
        }
        self._temp.take()
    }

    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = client_config(&self.bootstrap());
        config
            .set("message.timeout.ms", "20000")
            .set("linger.ms", "5");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("producer")
    }

    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut config = client_config(&self.bootstrap());
        config
            .set("enable.auto.commit", "false")
            .set("group.id", "strom-tests-unused");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("consumer")
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        client_config(&self.bootstrap())
            .create()
            .expect("admin client")
    }

    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let results =
            block_on(admin.create_topics([&topic], &admin_options())).expect("create_topics");
        for r in results {
            r.expect("topic created");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            self.runtime.block_on(b.shutdown());
        }
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3");
    config
}

/// A librdkafka client context that prints the client's log lines to stderr, stamped with the wall clock as the
/// brokers' lines are. `STROM_TEST_CLIENT_DEBUG=eos,msg,broker` (say) turns on librdkafka's `debug` contexts
/// for the clients a test builds with [`client_log_config`], to see the client's side of a failing run.
pub struct ClientLog;

impl rdkafka::ClientContext for ClientLog {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "client {}.{:06} {level:?} {fac} {message}",
            now.as_secs(),
            now.subsec_micros()
        );
    }
}

/// [`client_config`], with librdkafka's debug contexts from `STROM_TEST_CLIENT_DEBUG` when it is set (use it
/// with `create_with_context(ClientLog)`).
#[allow(dead_code)]
pub fn client_log_config(bootstrap: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    if let Ok(contexts) = std::env::var("STROM_TEST_CLIENT_DEBUG") {
        config
            .set("debug", &contexts)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    config
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)))
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// An owned copy of a consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        use rdkafka::message::Headers;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
            headers,
        }
    }
}

/// Assigns `partitions` of `topic` from `offset` and reads until `count` records arrived (or 30 s passed, which
/// fails the test with what was read so far).
pub fn consume(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    offset: Offset,
    count: usize,
) -> Vec<Consumed> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, offset).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {} of {count} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Consumed::from_message(&m)),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

/// Enqueues a record without waiting; the returned future resolves when the broker acknowledged it.
pub fn enqueue<K, P, C>(
    producer: &FutureProducer<C>,
    record: rdkafka::producer::FutureRecord<'_, K, P>,
) -> rdkafka::producer::DeliveryFuture
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
    C: rdkafka::ClientContext + 'static,
{
    producer
        .send_result(record)
        .map_err(|(e, _)| e)
        .expect("record enqueued")
}

/// Waits for a delivery: (partition, offset) or the error the broker (or client) reported.
pub fn delivered(
    f: rdkafka::producer::DeliveryFuture,
) -> Result<(i32, i64), rdkafka::error::KafkaError> {
    block_on(f)
        .expect("delivery report")
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
}

/// One partition's committed offset (`Offset::Invalid`: none), or its error.
pub type Committed = (i32, Result<Offset, String>);

/// `group`'s committed offsets of `partitions` of `topic` (OffsetFetch through librdkafka).
#[allow(dead_code)]
pub fn group_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
    timeout: Duration,
) -> Result<Vec<Committed>, String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| e.to_string())?;
    Ok(got
        .elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                e.error()
                    .map(|()| e.offset())
                    .map_err(|err| err.to_string()),
            )
        })
        .collect())
}
