//! The in-memory store: a `BTreeMap`, restored from the changelog whenever its task starts.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::KeyValueBytes;

#[derive(Debug, Default)]
pub struct InMemoryBytes {
    map: BTreeMap<Bytes, Bytes>,
}

impl KeyValueBytes for InMemoryBytes {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), String> {
        self.map.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), String> {
        self.map.remove(key);
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, String> {
        if super::inverted(from, to) {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_store_suite() {
        super::super::suite::run(|| Box::new(InMemoryBytes::default()));
    }
}
