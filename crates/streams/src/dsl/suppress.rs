//! `suppress(until_window_closes)`: one final result per window instead of an update per record.
//!
//! The latest result of every open window waits in a logged buffer store keyed by the time the window closes
//! (its end plus grace) then the windowed key, so the due entries are the first in key order. When the task's
//! stream time reaches a window's close time, its result is emitted once and removed (checked whenever a record
//! reaches the suppression).

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::dsl::table::{Change, KTable};
use crate::dsl::window::Windowed;
use crate::dsl::{Data, Materialized};
use crate::processor::{Processor, ProcessorContext, PunctuationType};
use crate::record::Record;
use crate::serdes::{DefaultSerde, SerdeRef};
use crate::store::{Store, StoreKind};
use crate::topology::{BuildFn, Instantiation, NodeKind};

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<Windowed<K>, V> {
    /// Only the final result of each window, emitted once stream time passes the window's end plus grace.
    pub fn suppress_until_window_closes(&self) -> KTable<Windowed<K>, V> {
        let grace = self.window_grace_ms.unwrap_or_else(|| {
            panic!("suppress_until_window_closes needs a windowed aggregation's result")
        });
        let store = self.graph.borrow_mut().store_for(
            &Materialized::default(),
            "KTABLE-SUPPRESS-STATE-STORE",
            StoreKind::KeyValue,
        );
        let store_name = store.clone();
        let build: BuildFn = Arc::new(move |inst: &mut Instantiation<'_>, id| {
            inst.processor::<_, Windowed<K>, Change<V>, Windowed<K>, Change<V>>(
                id,
                Suppress::<K, V> {
                    store: store_name.clone(),
                    grace,
                    buffer: None,
                    observed: i64::MIN,
                    keys: Windowed::<K>::serde(),
                    values: V::serde(),
                },
            );
        });
        let id = {
            let mut g = self.graph.borrow_mut();
            let name = g.name("KTABLE-SUPPRESS");
            g.add(
                name,
                NodeKind::Processor,
                vec![self.node],
                vec![store],
                build,
            )
        };
        let mut table = KTable::at(self.graph.clone(), id, None);
        table.window_grace_ms = Some(grace);
        table
    }
}

struct Suppress<K, V> {
    store: String,
    grace: i64,
    buffer: Option<Arc<Store>>,
    observed: i64,
    keys: SerdeRef<Windowed<K>>,
    values: SerdeRef<V>,
}

fn buffer_key(closes_at: i64, windowed: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + windowed.len());
    out.extend_from_slice(&((closes_at as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(windowed);
    Bytes::from(out)
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> Suppress<K, V> {
    /// Emits, earliest first, the result of every window that closed by `now` (stream time).
    fn emit_closed(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>, now: i64) {
        self.observed = self.observed.max(now);
        let buffer = self.buffer.clone().expect("initialized");
        let due = buffer_key(self.observed.saturating_add(1), &[]);
        for (entry, value) in buffer.range(Bound::Unbounded, Bound::Excluded(&due)) {
            buffer.delete(&entry);
            let key = self
                .keys
                .deserialize(Some(&entry[8..]))
                .unwrap_or_else(|e| panic!("suppression buffer {}: {e}", buffer.name()));
            let value = self
                .values
                .deserialize(Some(&value))
                .unwrap_or_else(|e| panic!("suppression buffer {}: {e}", buffer.name()));
            let timestamp = key.window.end;
            ctx.forward(Record::new(
                key,
                Change {
                    new: Some(value),
                    old: None,
                },
                timestamp,
            ));
        }
    }
}

impl<K, V> Processor<Windowed<K>, Change<V>, Windowed<K>, Change<V>> for Suppress<K, V>
where
    K: Data + DefaultSerde,
    V: Data + DefaultSerde,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>) {
        self.buffer = Some(ctx.task.store(&self.store));
        // Restarted tasks resume at their committed stream time: closed windows stay closed.
        self.observed = self.observed.max(ctx.stream_time());
        // The task's stream time closes windows, also when the records that move it on never reach this
        // processor (an upstream filter dropped them): a punctuation at every advance of stream time.
        ctx.schedule(
            std::time::Duration::from_millis(1),
            PunctuationType::StreamTime,
        );
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>,
        record: Record<Windowed<K>, Change<V>>,
    ) {
        let buffer = self.buffer.clone().expect("initialized");
        let closes_at = record.key.window.end + self.grace;
        let key_bytes = self.keys.serialize(&record.key).unwrap_or_default();
        let entry = buffer_key(closes_at, &key_bytes);
        match &record.value.new {
            Some(v) => buffer.put(entry, self.values.serialize(v).unwrap_or_default()),
            None => buffer.delete(&entry),
        }
        self.emit_closed(ctx, record.timestamp.max(ctx.stream_time()));
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>,
        _kind: PunctuationType,
        timestamp: i64,
    ) {
        self.emit_closed(ctx, timestamp);
    }
}
