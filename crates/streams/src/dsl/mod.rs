//! The DSL: [`StreamsBuilder`] creates [`KStream`]s and [`KTable`]s from topics; their operations add processors
//! to a graph that [`StreamsBuilder::build`] turns into a [`Topology`].
//!
//! Types follow the data: a `KStream<K, V>` carries keys of `K` and values of `V`; operations that write bytes
//! (sinks, stores, repartition topics) use the types' [`DefaultSerde`]. Closures must be `Send + Sync`, because
//! every task (and every stream thread) builds its own processors from them.

mod aggregate;
mod fk_join;
mod join;
mod ops;
mod stream;
mod suppress;
mod table;
pub mod window;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

pub use aggregate::{
    KGroupedStream, KGroupedTable, SessionWindowedKStream, SlidingWindowedKStream,
    TimeWindowedKStream,
};
pub use ops::{BranchedKStream, StreamPartitioner};
pub use stream::KStream;
pub use table::{Change, KTable};

use crate::serdes::{DefaultSerde, SerdeError};
use crate::store::{StoreKind, StoreSpec};
use crate::topology::{
    BuildFn, GlobalStore, Instantiation, NodeKind, NodeSpec, TopicName, Topology,
};

/// What flows through a topology: cloneable (a record forwarded to several children is cloned) and owned.
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

/// How a store of a DSL operation is kept (Kafka's `Materialized`).
#[derive(Debug, Clone, Default)]
pub struct Materialized {
    pub(crate) name: Option<String>,
    pub(crate) logging: Option<bool>,
    pub(crate) persistent: bool,
}

impl Materialized {
    /// A store with this name: queryable by it, and its changelog is `<application.id>-<name>-changelog`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// On disk under `state.dir` (fjall) instead of in memory.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Without a changelog topic: the state is lost when the task moves or the instance restarts.
    pub fn without_logging(mut self) -> Self {
        self.logging = Some(false);
        self
    }
}

/// The graph under construction, shared by the builder and every stream and table handle.
pub(crate) struct Graph {
    nodes: Vec<NodeSpec>,
    stores: BTreeMap<String, StoreSpec>,
    repartition_topics: BTreeSet<String>,
    reader_partitioned: BTreeSet<String>,
    globals: BTreeMap<String, GlobalStore>,
    /// Sequence for generated names (Kafka's `KSTREAM-MAP-0000000003`).
    next_name: usize,
}

pub(crate) type GraphRef = Rc<RefCell<Graph>>;

impl Graph {
    pub fn name(&mut self, prefix: &str) -> String {
        let n = self.next_name;
        self.next_name += 1;
        format!("{prefix}-{n:010}")
    }

    pub fn add(
        &mut self,
        name: String,
        kind: NodeKind,
        parents: Vec<usize>,
        stores: Vec<String>,
        build: BuildFn,
    ) -> usize {
        self.nodes.push(NodeSpec {
            name,
            kind,
            parents,
            stores,
            build,
        });
        self.nodes.len() - 1
    }

    /// Adds the shape of a join: a processor per side (`parent`, stores, build) and the node where both meet,
    /// named `names` in that order; returns the meeting node.
    pub fn add_sides_and_merge(
        &mut self,
        names: [String; 3],
        left: (usize, Vec<String>, BuildFn),
        right: (usize, Vec<String>, BuildFn),
        merge: (Vec<String>, BuildFn),
    ) -> usize {
        let [left_name, right_name, merge_name] = names;
        let l = self.add(left_name, NodeKind::Processor, vec![left.0], left.1, left.2);
        let r = self.add(
            right_name,
            NodeKind::Processor,
            vec![right.0],
            right.1,
            right.2,
        );
        self.add(
            merge_name,
            NodeKind::Processor,
            vec![l, r],
            merge.0,
            merge.1,
        )
    }

    /// Declares a store; a second store with the same name is a topology error.
    pub fn add_store(&mut self, spec: StoreSpec) {
        if self.stores.contains_key(&spec.name) {
            panic!(
                "a state store named {:?} exists already in this topology",
                spec.name
            );
        }
        self.stores.insert(spec.name.clone(), spec);
    }

    /// Declares the store of a DSL operation: the user's name or a generated one.
    pub fn store_for(
        &mut self,
        materialized: &Materialized,
        prefix: &str,
        kind: StoreKind,
    ) -> String {
        let name = match &materialized.name {
            Some(n) => n.clone(),
            None => self.name(prefix),
        };
        self.add_store(StoreSpec {
            name: name.clone(),
            kind,
            logged: materialized.logging.unwrap_or(true),
            persistent: materialized.persistent,
        });
        name
    }

    /// Marks repartition topic `<name>-repartition` as partitioned like the other sources of the sub-topology
    /// that reads it, instead of taking its writer's task count.
    pub fn add_reader_partitioned(&mut self, name: String) {
        self.reader_partitioned
            .insert(format!("{name}-repartition"));
    }

    pub fn add_repartition_topic(&mut self, name: String) {
        self.repartition_topics.insert(name);
    }
}

/// A table of a whole topic, on every instance (Kafka's `GlobalKTable`).
pub struct GlobalKTable<K, V> {
    pub(crate) store: String,
    _types: Marker<K, V>,
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of its store (for interactive queries).
    pub fn store_name(&self) -> &str {
        &self.store
    }
}

/// Builds topologies with the DSL.
pub struct StreamsBuilder {
    graph: GraphRef,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    pub fn new() -> Self {
        Self {
            graph: Rc::new(RefCell::new(Graph {
                nodes: Vec::new(),
                stores: BTreeMap::new(),
                repartition_topics: BTreeSet::new(),
                reader_partitioned: BTreeSet::new(),
                globals: BTreeMap::new(),
                next_name: 0,
            })),
        }
    }

    /// A stream of the records of `topic`, keys and values through their default serdes.
    pub fn stream<K: Data + DefaultSerde, V: Data + DefaultSerde>(
        &self,
        topic: &str,
    ) -> KStream<K, V> {
        self.stream_from(&[topic])
    }

    /// A stream of the records of several topics (they must have the same partition count).
    pub fn stream_from<K: Data + DefaultSerde, V: Data + DefaultSerde>(
        &self,
        topics: &[&str],
    ) -> KStream<K, V> {
        let topics: Vec<TopicName> = topics
            .iter()
            .map(|t| TopicName::External(t.to_string()))
            .collect();
        let id = source::<K, V>(&self.graph, topics);
        KStream::at(self.graph.clone(), id, false)
    }

    /// A table of the latest value per key of `topic` (a compacted topic, usually). Null values delete.
    pub fn table<K: Data + DefaultSerde, V: Data + DefaultSerde>(
        &self,
        topic: &str,
        materialized: Materialized,
    ) -> KTable<K, V> {
        let id = source::<K, Option<V>>(&self.graph, vec![TopicName::External(topic.into())]);
        table::from_source(self.graph.clone(), id, materialized)
    }

    /// A table of a whole topic on every instance (small reference data): streams join it by any key they
    /// compute, without repartitioning. Its store is filled from all partitions before processing starts.
    pub fn global_table<K: Data + DefaultSerde, V: Data + DefaultSerde>(
        &self,
        topic: &str,
        materialized: Materialized,
    ) -> GlobalKTable<K, V> {
        let mut g = self.graph.borrow_mut();
        let name = match &materialized.name {
            Some(n) => n.clone(),
            None => g.name(&format!("{topic}-STATE-STORE")),
        };
        if g.stores.contains_key(&name) || g.globals.contains_key(&name) {
            panic!("a state store named {name:?} exists already in this topology");
        }
        g.globals.insert(
            name.clone(),
            GlobalStore {
                topic: topic.to_string(),
                spec: StoreSpec {
                    name: name.clone(),
                    kind: StoreKind::KeyValue,
                    // The topic itself is the changelog.
                    logged: false,
                    persistent: false,
                },
                check: Arc::new(|key, value| {
                    K::serde()
                        .deserialize(key)
                        .map_err(|e| SerdeError(format!("key: {e}")))?;
                    // A null value deletes the key.
                    if value.is_some() {
                        V::serde()
                            .deserialize(value)
                            .map_err(|e| SerdeError(format!("value: {e}")))?;
                    }
                    Ok(())
                }),
            },
        );
        GlobalKTable {
            store: name,
            _types: PhantomData,
        }
    }

    /// Declares a store for processors of the Processor API (`KStream::process`).
    pub fn add_state_store(&self, spec: StoreSpec) {
        self.graph.borrow_mut().add_store(spec);
    }

    /// The topology built so far.
    pub fn build(&self) -> Topology {
        let g = self.graph.borrow();
        Topology::new(
            g.nodes.clone(),
            g.stores.clone(),
            g.repartition_topics.clone(),
            g.reader_partitioned.clone(),
            g.globals.clone(),
        )
    }
}

/// Adds a source node of `(K, V)` reading `topics`.
pub(crate) fn source<K: Data + DefaultSerde, V: Data + DefaultSerde>(
    graph: &GraphRef,
    topics: Vec<TopicName>,
) -> usize {
    let mut g = graph.borrow_mut();
    for node in &g.nodes {
        if let NodeKind::Source { topics: taken } = &node.kind {
            if let Some(t) = topics.iter().find(|t| taken.contains(t)) {
                // As Kafka: one source per topic (a second one would never get the topic's records).
                panic!("topic {t:?} is read by another source already: reuse its stream or table");
            }
        }
    }
    let name = g.name("KSTREAM-SOURCE");
    let build_topics = topics.clone();
    let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
        inst.source::<K, V>(id, &build_topics, K::serde(), V::serde());
    });
    g.add(
        name,
        NodeKind::Source { topics },
        Vec::new(),
        Vec::new(),
        build,
    )
}

pub(crate) type Marker<K, V> = PhantomData<fn() -> (K, V)>;
