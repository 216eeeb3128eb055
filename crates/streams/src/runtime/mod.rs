//! [`KafkaStreams`]: runs a topology against a Kafka-compatible cluster.
//!
//! `start` checks the source topics, creates the internal topics (repartition and changelog topics, with Kafka
//! Streams' names and partition counts: see [`plan`]) and starts `num.stream.threads` stream threads (see
//! [`thread`]). Each thread is a member of the consumer group `application.id`; the group's assignment decides
//! which tasks run where, so a second instance of the application takes over half the tasks, with their state
//! (restored from the changelogs), and takes them all when the other instance leaves.
//!
//! Interactive queries read the stores of the tasks running on this instance ([`KafkaStreams::key_value_store`],
//! [`KafkaStreams::window_store`]); [`KafkaStreams::query_metadata_for_key`] says which partition holds a key and
//! which instance (its `application.server`) runs that partition now.

mod global;
pub mod plan;
mod standby;
mod state_dir;
mod thread;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use strom_client::admin::{Admin, NewTopic};
use strom_client::partitioner::murmur2_partition;

use crate::config::{ProcessingGuarantee, StreamsConfig};
use crate::serdes::DefaultSerde;
use crate::store::{KeyValueStore, Store, WindowStore};
use crate::topology::Topology;
use plan::Plan;

/// The application's state (Kafka's `KafkaStreams.State`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Created,
    /// Threads are joining the group, or restoring the state of new tasks.
    Rebalancing,
    Running,
    PendingShutdown,
    NotRunning,
    /// A stream thread stopped on an error it cannot get past; the message says which.
    Error(String),
}

/// Why the application cannot start or answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamsError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Topology(String),
    #[error("{0}")]
    Client(String),
    #[error("partition {partition} of store {store} is not hosted by this instance")]
    NotLocal { store: String, partition: i32 },
    #[error("no state store named {0}")]
    UnknownStore(String),
}

/// Where a key lives (Kafka's `KeyQueryMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    pub partition: i32,
    /// The `application.server` of the instance whose task holds the partition now; `None` while no instance
    /// does (a rebalance) or when it did not set `application.server`.
    pub active_host: Option<String>,
}

/// The stores of the tasks this instance runs, by (store, partition).
#[derive(Default)]
pub(crate) struct Registry {
    stores: RwLock<BTreeMap<(String, i32), Arc<Store>>>,
}

impl Registry {
    pub fn add(&self, name: &str, partition: i32, store: Arc<Store>) {
        self.stores
            .write()
            .insert((name.to_string(), partition), store);
    }

    pub fn remove(&self, name: &str, partition: i32) {
        self.stores.write().remove(&(name.to_string(), partition));
    }

    fn get(&self, name: &str, partition: i32) -> Option<Arc<Store>> {
        self.stores
            .read()
            .get(&(name.to_string(), partition))
            .cloned()
    }

    fn all(&self, name: &str) -> Vec<Arc<Store>> {
        self.stores
            .read()
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.stores.read().keys().map(|(_, p)| *p).collect()
    }
}

/// What an instance tells the group about itself, in its members' subscription user data (JSON): an id
/// unique to the instance (its threads share it) and its `application.server`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MemberInfo {
    pub instance: String,
    pub server: Option<String>,
}

impl MemberInfo {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).expect("member info serializes"))
    }

    pub fn decode(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }
}

/// A consumer outside the group that reads changelogs or global topics from their beginning.
pub(crate) async fn changelog_reader(
    config: &StreamsConfig,
    kind: crate::config::ConsumerKind,
    client_id: String,
) -> Result<strom_client::consumer::Consumer, String> {
    let mut cc = strom_client::consumer::ConsumerConfig::new(&config.bootstrap_servers);
    cc.client_id = client_id;
    cc.fetch_max_wait = config.poll;
    config.clients.apply_to_consumer(kind, &mut cc)?;
    // What reading a changelog from its beginning, outside any group, needs.
    cc.group_id = None;
    cc.enable_auto_commit = false;
    cc.auto_offset_reset = strom_client::consumer::OffsetReset::Earliest;
    cc.allow_auto_create_topics = false;
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        // Only what transactions committed: an aborted transaction's store updates never happened.
        cc.isolation_level = strom_client::consumer::IsolationLevel::ReadCommitted;
    }
    strom_client::consumer::Consumer::new(cc)
        .await
        .map_err(|e| format!("{}: {e}", config.client_id))
}

/// What the application and its threads share.
pub(crate) struct Shared {
    pub topology: Topology,
    pub config: StreamsConfig,
    pub app: Arc<str>,
    pub registry: Registry,
    /// This instance's id in the group (see `MemberInfo`).
    pub instance_id: String,
    /// Under exactly-once: the process id kept in the state directory, in the producers' transactional ids.
    pub process_id: Option<String>,
    /// Which stream thread of this instance owns each task now: a task's stores and directory have one owner,
    /// so a thread that gets a task another thread is still closing waits for it.
    pub owners: Mutex<BTreeMap<crate::processor::TaskId, usize>>,
    /// Standby copies of other instances' tasks (see `standby`).
    pub standbys: Mutex<BTreeMap<crate::processor::TaskId, standby::StandbyTask>>,
    /// The global stores, shared by every task of every thread.
    pub globals: std::collections::HashMap<String, Arc<Store>>,
    closing: AtomicBool,
    /// Per thread: its tasks are created and restored.
    ready: Mutex<Vec<bool>>,
    error: Mutex<Option<String>>,
    pub skipped_records: AtomicU64,
    /// Changelog records replayed into stores by restores.
    pub restored_records: AtomicU64,
    /// Records processors dropped (late for their windows), over every task that ran here.
    pub dropped_records: AtomicU64,
}

impl Shared {
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn set_thread_ready(&self, index: usize, ready: bool) {
        self.ready.lock()[index] = ready;
    }
}

/// A running streams application.
///
/// ```no_run
/// # async fn run() -> Result<(), strom_streams::StreamsError> {
/// use strom_streams::{KafkaStreams, Materialized, StreamsBuilder, StreamsConfig};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("orders")
///     .group_by_key()
///     .count(Materialized::named("orders-per-customer"));
/// let mut config = StreamsConfig::new("order-counter", "127.0.0.1:9092");
/// config.set("commit.interval.ms", "1000").expect("a known setting");
/// let mut streams = KafkaStreams::new(builder.build(), config)?;
/// streams.start().await?;
/// // ... later, ask the running application:
/// let counts = streams.key_value_store::<String, i64>("orders-per-customer")?;
/// let _ = counts.get(&"customer-7".to_string());
/// streams.close().await;
/// # Ok(())
/// # }
/// ```
pub struct KafkaStreams {
    shared: Arc<Shared>,
    plan: Option<Plan>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: bool,
}

impl KafkaStreams {
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self, StreamsError> {
        if config.application_id.is_empty() {
            return Err(StreamsError::Config("application.id is empty".into()));
        }
        let threads = config.num_stream_threads.max(1);
        let process_id = match config.processing_guarantee {
            ProcessingGuarantee::ExactlyOnceV2 => Some(
                state_dir::process_id(&config.state_dir, &config.application_id).map_err(|e| {
                    StreamsError::Config(format!(
                        "state.dir {}: cannot keep the process id: {e}",
                        config.state_dir.display()
                    ))
                })?,
            ),
            ProcessingGuarantee::AtLeastOnce => None,
        };
        let globals = topology
            .global_stores()
            .map(|g| {
                let bytes = Box::new(crate::store::InMemoryBytes::default());
                (g.spec.name.clone(), Store::new(g.spec.clone(), bytes))
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                instance_id: instance_id(),
                process_id,
                standbys: Mutex::new(BTreeMap::new()),
                owners: Mutex::new(BTreeMap::new()),
                globals,
                topology,
                app: Arc::from(config.application_id.as_str()),
                config,
                registry: Registry::default(),
                closing: AtomicBool::new(false),
                ready: Mutex::new(vec![false; threads]),
                error: Mutex::new(None),
                skipped_records: AtomicU64::new(0),
                restored_records: AtomicU64::new(0),
                dropped_records: AtomicU64::new(0),
            }),
            plan: None,
            threads: Vec::new(),
            started: false,
        })
    }

    /// Creates the internal topics and starts the stream threads. Returns once they are started; the state is
    /// `Rebalancing` until every thread has its tasks.
    pub async fn start(&mut self) -> Result<(), StreamsError> {
        if self.started {
            return Err(StreamsError::Config("start() called twice".into()));
        }
        self.started = true;
        let config = &self.shared.config;
        let admin = Admin::connect(&config.bootstrap_servers)
            .await
            .map_err(|e| {
                StreamsError::Client(format!("connecting to {}: {e}", config.bootstrap_servers))
            })?;
        let plan = self.prepare_topics(&admin).await?;
        self.plan = Some(plan);
        if !self.shared.globals.is_empty() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let shared = self.shared.clone();
            let handle = spawn_runtime_thread(
                format!("{}-GlobalStreamThread", config.client_id),
                self.shared.clone(),
                move || global::run(shared, tx),
            )?;
            self.threads.push(handle);
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StreamsError::Client(e)),
                Err(_) => return Err(StreamsError::Client("the global thread stopped".into())),
            }
        }
        if config.num_standby_replicas > 0 {
            let shared = self.shared.clone();
            let handle = spawn_runtime_thread(
                format!("{}-StandbyThread", config.client_id),
                self.shared.clone(),
                move || standby::run(shared),
            )?;
            self.threads.push(handle);
        }
        for index in 0..config.num_stream_threads.max(1) {
            let shared = self.shared.clone();
            let handle = spawn_runtime_thread(
                format!("{}-StreamThread-{}", config.client_id, index + 1),
                self.shared.clone(),
                move || async move {
                    let thread = thread::StreamThread::start(shared, index).await?;
                    thread.run().await
                },
            )?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Checks the source topics and creates the internal ones.
    async fn prepare_topics(&self, admin: &Admin) -> Result<Plan, StreamsError> {
        let app = &self.shared.config.application_id;
        let topology = &self.shared.topology;
        let mut external = BTreeMap::new();
        let internal: BTreeSet<String> = topology
            .repartition_topics
            .iter()
            .map(|n| format!("{app}-{n}"))
            .collect();
        for topic in topology.source_topics(app) {
            if internal.contains(&topic) {
                continue;
            }
            let described = admin.describe_topics(std::slice::from_ref(&topic)).await;
            let partitions = described
                .ok()
                .and_then(|mut d| d.pop())
                .and_then(|r| r.result.ok())
                .map(|d| d.partitions.len() as i32)
                .filter(|n| *n > 0);
            if let Some(n) = partitions {
                external.insert(topic, n);
            }
        }
        let plan = plan::plan(topology, app, &external).map_err(StreamsError::Topology)?;
        let new: Vec<NewTopic> = plan
            .internal_topics
            .iter()
            .map(|t| {
                let mut topic = NewTopic::new(&t.name)
                    .partitions(t.partitions)
                    .replication_factor(self.shared.config.replication_factor);
                for (k, v) in &t.configs {
                    topic = topic.config(k, v);
                }
                topic
            })
            .collect();
        if !new.is_empty() {
            let results = admin
                .create_topics(&new, false)
                .await
                .map_err(|e| StreamsError::Client(format!("creating internal topics: {e}")))?;
            for r in results {
                if let Err(e) = r.result {
                    let exists = e.kafka_code()
                        == Some(strom_protocol::kafka::ResponseError::TopicAlreadyExists);
                    if !exists {
                        return Err(StreamsError::Client(format!("creating {}: {e}", r.topic)));
                    }
                }
            }
            // An internal topic that existed already must have the partitions the plan needs.
            for t in &plan.internal_topics {
                let info = admin
                    .cluster()
                    .wait_for_topic(&t.name, Duration::from_secs(30))
                    .await
                    .map_err(|e| StreamsError::Client(format!("internal topic {}: {e}", t.name)))?;
                if info.partition_count() as i32 != t.partitions {
                    return Err(StreamsError::Topology(format!(
                        "internal topic {} has {} partitions, the application needs {}",
                        t.name,
                        info.partition_count(),
                        t.partitions
                    )));
                }
            }
        }
        Ok(plan)
    }

    pub fn state(&self) -> State {
        if let Some(e) = self.shared.error.lock().clone() {
            return State::Error(e);
        }
        if !self.started {
            return State::Created;
        }
        if self.shared.closing() {
            return if self.threads.iter().all(|t| t.is_finished()) {
                State::NotRunning
            } else {
                State::PendingShutdown
            };
        }
        if self.shared.ready.lock().iter().all(|r| *r) {
            State::Running
        } else {
            State::Rebalancing
        }
    }

    /// Records skipped by the log-and-continue deserialization handler.
    pub fn skipped_records(&self) -> u64 {
        self.shared.skipped_records.load(Ordering::Relaxed)
    }

    /// Records the processors dropped (late records past their windows' grace), Kafka's `dropped-records`.
    pub fn dropped_records(&self) -> u64 {
        self.shared.dropped_records.load(Ordering::Relaxed)
    }

    /// Changelog records replayed into this instance's stores when tasks started (Kafka's restore listener
    /// counts): none after a clean restart with persistent stores, whole changelogs otherwise.
    pub fn restored_records(&self) -> u64 {
        self.shared.restored_records.load(Ordering::Relaxed)
    }

    /// The partitions (task numbers) this instance keeps standby copies of.
    pub fn standby_partitions(&self) -> BTreeSet<i32> {
        self.shared
            .standbys
            .lock()
            .keys()
            .map(|t| t.partition)
            .collect()
    }

    /// Whether every standby this instance keeps has caught up with its changelogs' ends as of now. Asks the
    /// broker for the end offsets.
    pub async fn standbys_caught_up(&self) -> Result<bool, StreamsError> {
        let positions: Vec<(String, i32, i64)> = self
            .shared
            .standbys
            .lock()
            .iter()
            .flat_map(|(task, s)| {
                s.positions
                    .iter()
                    .map(move |(topic, at)| (topic.clone(), task.partition, *at))
            })
            .collect();
        let admin = Admin::connect(&self.shared.config.bootstrap_servers)
            .await
            .map_err(|e| StreamsError::Client(e.to_string()))?;
        let partitions: Vec<(String, i32)> =
            positions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let ends = admin
            .list_offsets(&partitions, strom_client::admin::OffsetSpec::Latest)
            .await
            .map_err(|e| StreamsError::Client(e.to_string()))?;
        for ((_, _, at), end) in positions.iter().zip(ends) {
            let end = end
                .result
                .map_err(|e| StreamsError::Client(e.to_string()))?
                .offset
                .unwrap_or(0);
            if *at < end {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The partitions (task numbers) whose stores this instance holds now.
    pub fn local_partitions(&self) -> BTreeSet<i32> {
        self.shared.registry.partitions()
    }

    /// Stops the threads: each commits what it processed, closes its tasks and leaves the group.
    pub async fn close(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    fn partitions_of(&self, store: &str) -> Result<i32, StreamsError> {
        let sub = self
            .shared
            .topology
            .subtopology_of_store(store)
            .ok_or_else(|| StreamsError::UnknownStore(store.to_string()))?;
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| StreamsError::Config("the application is not started".into()))?;
        Ok(plan.tasks[sub.id as usize])
    }

    /// The partition that holds `key` in `store`: the default partitioner's choice (murmur2), which is where a
    /// key-partitioned input or repartition topic put it.
    pub fn partition_for_key<K: DefaultSerde>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<i32, StreamsError> {
        let partitions = self.partitions_of(store)?;
        let bytes = K::serde().serialize(key).unwrap_or_default();
        Ok(murmur2_partition(&bytes, partitions as u32) as i32)
    }

    /// The local store of the partition that holds `key`, or `NotLocal`.
    fn local_store_of<K: DefaultSerde>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<Arc<Store>, StreamsError> {
        let partition = self.partition_for_key(store, key)?;
        self.shared
            .registry
            .get(store, partition)
            .ok_or_else(|| StreamsError::NotLocal {
                store: store.to_string(),
                partition,
            })
    }

    /// Which partition holds `key` and which instance runs it now (from the group's members and their
    /// `application.server`).
    pub async fn query_metadata_for_key<K: DefaultSerde>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<KeyQueryMetadata, StreamsError> {
        let partition = self.partition_for_key(store, key)?;
        let app = &self.shared.config.application_id;
        let sub = self
            .shared
            .topology
            .subtopology_of_store(store)
            .ok_or_else(|| StreamsError::UnknownStore(store.to_string()))?;
        let sources: BTreeSet<String> = sub.source_topics.iter().map(|t| t.resolve(app)).collect();
        let admin = Admin::connect(&self.shared.config.bootstrap_servers)
            .await
            .map_err(|e| StreamsError::Client(e.to_string()))?;
        let group = admin
            .describe_group(app)
            .await
            .map_err(|e| StreamsError::Client(format!("describing group {app}: {e}")))?;
        let active_host = group
            .members
            .iter()
            .find(|m| {
                m.assignment
                    .iter()
                    .any(|t| sources.contains(&t.topic) && t.partitions.contains(&partition))
            })
            .and_then(|m| m.user_data.as_deref())
            .and_then(MemberInfo::decode)
            .and_then(|info| info.server);
        Ok(KeyQueryMetadata {
            partition,
            active_host,
        })
    }

    /// A read-only view of a key-value store across the tasks of this instance.
    pub fn key_value_store<K: DefaultSerde, V: DefaultSerde>(
        &self,
        name: &str,
    ) -> Result<QueryableKeyValueStore<'_, K, V>, StreamsError> {
        if !self.shared.globals.contains_key(name) {
            self.partitions_of(name)?;
        }
        Ok(QueryableKeyValueStore {
            streams: self,
            name: name.to_string(),
            _types: std::marker::PhantomData,
        })
    }

    /// A read-only view of a window store (a windowed aggregation's results) across the tasks of this instance.
    pub fn window_store<K: DefaultSerde + Clone, V: DefaultSerde>(
        &self,
        name: &str,
    ) -> Result<QueryableWindowStore<'_, K, V>, StreamsError> {
        self.partitions_of(name)?;
        Ok(QueryableWindowStore {
            streams: self,
            name: name.to_string(),
            _types: std::marker::PhantomData,
        })
    }
}

/// An id for this instance: unique enough among the instances of one application (process id, start time).
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

/// Runs `work` on an OS thread of its own with a single-threaded tokio runtime; an error or a panic becomes the
/// application's error.
fn spawn_runtime_thread<F>(
    name: String,
    shared: Arc<Shared>,
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, StreamsError>
where
    F: std::future::Future<Output = Result<(), String>> + 'static,
{
    let thread_name = name.clone();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // The thread's own future (tasks are not `Send`) runs here in `block_on`; the client's background
            // work (the producer's sender, connection readers, heartbeats) runs on one worker thread beside it,
            // so encoding and sending overlap with processing.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("{name}-io"))
                .enable_all()
                .build()
                .expect("a tokio runtime for the stream thread");
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(work())));
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a processor panicked".into()),
                ),
            };
            if let Some(e) = failure {
                tracing::error!(thread = %name, error = %e, "thread stopped");
                shared.error.lock().get_or_insert(e);
            }
        })
        .map_err(|e| StreamsError::Client(format!("spawning a thread: {e}")))
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        // Threads notice and stop; `close` is the way to wait for them.
        self.shared.closing.store(true, Ordering::Release);
    }
}

/// Interactive queries of a key-value store (Kafka's `ReadOnlyKeyValueStore`).
pub struct QueryableKeyValueStore<'a, K, V> {
    streams: &'a KafkaStreams,
    name: String,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: DefaultSerde, V: DefaultSerde> QueryableKeyValueStore<'_, K, V> {
    /// The value of `key`, if the partition that holds it runs here (else `NotLocal`: ask
    /// `query_metadata_for_key` which instance has it).
    pub fn get(&self, key: &K) -> Result<Option<V>, StreamsError> {
        if let Some(global) = self.streams.shared.globals.get(&self.name) {
            return Ok(KeyValueStore::<K, V>::new(global.clone()).get(key));
        }
        let store = self.streams.local_store_of(&self.name, key)?;
        Ok(KeyValueStore::<K, V>::new(store).get(key))
    }

    /// Entries with `from <= key <= to` in the local partitions, each partition in key order.
    pub fn range(&self, from: &K, to: &K) -> Vec<(K, V)> {
        self.stores()
            .into_iter()
            .flat_map(|s| KeyValueStore::<K, V>::new(s).range(from, to))
            .collect()
    }

    /// Every entry of the local partitions (of a global store: every entry).
    pub fn all(&self) -> Vec<(K, V)> {
        self.stores()
            .into_iter()
            .flat_map(|s| KeyValueStore::<K, V>::new(s).all())
            .collect()
    }

    fn stores(&self) -> Vec<Arc<Store>> {
        match self.streams.shared.globals.get(&self.name) {
            Some(global) => vec![global.clone()],
            None => self.streams.shared.registry.all(&self.name),
        }
    }
}

/// Interactive queries of a window store (Kafka's `ReadOnlyWindowStore`).
pub struct QueryableWindowStore<'a, K, V> {
    streams: &'a KafkaStreams,
    name: String,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: DefaultSerde + Clone, V: DefaultSerde> QueryableWindowStore<'_, K, V> {
    /// The key's windows that start within `[from, to]`, in time order.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StreamsError> {
        let store = self.streams.local_store_of(&self.name, key)?;
        Ok(WindowStore::<K, V>::new(store, false).fetch_range(key, from, to))
    }

    /// Every window of every key in the local partitions that starts within `[from, to]`: (key, start, value).
    pub fn fetch_all(&self, from: i64, to: i64) -> Vec<(K, i64, V)> {
        self.streams
            .shared
            .registry
            .all(&self.name)
            .into_iter()
            .flat_map(|s| WindowStore::<K, V>::new(s, false).fetch_all(from, to))
            .collect()
    }
}
