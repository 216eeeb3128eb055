//! Foreign-key table-table joins (KIP-213): each entry of the left table joins the entry of the right table
//! whose key its value names, though the two tables are partitioned by different keys.
//!
//! The protocol, through two internal topics:
//! 1. A left entry `k -> v` subscribes to the right key `fk(v)`: a subscription (k, hash of v) goes to
//!    `<app>-<name>-subscription-registration` keyed by the foreign key, so it lands with the right table's
//!    partition of that key (that topic takes the right table's partition count). A changed foreign key also unsubscribes from the old one.
//! 2. On the right side, a subscription store keeps (foreign key, k) → hash. A new subscription is answered
//!    with the right table's current value; a change of a right entry is sent to every key subscribed to it.
//!    Answers go to `<app>-<name>-subscription-response` keyed by k, partitioned like the left table (that
//!    topic takes the partition count of the left side, not of its writer).
//! 3. On the left side, an answer is joined with the left entry's current value, unless the value changed
//!    since it subscribed (the hash differs): a newer answer is on its way then.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::dsl::ops::{pass_through, FnProcessor};
use crate::dsl::table::{update, Change, KTable};
use crate::dsl::{Data, KStream, Materialized};
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::serdes::{put_part, take_part, DefaultSerde, Serde, SerdeError, SerdeRef};
use crate::store::{KeyValueStore, Store, StoreKind};
use crate::topology::{BuildFn, Instantiation};

/// FNV-1a, 64 bits: a stable hash of the left value's bytes (stable across builds, unlike `DefaultHasher`).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A left key subscribing to (hash present) or leaving (hash absent) a foreign key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription<K> {
    pub key: K,
    pub hash: Option<u64>,
}

/// The right value for a subscriber, with the hash of the left value it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response<VO> {
    pub value: Option<VO>,
    pub hash: u64,
}

struct SubscriptionSerde<K>(SerdeRef<K>);

impl<K: 'static> Serde<Subscription<K>> for SubscriptionSerde<K> {
    /// Hash flag (1 byte) and hash (8, when present), then the left key, length-prefixed.
    fn serialize(&self, s: &Subscription<K>) -> Option<Bytes> {
        let mut out = Vec::new();
        match s.hash {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(&h.to_be_bytes());
            }
            None => out.push(0),
        }
        put_part(&mut out, self.0.serialize(&s.key));
        Some(Bytes::from(out))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Subscription<K>, SerdeError> {
        let data = data.ok_or_else(|| SerdeError("null subscription".into()))?;
        let (hash, mut rest) = match data.first() {
            Some(1) if data.len() >= 9 => (
                Some(u64::from_be_bytes(data[1..9].try_into().unwrap())),
                &data[9..],
            ),
            Some(0) => (None, &data[1..]),
            _ => return Err(SerdeError("bad subscription header".into())),
        };
        let key = self.0.deserialize(take_part(&mut rest)?)?;
        Ok(Subscription { key, hash })
    }
}

impl<K: DefaultSerde> DefaultSerde for Subscription<K> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(SubscriptionSerde(K::serde()))
    }
}

struct ResponseSerde<VO>(SerdeRef<VO>);

impl<VO: 'static> Serde<Response<VO>> for ResponseSerde<VO> {
    /// Hash (8 bytes), then the right value, length-prefixed (-1: none).
    fn serialize(&self, r: &Response<VO>) -> Option<Bytes> {
        let mut out = r.hash.to_be_bytes().to_vec();
        put_part(&mut out, r.value.as_ref().and_then(|v| self.0.serialize(v)));
        Some(Bytes::from(out))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Response<VO>, SerdeError> {
        let data = data.ok_or_else(|| SerdeError("null subscription response".into()))?;
        let hash = u64::from_be_bytes(
            data.get(..8)
                .ok_or_else(|| SerdeError("response cut short".into()))?
                .try_into()
                .unwrap(),
        );
        let mut rest = &data[8..];
        let value = take_part(&mut rest)?
            .map(|b| self.0.deserialize(Some(b)))
            .transpose()?;
        Ok(Response { value, hash })
    }
}

impl<VO: DefaultSerde> DefaultSerde for Response<VO> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(ResponseSerde(VO::serde()))
    }
}

/// The subscription store's key: the foreign key's length (4 bytes) and bytes, then the left key's bytes, so one
/// foreign key's subscribers are adjacent.
fn subscription_key(fk: &[u8], key: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(4 + fk.len() + key.len());
    out.extend_from_slice(&(fk.len() as u32).to_be_bytes());
    out.extend_from_slice(fk);
    out.extend_from_slice(key);
    Bytes::from(out)
}

/// The first key after every key that starts with `prefix` (`None`: no such key, the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

type ForeignKey<V, KO> = Arc<dyn Fn(&V) -> KO + Send + Sync>;
type FkJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync>;

fn bytes_of<T: DefaultSerde>(value: &T) -> Bytes {
    T::serde().serialize(value).unwrap_or_default()
}

impl<K: Data + DefaultSerde + Send, V: Data + DefaultSerde + Send> KTable<K, V> {
    /// Joins each entry with the entry of `other` whose key `foreign_key(value)` names; entries whose foreign
    /// key has no match are absent.
    pub fn join_foreign_key<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR>
    where
        KO: Data + DefaultSerde + Send,
        VO: Data + DefaultSerde + Send,
        VR: Data + DefaultSerde,
    {
        self.fk_join(
            other,
            Arc::new(foreign_key),
            Arc::new(move |v, o| o.map(|o| joiner(v, o))),
        )
    }

    /// Joins each entry with the entry of `other` whose key `foreign_key(value)` names, `None` when there is
    /// none.
    pub fn left_join_foreign_key<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR>
    where
        KO: Data + DefaultSerde + Send,
        VO: Data + DefaultSerde + Send,
        VR: Data + DefaultSerde,
    {
        self.fk_join(
            other,
            Arc::new(foreign_key),
            Arc::new(move |v, o| Some(joiner(v, o))),
        )
    }

    fn fk_join<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: ForeignKey<V, KO>,
        joiner: FkJoiner<V, VO, VR>,
    ) -> KTable<K, VR>
    where
        KO: Data + DefaultSerde + Send,
        VO: Data + DefaultSerde + Send,
        VR: Data + DefaultSerde,
    {
        let left_store = self.store_or_panic("a foreign-key join");
        let right_store = other.store_or_panic("a foreign-key join");
        let (name, subscriptions, results) = {
            let mut g = self.graph.borrow_mut();
            let name = g.name("KTABLE-FK-JOIN");
            let subscriptions = g.store_for(
                &Materialized::named(format!("{name}-SUBSCRIPTION-STATE-STORE")),
                "",
                StoreKind::KeyValue,
            );
            let results = g.store_for(
                &Materialized::default(),
                "KTABLE-FK-JOIN-OUTPUT-STATE-STORE",
                StoreKind::KeyValue,
            );
            (name, subscriptions, results)
        };
        // 1. Left changes become subscriptions keyed by foreign key; a deleted left entry deletes its result.
        let fk = foreign_key.clone();
        let subscribe = KStream::<K, Change<V>>::at(self.graph.clone(), self.node, false)
            .stateless::<KO, Subscription<K>>(
            "KTABLE-FK-JOIN-SUBSCRIBE",
            true,
            move |ctx, r| {
                let new_fk = r.value.new.as_ref().map(|v| fk(v));
                let old_fk = r.value.old.as_ref().map(|v| fk(v));
                if let Some(old) = old_fk {
                    if new_fk
                        .as_ref()
                        .is_none_or(|new| bytes_of(new) != bytes_of(&old))
                    {
                        ctx.forward(Record {
                            key: old,
                            value: Subscription {
                                key: r.key.clone(),
                                hash: None,
                            },
                            timestamp: r.timestamp,
                            headers: r.headers.clone(),
                        });
                    }
                }
                if let (Some(new), Some(v)) = (new_fk, &r.value.new) {
                    ctx.forward(Record {
                        key: new,
                        value: Subscription {
                            key: r.key.clone(),
                            hash: Some(fingerprint(&bytes_of(v))),
                        },
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    });
                }
            },
        );
        // Partitioned like the right table: the right side reads it in the same tasks as that table.
        self.graph
            .borrow_mut()
            .add_reader_partitioned(format!("{name}-subscription-registration"));
        let registered = subscribe.repartition(&format!("{name}-subscription-registration"));

        // 2. Right side: register subscriptions and answer them; answer every subscriber of a changed entry.
        let (subs, right) = (subscriptions.clone(), right_store.clone());
        let answer_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, KO, Subscription<K>, K, Response<VO>>(
                id,
                Answer::<KO, VO> {
                    subscriptions: subs.clone(),
                    right: right.clone(),
                    stores: None,
                    _types: std::marker::PhantomData,
                },
            );
        });
        let subs = subscriptions.clone();
        let notify_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, KO, Change<VO>, K, Response<VO>>(
                id,
                Notify::<K> {
                    subscriptions: subs.clone(),
                    store: None,
                    _types: std::marker::PhantomData,
                },
            );
        });
        let responses = {
            let mut g = self.graph.borrow_mut();
            let names = [
                g.name("KTABLE-FK-JOIN-ANSWER"),
                g.name("KTABLE-FK-JOIN-NOTIFY"),
                g.name("KTABLE-FK-JOIN-MERGE"),
            ];
            let right_stores = vec![subscriptions.clone(), right_store.clone()];
            let m = g.add_sides_and_merge(
                names,
                (registered.node, right_stores.clone(), answer_build),
                (other.node, right_stores, notify_build),
                (Vec::new(), pass_through::<K, Response<VO>>()),
            );
            let response_topic = format!("{name}-subscription-response");
            // Partitioned like the left table: the left side reads it in the same tasks as the table.
            g.add_reader_partitioned(response_topic);
            m
        };
        let answered = KStream::<K, Response<VO>>::at(self.graph.clone(), responses, false)
            .repartition(&format!("{name}-subscription-response"));

        // 3. Left side: join answers that match the current left value; deletions of left entries.
        let (left, out) = (left_store.clone(), results.clone());
        let j = joiner.clone();
        let resolve_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, K, Response<VO>, K, Change<VR>>(
                id,
                Resolve::<K, V, VO, VR> {
                    left: left.clone(),
                    results: out.clone(),
                    joiner: j.clone(),
                    stores: None,
                },
            );
        });
        let out = results.clone();
        let deletes_build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            let out = out.clone();
            let f = move |ctx: &mut ProcessorContext<'_, K, Change<VR>>,
                          r: Record<K, Change<V>>| {
                if r.value.new.is_none() {
                    let results = KeyValueStore::<K, VR>::new(ctx.task.store(&out));
                    update(ctx, &results, r.with_value(()), None);
                }
            };
            inst.processor::<_, K, Change<V>, K, Change<VR>>(id, FnProcessor(Arc::new(f)));
        });
        let mut g = self.graph.borrow_mut();
        let names = [
            g.name("KTABLE-FK-JOIN-RESOLVE"),
            g.name("KTABLE-FK-JOIN-DELETE"),
            g.name("KTABLE-FK-JOIN-RESULT"),
        ];
        let m = g.add_sides_and_merge(
            names,
            (
                answered.node,
                vec![left_store, results.clone()],
                resolve_build,
            ),
            (self.node, vec![results.clone()], deletes_build),
            (vec![results.clone()], pass_through::<K, Change<VR>>()),
        );
        drop(g);
        KTable::at(self.graph.clone(), m, Some(results))
    }
}

/// Right side: registers a subscription and answers it with the right table's current value.
struct Answer<KO, VO> {
    subscriptions: String,
    right: String,
    stores: Option<(Arc<Store>, Arc<Store>)>,
    _types: std::marker::PhantomData<fn() -> (KO, VO)>,
}

impl<K, KO, VO> Processor<KO, Subscription<K>, K, Response<VO>> for Answer<KO, VO>
where
    K: Data + DefaultSerde,
    KO: Data + DefaultSerde,
    VO: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>) {
        self.stores = Some((
            ctx.task.store(&self.subscriptions),
            ctx.task.store(&self.right),
        ));
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Response<VO>>,
        r: Record<KO, Subscription<K>>,
    ) {
        let (subscriptions, right) = self.stores.as_ref().expect("initialized");
        let fk = bytes_of(&r.key);
        let entry = subscription_key(&fk, &bytes_of(&r.value.key));
        let Some(hash) = r.value.hash else {
            subscriptions.delete(&entry);
            return;
        };
        subscriptions.put(entry, Bytes::copy_from_slice(&hash.to_be_bytes()));
        let value = KeyValueStore::<KO, VO>::new(right.clone()).get(&r.key);
        ctx.forward(Record {
            key: r.value.key,
            value: Response { value, hash },
            timestamp: r.timestamp,
            headers: r.headers,
        });
    }
}

/// Right side: a changed right entry is sent to every left key subscribed to it.
struct Notify<K> {
    subscriptions: String,
    store: Option<Arc<Store>>,
    _types: std::marker::PhantomData<fn() -> K>,
}

impl<K, KO, VO> Processor<KO, Change<VO>, K, Response<VO>> for Notify<K>
where
    K: Data + DefaultSerde,
    KO: Data + DefaultSerde,
    VO: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>) {
        self.store = Some(ctx.task.store(&self.subscriptions));
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Response<VO>>,
        r: Record<KO, Change<VO>>,
    ) {
        let store = self.store.as_ref().expect("initialized");
        let fk = bytes_of(&r.key);
        let prefix = subscription_key(&fk, &[]);
        let end = prefix_end(&prefix);
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        for (entry, hash) in store.range(Bound::Included(&prefix), upper) {
            let key = K::serde()
                .deserialize(Some(&entry[prefix.len()..]))
                .unwrap_or_else(|e| panic!("subscription store {}: {e}", store.name()));
            let hash = u64::from_be_bytes(hash.as_ref().try_into().unwrap_or_default());
            ctx.forward(Record {
                key,
                value: Response {
                    value: r.value.new.clone(),
                    hash,
                },
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            });
        }
    }
}

/// Left side: joins an answer with the left entry it answers, if that entry is still the one that asked.
struct Resolve<K, V, VO, VR> {
    left: String,
    results: String,
    joiner: FkJoiner<V, VO, VR>,
    stores: Option<(KeyValueStore<K, V>, KeyValueStore<K, VR>)>,
}

impl<K, V, VO, VR> Processor<K, Response<VO>, K, Change<VR>> for Resolve<K, V, VO, VR>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
    VO: Data + DefaultSerde,
    VR: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) {
        self.stores = Some((
            KeyValueStore::new(ctx.task.store(&self.left)),
            KeyValueStore::new(ctx.task.store(&self.results)),
        ));
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        r: Record<K, Response<VO>>,
    ) {
        let (left, results) = self.stores.as_ref().expect("initialized");
        let Some(v) = left.get(&r.key) else {
            return;
        };
        if fingerprint(&bytes_of(&v)) != r.value.hash {
            return;
        }
        let new = (self.joiner)(&v, r.value.value.as_ref());
        update(ctx, results, r.with_value(()), new);
    }
}
