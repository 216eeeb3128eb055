//! Runs a topology without a broker (Kafka's `TopologyTestDriver`): pipe input records with timestamps, read
//! what the topology wrote, read its stores, advance wall-clock time.
//!
//! Every sub-topology runs as one task (partition 0). Records written to a topic the topology reads (repartition
//! topics, or a user topic it also consumes) are processed at once, as the real driver does; everything written
//! can be read back by topic, changelogs included.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{DeserializationHandler, StreamsConfig};
use crate::processor::{PunctuationType, TaskId};
use crate::record::{OutputRecord, RawRecord, Record};
use crate::serdes::DefaultSerde;
use crate::store::{InMemoryBytes, KeyValueStore, SessionStore, Store, WindowStore};
use crate::task::{Task, TaskError};
use crate::topology::{GlobalStore, Topology};

/// A record on its way back into the topology: topic, key, value, timestamp, headers.
type Pending = (
    String,
    Option<Bytes>,
    Option<Bytes>,
    i64,
    crate::record::Headers,
);

pub struct TopologyTestDriver {
    tasks: Vec<Task>,
    /// Resolved source topic → index in `tasks`.
    readers: HashMap<String, usize>,
    /// Global stores by name, and which topic fills each.
    globals: HashMap<String, Arc<Store>>,
    global_topics: HashMap<String, (Arc<Store>, GlobalStore)>,
    written: HashMap<String, VecDeque<OutputRecord>>,
    offsets: HashMap<String, i64>,
    wall_clock: i64,
    handler: DeserializationHandler,
    skipped: u64,
}

impl TopologyTestDriver {
    /// A driver with application id `topology-test-driver`, wall clock at 0.
    pub fn new(topology: Topology) -> Self {
        Self::with_config(
            topology,
            &StreamsConfig::new("topology-test-driver", "unused"),
            0,
        )
    }

    pub fn with_config(topology: Topology, config: &StreamsConfig, wall_clock: i64) -> Self {
        let app: Arc<str> = Arc::from(config.application_id.as_str());
        let in_memory = |spec: &crate::store::StoreSpec, _: TaskId| -> Result<Arc<Store>, String> {
            Ok(Store::new(spec.clone(), Box::new(InMemoryBytes::default())))
        };
        let mut globals = HashMap::new();
        let mut global_topics = HashMap::new();
        for g in topology.global_stores() {
            let store = Store::new(g.spec.clone(), Box::new(InMemoryBytes::default()));
            globals.insert(g.spec.name.clone(), store.clone());
            global_topics.insert(g.topic.clone(), (store, g.clone()));
        }
        let mut tasks = Vec::new();
        let mut readers = HashMap::new();
        for sub in topology.subtopologies() {
            let id = TaskId {
                subtopology: sub.id,
                partition: 0,
            };
            let mut task = Task::new(&topology, id, &app, &in_memory, &globals)
                .expect("in-memory stores open");
            task.init(wall_clock);
            for topic in task.source_topics() {
                readers.insert(topic.to_string(), tasks.len());
            }
            tasks.push(task);
        }
        Self {
            tasks,
            readers,
            globals,
            global_topics,
            written: HashMap::new(),
            offsets: HashMap::new(),
            wall_clock,
            handler: config.deserialization_handler,
            skipped: 0,
        }
    }

    /// Pipes a record into `topic`, key and value through their default serdes.
    pub fn pipe<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
        key: K,
        value: V,
        timestamp: i64,
    ) {
        let key = K::serde().serialize(&key);
        let value = V::serde().serialize(&value);
        self.pipe_raw(topic, key, value, timestamp)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Pipes bytes into `topic`. A record that does not deserialize is skipped under log-and-continue and
    /// returned as the error under log-and-fail.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
    ) -> Result<(), TaskError> {
        let mut queue = VecDeque::from([(topic.to_string(), key, value, timestamp, Vec::new())]);
        while let Some((topic, key, value, timestamp, headers)) = queue.pop_front() {
            if let Some((store, global)) = self.global_topics.get(&topic) {
                // A global table's topic fills its store directly (it is the store's changelog).
                if let Err(error) = (global.check)(key.as_deref(), value.as_deref()) {
                    if self.handler == DeserializationHandler::LogAndContinue {
                        self.skipped += 1;
                        continue;
                    }
                    return Err(TaskError::Deserialization {
                        task: TaskId {
                            subtopology: u32::MAX,
                            partition: 0,
                        },
                        topic,
                        partition: 0,
                        offset: -1,
                        error,
                    });
                }
                if let Some(key) = key {
                    store.restore(key, value);
                }
                continue;
            }
            let Some(&task) = self.readers.get(&topic) else {
                panic!("no sub-topology reads topic {topic:?}");
            };
            let offset = self.offsets.entry(topic.clone()).or_default();
            let raw = RawRecord {
                topic: topic.as_str().into(),
                partition: 0,
                offset: *offset,
                timestamp,
                key,
                value,
                headers,
            };
            *offset += 1;
            let result = self.tasks[task].process(raw);
            self.collect(&mut queue);
            match result {
                Ok(()) => {}
                Err(e @ TaskError::Deserialization { .. })
                    if self.handler == DeserializationHandler::LogAndContinue =>
                {
                    tracing::warn!(error = %e, "skipping a record that does not deserialize");
                    self.skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves what the tasks wrote into the topics; what the topology reads goes on the queue.
    fn collect(&mut self, queue: &mut VecDeque<Pending>) {
        for task in &mut self.tasks {
            for out in task.take_output() {
                if self.readers.contains_key(&*out.topic)
                    || self.global_topics.contains_key(&*out.topic)
                {
                    queue.push_back((
                        out.topic.to_string(),
                        out.key.clone(),
                        out.value.clone(),
                        out.timestamp,
                        out.headers.clone(),
                    ));
                }
                self.written
                    .entry(out.topic.to_string())
                    .or_default()
                    .push_back(out);
            }
        }
    }

    /// Advances the wall clock and fires wall-clock punctuations that became due.
    pub fn advance_wall_clock_time(&mut self, by: Duration) {
        self.wall_clock += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let now = self.wall_clock;
        for task in &mut self.tasks {
            task.punctuate(PunctuationType::WallClockTime, now)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut queue = VecDeque::new();
        self.collect(&mut queue);
        for (topic, key, value, ts, _) in queue {
            self.pipe_raw(&topic, key, value, ts)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Takes the records written to `topic` so far, decoded.
    pub fn read_output<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
    ) -> Vec<Record<K, V>> {
        self.read_raw(topic)
            .into_iter()
            .map(|o| Record {
                key: K::serde()
                    .deserialize(o.key.as_deref())
                    .unwrap_or_else(|e| panic!("key written to {topic}: {e}")),
                value: V::serde()
                    .deserialize(o.value.as_deref())
                    .unwrap_or_else(|e| panic!("value written to {topic}: {e}")),
                timestamp: o.timestamp,
                headers: o.headers,
            })
            .collect()
    }

    /// Takes the records written to `topic` so far as (key, value) pairs.
    pub fn read_key_values<K: DefaultSerde, V: DefaultSerde>(
        &mut self,
        topic: &str,
    ) -> Vec<(K, V)> {
        self.read_output(topic)
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect()
    }

    /// Takes the records written to `topic` so far, as bytes.
    pub fn read_raw(&mut self, topic: &str) -> Vec<OutputRecord> {
        self.written
            .get_mut(topic)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn store(&self, name: &str) -> Arc<Store> {
        self.tasks
            .iter()
            .find_map(|t| {
                t.own_stores()
                    .find(|(n, _)| *n == name)
                    .map(|(_, s)| s.clone())
            })
            .or_else(|| self.globals.get(name).cloned())
            .unwrap_or_else(|| panic!("no state store named {name:?}"))
    }

    pub fn key_value_store<K: DefaultSerde, V: DefaultSerde>(
        &self,
        name: &str,
    ) -> KeyValueStore<K, V> {
        KeyValueStore::new(self.store(name))
    }

    pub fn window_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> WindowStore<K, V> {
        WindowStore::new(self.store(name), false)
    }

    pub fn session_store<K: DefaultSerde, V: DefaultSerde>(
        &self,
        name: &str,
    ) -> SessionStore<K, V> {
        SessionStore::new(self.store(name))
    }

    /// Records processors dropped (late for their window), over all tasks.
    pub fn dropped_records(&self) -> u64 {
        self.tasks.iter().map(Task::dropped_records).sum()
    }

    /// Records skipped by the log-and-continue deserialization handler.
    pub fn skipped_records(&self) -> u64 {
        self.skipped
    }
}
