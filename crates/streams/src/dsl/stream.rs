//! `KStream`: an unbounded sequence of records, each an independent event.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::dsl::aggregate::KGroupedStream;
use crate::dsl::ops::{pass_through, BranchedKStream, FnProcessor, SinkNode, StreamPartitioner};
use crate::dsl::{source, Data, GraphRef, Marker};
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::serdes::DefaultSerde;
use crate::topology::{BuildFn, Instantiation, NodeKind, TopicName};

/// A stream of records with keys `K` and values `V`.
pub struct KStream<K, V> {
    pub(crate) graph: GraphRef,
    pub(crate) node: usize,
    /// An operation may have changed the key: grouping or joining must repartition first.
    pub(crate) key_changed: bool,
    _types: Marker<K, V>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            graph: self.graph.clone(),
            node: self.node,
            key_changed: self.key_changed,
            _types: PhantomData,
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn at(graph: GraphRef, node: usize, key_changed: bool) -> Self {
        Self {
            graph,
            node,
            key_changed,
            _types: PhantomData,
        }
    }

    /// Adds a processor made of `f` below this stream.
    pub(crate) fn stateless<K2: Data, V2: Data>(
        &self,
        prefix: &str,
        key_changed: bool,
        f: impl Fn(&mut ProcessorContext<'_, K2, V2>, Record<K, V>) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f = Arc::new(f);
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, V, K2, V2>(id, FnProcessor(f.clone()));
        });
        let id = {
            let mut g = self.graph.borrow_mut();
            let name = g.name(prefix);
            g.add(
                name,
                NodeKind::Processor,
                vec![self.node],
                Vec::new(),
                build,
            )
        };
        KStream::at(self.graph.clone(), id, self.key_changed || key_changed)
    }

    /// The records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.stateless("KSTREAM-FILTER", false, move |ctx, r| {
            if predicate(&r.key, &r.value) {
                ctx.forward(r);
            }
        })
    }

    /// The records for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// A new key and value for each record (the key may change: grouping afterwards repartitions).
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.stateless("KSTREAM-MAP", true, move |ctx, r| ctx.forward(r.map(&f)))
    }

    /// A new value for each record; the key stays, so no repartitioning.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.stateless("KSTREAM-MAPVALUES", false, move |ctx, r| {
            ctx.forward(r.map(|k, v| (k, f(v))));
        })
    }

    /// A new value for each record, computed from key and value.
    pub fn map_values_with_key<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.stateless("KSTREAM-MAPVALUES", false, move |ctx, r| {
            ctx.forward(r.map(|k, v| {
                let v = f(&k, v);
                (k, v)
            }));
        })
    }

    /// A new key for each record, from key and value.
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        self.stateless("KSTREAM-KEY-SELECT", true, move |ctx, r| {
            let key = f(&r.key, &r.value);
            ctx.forward(r.with_key(key));
        })
    }

    /// Zero or more records for each record.
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.stateless("KSTREAM-FLATMAP", true, move |ctx, r| {
            for (key, value) in f(r.key, r.value) {
                ctx.forward(Record {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                });
            }
        })
    }

    /// Zero or more values for each record, with its key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        self.stateless("KSTREAM-FLATMAPVALUES", false, move |ctx, r| {
            for value in f(r.value) {
                ctx.forward(Record {
                    key: r.key.clone(),
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                });
            }
        })
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        self.stateless("KSTREAM-PEEK", false, move |ctx, r| {
            f(&r.key, &r.value);
            ctx.forward(r);
        })
    }

    /// Calls `f` on each record; nothing goes further.
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        self.stateless::<K, V>("KSTREAM-FOREACH", false, move |_, r| f(&r.key, &r.value));
    }

    /// The records of both streams.
    pub fn merge(&self, other: &KStream<K, V>) -> Self {
        let build: BuildFn = pass_through::<K, V>();
        let id = {
            let mut g = self.graph.borrow_mut();
            let name = g.name("KSTREAM-MERGE");
            g.add(
                name,
                NodeKind::Processor,
                vec![self.node, other.node],
                Vec::new(),
                build,
            )
        };
        KStream::at(
            self.graph.clone(),
            id,
            self.key_changed || other.key_changed,
        )
    }

    /// Splits the stream by predicates: each record goes to the first branch that accepts it.
    pub fn split(&self) -> BranchedKStream<K, V> {
        BranchedKStream::new(self.clone())
    }

    /// A processor of the Processor API, using the named stores (declared with
    /// `StreamsBuilder::add_state_store`). `make` creates one processor per task.
    pub fn process<K2: Data, V2: Data, P: Processor<K, V, K2, V2>>(
        &self,
        make: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2> {
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, V, K2, V2>(id, make());
        });
        let id = {
            let mut g = self.graph.borrow_mut();
            for s in stores {
                assert!(
                    g.stores.contains_key(*s),
                    "process() uses state store {s:?}, which is not declared"
                );
            }
            let name = g.name("KSTREAM-PROCESSOR");
            g.add(
                name,
                NodeKind::Processor,
                vec![self.node],
                stores.iter().map(|s| s.to_string()).collect(),
                build,
            )
        };
        // A processor may forward any key.
        KStream::at(self.graph.clone(), id, true)
    }
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KStream<K, V> {
    /// Writes the records to `topic`, partitioned by key (murmur2, as every Kafka client).
    pub fn to(&self, topic: &str) {
        self.sink(TopicName::External(topic.into()), None);
    }

    /// Writes the records to `topic`, partitioned by `partitioner`.
    pub fn to_with_partitioner(&self, topic: &str, partitioner: StreamPartitioner<K, V>) {
        self.sink(TopicName::External(topic.into()), Some(partitioner));
    }

    pub(crate) fn sink(&self, topic: TopicName, partitioner: Option<StreamPartitioner<K, V>>) {
        let build_topic = topic.clone();
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            let node = SinkNode {
                topic: build_topic.resolve(inst.application_id).into(),
                keys: K::serde(),
                values: V::serde(),
                partitioner: partitioner.clone(),
            };
            crate::topology::register_node::<K, V, _>(inst, id, node);
        });
        let mut g = self.graph.borrow_mut();
        let name = g.name("KSTREAM-SINK");
        g.add(
            name,
            NodeKind::Sink { topic },
            vec![self.node],
            Vec::new(),
            build,
        );
    }

    /// Sends the records through a repartition topic `<application.id>-<name>-repartition`, so that records
    /// with equal keys land in the same partition (and task) again.
    pub fn repartition(&self, name: &str) -> KStream<K, V> {
        let internal = format!("{name}-repartition");
        self.graph
            .borrow_mut()
            .add_repartition_topic(internal.clone());
        let topic = TopicName::Internal(internal);
        self.sink(topic.clone(), None);
        let id = source::<K, V>(&self.graph, vec![topic]);
        KStream::at(self.graph.clone(), id, false)
    }

    /// This stream, repartitioned by key if an operation may have changed the key.
    pub(crate) fn repartitioned_if_needed(&self, name: &str) -> KStream<K, V> {
        if self.key_changed {
            self.repartition(name)
        } else {
            self.clone()
        }
    }

    /// Groups the records by their key, for aggregations.
    pub fn group_by_key(&self) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone())
    }

    /// Groups the records by a new key (repartitioning by it).
    pub fn group_by<K2: Data + DefaultSerde + Send>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KGroupedStream<K2, V> {
        KGroupedStream::new(self.select_key(f))
    }
}
