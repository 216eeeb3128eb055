//! `KTable`: the latest value per key, as a changelog stream of updates.
//!
//! Every table here is materialized in a key-value store (a table read from a topic, and each table an
//! operation derives): a change carries the new and the previous value, which downstream aggregations and
//! joins need, and the store is what interactive queries read. Derived tables are logged like any store, so a
//! restored task has every table of its sub-topology.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::dsl::aggregate::KGroupedTable;
use crate::dsl::ops::FnProcessor;
use crate::dsl::{Data, GraphRef, KStream, Marker, Materialized};
use crate::processor::ProcessorContext;
use crate::record::Record;
use crate::serdes::DefaultSerde;
use crate::store::{KeyValueStore, StoreKind};
use crate::topology::{BuildFn, Instantiation, NodeKind};

/// An update of a table: the value after and before (`None`: absent, i.e. deleted or never set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    pub new: Option<V>,
    pub old: Option<V>,
}

/// A table with keys `K` and values `V`.
pub struct KTable<K, V> {
    pub(crate) graph: GraphRef,
    pub(crate) node: usize,
    /// The key-value store holding the table (`None` for windowed results, kept in a window store).
    pub(crate) store: Option<String>,
    /// For windowed results: how long after a window's end it can still change (size and grace).
    pub(crate) window_grace_ms: Option<i64>,
    _types: Marker<K, V>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            graph: self.graph.clone(),
            node: self.node,
            store: self.store.clone(),
            window_grace_ms: self.window_grace_ms,
            _types: PhantomData,
        }
    }
}

/// Puts `new` for `key` in `store` and forwards the change, unless nothing was and nothing is.
pub(crate) fn update<K: Data, V: Data>(
    ctx: &mut ProcessorContext<'_, K, Change<V>>,
    store: &KeyValueStore<K, V>,
    record: Record<K, ()>,
    new: Option<V>,
) {
    let old = store.get(&record.key);
    if old.is_none() && new.is_none() {
        return;
    }
    match &new {
        Some(v) => store.put(&record.key, v),
        None => store.delete(&record.key),
    }
    ctx.forward(record.with_value(Change { new, old }));
}

/// A table fed by the source node `source` (values `Option<V>`: `None` deletes).
pub(crate) fn from_source<K: Data + DefaultSerde, V: Data + DefaultSerde>(
    graph: GraphRef,
    source: usize,
    materialized: Materialized,
) -> KTable<K, V> {
    let store = graph.borrow_mut().store_for(
        &materialized,
        "KTABLE-SOURCE-STATE-STORE",
        StoreKind::KeyValue,
    );
    KTable::<K, V>::stateful::<K, Option<V>, _>(graph, source, "KTABLE-SOURCE", store, |store| {
        let store = store.clone();
        move |ctx, r: Record<K, Option<V>>| {
            let value = r.value.clone();
            update(ctx, &store, r.with_value(()), value);
        }
    })
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<K, V> {
    pub(crate) fn at(graph: GraphRef, node: usize, store: Option<String>) -> Self {
        Self {
            graph,
            node,
            store,
            window_grace_ms: None,
            _types: PhantomData,
        }
    }

    /// Adds below `parent` (which forwards `Record<KIn, VIn>`) a processor that keeps this table in `store`.
    /// `make` turns the task's store into the processing closure.
    pub(crate) fn stateful<KIn: Data, VIn: Data, F>(
        graph: GraphRef,
        parent: usize,
        prefix: &str,
        store: String,
        make: impl Fn(&KeyValueStore<K, V>) -> F + Send + Sync + 'static,
    ) -> Self
    where
        F: Fn(&mut ProcessorContext<'_, K, Change<V>>, Record<KIn, VIn>) + Send + Sync + 'static,
    {
        let store_name = store.clone();
        let make = Arc::new(make);
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            let processor = StoreProcessor::<K, V, _, F> {
                store: store_name.clone(),
                make: make.clone(),
                f: None,
                _types: PhantomData,
            };
            inst.processor::<_, KIn, VIn, K, Change<V>>(id, processor);
        });
        let id = {
            let mut g = graph.borrow_mut();
            let name = g.name(prefix);
            g.add(
                name,
                NodeKind::Processor,
                vec![parent],
                vec![store.clone()],
                build,
            )
        };
        Self::at(graph, id, Some(store))
    }

    /// The name of the store that holds this table (for interactive queries).
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The entries for which `predicate` holds (others become deletions).
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.derive("KTABLE-FILTER", Materialized::default(), move |k, v: &V| {
            predicate(k, v).then(|| v.clone())
        })
    }

    /// The entries for which `predicate` does not hold.
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// A new value for each entry.
    pub fn map_values<V2: Data + DefaultSerde>(
        &self,
        f: impl Fn(&V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        self.derive("KTABLE-MAPVALUES", Materialized::default(), move |_, v| {
            Some(f(v))
        })
    }

    /// A table whose value for each key is `f` of this table's value (`None` removes the entry).
    pub(crate) fn derive<V2: Data + DefaultSerde>(
        &self,
        prefix: &str,
        materialized: Materialized,
        f: impl Fn(&K, &V) -> Option<V2> + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        if self.window_grace_ms.is_some() && materialized.name.is_none() {
            // A windowed result: computed from each change (old and new), not kept in a store, which would hold
            // every window forever. It stays windowed (suppress works after it).
            let f = move |ctx: &mut ProcessorContext<'_, K, Change<V2>>,
                          r: Record<K, Change<V>>| {
                let new = r.value.new.as_ref().and_then(|v| f(&r.key, v));
                let old = r.value.old.as_ref().and_then(|v| f(&r.key, v));
                if new.is_some() || old.is_some() {
                    ctx.forward(r.with_value(Change { new, old }));
                }
            };
            let stream = KStream::<K, Change<V>>::at(self.graph.clone(), self.node, false)
                .stateless::<K, Change<V2>>(prefix, false, f);
            let mut table = KTable::at(self.graph.clone(), stream.node, None);
            table.window_grace_ms = self.window_grace_ms;
            return table;
        }
        let store = self.graph.borrow_mut().store_for(
            &materialized,
            &format!("{prefix}-STATE-STORE"),
            StoreKind::KeyValue,
        );
        let f = Arc::new(f);
        KTable::<K, V2>::stateful::<K, Change<V>, _>(
            self.graph.clone(),
            self.node,
            prefix,
            store,
            move |store| {
                let (store, f) = (store.clone(), f.clone());
                move |ctx, r: Record<K, Change<V>>| {
                    let new = r.value.new.as_ref().and_then(|v| f(&r.key, v));
                    update(ctx, &store, r.with_value(()), new);
                }
            },
        )
    }

    /// The updates of this table as a stream; a deletion is a `None` value (a tombstone when written out).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let f = |ctx: &mut ProcessorContext<'_, K, Option<V>>, r: Record<K, Change<V>>| {
            let value = r.value.new.clone();
            ctx.forward(r.with_value(value));
        };
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, Change<V>, K, Option<V>>(id, FnProcessor(Arc::new(f)));
        });
        let id = {
            let mut g = self.graph.borrow_mut();
            let name = g.name("KTABLE-TOSTREAM");
            g.add(
                name,
                NodeKind::Processor,
                vec![self.node],
                Vec::new(),
                build,
            )
        };
        KStream::at(self.graph.clone(), id, false)
    }

    /// Groups the table by a new key and value, for aggregations with an adder and a subtractor.
    pub fn group_by<K2: Data + DefaultSerde + Send, V2: Data + DefaultSerde + Send>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KGroupedTable<K2, V2> {
        KGroupedTable::new(self, selector)
    }

    pub(crate) fn store_or_panic(&self, operation: &str) -> String {
        self.store.clone().unwrap_or_else(|| {
            panic!("{operation} needs a table kept in a key-value store; windowed results are not")
        })
    }
}

/// A processor whose closure is made from the task's store at `init`.
pub(crate) struct StoreProcessor<K, V, M, F> {
    pub store: String,
    pub make: Arc<M>,
    pub f: Option<F>,
    pub _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, KIn, VIn, KOut, VOut, M, F> crate::processor::Processor<KIn, VIn, KOut, VOut>
    for StoreProcessor<K, V, M, F>
where
    K: DefaultSerde,
    V: DefaultSerde,
    KOut: Data,
    VOut: Data,
    M: Fn(&KeyValueStore<K, V>) -> F + 'static,
    F: Fn(&mut ProcessorContext<'_, KOut, VOut>, Record<KIn, VIn>) + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) {
        let store = ctx.key_value_store::<K, V>(&self.store);
        self.f = Some((self.make)(&store));
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>) {
        let f = self.f.as_ref().expect("processor initialized");
        f(ctx, record);
    }
}
