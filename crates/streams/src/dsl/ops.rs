//! The building blocks of stateless operations: a processor made of a closure, the sink, and branching.

use std::sync::Arc;

use crate::dsl::{Data, KStream};
use crate::processor::{Node, Processor, ProcessorContext, TaskContext};
use crate::record::{OutputRecord, PartitionChoice, Record};
use crate::serdes::SerdeRef;

/// A processor whose `process` is a closure: every stateless DSL operation.
pub(crate) struct FnProcessor<F>(pub Arc<F>);

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for FnProcessor<F>
where
    F: Fn(&mut ProcessorContext<'_, K2, V2>, Record<K, V>) + 'static,
    K2: Clone + 'static,
    V2: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K2, V2>, record: Record<K, V>) {
        (self.0)(ctx, record);
    }
}

/// A node that forwards what it gets: where two branches of a graph meet (merge, both sides of a join).
pub(crate) fn pass_through<K: Data, V: Data>() -> crate::topology::BuildFn {
    Arc::new(|inst: &mut crate::topology::Instantiation<'_>, id| {
        let pass = |ctx: &mut ProcessorContext<'_, K, V>, r: Record<K, V>| ctx.forward(r);
        inst.processor::<_, K, V, K, V>(id, FnProcessor(Arc::new(pass)));
    })
}

/// The user's choice of partition for a sink: `(key, value, partition count) -> partition`.
pub type StreamPartitioner<K, V> = Arc<dyn Fn(&K, &V, u32) -> u32 + Send + Sync>;

/// Serializes records to a topic.
pub(crate) struct SinkNode<K, V> {
    pub topic: std::sync::Arc<str>,
    pub keys: SerdeRef<K>,
    pub values: SerdeRef<V>,
    pub partitioner: Option<StreamPartitioner<K, V>>,
}

impl<K: Data + Send, V: Data + Send> Node<K, V> for SinkNode<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) {
        let partition = match &self.partitioner {
            None => match self.keys.partition_key(&record.key) {
                Some(bytes) => PartitionChoice::Custom(Box::new(move |count| {
                    strom_client::partitioner::murmur2_partition(&bytes, count)
                })),
                None => PartitionChoice::Default,
            },
            Some(p) => {
                let (p, key, value) = (p.clone(), record.key.clone(), record.value.clone());
                PartitionChoice::Custom(Box::new(move |count| p(&key, &value, count)))
            }
        };
        ctx.output.push(OutputRecord {
            topic: self.topic.clone(),
            partition,
            timestamp: record.timestamp,
            key: self.keys.serialize(&record.key),
            value: self.values.serialize(&record.value),
            headers: record.headers,
        });
    }
}

/// A predicate of a branch.
pub type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// The result of [`KStream::split`]: add branches in order; a record goes to the first branch whose predicate
/// holds (Kafka's `BranchedKStream`).
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    predicates: Vec<Predicate<K, V>>,
    branches: Vec<KStream<K, V>>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>) -> Self {
        Self {
            stream,
            predicates: Vec::new(),
            branches: Vec::new(),
        }
    }

    /// A branch of the records that no earlier branch took and that `predicate` accepts.
    pub fn branch(mut self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        let predicate: Predicate<K, V> = Arc::new(predicate);
        let earlier = self.predicates.clone();
        let this = predicate.clone();
        let branch = self
            .stream
            .filter(move |k, v| !earlier.iter().any(|p| p(k, v)) && this(k, v));
        self.predicates.push(predicate);
        self.branches.push(branch);
        self
    }

    /// The branches, in the order they were added, plus one of the records no branch took.
    pub fn default_branch(self) -> Vec<KStream<K, V>> {
        let earlier = self.predicates;
        let rest = self
            .stream
            .filter(move |k, v| !earlier.iter().any(|p| p(k, v)));
        let mut branches = self.branches;
        branches.push(rest);
        branches
    }

    /// The branches, in the order they were added; records no branch took are dropped.
    pub fn no_default_branch(self) -> Vec<KStream<K, V>> {
        self.branches
    }
}
