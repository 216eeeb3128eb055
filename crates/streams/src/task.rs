//! A task: one partition of one sub-topology, with its nodes and stores. Single-threaded and without I/O: records
//! in, output records (sinks, repartition topics, changelogs) out. The runtime and the test driver both drive
//! tasks through this type.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::processor::{Lifecycle, PunctuationType, TaskContext, TaskId};
use crate::record::{OutputRecord, PartitionChoice, RawRecord, RecordMetadata};
use crate::serdes::SerdeError;
use crate::store::{Store, StoreError, StoreSpec};
use crate::topology::{Instantiation, RawNode, Topology};

/// Why a task could not go on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    #[error("task {task}: record {topic}-{partition}@{offset} does not deserialize: {error}")]
    Deserialization {
        task: TaskId,
        topic: String,
        partition: i32,
        offset: i64,
        error: SerdeError,
    },
    #[error("task {task}: {0}", task = .1)]
    Store(StoreError, TaskId),
}

/// Creates a store's storage for a task.
pub(crate) type StoreFactory<'a> = dyn Fn(&StoreSpec, TaskId) -> Result<Arc<Store>, String> + 'a;

pub struct Task {
    pub(crate) ctx: TaskContext,
    sources: rustc_hash::FxHashMap<String, Rc<RefCell<dyn RawNode>>>,
    lifecycles: Vec<Rc<RefCell<dyn Lifecycle>>>,
    /// Node id → its lifecycle, for punctuations.
    by_node: HashMap<usize, Rc<RefCell<dyn Lifecycle>>>,
    changelogs: Vec<(Arc<Store>, Arc<str>)>,
    /// Names of the global stores among `ctx.stores`.
    globals: std::collections::HashSet<String>,
    initialized: bool,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.ctx.task_id)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// Builds task `id` of `topology` with empty stores from `stores`. Call [`init`](Self::init) after restoring
    /// the stores.
    pub(crate) fn new(
        topology: &Topology,
        id: TaskId,
        application_id: &Arc<str>,
        stores: &StoreFactory<'_>,
        globals: &HashMap<String, Arc<Store>>,
    ) -> Result<Self, TaskError> {
        let sub = &topology.subtopologies[id.subtopology as usize];
        let mut task_stores = HashMap::new();
        let mut changelogs = Vec::new();
        for name in &sub.stores {
            let spec = &topology.stores[name];
            let store = stores(spec, id).map_err(|message| {
                TaskError::Store(
                    StoreError {
                        store: name.clone(),
                        message,
                    },
                    id,
                )
            })?;
            if spec.logged {
                changelogs.push((store.clone(), spec.changelog_topic(application_id).into()));
            }
            task_stores.insert(name.clone(), store);
        }
        // Global stores are shared by every task (and filled by the runtime), never logged by a task.
        for (name, store) in globals {
            task_stores.insert(name.clone(), store.clone());
        }
        let inst = Instantiation::run(topology, sub, application_id);
        let lifecycles = inst.lifecycles;
        Ok(Self {
            ctx: TaskContext {
                task_id: id,
                application_id: application_id.clone(),
                stream_time: -1,
                wall_clock_time: 0,
                record: None,
                output: Vec::new(),
                stores: task_stores,
                schedules: Vec::new(),
                dropped_records: 0,
            },
            sources: inst.sources,
            by_node: lifecycles
                .iter()
                .map(|l| (l.borrow().id(), l.clone()))
                .collect(),
            lifecycles,
            changelogs,
            globals: globals.keys().cloned().collect(),
            initialized: false,
        })
    }

    pub fn id(&self) -> TaskId {
        self.ctx.task_id
    }

    /// The source topics (resolved) this task reads.
    pub fn source_topics(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The largest record timestamp processed (-1 before the first).
    pub fn stream_time(&self) -> i64 {
        self.ctx.stream_time
    }

    /// Starts the task at the stream time of its last commit (before `init`), so windows that closed before a
    /// restart stay closed.
    pub fn set_stream_time(&mut self, stream_time: i64) {
        self.ctx.stream_time = self.ctx.stream_time.max(stream_time);
    }

    pub fn dropped_records(&self) -> u64 {
        self.ctx.dropped_records
    }

    /// Initializes every processor (they look up stores and schedule punctuations). Once, after restore.
    pub fn init(&mut self, wall_clock_time: i64) {
        if self.initialized {
            return;
        }
        self.initialized = true;
        self.ctx.wall_clock_time = wall_clock_time;
        for node in &self.lifecycles {
            node.borrow_mut().init(&mut self.ctx);
        }
    }

    /// Processes one input record. A record that does not deserialize changes nothing and is returned as an
    /// error for the deserialization exception handler to decide on.
    pub fn process(&mut self, raw: RawRecord) -> Result<(), TaskError> {
        debug_assert!(self.initialized, "process before init");
        let Some(source) = self.sources.get(&*raw.topic).cloned() else {
            panic!(
                "task {} got a record of {}, which it does not read",
                self.ctx.task_id, raw.topic
            );
        };
        let RawRecord {
            topic,
            partition,
            offset,
            timestamp,
            key,
            value,
            headers,
        } = raw;
        // Stream time moves before processing, so windows see the record's own time (Kafka's PartitionGroup).
        let previous = self.ctx.stream_time;
        self.ctx.stream_time = self.ctx.stream_time.max(timestamp);
        self.ctx.record = Some(RecordMetadata {
            topic,
            partition,
            offset,
        });
        let result = source
            .borrow_mut()
            .process_raw(&mut self.ctx, key, value, timestamp, headers);
        let meta = self.ctx.record.take().expect("set above");
        if let Err(error) = result {
            self.ctx.stream_time = previous;
            return Err(TaskError::Deserialization {
                task: self.ctx.task_id,
                topic: meta.topic.to_string(),
                partition: meta.partition,
                offset: meta.offset,
                error,
            });
        }
        self.collect_changelogs(timestamp);
        self.check_stores()?;
        self.punctuate(PunctuationType::StreamTime, self.ctx.stream_time)?;
        Ok(())
    }

    /// Fires the punctuations of `kind` due at `now` (stream time or wall-clock time). Returns whether any fired.
    pub fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<bool, TaskError> {
        if kind == PunctuationType::WallClockTime {
            self.ctx.wall_clock_time = now;
        }
        let mut fired = false;
        for i in 0..self.ctx.schedules.len() {
            let schedule = &mut self.ctx.schedules[i];
            if schedule.kind != kind || now < 0 {
                continue;
            }
            // Stream time: the first punctuation comes with the first record (Kafka's STREAM_TIME). Wall clock:
            // one interval after it was scheduled (set by `schedule`).
            let next = *schedule.next.get_or_insert(now);
            if now < next {
                continue;
            }
            // Skip the missed intervals: one call per due time, as Kafka's PunctuationSchedule.
            let interval = schedule.interval_ms;
            schedule.next = Some(next + ((now - next) / interval + 1) * interval);
            let node = schedule.node;
            if let Some(processor) = self.by_node.get(&node).cloned() {
                processor.borrow_mut().punctuate(&mut self.ctx, kind, now);
                fired = true;
            }
        }
        if fired {
            self.collect_changelogs(self.ctx.stream_time.max(0));
            self.check_stores()?;
        }
        Ok(fired)
    }

    fn collect_changelogs(&mut self, timestamp: i64) {
        let partition = self.ctx.task_id.partition;
        for (store, topic) in &self.changelogs {
            for (key, value) in store.take_changes() {
                self.ctx.output.push(OutputRecord {
                    topic: topic.clone(),
                    partition: PartitionChoice::Fixed(partition),
                    timestamp,
                    key: Some(key),
                    value,
                    headers: Vec::new(),
                });
            }
        }
    }

    /// The task's own stores (not the global ones it reads).
    pub fn own_stores(&self) -> impl Iterator<Item = (&String, &Arc<Store>)> {
        self.ctx
            .stores
            .iter()
            .filter(|(_, s)| !self.globals.contains(s.name()))
    }

    fn check_stores(&self) -> Result<(), TaskError> {
        for store in self.ctx.stores.values() {
            if let Some(e) = store.error() {
                return Err(TaskError::Store(e, self.ctx.task_id));
            }
        }
        Ok(())
    }

    /// What the task wrote since the last call, in order.
    pub fn take_output(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.ctx.output)
    }

    /// Flushes the task's stores (before a commit).
    pub fn flush(&self) -> Result<(), TaskError> {
        for (_, store) in self.own_stores() {
            store
                .flush()
                .map_err(|e| TaskError::Store(e, self.ctx.task_id))?;
        }
        Ok(())
    }

    pub fn close(&mut self) {
        for node in &self.lifecycles {
            node.borrow_mut().close();
        }
    }
}
