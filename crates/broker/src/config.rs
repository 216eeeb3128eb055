//! Broker configuration: embedded defaults, a `server.properties`-style file with Kafka's key names, then
//! command-line overrides.
//!
//! Every key a Kafka operator would type keeps Kafka's name (`log.dirs`, `num.partitions`, `log.retention.ms`,
//! ...). Keys Strom does not know are reported and ignored, as Kafka does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use strom_log::{CleanupPolicy, Compression, LogConfig, TimestampType};
use thiserror::Error;

use crate::groups::consumer::AssignorName;

/// A configuration value could not be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("line {line}: expected `key=value`, found {text:?}")]
    Syntax { line: usize, text: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// Everything the broker process needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id` (or `broker.id`).
    pub node_id: i32,
    /// `log.dirs` (first entry) / `--data-dir`.
    pub data_dir: PathBuf,
    /// `listeners` / `--listen`.
    pub listen: SocketAddr,
    /// `advertised.listeners` / `--advertised`: host and port clients are told to connect to. `None` advertises
    /// the bound address.
    pub advertised: Option<(String, u16)>,
    /// The controller listener's entry in `advertised.listeners` (KIP-853): where other nodes reach this node's
    /// controller listener, when that is not where it binds (behind a proxy or NAT). `controller.quorum.voters`
    /// must name it for this node.
    pub advertised_controller: Option<(String, u16)>,
    /// `num.partitions`: partitions of an auto-created topic or of CreateTopics with -1.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: the largest request frame accepted before allocation.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`: a connection that completes no request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `strom.metrics.listener` (`host:port`, Strom's own key): where `GET /metrics` serves the request times in
    /// Prometheus's format (`metrics.rs`). None by default.
    pub metrics_listener: Option<String>,
    /// `fetch.max.bytes`: the most record bytes one Fetch response carries, whatever the client asks for.
    pub fetch_max_bytes: usize,
    /// `log.flush.interval.messages`: once a partition holds this many unflushed records, the append that crossed
    /// the line waits for an fsync before it is acknowledged. `i64::MAX` (Kafka's default) leaves flushing to
    /// acks=all and the interval flusher.
    pub flush_interval_messages: i64,
    /// `log.flush.interval.ms`: the background flusher's period, bounding what acks=0/1 data a power loss can
    /// take.
    pub flush_interval_ms: u64,
    /// `log.retention.check.interval.ms`: how often retention and compaction run.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.enable`: whether the log cleaner compacts `cleanup.policy=compact` topics.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: how long the cleaner sleeps when no log needed cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.threads`: cleaners at work at once, each over its own share of the compacted logs (0: none).
    pub log_cleaner_threads: usize,
    /// `log.cleaner.io.max.bytes.per.second`: the bytes all cleaners together read and write per second
    /// (`f64::MAX`, Kafka's default, is no bound).
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// `min.insync.replicas`: default for topics.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: default for topics; when no in-sync or eligible replica is alive, a live
    /// out-of-sync one may lead (losing the committed records it lacks).
    pub unclean_leader_election_enable: bool,
    /// `compression.type` and `compression.<codec>.level`: defaults for topics.
    pub compression: CodecSettings,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`: the session timeouts members may ask for.
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// `group.max.size`: members per group.
    pub group_max_size: usize,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 consumer-protocol members heartbeat.
    pub group_consumer_heartbeat_interval_ms: u64,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member silent this long is removed.
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.assignors`: the server-side assignors members may choose; the first is the default.
    pub group_consumer_assignors: Vec<AssignorName>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, fixed once the topic exists.
    pub offsets_topic_num_partitions: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`, fixed once it exists.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the live brokers when the topic is created).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out transactions are
    /// looked for and aborted.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// Defaults for every topic's log, from the `log.*` keys and `message.max.bytes`.
    pub log: LogConfig,
    /// Keys set explicitly in the config file, for DescribeConfigs' `STATIC_BROKER_CONFIG` source.
    pub explicit: BTreeMap<String, String>,
    /// Kafka 4 broker keys that were set but that Strom does not act on (`kafka_broker_keys.rs`), reported once
    /// at start by name.
    pub ignored: Vec<String>,
    /// `process.roles`: whether this node serves Kafka clients (broker), votes in the metadata quorum
    /// (controller), or both.
    pub roles: ProcessRoles,
    /// `controller.quorum.voters`: `id@host:port` of every controller. Empty means this node alone is the quorum.
    pub quorum_voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers`: controller listeners a broker-only node fetches metadata from.
    pub quorum_bootstrap_servers: Vec<String>,
    /// `controller.listener.names`: which of `listeners` is the controller listener.
    pub controller_listener_names: Vec<String>,
    /// The controller listener from `listeners`, for the quorum and broker-to-controller requests.
    pub controller_listen: Option<SocketAddr>,
    /// `controller.quorum.election.timeout.ms`: a follower that hears no leader for this long (randomised up to
    /// twice as long) stands for election.
    pub quorum_election_timeout_ms: u64,
    /// `broker.rack`: replicas of a partition are spread over racks.
    pub rack: Option<String>,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker the controller has not heard from for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor` (capped at the number of live brokers when the topic is created).
    pub offsets_topic_replication_factor: i16,
    /// `replica.lag.time.max.ms`: a follower not caught up with its leader for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.max.bytes`: per partition, in one follower fetch.
    pub replica_fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: a whole follower fetch response.
    pub replica_fetch_response_max_bytes: usize,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader for new records.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.backoff.ms`: the pause after a follower fetch failed.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`
    pub leader_imbalance_per_broker_percentage: u32,
    /// `leader.replication.throttled.rate` / `follower.replication.throttled.rate`: bytes per second for the
    /// replicas topics throttle (`replication/quota.rs`); `u64::MAX` (Kafka's Long.MAX_VALUE) is none.
    pub leader_replication_throttled_rate: u64,
    pub follower_replication_throttled_rate: u64,
    /// `replication.quota.window.num` and `replication.quota.window.size.seconds`: the throttles' rate windows.
    pub replication_quota_window_num: usize,
    pub replication_quota_window_size_seconds: u64,
}

/// `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

/// One entry of `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("./strom-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            advertised_controller: None,
            num_partitions: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 100 * 1024 * 1024,
            connections_max_idle_ms: 10 * 60 * 1000,
            metrics_listener: None,
            fetch_max_bytes: 55 * 1024 * 1024,
            flush_interval_messages: i64::MAX,
            flush_interval_ms: 1000,
            retention_check_interval_ms: 5 * 60 * 1000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_threads: 1,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            compression: CodecSettings::default(),
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: usize::MAX,
            group_consumer_heartbeat_interval_ms: 5000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_assignors: vec![AssignorName::Uniform, AssignorName::Range],
            offsets_topic_num_partitions: 50,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            log: LogConfig::default(),
            explicit: BTreeMap::new(),
            ignored: Vec::new(),
            roles: ProcessRoles {
                broker: true,
                controller: true,
            },
            quorum_voters: Vec::new(),
            quorum_bootstrap_servers: Vec::new(),
            controller_listener_names: vec!["CONTROLLER".to_string()],
            controller_listen: None,
            quorum_election_timeout_ms: 1000,
            rack: None,
            broker_heartbeat_interval_ms: 2000,
            broker_session_timeout_ms: 9000,
            default_replication_factor: 1,
            offsets_topic_replication_factor: 3,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_max_bytes: 1024 * 1024,
            replica_fetch_response_max_bytes: 10 * 1024 * 1024,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_backoff_ms: 1000,
            replica_high_watermark_checkpoint_interval_ms: 5000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
            leader_replication_throttled_rate: u64::MAX,
            follower_replication_throttled_rate: u64::MAX,
            replication_quota_window_num: 11,
            replication_quota_window_size_seconds: 1,
        }
    }
}

impl BrokerConfig {
    /// Applies a `server.properties`-style text on top of `self`. Returns the keys that were not recognised.
    pub fn apply_properties(&mut self, text: &str) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(ConfigError::Syntax {
                    line: index + 1,
                    text: raw.to_string(),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            if !self.set_or_ignore(key, value)? {
                unknown.push(key.to_string());
            }
        }
        Ok(unknown)
    }

    /// Sets one key as a config file or `--set` does: a key Strom acts on is applied, a Kafka 4 broker key it
    /// does not act on is recorded in `ignored`; both are recorded in `explicit`. Returns `Ok(false)` for a key
    /// that is neither.
    pub fn set_or_ignore(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        if !self.set(key, value)? {
            if !crate::kafka_broker_keys::is_kafka_broker_key(key) {
                return Ok(false);
            }
            if !self.ignored.iter().any(|k| k == key) {
                self.ignored.push(key.to_string());
            }
        }
        self.explicit.insert(key.to_string(), value.to_string());
        Ok(true)
    }

    /// Sets one key. Returns `Ok(false)` for a key Strom does not know.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        match key {
            "node.id" | "broker.id" => self.node_id = parse(key, value)?,
            "log.dirs" | "log.dir" => {
                let first = value.split(',').next().unwrap_or("").trim();
                if first.is_empty() {
                    return Err(invalid("needs a directory"));
                }
                self.data_dir = PathBuf::from(first);
            }
            "listeners" => self.set_listeners(value).map_err(|r| invalid(&r))?,
            "controller.listener.names" => {
                self.controller_listener_names =
                    value.split(',').map(|n| n.trim().to_string()).collect();
                if let Some(listeners) = self.explicit.get("listeners").cloned() {
                    self.set_listeners(&listeners).map_err(|r| invalid(&r))?;
                }
                if let Some(advertised) = self.explicit.get("advertised.listeners").cloned() {
                    self.set_advertised(&advertised).map_err(|r| invalid(&r))?;
                }
            }
            "process.roles" => self.roles = parse_roles(value).map_err(|r| invalid(&r))?,
            "controller.quorum.voters" => {
                self.quorum_voters = parse_voters(value).map_err(|r| invalid(&r))?
            }
            "controller.quorum.bootstrap.servers" => {
                self.quorum_bootstrap_servers = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "controller.quorum.election.timeout.ms" => {
                self.quorum_election_timeout_ms = positive::<i32>(key, value)? as u64
            }
            "broker.rack" => self.rack = Some(value.to_string()).filter(|r| !r.is_empty()),
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = positive::<i32>(key, value)? as u64
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = positive::<i32>(key, value)? as u64
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = positive::<i64>(key, value)? as u64
            }
            "replica.fetch.max.bytes" => {
                self.replica_fetch_max_bytes = positive::<i32>(key, value)? as usize
            }
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = positive::<i32>(key, value)? as usize
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms = positive::<i32>(key, value)? as u64
            }
            "replica.fetch.backoff.ms" => {
                self.replica_fetch_backoff_ms = non_negative::<i32>(key, value)? as u64
            }
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_high_watermark_checkpoint_interval_ms =
                    positive::<i64>(key, value)? as u64
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance_enable = parse_bool(key, value)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_ms = positive::<i64>(key, value)? as u64 * 1000
            }
            "leader.imbalance.per.broker.percentage" => {
                self.leader_imbalance_per_broker_percentage =
                    non_negative::<i32>(key, value)? as u32
            }
            "leader.replication.throttled.rate" => {
                self.leader_replication_throttled_rate = byte_rate(key, value)?
            }
            "follower.replication.throttled.rate" => {
                self.follower_replication_throttled_rate = byte_rate(key, value)?
            }
            "replication.quota.window.num" => {
                self.replication_quota_window_num = positive::<i32>(key, value)? as usize
            }
            "replication.quota.window.size.seconds" => {
                self.replication_quota_window_size_seconds = positive::<i32>(key, value)? as u64
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(key, value)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = positive(key, value)?
            }
            "advertised.listeners" => self.set_advertised(value).map_err(|r| invalid(&r))?,
            "num.partitions" => self.num_partitions = positive(key, value)?,
            "default.replication.factor" => self.default_replication_factor = positive(key, value)?,
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(key, value)?,
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = positive::<i32>(key, value)? as usize
            }
            "fetch.max.bytes" => self.fetch_max_bytes = positive::<i32>(key, value)? as usize,
            "connections.max.idle.ms" => {
                self.connections_max_idle_ms = positive::<i64>(key, value)? as u64
            }
            "strom.metrics.listener" => {
                let value = value.trim();
                if value.is_empty() {
                    self.metrics_listener = None;
                } else if value.parse::<SocketAddr>().is_ok()
                    || value
                        .rsplit_once(':')
                        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
                {
                    self.metrics_listener = Some(value.to_string());
                } else {
                    return Err(invalid("expected host:port, such as 127.0.0.1:9644"));
                }
            }
            "log.flush.interval.messages" => self.flush_interval_messages = positive(key, value)?,
            "log.flush.interval.ms" => self.flush_interval_ms = positive::<i64>(key, value)? as u64,
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = positive::<i64>(key, value)? as u64
            }
            "min.insync.replicas" => self.min_insync_replicas = positive(key, value)?,
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => {
                self.compression.set(key, value).map_err(|r| invalid(&r))?
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = non_negative::<i64>(key, value)? as u64
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = non_negative::<i64>(key, value)? as u64
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = positive::<i64>(key, value)? as u64
            }
            "group.max.size" => self.group_max_size = positive::<i32>(key, value)? as usize,
            "group.consumer.heartbeat.interval.ms" => {
                self.group_consumer_heartbeat_interval_ms = positive::<i32>(key, value)? as u64
            }
            "group.consumer.session.timeout.ms" => {
                self.group_consumer_session_timeout_ms = positive::<i32>(key, value)? as u64
            }
            "group.consumer.assignors" => {
                self.group_consumer_assignors = parse_assignors(value).map_err(|r| invalid(&r))?
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = positive(key, value)?
            }
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions = positive(key, value)?
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor = positive(key, value)?
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms = positive(key, value)?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms =
                    positive::<i64>(key, value)? as u64
            }
            "log.segment.bytes" => self.log.segment_bytes = positive::<i64>(key, value)? as u64,
            "log.roll.ms" => self.log.segment_ms = positive(key, value)?,
            "log.roll.hours" => self.log.segment_ms = positive::<i64>(key, value)? * 3_600_000,
            "log.roll.jitter.ms" => self.log.segment_jitter_ms = non_negative(key, value)?,
            "log.roll.jitter.hours" => {
                self.log.segment_jitter_ms = non_negative::<i64>(key, value)? * 3_600_000
            }
            "log.preallocate" => self.log.preallocate = parse_bool(key, value)?,
            "log.segment.delete.delay.ms" => {
                self.log.file_delete_delay_ms = non_negative(key, value)?
            }
            "log.retention.ms" => self.log.retention_ms = retention(key, value, 1)?,
            "log.retention.minutes" => self.log.retention_ms = retention(key, value, 60_000)?,
            "log.retention.hours" => self.log.retention_ms = retention(key, value, 3_600_000)?,
            "log.retention.bytes" => self.log.retention_bytes = retention(key, value, 1)?,
            "log.cleanup.policy" => {
                self.log.cleanup_policy = parse_cleanup_policy(value).map_err(|r| invalid(&r))?
            }
            "log.cleaner.delete.retention.ms" => {
                self.log.delete_retention_ms = non_negative(key, value)?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log.min_compaction_lag_ms = non_negative(key, value)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                self.log.max_compaction_lag_ms = positive(key, value)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                self.log.min_cleanable_dirty_ratio =
                    parse_ratio(value).ok_or_else(|| invalid(RATIO_EXPECTED))?
            }
            "log.cleaner.enable" => self.log_cleaner_enable = parse_bool(key, value)?,
            "log.cleaner.threads" => {
                self.log_cleaner_threads = non_negative::<i32>(key, value)? as usize
            }
            "log.cleaner.io.max.bytes.per.second" => {
                self.log_cleaner_io_max_bytes_per_second = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v > 0.0)
                    .ok_or_else(|| invalid("expected a positive number of bytes per second"))?
            }
            "log.cleaner.backoff.ms" => {
                self.log_cleaner_backoff_ms = positive::<i64>(key, value)? as u64
            }
            "message.max.bytes" => {
                self.log.max_message_bytes = positive::<i32>(key, value)? as usize
            }
            "log.index.interval.bytes" => {
                self.log.index_interval_bytes = non_negative::<i32>(key, value)? as usize
            }
            "log.index.size.max.bytes" => {
                self.log.segment_index_bytes = positive::<i32>(key, value)? as usize
            }
            "log.message.timestamp.after.max.ms" => {
                self.log.message_timestamp_after_max_ms = non_negative(key, value)?
            }
            "log.message.timestamp.before.max.ms" => {
                self.log.message_timestamp_before_max_ms = non_negative(key, value)?
            }
            "log.message.timestamp.type" => {
                self.log.message_timestamp_type =
                    parse_timestamp_type(value).map_err(|r| invalid(&r))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `listeners`: the entry named in `controller.listener.names` is the controller listener, the first other
    /// one the Kafka listener. An entry without a name is the Kafka listener.
    fn set_listeners(&mut self, value: &str) -> Result<(), String> {
        let mut kafka = None;
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, _) = entry.split_once("://").unwrap_or(("", entry));
            let addr = parse_listener(entry)?;
            if self.controller_listener_names.iter().any(|n| n == name) {
                self.controller_listen = Some(addr);
            } else if kafka.is_none() {
                kafka = Some(addr);
            }
        }
        if let Some(addr) = kafka {
            self.listen = addr;
        }
        Ok(())
    }

    /// `advertised.listeners`: the entry named in `controller.listener.names` is where other nodes reach the
    /// controller listener, the first other one what Metadata tells clients. An entry without a name is the
    /// Kafka listener's.
    fn set_advertised(&mut self, value: &str) -> Result<(), String> {
        let (mut kafka, mut controller) = (None, None);
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, addr) = entry.split_once("://").unwrap_or(("", entry));
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("expected host:port in {entry:?}"))?;
            let port: u16 = port.parse().map_err(|_| format!("bad port in {entry:?}"))?;
            let endpoint = Some((host.to_string(), port));
            if self.controller_listener_names.iter().any(|n| n == name) {
                controller = endpoint;
            } else if kafka.is_none() {
                kafka = endpoint;
            }
        }
        self.advertised = kafka;
        self.advertised_controller = controller;
        Ok(())
    }

    /// The voters of the metadata quorum: `controller.quorum.voters`, or this node alone.
    pub fn voter_ids(&self) -> Vec<i32> {
        if self.quorum_voters.is_empty() {
            vec![self.node_id]
        } else {
            self.quorum_voters.iter().map(|v| v.node_id).collect()
        }
    }

    /// The host and port written into Metadata responses.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()))
    }
}

fn strip_listener_name(value: &str) -> &str {
    let first = value.split(',').next().unwrap_or("").trim();
    first.split_once("://").map_or(first, |(_, addr)| addr)
}

#[cfg(test)]
mod cluster_config_tests {
    use super::*;

    #[test]
    fn listeners_split_into_the_kafka_and_the_controller_listener() {
        let mut config = BrokerConfig::default();
        config
            .apply_properties(
                "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
                 controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095\nprocess.roles=broker,controller\n",
            )
            .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            config.controller_listen,
            Some("127.0.0.1:9093".parse().unwrap())
        );
        assert_eq!(config.voter_ids(), vec![1, 2]);
    }

    #[test]
    fn advertised_listeners_name_the_kafka_and_the_controller_endpoint_in_any_order() {
        let mut config = BrokerConfig::default();
        config
            .apply_properties(
                "advertised.listeners=CTRL://proxy:19093,PLAINTEXT://proxy:19092
                 controller.listener.names=CTRL
",
            )
            .unwrap();
        assert_eq!(config.advertised, Some(("proxy".to_string(), 19092)));
        assert_eq!(
            config.advertised_controller,
            Some(("proxy".to_string(), 19093))
        );
        // One unnamed entry is the Kafka listener's, as before.
        let mut config = BrokerConfig::default();
        config.set("advertised.listeners", "host:9092").unwrap();
        assert_eq!(config.advertised, Some(("host".to_string(), 9092)));
        assert_eq!(config.advertised_controller, None);
        assert!(BrokerConfig::default()
            .set("advertised.listeners", "PLAINTEXT://nohost")
            .is_err());
    }

    #[test]
    fn a_voter_list_with_a_duplicate_id_is_refused_by_name() {
        let err = BrokerConfig::default()
            .set("controller.quorum.voters", "1@a:1,1@b:2")
            .unwrap_err();
        assert!(err.to_string().contains("node id 1 appears twice"), "{err}");
    }
}

fn parse_roles(value: &str) -> Result<ProcessRoles, String> {
    let mut roles = ProcessRoles {
        broker: false,
        controller: false,
    };
    for role in value.split(',').map(str::trim) {
        match role {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => {
                return Err(format!(
                    "unknown role {other:?}; expected broker, controller or both"
                ))
            }
        }
    }
    if !roles.controller && !roles.broker {
        return Err("expected broker, controller or both".into());
    }
    Ok(roles)
}

/// `1@host:9093,2@host:9094`.
fn parse_voters(value: &str) -> Result<Vec<QuorumVoter>, String> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || format!("expected ID@HOST:PORT, found {entry:?}");
        let (id, addr) = entry.split_once('@').ok_or_else(bad)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let voter = QuorumVoter {
            node_id: id.parse().map_err(|_| bad())?,
            host: host.to_string(),
            port: port.parse().map_err(|_| bad())?,
        };
        if voters.iter().any(|v| v.node_id == voter.node_id) {
            return Err(format!("node id {} appears twice", voter.node_id));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_listener(value: &str) -> Result<SocketAddr, String> {
    let addr = strip_listener_name(value);
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.replace("localhost", "127.0.0.1")
    };
    addr.parse()
        .map_err(|e| format!("expected HOST:PORT with an IP address ({e})"))
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: format!("expected {}", std::any::type_name::<T>()),
    })
}

/// A comma-separated list of assignor names: Kafka's short names or its class names.
fn parse_assignors(value: &str) -> Result<Vec<AssignorName>, String> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let short = match name {
            "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => "uniform",
            "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => "range",
            other => other,
        };
        let assignor = AssignorName::parse(short)
            .ok_or_else(|| format!("unknown assignor {name}; Strom has uniform and range"))?;
        if !out.contains(&assignor) {
            out.push(assignor);
        }
    }
    if out.is_empty() {
        return Err("at least one assignor is required".into());
    }
    Ok(out)
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
) -> Result<T, ConfigError> {
    let v: T = parse(key, value)?;
    if v <= T::default() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: "must be positive".into(),
        });
    }
    Ok(v)
}

fn non_negative<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
) -> Result<T, ConfigError> {
    let v: T = parse(key, value)?;
    if v < T::default() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: "must not be negative".into(),
        });
    }
    Ok(v)
}

/// Retention values: -1 means unlimited, otherwise a non-negative amount in `unit`s.
fn retention(key: &str, value: &str, unit: i64) -> Result<i64, ConfigError> {
    let v: i64 = parse(key, value)?;
    match v {
        -1 => Ok(-1),
        v if v >= 0 => v.checked_mul(unit).ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: "too large".into(),
        }),
        _ => Err(ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: "-1 or >= 0".into(),
        }),
    }
}

/// A fraction from 0 to 1 (`min.cleanable.dirty.ratio`); `None` otherwise.
pub(crate) fn parse_ratio(value: &str) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
}

pub(crate) const RATIO_EXPECTED: &str = "expected a number from 0 to 1";

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: "expected true or false".into(),
        }),
    }
}

/// `delete`, `compact`, or both separated by a comma (in either order).
pub(crate) fn parse_cleanup_policy(value: &str) -> Result<CleanupPolicy, String> {
    let mut policy = CleanupPolicy {
        delete: false,
        compact: false,
    };
    for part in value.split(',').map(str::trim) {
        match part {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            other => {
                return Err(format!(
                    "unknown cleanup policy {other:?}; expected delete, compact or both"
                ))
            }
        }
    }
    Ok(policy)
}

pub(crate) fn format_cleanup_policy(policy: &CleanupPolicy) -> String {
    match (policy.compact, policy.delete) {
        (true, true) => "compact,delete".into(),
        (true, false) => "compact".into(),
        _ => "delete".into(),
    }
}

/// A throttle rate in bytes per second; Kafka's Long.MAX_VALUE default means none (`u64::MAX`).
fn byte_rate(key: &str, value: &str) -> Result<u64, ConfigError> {
    let rate = non_negative::<i64>(key, value)?;
    Ok(if rate == i64::MAX {
        u64::MAX
    } else {
        rate as u64
    })
}

pub(crate) fn parse_timestamp_type(value: &str) -> Result<TimestampType, String> {
    match value {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        other => Err(format!(
            "expected CreateTime or LogAppendTime, found {other:?}"
        )),
    }
}

/// `compression.type` and the codec levels, as the broker's defaults and as each topic's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSettings {
    /// None is `producer`: batches are stored as the producer compressed them. Otherwise the codec the broker
    /// stores every batch in.
    pub compression_type: Option<Compression>,
    /// `compression.gzip.level`: -1 (zlib's default, 6) or 1-9.
    pub gzip_level: i32,
    /// `compression.lz4.level`: 1-17.
    pub lz4_level: i32,
    /// `compression.zstd.level`: -131072 to 22.
    pub zstd_level: i32,
}

impl Default for CodecSettings {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            compression_type: None,
            gzip_level: -1,
            lz4_level: 9,
            zstd_level: 3,
        }
    }
}

impl CodecSettings {
    /// Sets `compression.type` or one of the `compression.<codec>.level` keys; the error says why the value is
    /// refused.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let level = |min: i32, max: i32| match value.trim().parse::<i32>() {
            Ok(l) if (min..=max).contains(&l) => Ok(l),
            _ => Err(format!("must be from {min} to {max}")),
        };
        match key {
            "compression.type" => self.compression_type = parse_compression_type(value)?,
            "compression.gzip.level" => {
                self.gzip_level = match level(-1, 9) {
                    Ok(l) if l != 0 => l,
                    _ => return Err("must be -1 (the codec's default) or from 1 to 9".into()),
                }
            }
            "compression.lz4.level" => self.lz4_level = level(1, 17)?,
            "compression.zstd.level" => self.zstd_level = level(-131_072, 22)?,
            other => return Err(format!("{other} is not a compression config")),
        }
        Ok(())
    }

    /// The value of one of its keys, as DescribeConfigs shows it.
    pub(crate) fn value_of(&self, key: &str) -> Option<String> {
        Some(match key {
            "compression.type" => format_compression_type(self.compression_type).to_string(),
            "compression.gzip.level" => self.gzip_level.to_string(),
            "compression.lz4.level" => self.lz4_level.to_string(),
            "compression.zstd.level" => self.zstd_level.to_string(),
            _ => return None,
        })
    }

    /// The codec the broker stores batches in, with its level; None for `producer`.
    pub fn codec(&self) -> Option<strom_log::TopicCodec> {
        let compression = self.compression_type?;
        let level = match compression {
            Compression::Gzip => self.gzip_level,
            Compression::Lz4 => self.lz4_level,
            Compression::Zstd => self.zstd_level,
            Compression::None | Compression::Snappy => 0,
        };
        Some(strom_log::TopicCodec { compression, level })
    }
}

fn parse_compression_type(value: &str) -> Result<Option<Compression>, String> {
    match value {
        "producer" => Ok(None),
        "uncompressed" => Ok(Some(Compression::None)),
        "gzip" => Ok(Some(Compression::Gzip)),
        "snappy" => Ok(Some(Compression::Snappy)),
        "lz4" => Ok(Some(Compression::Lz4)),
        "zstd" => Ok(Some(Compression::Zstd)),
        other => Err(format!(
            "expected one of producer, uncompressed, gzip, snappy, lz4, zstd, found {other:?}"
        )),
    }
}

fn format_compression_type(c: Option<Compression>) -> &'static str {
    match c {
        None => "producer",
        Some(Compression::None) => "uncompressed",
        Some(Compression::Gzip) => "gzip",
        Some(Compression::Snappy) => "snappy",
        Some(Compression::Lz4) => "lz4",
        Some(Compression::Zstd) => "zstd",
    }
}

pub(crate) fn format_timestamp_type(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_keys_from_a_properties_file() {
        let mut config = BrokerConfig::default();
        let unknown = config
            .apply_properties(
                "# comment\nlog.dirs=/tmp/a,/tmp/b\nnum.partitions = 3\nlog.retention.hours=2\n\
                 log.segment.bytes=1048576\nmessage.max.bytes=2000000\nlisteners=PLAINTEXT://127.0.0.1:9099\n\
                 log.cleanup.policy=compact,delete\nsome.unknown.key=1\nnum.network.threads=8\n\
                 ssl.keystore.type=PKCS12\n",
            )
            .unwrap();
        assert_eq!(unknown, vec!["some.unknown.key".to_string()]);
        assert_eq!(
            config.ignored,
            vec!["num.network.threads", "ssl.keystore.type"]
        );
        assert_eq!(
            config
                .explicit
                .get("num.network.threads")
                .map(String::as_str),
            Some("8")
        );
        assert_eq!(config.data_dir, PathBuf::from("/tmp/a"));
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.log.retention_ms, 7_200_000);
        assert_eq!(config.log.segment_bytes, 1_048_576);
        assert_eq!(config.log.max_message_bytes, 2_000_000);
        assert_eq!(config.listen, "127.0.0.1:9099".parse().unwrap());
        assert!(config.log.cleanup_policy.compact && config.log.cleanup_policy.delete);
        assert_eq!(
            config.explicit.get("num.partitions").map(String::as_str),
            Some("3")
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut config = BrokerConfig::default();
        let err = config
            .apply_properties("num.partitions=zero\n")
            .unwrap_err();
        assert!(err.to_string().contains("num.partitions"), "{err}");
        let err = config.apply_properties("just some words\n").unwrap_err();
        assert_eq!(
            err,
            ConfigError::Syntax {
                line: 1,
                text: "just some words".into()
            }
        );
        assert!(config.set("num.partitions", "0").is_err());
        assert!(config.set("log.cleanup.policy", "forever").is_err());
    }
}
