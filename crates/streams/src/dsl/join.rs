//! Joins: stream-table, stream-stream (windowed; inner, left, outer) and table-table (inner, left, outer).
//!
//! Both sides of a join must be co-partitioned: the same key on the same partition number. A side whose key an
//! operation may have changed goes through a repartition topic first. A join's processors share stores, which
//! puts both sides in one sub-topology and so in one task per partition.
//!
//! Stream-stream joins keep each side's records in a window store (duplicates kept) for `before + after +
//! grace`. A record joins every record of the other side within the window at once. For left and outer joins,
//! a record that found no partner waits in a shared "outer" store ordered by time and is emitted with `None`
//! once stream time passes its window's end plus grace (Kafka Streams' behaviour since 3.1, which avoids the
//! spurious left results the older versions emitted before the partner arrived).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::dsl::ops::pass_through;
use crate::dsl::table::{update, Change, KTable, StoreProcessor};
use crate::dsl::window::JoinWindows;
use crate::dsl::{Data, GlobalKTable, KStream, Materialized};
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::serdes::{DefaultSerde, SerdeRef};
use crate::store::{split_window_key, window_key, KeyValueStore, Store, StoreKind};
use crate::topology::{BuildFn, Instantiation, NodeKind};

type Joiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync>;

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KStream<K, V> {
    /// Each record joined with the table's current value for its key; records without one are dropped.
    pub fn join<VT: Data + DefaultSerde, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v, t| t.map(|t| joiner(v, t))))
    }

    /// Each record joined with the table's current value for its key, `None` when there is none.
    pub fn left_join<VT: Data + DefaultSerde, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v, t| Some(joiner(v, t))))
    }

    #[allow(clippy::type_complexity)]
    fn table_join<VT: Data + DefaultSerde, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>,
    ) -> KStream<K, VR> {
        let store = table.store_or_panic("a stream-table join");
        let name = self.graph.borrow_mut().name("KSTREAM-JOIN");
        let input = self.repartitioned_if_needed(&name);
        let store_name = store.clone();
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            let joiner = joiner.clone();
            let processor = StoreProcessor::<K, VT, _, _> {
                store: store_name.clone(),
                make: Arc::new(move |table: &KeyValueStore<K, VT>| {
                    let (table, joiner) = (table.clone(), joiner.clone());
                    move |ctx: &mut ProcessorContext<'_, K, VR>, r: Record<K, V>| {
                        let found = table.get(&r.key);
                        if let Some(out) = joiner(&r.value, found.as_ref()) {
                            ctx.forward(r.with_value(out));
                        }
                    }
                }),
                f: None,
                _types: std::marker::PhantomData,
            };
            inst.processor::<_, K, V, K, VR>(id, processor);
        });
        let id = self.graph.borrow_mut().add(
            name,
            NodeKind::Processor,
            vec![input.node],
            vec![store],
            build,
        );
        KStream::at(self.graph.clone(), id, false)
    }

    /// Each record joined with the global table's value for the key `key(record)` computes; records without
    /// one are dropped.
    pub fn join_global<GK: Data + DefaultSerde, GV: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, &GV) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(global, key, move |v, g| g.map(|g| joiner(v, g)))
    }

    /// Each record joined with the global table's value for the key `key(record)` computes, `None` when there
    /// is none.
    pub fn left_join_global<GK: Data + DefaultSerde, GV: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(global, key, move |v, g| Some(joiner(v, g)))
    }

    fn global_join<GK: Data + DefaultSerde, GV: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let store = global.store.clone();
        let (key, joiner) = (Arc::new(key), Arc::new(joiner));
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            let (key, joiner) = (key.clone(), joiner.clone());
            let processor = StoreProcessor::<GK, GV, _, _> {
                store: store.clone(),
                make: Arc::new(move |table: &KeyValueStore<GK, GV>| {
                    let (table, key, joiner) = (table.clone(), key.clone(), joiner.clone());
                    move |ctx: &mut ProcessorContext<'_, K, VR>, r: Record<K, V>| {
                        let found = table.get(&key(&r.key, &r.value));
                        if let Some(out) = joiner(&r.value, found.as_ref()) {
                            ctx.forward(r.with_value(out));
                        }
                    }
                }),
                f: None,
                _types: std::marker::PhantomData,
            };
            inst.processor::<_, K, V, K, VR>(id, processor);
        });
        let mut g = self.graph.borrow_mut();
        let name = g.name("KSTREAM-GLOBALJOIN");
        let id = g.add(
            name,
            NodeKind::Processor,
            vec![self.node],
            Vec::new(),
            build,
        );
        drop(g);
        KStream::at(self.graph.clone(), id, self.key_changed)
    }

    /// Records of both streams with the same key at most the window apart, joined.
    pub fn join_windowed<VO: Data + DefaultSerde + Send, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, VO, VR> = Arc::new(move |a, b| Some(joiner(a?, b?)));
        self.stream_join(other, joiner, windows, (false, false))
    }

    /// Like `join_windowed`, and each record of this stream that found no partner within its window is emitted
    /// with `None` once the window closed.
    pub fn left_join_windowed<VO: Data + DefaultSerde + Send, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, VO, VR> = Arc::new(move |a, b| Some(joiner(a?, b)));
        self.stream_join(other, joiner, windows, (true, false))
    }

    /// Like `join_windowed`, and records of either stream without a partner are emitted alone once their window
    /// closed.
    pub fn outer_join_windowed<VO: Data + DefaultSerde + Send, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, VO, VR> = Arc::new(move |a, b| Some(joiner(a, b)));
        self.stream_join(other, joiner, windows, (true, true))
    }

    fn stream_join<VO: Data + DefaultSerde + Send, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: Joiner<V, VO, VR>,
        windows: JoinWindows,
        outer: (bool, bool),
    ) -> KStream<K, VR> {
        let retention = windows
            .before_ms
            .saturating_add(windows.after_ms)
            .saturating_add(windows.grace_ms)
            .saturating_add(1);
        let kind = StoreKind::Window {
            retention_ms: retention,
        };
        let (this_store, other_store, outer_store, this_name, other_name) = {
            let mut g = self.graph.borrow_mut();
            let this_store = g.store_for(&Materialized::default(), "KSTREAM-JOINTHIS-STORE", kind);
            let other_store =
                g.store_for(&Materialized::default(), "KSTREAM-JOINOTHER-STORE", kind);
            let outer_store = (outer.0 || outer.1)
                .then(|| g.store_for(&Materialized::default(), "KSTREAM-OUTERSHARED-STORE", kind));
            (
                this_store,
                other_store,
                outer_store,
                g.name("KSTREAM-JOINTHIS"),
                g.name("KSTREAM-JOINOTHER"),
            )
        };
        let left = self.repartitioned_if_needed(&format!("{this_name}-left"));
        let right = other.repartitioned_if_needed(&format!("{this_name}-right"));
        let mut stores = vec![this_store.clone(), other_store.clone()];
        stores.extend(outer_store.clone());
        let side = |is_left: bool| JoinSide::<K, V, VO, VR> {
            is_left,
            own: if is_left {
                this_store.clone()
            } else {
                other_store.clone()
            },
            other: if is_left {
                other_store.clone()
            } else {
                this_store.clone()
            },
            outer: outer_store.clone(),
            emit_unmatched: if is_left { outer.0 } else { outer.1 },
            windows,
            joiner: joiner.clone(),
            stores: None,
            seq: 0,
            expired_at: i64::MIN,
            keys: K::serde(),
            lefts: V::serde(),
            rights: VO::serde(),
            _types: std::marker::PhantomData,
        };
        let (left_side, right_side) = (side(true), RightSide(side(false)));
        let left_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, V, K, VR>(id, left_side.fresh());
        });
        let right_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, VO, K, VR>(id, RightSide(right_side.0.fresh()));
        });
        let mut g = self.graph.borrow_mut();
        let names = [this_name, other_name, g.name("KSTREAM-MERGE")];
        let m = g.add_sides_and_merge(
            names,
            (left.node, stores.clone(), left_build),
            (right.node, stores, right_build),
            (Vec::new(), pass_through::<K, VR>()),
        );
        drop(g);
        KStream::at(self.graph.clone(), m, false)
    }
}

/// A join side's stores: its own window store, the other side's, and the shared outer store (left and outer
/// joins).
type JoinStores = (Arc<Store>, Arc<Store>, Option<Arc<Store>>);

/// One side of a stream-stream join. `V` is the left stream's value type and `VO` the right's, whichever side
/// this is; `own`/`other` are this side's and the other side's window stores.
struct JoinSide<K, V, VO, VR> {
    is_left: bool,
    own: String,
    other: String,
    outer: Option<String>,
    emit_unmatched: bool,
    windows: JoinWindows,
    joiner: Joiner<V, VO, VR>,
    stores: Option<JoinStores>,
    /// Sequence numbers of this side's window store entries (records with equal key and time are all kept).
    seq: u32,
    /// Stream time of the last retention pass over the window stores.
    expired_at: i64,
    /// The serdes, made once (each `DefaultSerde::serde()` allocates).
    keys: SerdeRef<K>,
    lefts: SerdeRef<V>,
    rights: SerdeRef<VO>,
    _types: std::marker::PhantomData<fn() -> VR>,
}

impl<K, V, VO, VR> JoinSide<K, V, VO, VR> {
    fn fresh(&self) -> Self {
        Self {
            is_left: self.is_left,
            own: self.own.clone(),
            other: self.other.clone(),
            outer: self.outer.clone(),
            emit_unmatched: self.emit_unmatched,
            windows: self.windows,
            joiner: self.joiner.clone(),
            stores: None,
            // Not persisted: starting from the clock's nanoseconds makes a restarted task unlikely to reuse the
            // sequence number of a restored entry with the same key and time.
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
            expired_at: i64::MIN,
            keys: self.keys.clone(),
            lefts: self.lefts.clone(),
            rights: self.rights.clone(),
            _types: std::marker::PhantomData,
        }
    }
}

/// Outer store key: the time at which the entry's window closes (sortable), the side (0 left, 1 right), then
/// the entry's key in its side's window store.
fn outer_key(closes_at: i64, is_left: bool, composite: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(9 + composite.len());
    out.extend_from_slice(&((closes_at as u64) ^ (1 << 63)).to_be_bytes());
    out.push(if is_left { 0 } else { 1 });
    out.extend_from_slice(composite);
    Bytes::from(out)
}

fn decode<T: 'static>(serde: &SerdeRef<T>, bytes: &[u8], store: &str) -> T {
    serde
        .deserialize(Some(bytes))
        .unwrap_or_else(|e| panic!("state store {store}: stored bytes do not deserialize: {e}"))
}

impl<K, V, VO, VR> JoinSide<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data,
{
    /// Joins a record of this side (`left` is its value when this is the left side, `right` otherwise).
    #[allow(clippy::too_many_arguments)]
    fn join<'a>(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, VR>,
        key: &K,
        key_bytes: &Bytes,
        timestamp: i64,
        value_bytes: &Bytes,
        this_value: Either<'a, V, VO>,
        headers: &crate::record::Headers,
    ) {
        let (own, other, outer) = self.stores.as_ref().expect("initialized");
        // The other side's records this one joins: for a left record at t, right records in [t - before,
        // t + after]; for a right record, left records in [t - after, t + before].
        let (back, ahead) = if self.is_left {
            (self.windows.before_ms, self.windows.after_ms)
        } else {
            (self.windows.after_ms, self.windows.before_ms)
        };
        let lo = window_key(key_bytes, timestamp.saturating_sub(back), 0);
        let hi = window_key(key_bytes, timestamp.saturating_add(ahead), u32::MAX);
        let mut matched = false;
        for (composite, bytes) in other.range(Bound::Included(&lo), Bound::Included(&hi)) {
            let Some((k, t, _)) = split_window_key(&composite) else {
                continue;
            };
            if k != *key_bytes {
                continue;
            }
            matched = true;
            let out = match &this_value {
                Either::Left(v) => {
                    let vo: VO = decode(&self.rights, &bytes, other.name());
                    (self.joiner)(Some(v), Some(&vo))
                }
                Either::Right(vo) => {
                    let v: V = decode(&self.lefts, &bytes, other.name());
                    (self.joiner)(Some(&v), Some(vo))
                }
            };
            // The partner found a partner: it is no longer waiting to be emitted alone.
            if let Some(outer) = outer {
                let partner_closes = t + self.window_end_offset(!self.is_left);
                outer.delete(&outer_key(partner_closes, !self.is_left, &composite));
            }
            if let Some(out) = out {
                ctx.forward(Record {
                    key: key.clone(),
                    value: out,
                    timestamp: timestamp.max(t),
                    headers: headers.clone(),
                });
            }
        }
        // The input record's offset tells duplicates apart: processing it again after a crash rewrites the same
        // entry instead of adding a second one (a counter, for records a punctuation forwarded).
        let seq = match ctx.record_metadata() {
            Some(meta) => meta.offset as u32,
            None => {
                self.seq = self.seq.wrapping_add(1);
                self.seq
            }
        };
        let composite = window_key(key_bytes, timestamp, seq);
        own.put(composite.clone(), value_bytes.clone());
        if !matched && self.emit_unmatched {
            if let Some(outer) = outer {
                let closes = timestamp + self.window_end_offset(self.is_left);
                outer.put(
                    outer_key(closes, self.is_left, &composite),
                    value_bytes.clone(),
                );
            }
        }
    }

    /// How long after its own time a record of the left (or right) side can still find a partner, plus grace.
    fn window_end_offset(&self, left: bool) -> i64 {
        let ahead = if left {
            self.windows.after_ms
        } else {
            self.windows.before_ms
        };
        ahead + self.windows.grace_ms
    }

    /// Emits, alone, the waiting records whose windows closed by `now`, and drops expired window entries.
    fn emit_closed(&mut self, ctx: &mut ProcessorContext<'_, K, VR>, now: i64) {
        let (own, other, outer) = self.stores.as_ref().expect("initialized");
        if let Some(outer) = outer {
            let hi = outer_key(now, true, &[]);
            for (entry, bytes) in outer.range(Bound::Unbounded, Bound::Excluded(&hi)) {
                outer.delete(&entry);
                let is_left = entry[8] == 0;
                let composite = entry.slice(9..);
                let Some((k, t, _)) = split_window_key(&composite) else {
                    continue;
                };
                let key: K = decode(&self.keys, &k, outer.name());
                let out = if is_left {
                    let v: V = decode(&self.lefts, &bytes, outer.name());
                    (self.joiner)(Some(&v), None)
                } else {
                    let vo: VO = decode(&self.rights, &bytes, outer.name());
                    (self.joiner)(None, Some(&vo))
                };
                if let Some(out) = out {
                    ctx.forward(Record::new(key, out, t));
                }
            }
        }
        // Retention of the window stores: entries too old to join anything still to come. A full pass, so once
        // per half retention of stream time.
        let retention = self.windows.before_ms + self.windows.after_ms + self.windows.grace_ms;
        if now < self.expired_at.saturating_add((retention / 2).max(1_000)) {
            return;
        }
        self.expired_at = now;
        let horizon = now - retention;
        for store in [own, other] {
            let first = store.range(Bound::Unbounded, Bound::Unbounded);
            for (composite, _) in first {
                if split_window_key(&composite).is_some_and(|(_, t, _)| t < horizon) {
                    store.delete(&composite);
                }
            }
        }
    }
}

enum Either<'a, A, B> {
    Left(&'a A),
    Right(&'a B),
}

fn join_record<K, V, VO, VR, T>(
    side: &mut JoinSide<K, V, VO, VR>,
    ctx: &mut ProcessorContext<'_, K, VR>,
    record: &Record<K, T>,
    value: Either<'_, V, VO>,
    value_bytes: Option<Bytes>,
) where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data,
{
    let key_bytes = side.keys.serialize(&record.key).unwrap_or_default();
    let value_bytes = value_bytes.unwrap_or_default();
    side.join(
        ctx,
        &record.key,
        &key_bytes,
        record.timestamp,
        &value_bytes,
        value,
        &record.headers,
    );
    side.emit_closed(ctx, ctx.stream_time());
}

impl<K, V, VO, VR> Processor<K, V, K, VR> for JoinSide<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) {
        self.stores = Some((
            ctx.task.store(&self.own),
            ctx.task.store(&self.other),
            self.outer.as_ref().map(|o| ctx.task.store(o)),
        ));
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VR>, record: Record<K, V>) {
        let bytes = self.lefts.serialize(&record.value);
        join_record(self, ctx, &record, Either::Left(&record.value), bytes);
    }
}

/// The right side: the same logic, taking the right stream's values (a type of its own, so that a join of
/// two streams with the same value type has one `Processor` impl per side).
struct RightSide<K, V, VO, VR>(JoinSide<K, V, VO, VR>);

impl<K, V, VO, VR> Processor<K, VO, K, VR> for RightSide<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) {
        <JoinSide<K, V, VO, VR> as Processor<K, V, K, VR>>::init(&mut self.0, ctx);
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VR>, record: Record<K, VO>) {
        let bytes = self.0.rights.serialize(&record.value);
        join_record(
            &mut self.0,
            ctx,
            &record,
            Either::Right(&record.value),
            bytes,
        );
    }
}

type TableJoiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync>;

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KTable<K, V> {
    /// A table of the keys present in both tables, values joined.
    pub fn join<VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(other, Arc::new(move |a, b| Some(joiner(a?, b?))))
    }

    /// A table of the keys of this table, joined with the other's value where it has one.
    pub fn left_join<VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(other, Arc::new(move |a, b| Some(joiner(a?, b))))
    }

    /// A table of the keys of either table.
    pub fn outer_join<VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(
            other,
            Arc::new(move |a, b| (a.is_some() || b.is_some()).then(|| joiner(a, b))),
        )
    }

    fn table_table<VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<K, VO>,
        joiner: TableJoiner<V, VO, VR>,
    ) -> KTable<K, VR> {
        let this_store = self.store_or_panic("a table-table join");
        let other_store = other.store_or_panic("a table-table join");
        let result = self.graph.borrow_mut().store_for(
            &Materialized::default(),
            "KTABLE-JOIN-STATE-STORE",
            StoreKind::KeyValue,
        );
        let stores = vec![this_store.clone(), other_store.clone(), result.clone()];
        // Each side looks up the other side's store and rewrites the joined entry of the key.
        let side = |is_left: bool| -> BuildFn {
            let (lookup, result, joiner) = (
                if is_left {
                    other_store.clone()
                } else {
                    this_store.clone()
                },
                result.clone(),
                joiner.clone(),
            );
            Arc::new(move |inst: &mut Instantiation<'_>, id| {
                if is_left {
                    inst.processor::<_, K, Change<V>, K, Change<VR>>(
                        id,
                        TableJoinSide::<K, V, VO, VR> {
                            lookup: lookup.clone(),
                            result: result.clone(),
                            joiner: joiner.clone(),
                            is_left,
                            stores: None,
                        },
                    );
                } else {
                    inst.processor::<_, K, Change<VO>, K, Change<VR>>(
                        id,
                        TableJoinRight(TableJoinSide::<K, V, VO, VR> {
                            lookup: lookup.clone(),
                            result: result.clone(),
                            joiner: joiner.clone(),
                            is_left,
                            stores: None,
                        }),
                    );
                }
            })
        };
        let mut g = self.graph.borrow_mut();
        let names = [
            g.name("KTABLE-JOINTHIS"),
            g.name("KTABLE-JOINOTHER"),
            g.name("KTABLE-MERGE"),
        ];
        let m = g.add_sides_and_merge(
            names,
            (self.node, stores.clone(), side(true)),
            (other.node, stores, side(false)),
            (vec![result.clone()], pass_through::<K, Change<VR>>()),
        );
        drop(g);
        KTable::at(self.graph.clone(), m, Some(result))
    }
}

/// One side of a table-table join: on a change of its key, looks up the other table and rewrites the result.
struct TableJoinSide<K, V, VO, VR> {
    lookup: String,
    result: String,
    joiner: TableJoiner<V, VO, VR>,
    is_left: bool,
    stores: Option<(Arc<Store>, KeyValueStore<K, VR>)>,
}

impl<K, V, VO, VR> TableJoinSide<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data + DefaultSerde,
{
    fn init_stores(&mut self, ctx: &ProcessorContext<'_, K, Change<VR>>) {
        self.stores = Some((
            ctx.task.store(&self.lookup),
            KeyValueStore::new(ctx.task.store(&self.result)),
        ));
    }

    fn apply(
        &self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        key: Record<K, ()>,
        left: Option<V>,
        right: Option<VO>,
    ) {
        let (_, results) = self.stores.as_ref().expect("initialized");
        let new = (self.joiner)(left.as_ref(), right.as_ref());
        update(ctx, results, key, new);
    }

    fn lookup<T: DefaultSerde>(&self, key: &K) -> Option<T> {
        let (lookup, _) = self.stores.as_ref().expect("initialized");
        let k = K::serde().serialize(key).unwrap_or_default();
        lookup
            .get(&k)
            .map(|b| decode(&T::serde(), &b, lookup.name()))
    }
}

impl<K, V, VO, VR> Processor<K, Change<V>, K, Change<VR>> for TableJoinSide<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) {
        self.init_stores(ctx);
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        record: Record<K, Change<V>>,
    ) {
        debug_assert!(self.is_left);
        let right: Option<VO> = self.lookup(&record.key);
        let left = record.value.new.clone();
        self.apply(ctx, record.with_value(()), left, right);
    }
}

struct TableJoinRight<K, V, VO, VR>(TableJoinSide<K, V, VO, VR>);

impl<K, V, VO, VR> Processor<K, Change<VO>, K, Change<VR>> for TableJoinRight<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) {
        self.0.init_stores(ctx);
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        record: Record<K, Change<VO>>,
    ) {
        let left: Option<V> = self.0.lookup(&record.key);
        let right = record.value.new.clone();
        self.0.apply(ctx, record.with_value(()), left, right);
    }
}
