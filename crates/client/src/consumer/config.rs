//! Consumer settings under the Java client's names.

use std::time::Duration;

use crate::cluster::parse_bootstrap;
use crate::config_value;
use crate::error::Error;

/// `auto.offset.reset`: where to start when a partition has no committed offset or its position is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail instead of guessing.
    None,
}

/// `isolation.level`: whether records of open or aborted transactions are visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
}

impl IsolationLevel {
    pub fn wire_value(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// `group.protocol`: how a subscribed consumer takes part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor.
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat with a server-side assignor.
    Consumer,
}

/// Consumer configuration. Defaults are the Java client's (4.x).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`
    pub bootstrap_servers: Vec<String>,
    /// `client.id`
    pub client_id: String,
    /// `group.id`: needed for `subscribe` and for committing offsets.
    pub group_id: Option<String>,
    /// `enable.auto.commit` (default true; only with a `group.id`)
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5000)
    pub auto_commit_interval: Duration,
    /// `auto.offset.reset` (default latest)
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes` (default 1)
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 52428800)
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms` (default 500): how long the broker may hold a fetch waiting for `fetch.min.bytes`.
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes` (default 1048576)
    pub max_partition_fetch_bytes: i32,
    /// `session.timeout.ms` (default 45000)
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3000)
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (default 300000): sent as the rebalance timeout.
    pub max_poll_interval: Duration,
    /// `request.timeout.ms` (default 30000)
    pub request_timeout: Duration,
    /// `retry.backoff.ms` (default 100)
    pub retry_backoff: Duration,
    /// `isolation.level` (default read_uncommitted)
    pub isolation_level: IsolationLevel,
    /// `allow.auto.create.topics` (default true)
    pub allow_auto_create_topics: bool,
    /// `group.protocol` (default classic)
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor` (consumer protocol only; default: the broker's first assignor)
    pub group_remote_assignor: Option<String>,
    /// User data sent with the classic protocol's subscription (no Kafka config key: set by applications such
    /// as the streams runtime, which shares `application.server` with the group this way).
    pub subscription_user_data: Option<bytes::Bytes>,
    /// `poll` returns (with what it has, possibly nothing) before it rejoins the group, once per rebalance, so an
    /// owner that commits by hand commits what it processed first (no Kafka config key: the streams runtime
    /// sets it, as Kafka Streams commits in its rebalance listener).
    pub return_before_rejoin: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "strom-consumer".into(),
            group_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            isolation_level: IsolationLevel::ReadUncommitted,
            allow_auto_create_topics: true,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            subscription_user_data: None,
            return_before_rejoin: false,
        }
    }
}

impl ConsumerConfig {
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
            v.parse::<i32>()
                .ok()
                .filter(|b| *b >= 0)
                .ok_or_else(|| bad("expected a number of bytes"))
        };
        let boolean = |v: &str| config_value::boolean(key, v);
        match key {
            "bootstrap.servers" => self.bootstrap_servers = parse_bootstrap(value),
            "client.id" => self.client_id = value.to_string(),
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "enable.auto.commit" => self.enable_auto_commit = boolean(value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = ms(value)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    _ => return Err(bad("expected earliest, latest or none")),
                }
            }
            "fetch.min.bytes" => self.fetch_min_bytes = bytes(value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = bytes(value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = ms(value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = bytes(value)?,
            "session.timeout.ms" => self.session_timeout = ms(value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(value)?,
            "max.poll.interval.ms" => self.max_poll_interval = ms(value)?,
            "request.timeout.ms" => self.request_timeout = ms(value)?,
            "retry.backoff.ms" => self.retry_backoff = ms(value)?,
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(bad("expected read_uncommitted or read_committed")),
                }
            }
            "allow.auto.create.topics" => self.allow_auto_create_topics = boolean(value)?,
            "group.protocol" => {
                self.group_protocol = match value.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(bad("expected classic or consumer")),
                }
            }
            "group.remote.assignor" => {
                self.group_remote_assignor = match value {
                    "" => None,
                    "uniform" | "range" => Some(value.to_string()),
                    _ => return Err(bad("expected uniform or range")),
                }
            }
            _ => return Err(Error::Config(format!("unknown consumer setting {key}"))),
        }
        Ok(self)
    }

    pub(crate) fn validated(self) -> Result<Self, Error> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(Error::Config(
                "heartbeat.interval.ms must be lower than session.timeout.ms".into(),
            ));
        }
        Ok(self)
    }
}

pub(crate) fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_names_are_accepted() {
        let c = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("group.id", "g"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.wait.ms", "50"),
            ("isolation.level", "read_committed"),
            ("group.protocol", "consumer"),
            ("group.remote.assignor", "range"),
        ])
        .unwrap();
        assert_eq!(c.group_id.as_deref(), Some("g"));
        assert!(!c.enable_auto_commit);
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(50));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.group_protocol, GroupProtocol::Consumer);
        assert_eq!(c.group_remote_assignor.as_deref(), Some("range"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut c = ConsumerConfig::default();
        let err = c.set("auto.offset.reset", "smallest").unwrap_err();
        assert!(
            err.to_string().contains("auto.offset.reset=smallest"),
            "{err}"
        );
        assert!(c.set("group.idd", "x").is_err());
    }
}
