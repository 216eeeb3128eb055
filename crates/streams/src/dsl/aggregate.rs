//! Aggregations: grouped streams and tables, and windowed aggregations (tumbling, hopping, session, sliding).
//!
//! Every aggregation keeps its state in a store and emits an update per input record (Kafka Streams with
//! `statestore.cache.max.bytes=0`); `suppress` turns a windowed result into one final update per window.
//! Windowed aggregations track the largest timestamp they have seen (their observed stream time) and drop a
//! record whose windows all closed (window end + grace at or before it), counting it as dropped.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::dsl::table::{Change, KTable};
use crate::dsl::window::{SessionWindows, SlidingWindows, TimeWindows, Window, Windowed};
use crate::dsl::{Data, KStream, Materialized};
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::serdes::{DefaultSerde, SerdeRef};
use crate::store::{SessionStore, StoreKind, WindowStore};
use crate::topology::{BuildFn, Instantiation, NodeKind};

type Init<VA> = Arc<dyn Fn() -> VA + Send + Sync>;
type Aggregator<K, V, VA> = Arc<dyn Fn(&K, V, VA) -> VA + Send + Sync>;
type Merger<K, VA> = Arc<dyn Fn(&K, VA, VA) -> VA + Send + Sync>;

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
}

/// One step of an aggregation: the new aggregate from a value and the previous aggregate (`None`: the first).
type Step<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

fn counting<K, V>() -> Step<K, V, i64> {
    Arc::new(|_, _, n| n.unwrap_or(0) + 1)
}

fn reducing<K, V>(reducer: impl Fn(V, V) -> V + Send + Sync + 'static) -> Step<K, V, V> {
    Arc::new(move |_, v, agg| match agg {
        None => v,
        Some(a) => reducer(a, v),
    })
}

fn aggregating<K, V, VA: 'static>(
    initializer: impl Fn() -> VA + Send + Sync + 'static,
    aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
) -> Step<K, V, VA> {
    Arc::new(move |k, v, agg| aggregator(k, v, agg.unwrap_or_else(&initializer)))
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>) -> Self {
        Self { stream }
    }

    /// The number of records per key.
    pub fn count(&self, materialized: Materialized) -> KTable<K, i64> {
        self.aggregate_with("KSTREAM-COUNT", materialized, counting())
    }

    /// Combines each key's values with `reducer(aggregate, value)`; a key's first value is its start.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, V> {
        self.aggregate_with("KSTREAM-REDUCE", materialized, reducing(reducer))
    }

    /// Folds each key's values into an aggregate: `aggregator(key, value, aggregate)`, starting from
    /// `initializer()`.
    pub fn aggregate<VA: Data + DefaultSerde>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, VA> {
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            aggregating(initializer, aggregator),
        )
    }

    fn aggregate_with<VA: Data + DefaultSerde>(
        &self,
        prefix: &str,
        materialized: Materialized,
        step: Step<K, V, VA>,
    ) -> KTable<K, VA> {
        let graph = self.stream.graph.clone();
        let store = graph.borrow_mut().store_for(
            &materialized,
            &format!("{prefix}-STATE-STORE"),
            StoreKind::KeyValue,
        );
        let input = self.stream.repartitioned_if_needed(&store);
        KTable::<K, VA>::stateful::<K, V, _>(graph, input.node, prefix, store, move |store| {
            let (store, step) = (store.clone(), step.clone());
            move |ctx, r: Record<K, V>| {
                if store.is_null_key(&r.key) {
                    return ctx.record_dropped();
                }
                let old = store.get(&r.key);
                let new = step(&r.key, r.value.clone(), old.clone());
                store.put(&r.key, &new);
                ctx.forward(r.with_value(Change {
                    new: Some(new),
                    old,
                }));
            }
        })
    }

    /// Aggregates per key and fixed-size window (tumbling or hopping).
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            stream: self.stream.clone(),
            windows,
        }
    }

    /// Aggregates per key and session.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            stream: self.stream.clone(),
            windows,
        }
    }

    /// Aggregates per key over sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream {
            stream: self.stream.clone(),
            windows,
        }
    }
}

/// Adds a windowed aggregation processor `make()` with its store below `stream` (repartitioned if needed).
fn windowed_node<K, V, VA, P>(
    stream: &KStream<K, V>,
    prefix: &str,
    materialized: Materialized,
    kind: StoreKind,
    grace_ms: i64,
    extra_stores: Vec<String>,
    make: impl Fn(String) -> P + Send + Sync + 'static,
) -> KTable<Windowed<K>, VA>
where
    K: Data + DefaultSerde + Send,
    V: Data + DefaultSerde + Send,
    VA: Data + DefaultSerde,
    P: Processor<K, V, Windowed<K>, Change<VA>>,
{
    let graph = stream.graph.clone();
    let store = graph
        .borrow_mut()
        .store_for(&materialized, &format!("{prefix}-STATE-STORE"), kind);
    let input = stream.repartitioned_if_needed(&store);
    let store_name = store.clone();
    let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
        inst.processor::<_, K, V, Windowed<K>, Change<VA>>(id, make(store_name.clone()));
    });
    let id = {
        let mut g = graph.borrow_mut();
        let name = g.name(prefix);
        let mut stores = vec![store];
        stores.extend(extra_stores);
        g.add(name, NodeKind::Processor, vec![input.node], stores, build)
    };
    let mut table = KTable::at(graph, id, None);
    table.window_grace_ms = Some(grace_ms);
    table
}

/// When a window or session store's expiry pass is due. Entries leave a segment after their retention, as in
/// Kafka's segmented stores (Kafka's default segment: half the retention, at least a minute), so interactive
/// queries still see windows that just closed; a pass reads the whole store, so one per segment of stream time.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    retention_ms: i64,
    segment_ms: i64,
    done_up_to: i64,
}

impl Expiry {
    fn new(retention_ms: i64) -> Self {
        Self {
            retention_ms,
            segment_ms: (retention_ms / 2).max(60_000),
            done_up_to: i64::MIN,
        }
    }

    /// The time to expire entries below, when a pass is due at stream time `observed`.
    fn due(&mut self, observed: i64) -> Option<i64> {
        let horizon = observed - self.retention_ms - self.segment_ms;
        (horizon >= self.done_up_to.saturating_add(self.segment_ms)).then(|| {
            self.done_up_to = horizon;
            horizon
        })
    }
}

/// A grouped stream with fixed-size windows.
pub struct TimeWindowedKStream<K, V> {
    stream: KStream<K, V>,
    windows: TimeWindows,
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> TimeWindowedKStream<K, V> {
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        self.aggregate_with("KSTREAM-COUNT", materialized, counting())
    }

    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, V> {
        self.aggregate_with("KSTREAM-REDUCE", materialized, reducing(reducer))
    }

    pub fn aggregate<VA: Data + DefaultSerde>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, VA> {
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            aggregating(initializer, aggregator),
        )
    }

    fn aggregate_with<VA: Data + DefaultSerde>(
        &self,
        prefix: &str,
        materialized: Materialized,
        step: Step<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        windowed_node(
            &self.stream,
            prefix,
            materialized,
            StoreKind::Window {
                retention_ms: windows.retention_ms(),
            },
            windows.grace_ms,
            Vec::new(),
            move |store| WindowAggregate {
                store,
                windows,
                step: step.clone(),
                state: None,
                observed: i64::MIN,
                expiry: Expiry::new(windows.retention_ms()),
            },
        )
    }
}

struct WindowAggregate<K, V, VA> {
    store: String,
    windows: TimeWindows,
    step: Step<K, V, VA>,
    state: Option<WindowStore<K, VA>>,
    observed: i64,
    expiry: Expiry,
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for WindowAggregate<K, V, VA>
where
    K: Data + DefaultSerde,
    V: Data,
    VA: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) {
        self.state = Some(ctx.window_store(&self.store, false));
        // Restarted tasks resume at their committed stream time: closed windows stay closed.
        self.observed = self.observed.max(ctx.stream_time());
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: Record<K, V>,
    ) {
        let store = self.state.as_ref().expect("initialized");
        if store.is_null_key(&record.key) {
            return ctx.record_dropped();
        }
        self.observed = self.observed.max(record.timestamp);
        let close = self.observed - self.windows.grace_ms;
        let mut applied = false;
        for window in self.windows.windows_for(record.timestamp) {
            if window.end <= close {
                continue;
            }
            applied = true;
            let old = store.fetch(&record.key, window.start);
            let new = (self.step)(&record.key, record.value.clone(), old.clone());
            store.put(&record.key, window.start, &new);
            ctx.forward(Record {
                key: Windowed {
                    key: record.key.clone(),
                    window,
                },
                value: Change {
                    new: Some(new),
                    old,
                },
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            });
        }
        if !applied {
            ctx.record_dropped();
        }
        if let Some(horizon) = self.expiry.due(self.observed) {
            store.expire(horizon);
        }
    }
}

/// A grouped stream with session windows.
pub struct SessionWindowedKStream<K, V> {
    stream: KStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> SessionWindowedKStream<K, V> {
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        self.aggregate(|| 0, |_, _, n| n + 1, |_, a, b| a + b, materialized)
    }

    /// Folds each session's values; `merger` combines two sessions that a record joins into one.
    pub fn aggregate<VA: Data + DefaultSerde>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let (init, agg, merge): (Init<VA>, Aggregator<K, V, VA>, Merger<K, VA>) = (
            Arc::new(initializer),
            Arc::new(aggregator),
            Arc::new(merger),
        );
        windowed_node(
            &self.stream,
            "KSTREAM-SESSION-AGGREGATE",
            materialized,
            StoreKind::Session {
                retention_ms: windows.gap_ms.saturating_add(windows.grace_ms),
            },
            windows.grace_ms,
            Vec::new(),
            move |store| SessionAggregate {
                store,
                windows,
                init: init.clone(),
                agg: agg.clone(),
                merge: merge.clone(),
                state: None,
                observed: i64::MIN,
                expiry: Expiry::new(windows.gap_ms.saturating_add(windows.grace_ms)),
            },
        )
    }
}

struct SessionAggregate<K, V, VA> {
    store: String,
    windows: SessionWindows,
    init: Init<VA>,
    agg: Aggregator<K, V, VA>,
    merge: Merger<K, VA>,
    state: Option<SessionStore<K, VA>>,
    observed: i64,
    expiry: Expiry,
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for SessionAggregate<K, V, VA>
where
    K: Data + DefaultSerde,
    V: Data,
    VA: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) {
        self.state = Some(ctx.session_store(&self.store));
        // Restarted tasks resume at their committed stream time: closed windows stay closed.
        self.observed = self.observed.max(ctx.stream_time());
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: Record<K, V>,
    ) {
        let store = self.state.as_ref().expect("initialized");
        if store.is_null_key(&record.key) {
            return ctx.record_dropped();
        }
        let ts = record.timestamp;
        self.observed = self.observed.max(ts);
        let close = self.observed - self.windows.grace_ms;
        let gap = self.windows.gap_ms;
        let mut window = Window { start: ts, end: ts };
        let mut value = (self.init)();
        let overlapping = store.find_sessions(&record.key, ts - gap, ts + gap);
        for (session, agg) in &overlapping {
            window.start = window.start.min(session.window.start);
            window.end = window.end.max(session.window.end);
            value = (self.merge)(&record.key, value, agg.clone());
        }
        if window.end < close {
            ctx.record_dropped();
            return;
        }
        // As Kafka: unless the record is a session of its own instant, every session it touches is retracted
        // (downstream subtractors see each old value leave) and the merged one is new.
        let mut old = None;
        if window != (Window { start: ts, end: ts }) {
            for (session, agg) in overlapping {
                store.remove(&session);
                ctx.forward(Record {
                    key: session,
                    value: Change {
                        new: None,
                        old: Some(agg),
                    },
                    timestamp: ts,
                    headers: record.headers.clone(),
                });
            }
        } else {
            old = overlapping.into_iter().next().map(|(_, agg)| agg);
        }
        let key = Windowed {
            key: record.key.clone(),
            window,
        };
        let new = (self.agg)(&record.key, record.value, value);
        store.put(&key, &new);
        ctx.forward(Record {
            key,
            value: Change {
                new: Some(new),
                old,
            },
            timestamp: ts,
            headers: record.headers,
        });
        if let Some(horizon) = self.expiry.due(self.observed) {
            store.expire(horizon);
        }
    }
}

/// A grouped stream with sliding windows.
pub struct SlidingWindowedKStream<K, V> {
    stream: KStream<K, V>,
    windows: SlidingWindows,
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> SlidingWindowedKStream<K, V> {
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        self.aggregate(|| 0, |_, _, n| n + 1, materialized)
    }

    /// Folds the values of every window `[t - difference, t]` that holds a distinct set of records (Kafka's
    /// sliding windows: each record's own window ending at it, and the window starting just after it).
    pub fn aggregate<VA: Data + DefaultSerde>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let (init, agg): (Init<VA>, Aggregator<K, V, VA>) =
            (Arc::new(initializer), Arc::new(aggregator));
        let graph = self.stream.graph.clone();
        // The raw records of each key, from which every affected window is folded again: kept while an open
        // window can still hold them.
        let records_retention = windows
            .time_difference_ms
            .saturating_mul(2)
            .saturating_add(windows.grace_ms)
            .saturating_add(1);
        let records = graph.borrow_mut().store_for(
            &Materialized::default(),
            "KSTREAM-SLIDING-RECORDS-STORE",
            StoreKind::Window {
                retention_ms: records_retention,
            },
        );
        let retention = windows.time_difference_ms + windows.grace_ms;
        windowed_node(
            &self.stream,
            "KSTREAM-SLIDING-AGGREGATE",
            materialized,
            StoreKind::Window {
                retention_ms: retention,
            },
            windows.grace_ms,
            vec![records.clone()],
            move |store| SlidingAggregate {
                store,
                records: records.clone(),
                windows,
                init: init.clone(),
                agg: agg.clone(),
                state: None,
                observed: i64::MIN,
                expiry: Expiry::new(records_retention),
                _v: PhantomData,
            },
        )
    }
}

struct SlidingAggregate<K, V, VA> {
    store: String,
    records: String,
    windows: SlidingWindows,
    init: Init<VA>,
    agg: Aggregator<K, V, VA>,
    state: Option<(WindowStore<K, VA>, WindowStore<K, V>)>,
    observed: i64,
    expiry: Expiry,
    _v: PhantomData<fn() -> V>,
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for SlidingAggregate<K, V, VA>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VA: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) {
        self.state = Some((
            ctx.window_store(&self.store, false),
            WindowStore::new(ctx.task.store(&self.records), true),
        ));
        self.observed = self.observed.max(ctx.stream_time());
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: Record<K, V>,
    ) {
        let (results, raw) = self.state.as_ref().expect("initialized");
        if raw.is_null_key(&record.key) {
            return ctx.record_dropped();
        }
        let d = self.windows.time_difference_ms;
        let t = record.timestamp;
        self.observed = self.observed.max(t);
        let close = self.observed - self.windows.grace_ms;
        if t + 1 + d <= close {
            ctx.record_dropped();
            return;
        }
        match ctx.record_metadata() {
            // Numbered by input offset: a replayed record replaces its entry instead of counting twice.
            Some(meta) => raw.put_seq(&record.key, t, meta.offset as u32, &record.value),
            None => raw.put(&record.key, t, &record.value),
        }
        let nearby = raw.fetch_range(&record.key, t - d - 1, t + d + 1);
        // Window starts whose window [s, s + d] holds t, or that start right after t: the windows this record
        // creates or changes.
        let mut starts: Vec<i64> = vec![t - d];
        for (ts, _) in &nearby {
            if (t..=t + d).contains(ts) {
                starts.push(ts - d);
            }
            if (t - d - 1..t).contains(ts) {
                starts.push(ts + 1);
            }
            if *ts > t && *ts <= t + d + 1 {
                starts.push(t + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            let window = Window {
                start,
                end: start + d,
            };
            if window.end <= close {
                continue;
            }
            let members: Vec<&(i64, V)> = nearby
                .iter()
                .filter(|(ts, _)| (window.start..=window.end).contains(ts))
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut value = (self.init)();
            for (_, v) in members {
                value = (self.agg)(&record.key, v.clone(), value);
            }
            let old = results.fetch(&record.key, start);
            results.put(&record.key, start, &value);
            ctx.forward(Record {
                key: Windowed {
                    key: record.key.clone(),
                    window,
                },
                value: Change {
                    new: Some(value),
                    old,
                },
                timestamp: t,
                headers: record.headers.clone(),
            });
        }
        // Records leave once no open window can hold them, results once their window closed (a segment later,
        // as the other window stores).
        if let Some(horizon) = self.expiry.due(self.observed) {
            raw.expire(horizon);
            results.expire(self.observed - d - self.windows.grace_ms - self.expiry.segment_ms);
        }
    }
}

/// A table regrouped by a new key, ready to aggregate with an adder and a subtractor.
pub struct KGroupedTable<K, V> {
    /// The regrouped changes, already through the repartition topic.
    changes: KStream<K, Change<V>>,
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KGroupedTable<K, V> {
    pub(crate) fn new<KT: Data + DefaultSerde, VT: Data + DefaultSerde>(
        table: &KTable<KT, VT>,
        selector: impl Fn(&KT, &VT) -> (K, V) + Send + Sync + 'static,
    ) -> Self {
        // A change of the source table becomes a subtraction from the old value's group and an addition to
        // the new one's (one record when the group did not change).
        let regrouped = KStream::<KT, Change<VT>>::at(table.graph.clone(), table.node, false)
            .stateless::<K, Change<V>>("KTABLE-SELECT", true, move |ctx, r| {
                let old = r.value.old.as_ref().map(|v| selector(&r.key, v));
                let new = r.value.new.as_ref().map(|v| selector(&r.key, v));
                let at = |k: K, change| Record {
                    key: k,
                    value: change,
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                };
                match (old, new) {
                    (Some((ko, vo)), Some((kn, vn))) if same_bytes(&ko, &kn) => {
                        ctx.forward(at(
                            kn,
                            Change {
                                new: Some(vn),
                                old: Some(vo),
                            },
                        ));
                    }
                    (old, new) => {
                        if let Some((k, v)) = old {
                            ctx.forward(at(
                                k,
                                Change {
                                    new: None,
                                    old: Some(v),
                                },
                            ));
                        }
                        if let Some((k, v)) = new {
                            ctx.forward(at(
                                k,
                                Change {
                                    new: Some(v),
                                    old: None,
                                },
                            ));
                        }
                    }
                }
            });
        Self { changes: regrouped }
    }

    pub fn count(&self, materialized: Materialized) -> KTable<K, i64> {
        self.aggregate(|| 0, |_, _, n| n + 1, |_, _, n| n - 1, materialized)
    }

    /// Aggregates each group: `adder(key, value, aggregate)` for values that join it, `subtractor` for values
    /// that leave it (a changed or deleted entry of the source table).
    pub fn aggregate<VA: Data + DefaultSerde>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, VA> {
        let graph = self.changes.graph.clone();
        let store = graph.borrow_mut().store_for(
            &materialized,
            "KTABLE-AGGREGATE-STATE-STORE",
            StoreKind::KeyValue,
        );
        let input = self.changes.repartition(&store);
        let (init, add, sub) = (Arc::new(initializer), Arc::new(adder), Arc::new(subtractor));
        KTable::<K, VA>::stateful::<K, Change<V>, _>(
            graph,
            input.node,
            "KTABLE-AGGREGATE",
            store,
            move |store| {
                let (store, init, add, sub) =
                    (store.clone(), init.clone(), add.clone(), sub.clone());
                move |ctx, r: Record<K, Change<V>>| {
                    let old = store.get(&r.key);
                    let mut value = old.clone().unwrap_or_else(|| init());
                    if let Some(v) = r.value.old.clone() {
                        value = sub(&r.key, v, value);
                    }
                    if let Some(v) = r.value.new.clone() {
                        value = add(&r.key, v, value);
                    }
                    store.put(&r.key, &value);
                    ctx.forward(r.with_value(Change {
                        new: Some(value),
                        old,
                    }));
                }
            },
        )
    }
}

/// Whether two keys serialize to the same bytes (the test of "same group" that partitioning uses).
fn same_bytes<K: DefaultSerde>(a: &K, b: &K) -> bool {
    let serde: SerdeRef<K> = K::serde();
    serde.serialize(a) == serde.serialize(b)
}

impl<V: DefaultSerde + 'static> DefaultSerde for Change<V> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(ChangeSerde(V::serde()))
    }
}

/// A change on a repartition topic: the new value, then the old one, each length-prefixed (-1 for absent).
struct ChangeSerde<V>(SerdeRef<V>);

impl<V: 'static> crate::serdes::Serde<Change<V>> for ChangeSerde<V> {
    fn serialize(&self, value: &Change<V>) -> Option<bytes::Bytes> {
        let mut out = Vec::new();
        crate::serdes::put_part(
            &mut out,
            value.new.as_ref().and_then(|v| self.0.serialize(v)),
        );
        crate::serdes::put_part(
            &mut out,
            value.old.as_ref().and_then(|v| self.0.serialize(v)),
        );
        Some(bytes::Bytes::from(out))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Change<V>, crate::serdes::SerdeError> {
        let mut data = data.ok_or_else(|| {
            crate::serdes::SerdeError("null where a table change was expected".into())
        })?;
        let new = crate::serdes::take_part(&mut data)?;
        let old = crate::serdes::take_part(&mut data)?;
        Ok(Change {
            new: new.map(|b| self.0.deserialize(Some(b))).transpose()?,
            old: old.map(|b| self.0.deserialize(Some(b))).transpose()?,
        })
    }
}
