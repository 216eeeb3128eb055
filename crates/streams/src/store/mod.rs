//! State stores: what stateful processors remember, per task, backed by a changelog topic.
//!
//! A store is bytes to bytes in key order ([`KeyValueBytes`], one trait that the in-memory and the persistent
//! store both implement and one test suite both pass). [`Store`] wraps one with a name and change logging:
//! every put and delete is also queued as a changelog record (`<application.id>-<store>-changelog`, the task's
//! partition), which the runtime produces before it commits the input offsets, and replays into an empty store
//! when the task starts on an instance (restore). Typed views ([`KeyValueStore`], [`WindowStore`],
//! [`SessionStore`]) serialize keys and values with their serdes; window and session stores lay out composite
//! keys (below) so that one key's windows are adjacent and ordered by time.

mod memory;
mod persistent;
mod typed;

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

pub use memory::InMemoryBytes;
pub use persistent::PersistentBytes;
pub use typed::{KeyValueStore, SessionStore, WindowStore};

/// A failure of a store's storage (disk).
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store {store}: {message}")]
pub struct StoreError {
    pub store: String,
    pub message: String,
}

/// Ordered bytes-to-bytes storage under a store.
pub trait KeyValueBytes: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String>;
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), String>;
    fn delete(&mut self, key: &[u8]) -> Result<(), String>;
    /// Entries with keys in the range, in key order.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, String>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes every write so far durable (a no-op in memory).
    fn flush(&mut self) -> Result<(), String>;
}

/// Whether a range's lower bound is above its upper bound (an empty range; `BTreeMap::range` would panic).
pub(crate) fn inverted(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    matches!(
        (from, to),
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) if a > b
    )
}

/// What kind of data a store holds, which decides its changelog's cleanup policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    KeyValue,
    /// Windows kept for `retention_ms` of stream time.
    Window {
        retention_ms: i64,
    },
    Session {
        retention_ms: i64,
    },
}

/// How a store is declared in a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
    /// Whether changes go to a changelog topic (Kafka's `withLoggingEnabled`, on by default).
    pub logged: bool,
    /// On disk under `state.dir` instead of in memory.
    pub persistent: bool,
}

impl StoreSpec {
    /// The store's changelog topic, with Kafka Streams' name.
    pub fn changelog_topic(&self, application_id: &str) -> String {
        format!("{application_id}-{}-changelog", self.name)
    }

    /// The changelog's topic configs: compacted; windows and sessions also expire with the store's retention.
    pub fn changelog_configs(&self) -> Vec<(String, String)> {
        match self.kind {
            StoreKind::KeyValue => vec![("cleanup.policy".into(), "compact".into())],
            StoreKind::Window { retention_ms } | StoreKind::Session { retention_ms } => vec![
                ("cleanup.policy".into(), "compact,delete".into()),
                // Kafka Streams adds a day (windowstore.changelog.additional.retention.ms) for clock drift.
                (
                    "retention.ms".into(),
                    (retention_ms.saturating_add(86_400_000)).to_string(),
                ),
            ],
        }
    }
}

/// One task's instance of a store: storage, its change log and the first storage error seen.
pub struct Store {
    spec: StoreSpec,
    bytes: RwLock<Box<dyn KeyValueBytes>>,
    /// Changes not yet handed to the runtime: (key, value or tombstone).
    changes: Mutex<Vec<(Bytes, Option<Bytes>)>>,
    /// The first storage failure; the task stops on it (a store that lost a write must not go on).
    error: Mutex<Option<StoreError>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(spec: StoreSpec, bytes: Box<dyn KeyValueBytes>) -> Arc<Self> {
        Arc::new(Self {
            spec,
            bytes: RwLock::new(bytes),
            changes: Mutex::new(Vec::new()),
            error: Mutex::new(None),
        })
    }

    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn fail(&self, message: String) {
        let mut error = self.error.lock();
        if error.is_none() {
            tracing::error!(store = %self.spec.name, %message, "state store failed");
            *error = Some(StoreError {
                store: self.spec.name.clone(),
                message,
            });
        }
    }

    /// The first storage failure, if any.
    pub fn error(&self) -> Option<StoreError> {
        self.error.lock().clone()
    }

    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        match self.bytes.read().get(key) {
            Ok(v) => v,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    pub fn put(&self, key: Bytes, value: Bytes) {
        if let Err(e) = self.bytes.write().put(key.clone(), value.clone()) {
            return self.fail(e);
        }
        if self.spec.logged {
            self.changes.lock().push((key, Some(value)));
        }
    }

    pub fn delete(&self, key: &[u8]) {
        if let Err(e) = self.bytes.write().delete(key) {
            return self.fail(e);
        }
        if self.spec.logged {
            self.changes
                .lock()
                .push((Bytes::copy_from_slice(key), None));
        }
    }

    pub fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<(Bytes, Bytes)> {
        match self.bytes.read().range(from, to) {
            Ok(v) => v,
            Err(e) => {
                self.fail(e);
                Vec::new()
            }
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one changelog record during restore (not logged again).
    pub fn restore(&self, key: Bytes, value: Option<Bytes>) {
        let mut bytes = self.bytes.write();
        let result = match value {
            Some(v) => bytes.put(key, v),
            None => bytes.delete(&key),
        };
        drop(bytes);
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// The changes since the last call, for the changelog topic.
    pub fn take_changes(&self) -> Vec<(Bytes, Option<Bytes>)> {
        std::mem::take(&mut *self.changes.lock())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        self.bytes.write().flush().map_err(|message| StoreError {
            store: self.spec.name.clone(),
            message,
        })
    }
}

/// The bytes of a window store key: the record key, then the window start and a sequence number, so that one
/// key's windows are adjacent in time order. The start is stored with its sign bit flipped, so negative times
/// sort before positive ones in byte order.
pub(crate) fn window_key(key: &[u8], start: i64, seq: u32) -> Bytes {
    let mut out = Vec::with_capacity(key.len() + 12);
    out.extend_from_slice(key);
    out.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(out)
}

/// Splits a window store key into record key, window start and sequence number.
pub(crate) fn split_window_key(composite: &Bytes) -> Option<(Bytes, i64, u32)> {
    let n = composite.len().checked_sub(12)?;
    let start = (u64::from_be_bytes(composite[n..n + 8].try_into().unwrap()) ^ (1 << 63)) as i64;
    let seq = u32::from_be_bytes(composite[n + 8..].try_into().unwrap());
    Some((composite.slice(..n), start, seq))
}

/// The bytes of a session store key: record key, session end, session start (Kafka's session key schema), so
/// one key's sessions are ordered by end time.
pub(crate) fn session_key(key: &[u8], start: i64, end: i64) -> Bytes {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(key);
    out.extend_from_slice(&((end as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    Bytes::from(out)
}

/// Splits a session store key into record key, session start and end.
pub(crate) fn split_session_key(composite: &Bytes) -> Option<(Bytes, i64, i64)> {
    let n = composite.len().checked_sub(16)?;
    let end = (u64::from_be_bytes(composite[n..n + 8].try_into().unwrap()) ^ (1 << 63)) as i64;
    let start = (u64::from_be_bytes(composite[n + 8..].try_into().unwrap()) ^ (1 << 63)) as i64;
    Some((composite.slice(..n), start, end))
}

#[cfg(test)]
pub(crate) mod suite {
    //! The tests every [`KeyValueBytes`] implementation passes.
    use super::*;

    pub fn run(mut make: impl FnMut() -> Box<dyn KeyValueBytes>) {
        puts_gets_and_deletes(make());
        ranges_are_in_key_order_with_bounds(make());
    }

    fn puts_gets_and_deletes(mut s: Box<dyn KeyValueBytes>) {
        assert!(s.is_empty());
        s.put(Bytes::from_static(b"a"), Bytes::from_static(b"1"))
            .unwrap();
        s.put(Bytes::from_static(b"b"), Bytes::from_static(b"2"))
            .unwrap();
        s.put(Bytes::from_static(b"a"), Bytes::from_static(b"3"))
            .unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(s.len(), 2);
        s.delete(b"a").unwrap();
        s.delete(b"missing").unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        assert_eq!(s.len(), 1);
        s.flush().unwrap();
    }

    fn ranges_are_in_key_order_with_bounds(mut s: Box<dyn KeyValueBytes>) {
        for k in ["d", "b", "a", "c", "bb"] {
            s.put(Bytes::from(k), Bytes::from(k.to_uppercase()))
                .unwrap();
        }
        let keys = |from: Bound<&[u8]>, to: Bound<&[u8]>| -> Vec<String> {
            s.range(from, to)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(
            keys(Bound::Unbounded, Bound::Unbounded),
            ["a", "b", "bb", "c", "d"]
        );
        assert_eq!(
            keys(Bound::Included(b"b"), Bound::Excluded(b"c")),
            ["b", "bb"]
        );
        assert_eq!(
            keys(Bound::Excluded(b"b"), Bound::Included(b"c")),
            ["bb", "c"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_session_keys_order_by_key_then_time() {
        let k = |t: i64| window_key(b"k", t, 0);
        assert!(k(-5) < k(0) && k(0) < k(7) && k(7) < k(1 << 40));
        assert_eq!(
            split_window_key(&window_key(b"key", -3, 9)).unwrap(),
            (Bytes::from("key"), -3, 9)
        );
        let s = session_key(b"k", 10, 20);
        assert_eq!(split_session_key(&s).unwrap(), (Bytes::from("k"), 10, 20));
        assert!(session_key(b"k", 30, 19) < s);
    }

    #[test]
    fn a_logged_store_queues_every_change_and_restore_does_not() {
        let spec = StoreSpec {
            name: "s".into(),
            kind: StoreKind::KeyValue,
            logged: true,
            persistent: false,
        };
        let store = Store::new(spec, Box::new(InMemoryBytes::default()));
        store.put(Bytes::from("a"), Bytes::from("1"));
        store.delete(b"a");
        store.restore(Bytes::from("b"), Some(Bytes::from("2")));
        assert_eq!(
            store.take_changes(),
            vec![
                (Bytes::from("a"), Some(Bytes::from("1"))),
                (Bytes::from("a"), None)
            ]
        );
        assert_eq!(store.get(b"b"), Some(Bytes::from("2")));
        assert!(store.take_changes().is_empty());
    }
}
