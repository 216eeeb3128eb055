//! The Processor API beneath the DSL: a [`Processor`] gets records one at a time with a
//! [`ProcessorContext`] through which it forwards records downstream, reads and writes its state stores and
//! schedules punctuations on stream time or wall-clock time. Every DSL operation is a processor too.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{OutputRecord, Record, RecordMetadata};
use crate::serdes::DefaultSerde;
use crate::store::{KeyValueStore, SessionStore, Store, WindowStore};

/// Which clock a punctuation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Advances only with the timestamps of processed records (replays give the same result).
    StreamTime,
    /// The machine's clock, checked by the runtime between records.
    WallClockTime,
}

/// A task: one partition of one sub-topology (Kafka's `TaskId`, shown as `subtopology_partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    pub subtopology: u32,
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// A user's processor: `KIn`/`VIn` in, `KOut`/`VOut` forwarded.
pub trait Processor<KIn, VIn, KOut, VOut>: 'static {
    /// Called once before the first record: look up stores, schedule punctuations.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) {}

    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>);

    /// A punctuation scheduled with [`ProcessorContext::schedule`] is due; `timestamp` is the time it fired at.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
        _kind: PunctuationType,
        _timestamp: i64,
    ) {
    }

    /// The task is closing (revoked, or the application stops).
    fn close(&mut self) {}
}

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub node: usize,
    pub kind: PunctuationType,
    pub interval_ms: i64,
    /// When it fires next; `None` until the clock is first seen (stream time starts unknown).
    pub next: Option<i64>,
}

/// What a task knows while it processes: clocks, the record's origin, stores, and what it has to write.
pub(crate) struct TaskContext {
    pub task_id: TaskId,
    pub application_id: Arc<str>,
    /// The largest record timestamp processed by the task; -1 before the first.
    pub stream_time: i64,
    pub wall_clock_time: i64,
    pub record: Option<RecordMetadata>,
    pub output: Vec<OutputRecord>,
    pub stores: HashMap<String, Arc<Store>>,
    pub schedules: Vec<Schedule>,
    /// Records dropped by processors (late for their window, null keys where keys are required).
    pub dropped_records: u64,
}

impl TaskContext {
    pub fn store(&self, name: &str) -> Arc<Store> {
        self.stores.get(name).cloned().unwrap_or_else(|| {
            panic!(
                "task {}: no state store {name:?} is connected to this processor (declare it in the topology)",
                self.task_id
            )
        })
    }
}

/// A node of an instantiated topology that takes `Record<K, V>`.
pub(crate) trait Node<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>);
}

pub(crate) type NodeRef<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// The untyped side of every node: start, punctuate, stop.
pub(crate) trait Lifecycle {
    /// The node's id in the topology (punctuations are addressed by it).
    fn id(&self) -> usize;
    fn init(&mut self, ctx: &mut TaskContext);
    fn punctuate(&mut self, ctx: &mut TaskContext, kind: PunctuationType, timestamp: i64);
    fn close(&mut self);
}

/// The children of a node; a record goes to each (a clone to all but the last).
pub(crate) struct Downstream<K, V> {
    pub children: Vec<NodeRef<K, V>>,
}

impl<K: Clone, V: Clone> Downstream<K, V> {
    pub fn forward(&self, ctx: &mut TaskContext, record: Record<K, V>) {
        if let Some((last, rest)) = self.children.split_last() {
            for child in rest {
                child.borrow_mut().process(ctx, record.clone());
            }
            last.borrow_mut().process(ctx, record);
        }
    }
}

/// What a processor sees of its task.
pub struct ProcessorContext<'a, K, V> {
    pub(crate) task: &'a mut TaskContext,
    pub(crate) downstream: &'a Downstream<K, V>,
    pub(crate) node: usize,
}

impl<K: Clone + 'static, V: Clone + 'static> ProcessorContext<'_, K, V> {
    /// Sends a record to every child of this processor.
    pub fn forward(&mut self, record: Record<K, V>) {
        self.downstream.forward(self.task, record);
    }

    /// Calls the processor's `punctuate` every `interval` of the chosen clock (usually from `init`; from
    /// `process` it starts then).
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) {
        let interval_ms = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let next = match kind {
            PunctuationType::StreamTime => None,
            PunctuationType::WallClockTime => Some(self.task.wall_clock_time + interval_ms),
        };
        self.task.schedules.push(Schedule {
            node: self.node,
            kind,
            interval_ms,
            next,
        });
    }

    /// The largest record timestamp the task has processed (-1 before the first).
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The wall-clock time the runtime (or test driver) last observed, ms since the epoch.
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock_time
    }

    /// Where the record being processed came from; `None` inside a punctuation.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.record.as_ref()
    }

    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }

    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// Counts a record this processor dropped (Kafka's `dropped-records` metric).
    pub fn record_dropped(&mut self) {
        self.task.dropped_records += 1;
    }

    /// A key-value store connected to this processor.
    pub fn key_value_store<SK: DefaultSerde, SV: DefaultSerde>(
        &self,
        name: &str,
    ) -> KeyValueStore<SK, SV> {
        KeyValueStore::new(self.task.store(name))
    }

    /// A window store connected to this processor.
    pub fn window_store<SK: DefaultSerde, SV: DefaultSerde>(
        &self,
        name: &str,
        retain_duplicates: bool,
    ) -> WindowStore<SK, SV> {
        WindowStore::new(self.task.store(name), retain_duplicates)
    }

    /// A session store connected to this processor.
    pub fn session_store<SK: DefaultSerde, SV: DefaultSerde>(
        &self,
        name: &str,
    ) -> SessionStore<SK, SV> {
        SessionStore::new(self.task.store(name))
    }
}

/// A processor placed in a topology: the processor and the children it forwards to. The input types are
/// parameters so that `Lifecycle` can name the processor's `Processor` impl.
pub(crate) struct ProcessorNode<P, KIn, VIn, KOut, VOut> {
    pub processor: P,
    pub downstream: Downstream<KOut, VOut>,
    pub id: usize,
    pub _in: std::marker::PhantomData<fn(KIn, VIn)>,
}

impl<P, KIn, VIn, KOut, VOut> Node<KIn, VIn> for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KOut: Clone + 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, task: &mut TaskContext, record: Record<KIn, VIn>) {
        let mut ctx = ProcessorContext {
            task,
            downstream: &self.downstream,
            node: self.id,
        };
        self.processor.process(&mut ctx, record);
    }
}

impl<P, KIn, VIn, KOut, VOut> Lifecycle for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KOut: Clone + 'static,
    VOut: Clone + 'static,
{
    fn id(&self) -> usize {
        self.id
    }

    fn init(&mut self, task: &mut TaskContext) {
        let mut ctx = ProcessorContext {
            task,
            downstream: &self.downstream,
            node: self.id,
        };
        self.processor.init(&mut ctx);
    }

    fn punctuate(&mut self, task: &mut TaskContext, kind: PunctuationType, timestamp: i64) {
        let mut ctx = ProcessorContext {
            task,
            downstream: &self.downstream,
            node: self.id,
        };
        self.processor.punctuate(&mut ctx, kind, timestamp);
    }

    fn close(&mut self) {
        self.processor.close();
    }
}
