//! Test harness: an in-process Strom broker on 127.0.0.1 port 0 with a temp data dir, rdkafka helpers, and a
//! TCP proxy that can lose responses (to force the producer's retries).
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use strom_broker::{Broker, BrokerConfig, RunningBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct TestBroker {
    pub addr: SocketAddr,
    /// What clients bootstrap from: the broker itself, or the proxy in front of it.
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
        Self::start_on(listener, None, configure).await
    }

    async fn start_on(
        listener: TcpListener,
        advertised: Option<SocketAddr>,
        configure: impl FnOnce(&mut BrokerConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            advertised: advertised.map(|a| (a.ip().to_string(), a.port())),
            ..BrokerConfig::default()
        };
        configure(&mut config);
        let broker = Broker::start(config, listener)
            .await
            .expect("broker starts");
        let addr = broker.local_addr();
        Self {
            addr,
            bootstrap: advertised.unwrap_or(addr).to_string(),
            broker: Some(broker),
            _dir: dir,
        }
    }

    /// A broker that advertises a proxy, so every client connection goes through it. The proxy closes the
    /// connection instead of forwarding every `drop_every`-th response chunk from the broker: the request
    /// was handled, but the client never hears about it.
    pub async fn start_behind_lossy_proxy(drop_every: usize) -> (Self, Arc<Loss>) {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = Self::start_on(listener, Some(proxy_addr), |_| {}).await;
        let loss = Arc::new(Loss {
            drop_every: AtomicUsize::new(drop_every),
            dropped: AtomicUsize::new(0),
        });
        tokio::spawn(run_proxy(proxy, broker.addr, loss.clone()));
        (broker, loss)
    }

    /// The running broker's state (its partitions, coordinators), for tests that look inside.
    pub fn state(&self) -> &std::sync::Arc<strom_broker::BrokerState> {
        self.broker.as_ref().expect("running").state()
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        client_config(&self.bootstrap).create().expect("admin")
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin = self.admin();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in admin
            .create_topics([&topic], &options)
            .await
            .expect("create_topics")
        {
            r.expect("topic created");
        }
    }

    pub fn consumer(&self) -> BaseConsumer {
        let mut c = client_config(&self.bootstrap);
        c.set("enable.auto.commit", "false")
            .set("group.id", "strom-client-tests");
        c.create().expect("consumer")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            // Shutdown needs the runtime; outside one, dropping the handle is all we can do.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(b.shutdown());
            }
        }
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    config
}

/// The proxy's loss setting (0 = forward everything) and how many responses it lost.
pub struct Loss {
    pub drop_every: AtomicUsize,
    pub dropped: AtomicUsize,
}

async fn run_proxy(listener: TcpListener, upstream: SocketAddr, loss: Arc<Loss>) {
    let chunks = Arc::new(AtomicUsize::new(0));
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = TcpStream::connect(upstream).await else {
            continue;
        };
        let (chunks, loss) = (chunks.clone(), loss.clone());
        tokio::spawn(async move {
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let i = chunks.fetch_add(1, Ordering::Relaxed) + 1;
                let drop_every = loss.drop_every.load(Ordering::Relaxed);
                if drop_every > 0 && i % drop_every == 0 {
                    loss.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            up.abort();
        });
    }
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

/// Reads `count` records of `topic` from the beginning of `partitions` with rdkafka (30 s bound).
pub async fn consume_all(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<Consumed> {
    let consumer = broker.consumer();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
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
                Some(Ok(m)) => out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(e)) => panic!("consume error: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

/// A deterministic xorshift generator for test data (no `rand` dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// Seeded from `STROM_TEST_SEED` when set, else from the clock; the seed is printed so a run can be replayed.
    pub fn seeded(what: &str) -> Self {
        let seed = std::env::var("STROM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{what}: seed {seed} (STROM_TEST_SEED={seed} replays them)");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A Strom-client transactional producer with `transactional.id` `id` (60 s transaction timeout, linger 5 ms),
/// initialized: older producers with the id are fenced and their open transaction is ended.
pub async fn transactional(bootstrap: &str, id: &str) -> strom_client::Producer {
    let mut config = strom_client::ProducerConfig::new(bootstrap);
    config
        .set("transactional.id", id)
        .unwrap()
        .set("transaction.timeout.ms", "60000")
        .unwrap()
        .set("linger.ms", "5")
        .unwrap();
    let producer = strom_client::Producer::new(config).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer
}
