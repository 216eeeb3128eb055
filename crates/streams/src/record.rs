//! What flows through a topology: records with a key, a value, a timestamp and headers.

use bytes::Bytes;

/// Record headers, in order.
pub type Headers = Vec<(String, Option<Bytes>)>;

/// One record inside a topology, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
            headers: Headers::new(),
        }
    }

    /// The same timestamp and headers with another key and value.
    pub fn with<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// `f` of the key and value, with the same timestamp and headers (moved, not cloned).
    pub fn map<K2, V2>(self, f: impl FnOnce(K, V) -> (K2, V2)) -> Record<K2, V2> {
        let (key, value) = f(self.key, self.value);
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}

/// Where the record being processed came from (Kafka's `RecordMetadata` of the `ProcessorContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A record as it is on a topic: bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Headers,
}

/// Which partition an output record goes to.
pub enum PartitionChoice {
    /// The producer's default partitioner: murmur2 of the key, as every Kafka client.
    Default,
    Fixed(i32),
    /// The user's partitioner, given the topic's partition count.
    Custom(Box<dyn FnOnce(u32) -> u32 + Send>),
}

impl std::fmt::Debug for PartitionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("Default"),
            Self::Fixed(p) => write!(f, "Fixed({p})"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// A record a task writes: to a sink topic, a repartition topic or a changelog.
#[derive(Debug)]
pub struct OutputRecord {
    pub topic: std::sync::Arc<str>,
    pub partition: PartitionChoice,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Headers,
}
