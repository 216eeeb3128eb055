//! Producer settings under the Java client's names.

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::kafka::records::Compression;

use crate::cluster::parse_bootstrap;
use crate::config_value;
use crate::error::Error;
use crate::partitioner::{DefaultPartitioner, Murmur2, Partitioner, RoundRobin, Sticky};

/// `acks`: how many replicas must have the record before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `0`: no response at all; offsets are unknown and errors are not reported.
    None,
    /// `1`: the leader wrote it.
    Leader,
    /// `all` / `-1`: every in-sync replica has it (on Strom: fsynced).
    All,
}

impl Acks {
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// `partitioner`: which built-in strategy, or a user's.
#[derive(Debug, Clone)]
pub enum PartitionerChoice {
    /// murmur2 for keyed records, sticky for keyless (the Java client's default).
    Default,
    Murmur2,
    Sticky,
    RoundRobin,
    Custom(Arc<dyn Partitioner>),
}

impl PartitionerChoice {
    pub(crate) fn build(&self) -> Arc<dyn Partitioner> {
        match self {
            PartitionerChoice::Default => Arc::new(DefaultPartitioner::default()),
            PartitionerChoice::Murmur2 => Arc::new(Murmur2::default()),
            PartitionerChoice::Sticky => Arc::new(Sticky::default()),
            PartitionerChoice::RoundRobin => Arc::new(RoundRobin::default()),
            PartitionerChoice::Custom(p) => p.clone(),
        }
    }
}

/// Producer configuration. Defaults are the Java client's (4.x).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`
    pub bootstrap_servers: Vec<String>,
    /// `client.id`
    pub client_id: String,
    /// `acks` (default all)
    pub acks: Acks,
    /// `linger.ms` (default 5)
    pub linger: Duration,
    /// `batch.size` in bytes (default 16384)
    pub batch_size: usize,
    /// `buffer.memory` in bytes (default 32 MiB): `send` waits while this much is buffered.
    pub buffer_memory: usize,
    /// `compression.type`: none, gzip, snappy, lz4, zstd
    pub compression: Compression,
    /// `enable.idempotence` (default true)
    pub enable_idempotence: bool,
    /// `retries` (default i32::MAX: bounded by `delivery.timeout.ms` instead)
    pub retries: u32,
    /// `retry.backoff.ms` (default 100)
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms` (default 120000): from `send` to the final result.
    pub delivery_timeout: Duration,
    /// `request.timeout.ms` (default 30000)
    pub request_timeout: Duration,
    /// `max.block.ms` (default 60000): how long `send` may wait for metadata or buffer space.
    pub max_block: Duration,
    /// `max.in.flight.requests.per.connection` (default 5; at most 5 with idempotence)
    pub max_in_flight: usize,
    /// `max.request.size` (default 1048576): the largest record accepted.
    pub max_request_size: usize,
    /// `partitioner` (Strom's name; Java takes a class in `partitioner.class`)
    pub partitioner: PartitionerChoice,
    /// `transactional.id` (default none): makes the producer transactional (see
    /// [`Producer::init_transactions`](super::Producer::init_transactions)); implies `enable.idempotence` and
    /// `acks=all`, and setting either against it is an error.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (default 60000): how long the coordinator lets a transaction stay open before it
    /// aborts it (a producer that died in one).
    pub transaction_timeout: Duration,
    /// Whether `enable.idempotence` was set explicitly: then conflicting settings are an error, else they
    /// turn idempotence off, as in the Java client.
    idempotence_explicit: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "strom-producer".into(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            enable_idempotence: true,
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            max_block: Duration::from_secs(60),
            max_in_flight: 5,
            max_request_size: 1024 * 1024,
            partitioner: PartitionerChoice::Default,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            idempotence_explicit: false,
        }
    }
}

impl ProducerConfig {
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: parse_bootstrap(bootstrap_servers),
            ..Self::default()
        }
    }

    /// Builds a config from `key=value` pairs (Java names).
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Error> {
        let mut config = Self::default();
        for (k, v) in properties {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets one setting by its Java client name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, Error> {
        let value = value.trim();
        let bad = |why: &str| config_value::invalid(key, value, why);
        let ms = |v: &str| config_value::millis(key, v);
        let bytes = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| bad("expected a number of bytes"))
        };
        match key {
            "bootstrap.servers" => self.bootstrap_servers = parse_bootstrap(value),
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = match value {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(bad("expected 0, 1, all or -1")),
                }
            }
            "linger.ms" => self.linger = ms(value)?,
            "batch.size" => self.batch_size = bytes(value)?,
            "buffer.memory" => self.buffer_memory = bytes(value)?,
            "compression.type" => {
                self.compression = match value {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => return Err(bad("expected none, gzip, snappy, lz4 or zstd")),
                }
            }
            "enable.idempotence" => {
                self.enable_idempotence = config_value::boolean(key, value)?;
                self.idempotence_explicit = true;
            }
            "retries" => {
                self.retries = value
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .map(|r| r.min(i64::from(u32::MAX)) as u32)
                    .ok_or_else(|| bad("expected a non-negative count"))?
            }
            "retry.backoff.ms" => self.retry_backoff = ms(value)?,
            "delivery.timeout.ms" => self.delivery_timeout = ms(value)?,
            "request.timeout.ms" => self.request_timeout = ms(value)?,
            "max.block.ms" => self.max_block = ms(value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("expected at least 1"))?
            }
            "max.request.size" => self.max_request_size = bytes(value)?,
            "transactional.id" => {
                self.transactional_id = Some(value.to_string()).filter(|v| !v.is_empty())
            }
            "transaction.timeout.ms" => self.transaction_timeout = ms(value)?,
            "partitioner" => {
                self.partitioner = match value {
                    "default" => PartitionerChoice::Default,
                    "murmur2" => PartitionerChoice::Murmur2,
                    "sticky" => PartitionerChoice::Sticky,
                    "round_robin" | "roundrobin" => PartitionerChoice::RoundRobin,
                    _ => {
                        return Err(bad(
                            "expected default, murmur2, sticky or round_robin (custom ones are set in code)",
                        ))
                    }
                }
            }
            _ => return Err(Error::Config(format!("unknown producer setting {key}"))),
        }
        Ok(self)
    }

    /// Checks the combination and resolves implicit idempotence, as the Java client does.
    pub(crate) fn validated(mut self) -> Result<Self, Error> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch.size must be positive".into()));
        }
        if self.buffer_memory == 0 || self.buffer_memory > u32::MAX as usize {
            return Err(Error::Config(
                "buffer.memory must be between 1 and 4294967295".into(),
            ));
        }
        if self.transactional_id.is_some() {
            if !self.enable_idempotence {
                return Err(Error::Config(
                    "transactional.id requires enable.idempotence=true".into(),
                ));
            }
            // Transactions rest on idempotence: a conflicting setting is an error, never a silent downgrade.
            self.idempotence_explicit = true;
            if self.transaction_timeout.is_zero()
                || self.transaction_timeout.as_millis() > i32::MAX as u128
            {
                return Err(Error::Config(
                    "transaction.timeout.ms must be between 1 and 2147483647".into(),
                ));
            }
        }
        if self.enable_idempotence {
            let conflict = if self.acks != Acks::All {
                Some("idempotence requires acks=all")
            } else if self.max_in_flight > 5 {
                Some("idempotence allows at most 5 max.in.flight.requests.per.connection")
            } else if self.retries == 0 {
                Some("idempotence requires retries > 0")
            } else {
                None
            };
            if let Some(why) = conflict {
                if self.idempotence_explicit {
                    return Err(Error::Config(why.into()));
                }
                self.enable_idempotence = false;
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_names_are_accepted() {
        let c = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1,b:2"),
            ("acks", "1"),
            ("linger.ms", "20"),
            ("batch.size", "1000"),
            ("compression.type", "zstd"),
            ("buffer.memory", "4096"),
            ("partitioner", "round_robin"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.compression, Compression::Zstd);
        assert!(matches!(c.partitioner, PartitionerChoice::RoundRobin));
    }

    #[test]
    fn implicit_idempotence_yields_to_acks_1_but_explicit_conflicts() {
        let c = ProducerConfig::from_properties([("bootstrap.servers", "a:1"), ("acks", "1")])
            .unwrap()
            .validated()
            .unwrap();
        assert!(!c.enable_idempotence);
        let err = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("acks", "1"),
            ("enable.idempotence", "true"),
        ])
        .unwrap()
        .validated()
        .unwrap_err();
        assert!(err.to_string().contains("acks=all"), "{err}");
    }

    #[test]
    fn a_transactional_id_implies_idempotence_and_refuses_conflicts() {
        let c = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("transactional.id", "tx-1"),
            ("transaction.timeout.ms", "10000"),
        ])
        .unwrap()
        .validated()
        .unwrap();
        assert!(c.enable_idempotence && c.acks == Acks::All);
        assert_eq!(c.transactional_id.as_deref(), Some("tx-1"));
        assert_eq!(c.transaction_timeout, Duration::from_secs(10));
        for (key, value, why) in [
            ("acks", "1", "acks=all"),
            ("enable.idempotence", "false", "enable.idempotence"),
        ] {
            let err = ProducerConfig::from_properties([
                ("bootstrap.servers", "a:1"),
                ("transactional.id", "tx-1"),
                (key, value),
            ])
            .unwrap()
            .validated()
            .unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut c = ProducerConfig::default();
        let err = c.set("compression.type", "brotli").unwrap_err();
        assert!(err.to_string().contains("compression.type=brotli"), "{err}");
        assert!(c.set("linger.msec", "1").is_err());
    }
}
