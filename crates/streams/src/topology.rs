//! A topology: the processing graph the DSL (or the Processor API) builds, split into sub-topologies.
//!
//! Nodes are kept as specifications: a name, parents, the stores they use, and a build function that creates
//! the node for one task. A sub-topology is a connected part of the graph (nodes joined by edges or by a
//! shared store); repartition topics cut the graph into sub-topologies, because what flows through them is
//! re-keyed and lands on other partitions. Each sub-topology runs as one task per partition of its source
//! topics: task `s_p` reads partition `p` of every source topic of sub-topology `s` (so topics joined together
//! must have the same partition count: co-partitioning, checked at start).

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::processor::{
    Downstream, Lifecycle, Node, NodeRef, Processor, ProcessorNode, TaskContext,
};
use crate::serdes::{SerdeError, SerdeRef};
use crate::store::StoreSpec;

/// A topic a node reads or writes: the user's, or one the application owns (named `<application.id>-<name>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicName {
    External(String),
    Internal(String),
}

impl TopicName {
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            Self::External(t) => t.clone(),
            Self::Internal(name) => format!("{application_id}-{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<TopicName> },
    Processor,
    Sink { topic: TopicName },
}

pub(crate) type BuildFn = Arc<dyn Fn(&mut Instantiation<'_>, usize) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    pub stores: Vec<String>,
    pub build: BuildFn,
}

/// A connected part of the topology, run as one task per input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtopology {
    pub id: u32,
    pub(crate) nodes: Vec<usize>,
    pub source_topics: Vec<TopicName>,
    pub sink_topics: Vec<TopicName>,
    pub stores: Vec<String>,
}

/// The built processing graph. Cheap to share between threads.
pub struct Topology {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) children: Vec<Vec<usize>>,
    pub(crate) stores: BTreeMap<String, StoreSpec>,
    /// Internal names (`<name>-repartition`) of the repartition topics.
    pub(crate) repartition_topics: BTreeSet<String>,
    /// Repartition topics that take the partition count of their reader's other sources (the responses of a
    /// foreign-key join, which must land in the left table's tasks).
    pub(crate) reader_partitioned: BTreeSet<String>,
    pub(crate) subtopologies: Vec<Subtopology>,
    /// Global stores by name: each holds a whole topic on every instance (a `GlobalKTable`).
    pub(crate) globals: BTreeMap<String, GlobalStore>,
}

/// Checks that a record's key and value (bytes, null when absent) deserialize.
pub(crate) type RecordCheck =
    Arc<dyn Fn(Option<&[u8]>, Option<&[u8]>) -> Result<(), SerdeError> + Send + Sync>;

/// A store that every instance fills from all partitions of a topic, its own changelog.
#[derive(Clone)]
pub struct GlobalStore {
    pub topic: String,
    pub spec: StoreSpec,
    /// Whether a record's key and value deserialize (records that do not are handled by the deserialization
    /// exception handler, as the records of any source).
    pub(crate) check: RecordCheck,
}

impl std::fmt::Debug for GlobalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalStore")
            .field("topic", &self.topic)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<NodeSpec>,
        stores: BTreeMap<String, StoreSpec>,
        repartition_topics: BTreeSet<String>,
        reader_partitioned: BTreeSet<String>,
        globals: BTreeMap<String, GlobalStore>,
    ) -> Self {
        let mut children = vec![Vec::new(); nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            for &p in &node.parents {
                children[p].push(id);
            }
        }
        let subtopologies = split(&nodes);
        Self {
            nodes,
            children,
            stores,
            repartition_topics,
            reader_partitioned,
            subtopologies,
            globals,
        }
    }

    pub fn subtopologies(&self) -> &[Subtopology] {
        &self.subtopologies
    }

    pub fn stores(&self) -> impl Iterator<Item = &StoreSpec> {
        self.stores.values()
    }

    /// The global stores, each with the topic it holds.
    pub fn global_stores(&self) -> impl Iterator<Item = &GlobalStore> {
        self.globals.values()
    }

    pub fn store(&self, name: &str) -> Option<&StoreSpec> {
        self.stores.get(name)
    }

    /// Every source topic of every sub-topology, resolved.
    pub fn source_topics(&self, application_id: &str) -> Vec<String> {
        let set: BTreeSet<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().map(|t| t.resolve(application_id)))
            .collect();
        set.into_iter().collect()
    }

    /// The sub-topology that reads `topic` (resolved name).
    pub fn subtopology_of(&self, application_id: &str, topic: &str) -> Option<&Subtopology> {
        self.subtopologies.iter().find(|s| {
            s.source_topics
                .iter()
                .any(|t| t.resolve(application_id) == topic)
        })
    }

    /// The sub-topology that owns `store`.
    pub fn subtopology_of_store(&self, store: &str) -> Option<&Subtopology> {
        self.subtopologies
            .iter()
            .find(|s| s.stores.iter().any(|n| n == store))
    }

    /// A readable description, in the spirit of Kafka's `TopologyDescription`.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for sub in &self.subtopologies {
            out.push_str(&format!("   Sub-topology: {}\n", sub.id));
            for &id in &sub.nodes {
                let node = &self.nodes[id];
                let what = match &node.kind {
                    NodeKind::Source { topics } => {
                        format!("Source: {} (topics: {topics:?})", node.name)
                    }
                    NodeKind::Processor => {
                        format!("Processor: {} (stores: {:?})", node.name, node.stores)
                    }
                    NodeKind::Sink { topic } => format!("Sink: {} (topic: {topic:?})", node.name),
                };
                let next: Vec<&str> = self.children[id]
                    .iter()
                    .map(|&c| self.nodes[c].name.as_str())
                    .collect();
                out.push_str(&format!("    {what}\n      --> {next:?}\n"));
            }
        }
        out
    }
}

/// Groups nodes into sub-topologies: union of parent edges and shared stores, numbered in order of their first
/// node.
fn split(nodes: &[NodeSpec]) -> Vec<Subtopology> {
    let mut root: Vec<usize> = (0..nodes.len()).collect();
    fn find(root: &mut [usize], mut x: usize) -> usize {
        while root[x] != x {
            root[x] = root[root[x]];
            x = root[x];
        }
        x
    }
    let union = |root: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(root, a), find(root, b));
        if ra != rb {
            root[ra.max(rb)] = ra.min(rb);
        }
    };
    let mut store_owner: HashMap<&str, usize> = HashMap::new();
    for (id, node) in nodes.iter().enumerate() {
        for &p in &node.parents {
            union(&mut root, id, p);
        }
        for s in &node.stores {
            match store_owner.get(s.as_str()) {
                Some(&other) => union(&mut root, id, other),
                None => {
                    store_owner.insert(s, id);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for id in 0..nodes.len() {
        let r = find(&mut root, id);
        groups.entry(r).or_default().push(id);
    }
    groups
        .into_values()
        .enumerate()
        .map(|(i, ids)| {
            let mut sources = Vec::new();
            let mut sinks = Vec::new();
            let mut stores = BTreeSet::new();
            for &id in &ids {
                match &nodes[id].kind {
                    NodeKind::Source { topics } => sources.extend(topics.iter().cloned()),
                    NodeKind::Sink { topic } => sinks.push(topic.clone()),
                    NodeKind::Processor => {}
                }
                stores.extend(nodes[id].stores.iter().cloned());
            }
            Subtopology {
                id: i as u32,
                nodes: ids,
                source_topics: sources,
                sink_topics: sinks,
                stores: stores.into_iter().collect(),
            }
        })
        .collect()
}

/// A source node's untyped entry: raw bytes in, typed records out.
pub(crate) trait RawNode {
    fn process_raw(
        &mut self,
        ctx: &mut TaskContext,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: crate::record::Headers,
    ) -> Result<(), SerdeError>;
}

pub(crate) struct SourceNode<K, V> {
    pub keys: SerdeRef<K>,
    pub values: SerdeRef<V>,
    pub downstream: Downstream<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> RawNode for SourceNode<K, V> {
    fn process_raw(
        &mut self,
        ctx: &mut TaskContext,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: crate::record::Headers,
    ) -> Result<(), SerdeError> {
        let key = self
            .keys
            .deserialize_owned(key)
            .map_err(|e| SerdeError(format!("key: {e}")))?;
        let value = self
            .values
            .deserialize_owned(value)
            .map_err(|e| SerdeError(format!("value: {e}")))?;
        let record = crate::record::Record {
            key,
            value,
            timestamp,
            headers,
        };
        self.downstream.forward(ctx, record);
        Ok(())
    }
}

/// Builds the nodes of one task, children before parents (a node's children always have larger ids).
pub(crate) struct Instantiation<'a> {
    pub application_id: &'a str,
    topology: &'a Topology,
    members: BTreeSet<usize>,
    built: HashMap<usize, Box<dyn Any>>,
    pub lifecycles: Vec<Rc<RefCell<dyn Lifecycle>>>,
    pub sources: rustc_hash::FxHashMap<String, Rc<RefCell<dyn RawNode>>>,
}

impl<'a> Instantiation<'a> {
    pub fn run(topology: &'a Topology, subtopology: &Subtopology, application_id: &'a str) -> Self {
        let mut inst = Self {
            application_id,
            topology,
            members: subtopology.nodes.iter().copied().collect(),
            built: HashMap::new(),
            lifecycles: Vec::new(),
            sources: Default::default(),
        };
        for &id in subtopology.nodes.iter().rev() {
            let build = topology.nodes[id].build.clone();
            build(&mut inst, id);
        }
        // Initialize upstream nodes first, as Kafka does.
        inst.lifecycles.reverse();
        inst
    }

    /// The built children of `id`, typed as the records `id` forwards.
    pub fn children<K: 'static, V: 'static>(&self, id: usize) -> Downstream<K, V> {
        let children = self.topology.children[id]
            .iter()
            .filter(|c| self.members.contains(c))
            .map(|c| {
                self.built
                    .get(c)
                    .and_then(|b| b.downcast_ref::<NodeRef<K, V>>())
                    .unwrap_or_else(|| {
                        panic!(
                            "topology bug: node {} does not take the records {} forwards",
                            self.topology.nodes[*c].name, self.topology.nodes[id].name
                        )
                    })
                    .clone()
            })
            .collect();
        Downstream { children }
    }

    pub fn register<K: 'static, V: 'static>(&mut self, id: usize, node: NodeRef<K, V>) {
        self.built.insert(id, Box::new(node));
    }

    /// Places a processor at `id`: its children are the nodes built below it.
    pub fn processor<P, KIn, VIn, KOut, VOut>(&mut self, id: usize, processor: P)
    where
        P: Processor<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
    {
        let node = Rc::new(RefCell::new(ProcessorNode {
            processor,
            downstream: self.children::<KOut, VOut>(id),
            id,
            _in: std::marker::PhantomData,
        }));
        self.lifecycles.push(node.clone());
        let as_node: NodeRef<KIn, VIn> = node;
        self.register(id, as_node);
    }

    /// Places a source reading `topics` at `id`.
    pub fn source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        id: usize,
        topics: &[TopicName],
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
    ) {
        let node = Rc::new(RefCell::new(SourceNode {
            keys,
            values,
            downstream: self.children::<K, V>(id),
        }));
        for t in topics {
            self.sources
                .insert(t.resolve(self.application_id), node.clone());
        }
    }
}

/// Used by nodes that take records of type `(K, V)` but are not processors (sinks).
pub(crate) fn register_node<K: 'static, V: 'static, N: Node<K, V> + 'static>(
    inst: &mut Instantiation<'_>,
    id: usize,
    node: N,
) {
    let node: NodeRef<K, V> = Rc::new(RefCell::new(node));
    inst.register(id, node);
}
