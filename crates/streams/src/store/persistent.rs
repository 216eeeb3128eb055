//! The persistent store: an LSM tree on disk under `state.dir`, so state larger than memory fits and a clean
//! restart does not replay the whole changelog.
//!
//! Engine: fjall, a maintained, pure-Rust LSM tree (RocksDB's design, which Kafka Streams uses; no C++ build,
//! which would add minutes to every clean build and CI run). One fjall database per task and store, under
//! `<state.dir>/<application.id>/<task>/<store>`. Whether its contents can be trusted at start is the runtime's
//! decision (a checkpoint file written on clean close; see `runtime::state`): otherwise it is wiped and restored.

use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::KeyValueBytes;

pub struct PersistentBytes {
    db: Database,
    data: Keyspace,
    /// fjall's exact count is a scan; the store keeps its own, rebuilt once at open.
    len: usize,
}

fn text(e: fjall::Error) -> String {
    e.to_string()
}

impl PersistentBytes {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let db = Database::builder(dir)
            .open()
            .map_err(|e| format!("open {}: {e}", dir.display()))?;
        let data = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .map_err(text)?;
        let len = data.len().map_err(text)?;
        Ok(Self { db, data, len })
    }
}

impl KeyValueBytes for PersistentBytes {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String> {
        Ok(self
            .data
            .get(key)
            .map_err(text)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), String> {
        if !self.data.contains_key(&key).map_err(text)? {
            self.len += 1;
        }
        self.data.insert(key.as_ref(), value.as_ref()).map_err(text)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), String> {
        if self.data.contains_key(key).map_err(text)? {
            self.len -= 1;
            self.data.remove(key).map_err(text)?;
        }
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, String> {
        if super::inverted(from, to) {
            return Ok(Vec::new());
        }
        self.data
            .range::<&[u8], _>((from, to))
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(text)?;
                Ok((Bytes::copy_from_slice(&k), Bytes::copy_from_slice(&v)))
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn flush(&mut self) -> Result<(), String> {
        self.db.persist(PersistMode::SyncAll).map_err(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::suite::run(|| {
            n += 1;
            Box::new(PersistentBytes::open(&dir.path().join(n.to_string())).unwrap())
        });
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PersistentBytes::open(dir.path()).unwrap();
        s.put(Bytes::from("k"), Bytes::from("v")).unwrap();
        s.put(Bytes::from("gone"), Bytes::from("v")).unwrap();
        s.delete(b"gone").unwrap();
        s.flush().unwrap();
        drop(s);
        let s = PersistentBytes::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k").unwrap(), Some(Bytes::from("v")));
        assert_eq!(s.len(), 1);
    }
}
