//! Which partition a record goes to: the user's choice of distribution strategy.
//!
//! A record that names its partition goes there and no partitioner is asked. Otherwise the producer's
//! [`Partitioner`] decides. The built-ins:
//! - [`DefaultPartitioner`] (the default): [`Murmur2`] for keyed records, [`Sticky`] for keyless ones, as the
//!   Java client does. A key lands on the same partition whichever Kafka client wrote it.
//! - [`Murmur2`]: `toPositive(murmur2(key)) % partitions`, bit for bit the Java client's and librdkafka's
//!   `murmur2_random` (keyless records get a random partition per record there; here they go sticky).
//! - [`Sticky`]: one partition per topic until the producer closes a batch for it, then another.
//! - [`RoundRobin`]: record by record across all partitions of the topic.
//! - [`Explicit`]: always one fixed partition.
//!
//! User strategies implement the trait; `partition` is called on the `send` path and must be cheap.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A distribution strategy.
pub trait Partitioner: Send + Sync + std::fmt::Debug {
    /// The partition, in `0..partition_count`, for a record of `topic` (`partition_count` ≥ 1). A result out
    /// of range fails that record's delivery with an error.
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition_count: u32,
    ) -> u32;

    /// The producer closed a batch of `topic` on `partition` (it filled up or is being sent). Sticky
    /// strategies move on here; others ignore it.
    fn on_new_batch(&self, _topic: &str, _partition: u32, _partition_count: u32) {}
}

/// Kafka's murmur2: 32-bit MurmurHash2 with seed 0x9747b28c over the key bytes, as `Utils.murmur2` in the Java
/// client (little-endian 4-byte blocks, the tail mixed in, then the final avalanche).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `toPositive(murmur2(key)) % partitions`.
pub fn murmur2_partition(key: &[u8], partition_count: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partition_count
}

/// The Java client's default: murmur2 for keyed records, sticky for keyless ones.
#[derive(Debug, Default)]
pub struct DefaultPartitioner {
    sticky: Sticky,
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, n: u32) -> u32 {
        match key {
            Some(k) => murmur2_partition(k, n),
            None => self.sticky.partition(topic, None, value, n),
        }
    }

    fn on_new_batch(&self, topic: &str, partition: u32, n: u32) {
        self.sticky.on_new_batch(topic, partition, n);
    }
}

/// Murmur2 on the key; keyless records go sticky.
#[derive(Debug, Default)]
pub struct Murmur2 {
    sticky: Sticky,
}

impl Partitioner for Murmur2 {
    fn partition(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, n: u32) -> u32 {
        match key {
            Some(k) => murmur2_partition(k, n),
            None => self.sticky.partition(topic, None, value, n),
        }
    }

    fn on_new_batch(&self, topic: &str, partition: u32, n: u32) {
        self.sticky.on_new_batch(topic, partition, n);
    }
}

/// Sticks to one random partition per topic and moves to another (never the same one, when there is a
/// choice) when the producer closes a batch on it, so keyless records fill batches instead of spreading thin.
#[derive(Debug, Default)]
pub struct Sticky {
    current: Mutex<HashMap<String, u32>>,
    random: Random,
}

impl Partitioner for Sticky {
    fn partition(&self, topic: &str, _key: Option<&[u8]>, _value: Option<&[u8]>, n: u32) -> u32 {
        let mut current = self.current.lock().unwrap();
        match current.get(topic) {
            Some(p) if *p < n => *p,
            _ => {
                let p = self.random.below(n);
                current.insert(topic.to_string(), p);
                p
            }
        }
    }

    fn on_new_batch(&self, topic: &str, partition: u32, n: u32) {
        let mut current = self.current.lock().unwrap();
        let Some(p) = current.get_mut(topic) else {
            return;
        };
        // Only the batch of the partition we stick to moves us; a keyed or explicit record's batch elsewhere
        // does not.
        if *p != partition || n == 0 {
            return;
        }
        if n == 1 {
            *p = 0;
            return;
        }
        // A random other partition: pick among n-1 and skip over the current one.
        let next = self.random.below(n - 1);
        *p = if next >= partition { next + 1 } else { next };
    }
}

/// Record by record across all partitions, one counter per topic (as the Java client's `RoundRobinPartitioner`).
#[derive(Debug, Default)]
pub struct RoundRobin {
    counters: Mutex<HashMap<String, u32>>,
}

impl Partitioner for RoundRobin {
    fn partition(&self, topic: &str, _key: Option<&[u8]>, _value: Option<&[u8]>, n: u32) -> u32 {
        let mut counters = self.counters.lock().unwrap();
        let counter = counters.entry(topic.to_string()).or_insert(0);
        let p = *counter % n;
        *counter = counter.wrapping_add(1);
        p
    }
}

/// Always the same partition.
#[derive(Debug, Clone, Copy)]
pub struct Explicit(pub u32);

impl Partitioner for Explicit {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, _value: Option<&[u8]>, _n: u32) -> u32 {
        self.0
    }
}

/// A small xorshift generator seeded from the process's random hasher keys: partition choice needs spread,
/// not cryptographic quality, and this keeps the crate free of a `rand` dependency.
#[derive(Debug)]
struct Random(AtomicU64);

impl Default for Random {
    fn default() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Random(AtomicU64::new(h.finish() | 1))
    }
}

impl Random {
    fn below(&self, n: u32) -> u32 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        ((x >> 32) % u64::from(n.max(1))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    #[test]
    fn murmur2_matches_the_java_client_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107), // Java's new byte[] {'a', 'b', 'c'}
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keyed_partition_is_to_positive_modulo() {
        // murmur2("foobar") = -790332482; & 0x7fffffff = 1357151166.
        assert_eq!(murmur2_partition(b"foobar", 50), 1_357_151_166 % 50);
        assert_eq!(murmur2_partition(b"foobar", 1), 0);
    }

    #[test]
    fn default_partitioner_hashes_keys_and_sticks_without_them() {
        let p = DefaultPartitioner::default();
        assert_eq!(
            p.partition("t", Some(b"21"), None, 7),
            murmur2_partition(b"21", 7)
        );
        let first = p.partition("t", None, None, 7);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, None, 7), first);
        }
    }

    #[test]
    fn sticky_moves_to_another_partition_when_its_batch_closes() {
        let s = Sticky::default();
        let mut seen = std::collections::HashSet::new();
        let mut current = s.partition("t", None, None, 4);
        for _ in 0..200 {
            seen.insert(current);
            // A batch closing on some other partition does not move it.
            s.on_new_batch("t", (current + 1) % 4, 4);
            assert_eq!(s.partition("t", None, None, 4), current);
            s.on_new_batch("t", current, 4);
            let next = s.partition("t", None, None, 4);
            assert_ne!(next, current);
            assert!(next < 4);
            current = next;
        }
        assert_eq!(seen.len(), 4, "every partition gets a turn");
    }

    #[test]
    fn sticky_with_one_partition_stays_there() {
        let s = Sticky::default();
        assert_eq!(s.partition("t", None, None, 1), 0);
        s.on_new_batch("t", 0, 1);
        assert_eq!(s.partition("t", None, None, 1), 0);
    }

    #[test]
    fn sticky_follows_a_shrunk_partition_count() {
        let s = Sticky::default();
        for _ in 0..50 {
            assert!(s.partition("t", None, None, 100) < 100);
            assert!(s.partition("t", None, None, 2) < 2);
        }
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let r = RoundRobin::default();
        let a: Vec<u32> = (0..7).map(|_| r.partition("a", None, None, 3)).collect();
        assert_eq!(a, vec![0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(r.partition("b", None, None, 3), 0);
    }

    #[test]
    fn explicit_is_fixed() {
        assert_eq!(Explicit(5).partition("t", Some(b"k"), None, 10), 5);
    }
}
