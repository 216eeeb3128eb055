//! Topic-level configuration: the keys users set with CreateTopics / AlterConfigs, their broker-wide defaults,
//! validation, and the mapping onto the partition log's [`LogConfig`].

use std::collections::BTreeMap;

use strom_log::{LogConfig, TopicCodec};

use crate::config::{
    format_cleanup_policy, format_timestamp_type, parse_bool, parse_cleanup_policy, parse_ratio,
    parse_timestamp_type, BrokerConfig, CodecSettings, RATIO_EXPECTED,
};
use crate::replication::quota::ThrottledReplicas;

/// Kafka's DescribeConfigs config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config key.
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker key that sets its default (shown as the synonym in DescribeConfigs).
    pub broker_key: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

/// Every topic config Strom accepts.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        "delete, compact, or compact,delete",
    ),
    def(
        "compression.type",
        "compression.type",
        ConfigType::String,
        "producer (batches stored as sent), or uncompressed, gzip, snappy, lz4, zstd: the broker rewrites \
         batches in another codec into this one",
    ),
    def(
        "compression.gzip.level",
        "compression.gzip.level",
        ConfigType::Int,
        "gzip level (1-9, -1: the codec's default) when compression.type=gzip",
    ),
    def(
        "compression.lz4.level",
        "compression.lz4.level",
        ConfigType::Int,
        "lz4 level (1-17) when compression.type=lz4",
    ),
    def(
        "compression.zstd.level",
        "compression.zstd.level",
        ConfigType::Int,
        "zstd level (-131072 to 22) when compression.type=zstd",
    ),
    def(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        ConfigType::Long,
        "how long tombstones survive compaction",
    ),
    def(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ConfigType::Long,
        "how long a segment deleted by retention stays on disk as *.deleted",
    ),
    def(
        "flush.messages",
        "log.flush.interval.messages",
        ConfigType::Long,
        "unflushed records that force an fsync before ack",
    ),
    def(
        "flush.ms",
        "log.flush.interval.ms",
        ConfigType::Long,
        "how long written records may stay unflushed (fsynced in ten steps over it)",
    ),
    def(
        "follower.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
        ConfigType::List,
        "replicas (partitionId:brokerId, or *) whose follower fetches follower.replication.throttled.rate bounds \
         while they are out of the ISR",
    ),
    def(
        "index.interval.bytes",
        "log.index.interval.bytes",
        ConfigType::Int,
        "bytes of log between offset index entries",
    ),
    def(
        "leader.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        ConfigType::List,
        "replicas (partitionId:brokerId, or *) the leader sends at most leader.replication.throttled.rate to \
         while they are out of the ISR",
    ),
    def(
        "local.retention.bytes",
        "log.local.retention.bytes",
        ConfigType::Long,
        "tiered storage: not available; only -2 (follow retention.bytes)",
    ),
    def(
        "local.retention.ms",
        "log.local.retention.ms",
        ConfigType::Long,
        "tiered storage: not available; only -2 (follow retention.ms)",
    ),
    def(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        ConfigType::Long,
        "longest a record stays uncompacted (the cleaner then cleans whatever the dirty ratio)",
    ),
    def(
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        "largest record batch accepted",
    ),
    def(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        ConfigType::Long,
        "how far ahead of the broker's clock a CreateTime record may be",
    ),
    def(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        ConfigType::Long,
        "how far behind the broker's clock a CreateTime record may be",
    ),
    def(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        "CreateTime or LogAppendTime",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        ConfigType::Double,
        "dirty fraction of the cleanable log at which the cleaner compacts it",
    ),
    def(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        ConfigType::Long,
        "records younger than this are not compacted",
    ),
    def(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        "replicas that must hold an acks=all write",
    ),
    def(
        "preallocate",
        "log.preallocate",
        ConfigType::Boolean,
        "reserve a segment's disk when it is created",
    ),
    def(
        "remote.log.copy.disable",
        "remote.log.copy.disable",
        ConfigType::Boolean,
        "tiered storage: not available; only false",
    ),
    def(
        "remote.log.delete.on.disable",
        "remote.log.delete.on.disable",
        ConfigType::Boolean,
        "tiered storage: not available; only false",
    ),
    def(
        "remote.storage.enable",
        "remote.storage.enable",
        ConfigType::Boolean,
        "tiered storage: not available; only false",
    ),
    def(
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        "size above which old segments are deleted (-1: none)",
    ),
    def(
        "retention.ms",
        "log.retention.ms",
        ConfigType::Long,
        "age above which old segments are deleted (-1: none)",
    ),
    def(
        "segment.bytes",
        "log.segment.bytes",
        ConfigType::Int,
        "size at which a new segment is rolled",
    ),
    def(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        ConfigType::Int,
        "maximum offset index size per segment",
    ),
    def(
        "segment.jitter.ms",
        "log.roll.jitter.ms",
        ConfigType::Long,
        "up to this much earlier than segment.ms, fixed per segment, a segment rolls",
    ),
    def(
        "segment.ms",
        "log.roll.ms",
        ConfigType::Long,
        "age at which a new segment is rolled",
    ),
    def(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "when no in-sync or eligible replica is alive, let a live out-of-sync replica lead (losing the committed \
         records it lacks)",
    ),
];

const fn def(
    name: &'static str,
    broker_key: &'static str,
    config_type: ConfigType,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_key,
        config_type,
        doc,
    }
}

pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why `remote.storage.enable=true` and `local.retention.*` other than -2 are refused.
const TIERED_STORAGE: &str =
    "tiered storage (remote.storage.enable, local.retention.*) is not available in Strom; every segment stays \
     on the broker's disk until retention.ms / retention.bytes delete it";

/// Why a topic config was refused; becomes INVALID_CONFIG (40) with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// The effective settings of one topic: broker defaults overlaid with the topic's overrides.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub log: LogConfig,
    /// `cleanup.policy` exactly as set (Kafka echoes list configs in the order given).
    pub cleanup_policy_text: Option<String>,
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` (acted on by the controller, which reads the topic's override).
    pub unclean_leader_election: bool,
    pub flush_messages: i64,
    /// `flush.ms`: written records are fsynced within this long.
    pub flush_ms: i64,
    /// `compression.type` and `compression.<codec>.level`.
    pub compression: CodecSettings,
    /// `leader.replication.throttled.replicas` and `follower.replication.throttled.replicas`, with their text as
    /// set.
    pub leader_throttled: ThrottledReplicas,
    pub leader_throttled_text: String,
    pub follower_throttled: ThrottledReplicas,
    pub follower_throttled_text: String,
}

impl TopicSettings {
    /// Validates `overrides` and resolves them against the broker defaults.
    pub fn resolve(
        broker: &BrokerConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, InvalidConfig> {
        let mut settings = TopicSettings {
            log: broker.log.clone(),
            cleanup_policy_text: None,
            min_insync_replicas: broker.min_insync_replicas,
            unclean_leader_election: broker.unclean_leader_election_enable,
            flush_messages: broker.flush_interval_messages,
            flush_ms: broker.flush_interval_ms as i64,
            compression: broker.compression,
            leader_throttled: ThrottledReplicas::None,
            leader_throttled_text: String::new(),
            follower_throttled: ThrottledReplicas::None,
            follower_throttled_text: String::new(),
        };
        for (key, value) in overrides {
            settings.apply(key, value)?;
        }
        Ok(settings)
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), InvalidConfig> {
        let bad = |why: &str| InvalidConfig(format!("invalid value {value:?} for {key}: {why}"));
        let long = || value.parse::<i64>().map_err(|_| bad("expected an integer"));
        let log = &mut self.log;
        match key {
            "cleanup.policy" => {
                log.cleanup_policy = parse_cleanup_policy(value).map_err(|e| bad(&e))?;
                let items: Vec<&str> = value.split(',').map(str::trim).collect();
                self.cleanup_policy_text = Some(items.join(","));
            }
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => self.compression.set(key, value).map_err(|e| bad(&e))?,
            "delete.retention.ms" => {
                log.delete_retention_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "file.delete.delay.ms" => {
                log.file_delete_delay_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "flush.ms" => self.flush_ms = at_least(long()?, 0).map_err(|e| bad(&e))?,
            "local.retention.bytes" | "local.retention.ms" => {
                if at_least(long()?, -2).map_err(|e| bad(&e))? != -2 {
                    return Err(bad(TIERED_STORAGE));
                }
            }
            "preallocate" => {
                log.preallocate =
                    parse_bool(key, value).map_err(|_| bad("expected true or false"))?
            }
            "leader.replication.throttled.replicas" => {
                self.leader_throttled = ThrottledReplicas::parse(value).map_err(|e| bad(&e))?;
                self.leader_throttled_text = value.trim().to_string();
            }
            "follower.replication.throttled.replicas" => {
                self.follower_throttled = ThrottledReplicas::parse(value).map_err(|e| bad(&e))?;
                self.follower_throttled_text = value.trim().to_string();
            }
            "remote.storage.enable"
            | "remote.log.copy.disable"
            | "remote.log.delete.on.disable" => {
                if parse_bool(key, value).map_err(|_| bad("expected true or false"))? {
                    return Err(bad(TIERED_STORAGE));
                }
            }
            "segment.jitter.ms" => {
                log.segment_jitter_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "flush.messages" => self.flush_messages = at_least(long()?, 1).map_err(|e| bad(&e))?,
            "index.interval.bytes" => {
                log.index_interval_bytes = int(long()?, 0).map_err(|e| bad(&e))? as usize
            }
            "max.message.bytes" => {
                log.max_message_bytes = int(long()?, 0).map_err(|e| bad(&e))? as usize
            }
            "message.timestamp.type" => {
                log.message_timestamp_type = parse_timestamp_type(value).map_err(|e| bad(&e))?
            }
            "message.timestamp.after.max.ms" => {
                log.message_timestamp_after_max_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "message.timestamp.before.max.ms" => {
                log.message_timestamp_before_max_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "min.compaction.lag.ms" => {
                log.min_compaction_lag_ms = at_least(long()?, 0).map_err(|e| bad(&e))?
            }
            "max.compaction.lag.ms" => {
                log.max_compaction_lag_ms = at_least(long()?, 1).map_err(|e| bad(&e))?
            }
            "min.cleanable.dirty.ratio" => {
                log.min_cleanable_dirty_ratio =
                    parse_ratio(value).ok_or_else(|| bad(RATIO_EXPECTED))?
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = int(long()?, 1).map_err(|e| bad(&e))?
            }
            "retention.bytes" => {
                log.retention_bytes = at_least(long()?, -1).map_err(|e| bad(&e))?
            }
            "retention.ms" => log.retention_ms = at_least(long()?, -1).map_err(|e| bad(&e))?,
            "segment.bytes" => log.segment_bytes = int(long()?, 14).map_err(|e| bad(&e))? as u64,
            "segment.index.bytes" => {
                log.segment_index_bytes = int(long()?, 8).map_err(|e| bad(&e))? as usize
            }
            "segment.ms" => log.segment_ms = at_least(long()?, 1).map_err(|e| bad(&e))?,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election =
                    parse_bool(key, value).map_err(|_| bad("expected true or false"))?
            }
            _ => return Err(InvalidConfig(format!("unknown topic config {key:?}"))),
        }
        Ok(())
    }

    /// The codec the broker stores this topic's batches in, or None for `compression.type=producer`.
    pub fn codec(&self) -> Option<TopicCodec> {
        self.compression.codec()
    }

    /// The effective value of `name`, as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> String {
        let log = &self.log;
        match name {
            "cleanup.policy" => self
                .cleanup_policy_text
                .clone()
                .unwrap_or_else(|| format_cleanup_policy(&log.cleanup_policy)),
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => self.compression.value_of(name).unwrap_or_default(),
            "file.delete.delay.ms" => log.file_delete_delay_ms.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "local.retention.bytes" | "local.retention.ms" => "-2".into(),
            "preallocate" => log.preallocate.to_string(),
            "remote.storage.enable"
            | "remote.log.copy.disable"
            | "remote.log.delete.on.disable" => "false".into(),
            "leader.replication.throttled.replicas" => self.leader_throttled_text.clone(),
            "follower.replication.throttled.replicas" => self.follower_throttled_text.clone(),
            "segment.jitter.ms" => log.segment_jitter_ms.to_string(),
            "delete.retention.ms" => log.delete_retention_ms.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "index.interval.bytes" => log.index_interval_bytes.to_string(),
            "max.message.bytes" => log.max_message_bytes.to_string(),
            "message.timestamp.type" => format_timestamp_type(log.message_timestamp_type).into(),
            "message.timestamp.after.max.ms" => log.message_timestamp_after_max_ms.to_string(),
            "message.timestamp.before.max.ms" => log.message_timestamp_before_max_ms.to_string(),
            "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => format_double(log.min_cleanable_dirty_ratio),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => log.retention_bytes.to_string(),
            "retention.ms" => log.retention_ms.to_string(),
            "segment.bytes" => log.segment_bytes.to_string(),
            "segment.index.bytes" => log.segment_index_bytes.to_string(),
            "segment.ms" => log.segment_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            _ => String::new(),
        }
    }
}

/// DescribeConfigs' config sources.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One topic config as DescribeConfigs and CreateTopics report it: the effective value, where it comes from, and
/// the synonyms from most to least specific (topic override, broker config file, Kafka's default), as Kafka lists
/// them.
pub struct DescribedConfig {
    pub value: String,
    pub source: i8,
    pub synonyms: Vec<(&'static str, String, i8)>,
}

pub fn describe(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    settings: &TopicSettings,
    def: &TopicConfigDef,
) -> DescribedConfig {
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.get(def.name) {
        synonyms.push((def.name, v.clone(), SOURCE_TOPIC));
    }
    if let Some(v) = broker.explicit.get(def.broker_key) {
        synonyms.push((def.broker_key, v.clone(), SOURCE_STATIC_BROKER));
    }
    if let Ok(defaults) = TopicSettings::resolve(&BrokerConfig::default(), &BTreeMap::new()) {
        synonyms.push((def.broker_key, defaults.value_of(def.name), SOURCE_DEFAULT));
    }
    let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2);
    DescribedConfig {
        value: settings.value_of(def.name),
        source,
        synonyms,
    }
}

fn at_least(v: i64, min: i64) -> Result<i64, String> {
    if v < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(v)
}

/// A double as Kafka prints one (`0.5`, `1.0`).
fn format_double(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

fn int(v: i64, min: i64) -> Result<i32, String> {
    let v = at_least(v, min)?;
    i32::try_from(v).map_err(|_| "must fit in a 32-bit integer".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_on_top_of_broker_defaults() {
        let broker = BrokerConfig::default();
        let s = TopicSettings::resolve(
            &broker,
            &overrides(&[("retention.ms", "1000"), ("cleanup.policy", "compact")]),
        )
        .unwrap();
        assert_eq!(s.log.retention_ms, 1000);
        assert!(s.log.cleanup_policy.compact && !s.log.cleanup_policy.delete);
        assert_eq!(s.log.segment_bytes, broker.log.segment_bytes);
        assert_eq!(s.value_of("cleanup.policy"), "compact");
    }

    #[test]
    fn every_defined_key_has_a_value() {
        let s = TopicSettings::resolve(&BrokerConfig::default(), &BTreeMap::new()).unwrap();
        for d in TOPIC_CONFIGS {
            // Kafka's default for the throttled replica lists is the empty list.
            let empty_default = d.name.ends_with(".replication.throttled.replicas");
            assert_eq!(s.value_of(d.name).is_empty(), empty_default, "{}", d.name);
        }
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_their_name() {
        let broker = BrokerConfig::default();
        for (k, v) in [
            ("retention.ms", "-5"),
            ("segment.bytes", "abc"),
            ("cleanup.policy", "never"),
            ("nope", "1"),
        ] {
            let err = TopicSettings::resolve(&broker, &overrides(&[(k, v)])).unwrap_err();
            assert!(err.0.contains(k), "{err}");
        }
    }
}
