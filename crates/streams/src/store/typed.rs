//! Typed views of a [`Store`]: keys and values through their serdes.
//!
//! A value that no longer deserializes (a serde changed under existing state) is a bug the application must
//! hear about, not skip: the views panic with the store's name, which stops the stream thread with that message.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::{session_key, split_session_key, split_window_key, window_key, Store};
use crate::dsl::window::{Window, Windowed};
use crate::serdes::{DefaultSerde, SerdeRef};

fn bytes_of<T: 'static>(serde: &SerdeRef<T>, value: &T) -> Bytes {
    serde.serialize(value).unwrap_or_default()
}

fn read<T: 'static>(store: &Store, serde: &SerdeRef<T>, bytes: &[u8]) -> T {
    serde.deserialize(Some(bytes)).unwrap_or_else(|e| {
        panic!(
            "state store {}: stored bytes do not deserialize: {e}",
            store.name()
        )
    })
}

/// Keys to values, in key byte order.
pub struct KeyValueStore<K, V> {
    store: Arc<Store>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: DefaultSerde, V: DefaultSerde> KeyValueStore<K, V> {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            keys: K::serde(),
            values: V::serde(),
        }
    }
}

impl<K: 'static, V: 'static> KeyValueStore<K, V> {
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// Whether `key` serializes to null (such keys have no place in a store).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.keys.is_null(key)
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let bytes = self.store.get(&bytes_of(&self.keys, key))?;
        Some(read(&self.store, &self.values, &bytes))
    }

    pub fn put(&self, key: &K, value: &V) {
        self.store
            .put(bytes_of(&self.keys, key), bytes_of(&self.values, value));
    }

    pub fn delete(&self, key: &K) {
        self.store.delete(&bytes_of(&self.keys, key));
    }

    /// Entries with `from <= key <= to`, in key byte order.
    pub fn range(&self, from: &K, to: &K) -> Vec<(K, V)> {
        let (from, to) = (bytes_of(&self.keys, from), bytes_of(&self.keys, to));
        self.decode(
            self.store
                .range(Bound::Included(&from), Bound::Included(&to)),
        )
    }

    pub fn all(&self) -> Vec<(K, V)> {
        self.decode(self.store.range(Bound::Unbounded, Bound::Unbounded))
    }

    pub fn approximate_num_entries(&self) -> usize {
        self.store.len()
    }

    fn decode(&self, entries: Vec<(Bytes, Bytes)>) -> Vec<(K, V)> {
        entries
            .into_iter()
            .map(|(k, v)| {
                (
                    read(&self.store, &self.keys, &k),
                    read(&self.store, &self.values, &v),
                )
            })
            .collect()
    }
}

/// Per key, values by window start time (Kafka's `WindowStore`). With `retain_duplicates` (joins) every put adds
/// an entry, distinguished by a sequence number; otherwise a put replaces the window's value.
pub struct WindowStore<K, V> {
    store: Arc<Store>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    retain_duplicates: bool,
    seq: Arc<std::sync::atomic::AtomicU32>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
            retain_duplicates: self.retain_duplicates,
            seq: self.seq.clone(),
        }
    }
}

impl<K: DefaultSerde, V: DefaultSerde> WindowStore<K, V> {
    pub fn new(store: Arc<Store>, retain_duplicates: bool) -> Self {
        Self {
            store,
            keys: K::serde(),
            values: V::serde(),
            retain_duplicates,
            // Not persisted: starting from the clock's nanoseconds makes a restarted task unlikely to reuse the
            // sequence number of a restored duplicate with the same key and time.
            seq: Arc::new(std::sync::atomic::AtomicU32::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            )),
        }
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// Whether `key` serializes to null (such keys have no place in a store).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.keys.is_null(key)
    }

    pub fn put(&self, key: &K, start: i64, value: &V) {
        let seq = if self.retain_duplicates {
            self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        } else {
            0
        };
        self.put_seq(key, start, seq, value);
    }

    /// Puts an entry under an explicit sequence number (with `retain_duplicates`): the same number replaces the
    /// entry, so a processor that numbers entries by input offset stays idempotent when input is replayed.
    pub fn put_seq(&self, key: &K, start: i64, seq: u32, value: &V) {
        self.store.put(
            window_key(&bytes_of(&self.keys, key), start, seq),
            bytes_of(&self.values, value),
        );
    }

    pub fn fetch(&self, key: &K, start: i64) -> Option<V> {
        let k = window_key(&bytes_of(&self.keys, key), start, 0);
        let bytes = self.store.get(&k)?;
        Some(read(&self.store, &self.values, &bytes))
    }

    pub fn delete(&self, key: &K, start: i64) {
        self.store
            .delete(&window_key(&bytes_of(&self.keys, key), start, 0));
    }

    /// The key's entries with `from <= start <= to`, in time order.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Vec<(i64, V)> {
        let k = bytes_of(&self.keys, key);
        let (lo, hi) = (window_key(&k, from, 0), window_key(&k, to, u32::MAX));
        self.store
            .range(Bound::Included(&lo), Bound::Included(&hi))
            .into_iter()
            .filter_map(|(composite, v)| {
                // A longer key that starts with this one can fall inside the byte range; only exact keys count.
                let (found, start, _) = split_window_key(&composite)?;
                (found == k).then(|| (start, read(&self.store, &self.values, &v)))
            })
            .collect()
    }

    /// Every entry with `from <= start <= to`, any key: (key, start, value).
    pub fn fetch_all(&self, from: i64, to: i64) -> Vec<(K, i64, V)> {
        self.store
            .range(Bound::Unbounded, Bound::Unbounded)
            .into_iter()
            .filter_map(|(composite, v)| {
                let (k, start, _) = split_window_key(&composite)?;
                (from..=to).contains(&start).then(|| {
                    (
                        read(&self.store, &self.keys, &k),
                        start,
                        read(&self.store, &self.values, &v),
                    )
                })
            })
            .collect()
    }

    /// Drops every entry that started before `before` (retention). A full pass: callers run it once per
    /// retention step of stream time, not per record.
    pub fn expire(&self, before: i64) {
        for (composite, _) in self.store.range(Bound::Unbounded, Bound::Unbounded) {
            if split_window_key(&composite).is_some_and(|(_, start, _)| start < before) {
                self.store.delete(&composite);
            }
        }
    }
}

/// Per key, sessions (start, end) with a value each (Kafka's `SessionStore`).
pub struct SessionStore<K, V> {
    store: Arc<Store>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: DefaultSerde, V: DefaultSerde> SessionStore<K, V> {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            keys: K::serde(),
            values: V::serde(),
        }
    }
}

impl<K: Clone + 'static, V: 'static> SessionStore<K, V> {
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// Whether `key` serializes to null (such keys have no place in a store).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.keys.is_null(key)
    }

    pub fn put(&self, session: &Windowed<K>, value: &V) {
        let k = bytes_of(&self.keys, &session.key);
        self.store.put(
            session_key(&k, session.window.start, session.window.end),
            bytes_of(&self.values, value),
        );
    }

    pub fn remove(&self, session: &Windowed<K>) {
        let k = bytes_of(&self.keys, &session.key);
        self.store
            .delete(&session_key(&k, session.window.start, session.window.end));
    }

    /// The key's sessions that end at or after `earliest_end` and start at or before `latest_start`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Vec<(Windowed<K>, V)> {
        let k = bytes_of(&self.keys, key);
        let lo = session_key(&k, i64::MIN, earliest_end);
        let hi = session_key(&k, i64::MAX, i64::MAX);
        self.store
            .range(Bound::Included(&lo), Bound::Included(&hi))
            .into_iter()
            .filter_map(|(composite, v)| {
                let (found, start, end) = split_session_key(&composite)?;
                (found == k && end >= earliest_end && start <= latest_start).then(|| {
                    (
                        Windowed {
                            key: key.clone(),
                            window: Window { start, end },
                        },
                        read(&self.store, &self.values, &v),
                    )
                })
            })
            .collect()
    }

    /// Every session of every key, in key then end order.
    pub fn all(&self) -> Vec<(Windowed<K>, V)> {
        self.store
            .range(Bound::Unbounded, Bound::Unbounded)
            .into_iter()
            .filter_map(|(composite, v)| {
                let (k, start, end) = split_session_key(&composite)?;
                Some((
                    Windowed {
                        key: read(&self.store, &self.keys, &k),
                        window: Window { start, end },
                    },
                    read(&self.store, &self.values, &v),
                ))
            })
            .collect()
    }

    /// Drops sessions that ended before `before`.
    pub fn expire(&self, before: i64) {
        for (composite, _) in self.store.range(Bound::Unbounded, Bound::Unbounded) {
            if split_session_key(&composite).is_some_and(|(_, _, end)| end < before) {
                self.store.delete(&composite);
            }
        }
    }
}
