//! `StreamsConfig`: Kafka Streams' settings, by their Kafka names.

use std::path::PathBuf;
use std::time::Duration;

/// What happens to a record whose key or value does not deserialize
/// (`default.deserialization.exception.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeserializationHandler {
    /// Log it, count it, skip it, go on (`LogAndContinueExceptionHandler`).
    LogAndContinue,
    /// Stop processing with an error naming the record (`LogAndFailExceptionHandler`, Kafka's default).
    #[default]
    LogAndFail,
}

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    #[default]
    AtLeastOnce,
    /// Each stream thread writes its outputs, changelogs and input offsets in one transaction per commit
    /// (`exactly_once_v2`, also accepted as `exactly_once_beta`).
    ExactlyOnceV2,
}

/// The settings of a streams application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: the consumer group, and the prefix of internal topics and of the state directory.
    pub application_id: String,
    /// `bootstrap.servers`
    pub bootstrap_servers: String,
    /// `num.stream.threads` (default 1)
    pub num_stream_threads: usize,
    /// `commit.interval.ms` (default 30000 at-least-once, 100 under exactly-once, as Kafka: left at 30000
    /// under exactly_once_v2 it means the default, and 100 ms apply)
    pub commit_interval: Duration,
    /// `state.dir` (default `<tmp>/strom-streams`)
    pub state_dir: PathBuf,
    /// `processing.guarantee` (default at_least_once)
    pub processing_guarantee: ProcessingGuarantee,
    /// `default.deserialization.exception.handler`
    pub deserialization_handler: DeserializationHandler,
    /// `replication.factor` of internal topics (default -1: the broker's default)
    pub replication_factor: i16,
    /// `application.server`: this instance's `host:port` for interactive queries, shared with the group.
    pub application_server: Option<String>,
    /// `num.standby.replicas` (default 0)
    pub num_standby_replicas: usize,
    /// `client.id` prefix of the consumers and producers (default: the application id)
    pub client_id: String,
    /// `session.timeout.ms` of the consumer (default 45000)
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` of the consumer (default 3000)
    pub heartbeat_interval: Duration,
    /// `poll.ms` (default 100): how long a stream thread blocks for records when idle.
    pub poll: Duration,
    /// The clients' own settings, by Kafka Streams' prefixes (see [`ClientOverrides`]).
    pub clients: ClientOverrides,
}

/// Settings passed to the application's clients, as Kafka Streams takes them: `producer.<key>` for the
/// producers, `consumer.<key>` for every consumer, and `main.consumer.`, `restore.consumer.` or
/// `global.consumer.<key>` for one kind (after `consumer.`). Each is checked when set, by the client's own
/// parser. The runtime's own needs win over them: a stream thread's consumer always has the application's
/// group and no auto-commit, as in Kafka Streams.
#[derive(Debug, Clone, Default)]
pub struct ClientOverrides {
    pub producer: Vec<(String, String)>,
    pub consumer: Vec<(String, String)>,
    pub main_consumer: Vec<(String, String)>,
    pub restore_consumer: Vec<(String, String)>,
    pub global_consumer: Vec<(String, String)>,
}

/// Which consumer of the application a setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerKind {
    /// A stream thread's, in the group.
    Main,
    /// One that reads changelogs to restore stores (and a standby's).
    Restore,
    /// The global stream thread's.
    Global,
}

impl ClientOverrides {
    /// Applies the producer settings.
    pub(crate) fn apply_to_producer(
        &self,
        config: &mut strom_client::ProducerConfig,
    ) -> Result<(), String> {
        for (key, value) in &self.producer {
            config
                .set(key, value)
                .map_err(|e| format!("producer.{key}: {e}"))?;
        }
        Ok(())
    }

    /// Applies the settings of every consumer, then those of `kind`.
    pub(crate) fn apply_to_consumer(
        &self,
        kind: ConsumerKind,
        config: &mut strom_client::consumer::ConsumerConfig,
    ) -> Result<(), String> {
        let (prefix, own) = match kind {
            ConsumerKind::Main => ("main.consumer", &self.main_consumer),
            ConsumerKind::Restore => ("restore.consumer", &self.restore_consumer),
            ConsumerKind::Global => ("global.consumer", &self.global_consumer),
        };
        for (key, value) in &self.consumer {
            config
                .set(key, value)
                .map_err(|e| format!("consumer.{key}: {e}"))?;
        }
        for (key, value) in own {
            config
                .set(key, value)
                .map_err(|e| format!("{prefix}.{key}: {e}"))?;
        }
        Ok(())
    }
}

/// `commit.interval.ms`'s default at-least-once.
pub(crate) const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(30);
/// ... and under exactly-once: a transaction's records become visible to read_committed readers downstream only
/// when it commits.
pub(crate) const EOS_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

impl StreamsConfig {
    /// The commit interval in force: the exactly-once default when the setting was left at the at-least-once
    /// one.
    pub fn effective_commit_interval(&self) -> Duration {
        if self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
            && self.commit_interval == DEFAULT_COMMIT_INTERVAL
        {
            EOS_COMMIT_INTERVAL
        } else {
            self.commit_interval
        }
    }

    pub fn new(application_id: &str, bootstrap_servers: &str) -> Self {
        Self {
            application_id: application_id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            num_stream_threads: 1,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            state_dir: std::env::temp_dir().join("strom-streams"),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            deserialization_handler: DeserializationHandler::LogAndFail,
            replication_factor: -1,
            application_server: None,
            num_standby_replicas: 0,
            client_id: application_id.into(),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            poll: Duration::from_millis(100),
            clients: ClientOverrides::default(),
        }
    }

    /// A client's setting (`producer.`, `consumer.` ... prefixes), checked now by a client config of its kind;
    /// `Err(None)` when `key` has none of the prefixes.
    fn set_client(&mut self, key: &str, value: &str) -> Result<(), Option<String>> {
        let prefixed = [
            ("producer.", &mut self.clients.producer, true),
            ("main.consumer.", &mut self.clients.main_consumer, false),
            (
                "restore.consumer.",
                &mut self.clients.restore_consumer,
                false,
            ),
            ("global.consumer.", &mut self.clients.global_consumer, false),
            ("consumer.", &mut self.clients.consumer, false),
        ];
        for (prefix, list, producer) in prefixed {
            let Some(client_key) = key.strip_prefix(prefix) else {
                continue;
            };
            let checked = if producer {
                strom_client::ProducerConfig::new("127.0.0.1:9092")
                    .set(client_key, value)
                    .map(|_| ())
            } else {
                strom_client::consumer::ConsumerConfig::new("127.0.0.1:9092")
                    .set(client_key, value)
                    .map(|_| ())
            };
            checked.map_err(|e| Some(format!("{key}: {e}")))?;
            list.push((client_key.to_string(), value.to_string()));
            return Ok(());
        }
        Err(None)
    }

    /// Sets one setting by its Kafka name. Unknown names and bad values are errors that say which.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, String> {
        match self.set_client(key, value) {
            Ok(()) => return Ok(self),
            Err(Some(e)) => return Err(e),
            Err(None) => {}
        }
        let ms = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{key}: expected milliseconds, got {v:?}"))
        };
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{key}: expected a number, got {v:?}"))
        };
        match key {
            "application.id" => self.application_id = value.into(),
            "bootstrap.servers" => self.bootstrap_servers = value.into(),
            "num.stream.threads" => self.num_stream_threads = number(value)?.max(1),
            "commit.interval.ms" => self.commit_interval = ms(value)?,
            "state.dir" => self.state_dir = value.into(),
            "processing.guarantee" => {
                self.processing_guarantee = match value {
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    "exactly_once_v2" | "exactly_once_beta" => ProcessingGuarantee::ExactlyOnceV2,
                    other => return Err(format!("processing.guarantee: unknown value {other:?}")),
                }
            }
            "default.deserialization.exception.handler" | "deserialization.exception.handler" => {
                self.deserialization_handler = match value.rsplit('.').next().unwrap_or(value) {
                    "LogAndContinueExceptionHandler" | "log-and-continue" => {
                        DeserializationHandler::LogAndContinue
                    }
                    "LogAndFailExceptionHandler" | "log-and-fail" => {
                        DeserializationHandler::LogAndFail
                    }
                    other => return Err(format!("{key}: unknown handler {other:?}")),
                }
            }
            "replication.factor" => {
                self.replication_factor = value
                    .parse()
                    .map_err(|_| format!("replication.factor: expected a number, got {value:?}"))?
            }
            "application.server" => self.application_server = Some(value.into()),
            "num.standby.replicas" => self.num_standby_replicas = number(value)?,
            "client.id" => self.client_id = value.into(),
            "session.timeout.ms" => self.session_timeout = ms(value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(value)?,
            "poll.ms" => self.poll = ms(value)?,
            other => return Err(format!("unknown streams setting {other:?}")),
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_kafka_names_and_refuse_bad_values() {
        let mut c = StreamsConfig::new("app", "127.0.0.1:9092");
        c.set("commit.interval.ms", "100").unwrap();
        c.set(
            "default.deserialization.exception.handler",
            "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler",
        )
        .unwrap();
        assert_eq!(c.commit_interval, Duration::from_millis(100));
        assert_eq!(
            c.deserialization_handler,
            DeserializationHandler::LogAndContinue
        );
        assert!(c
            .set("commit.interval.ms", "soon")
            .unwrap_err()
            .contains("commit.interval.ms"));
        assert!(c
            .set("no.such.key", "1")
            .unwrap_err()
            .contains("no.such.key"));
    }

    #[test]
    fn exactly_once_commits_every_100_ms_unless_told_otherwise() {
        let mut c = StreamsConfig::new("app", "127.0.0.1:9092");
        assert_eq!(c.effective_commit_interval(), Duration::from_secs(30));
        c.set("processing.guarantee", "exactly_once_v2").unwrap();
        assert_eq!(c.effective_commit_interval(), Duration::from_millis(100));
        c.set("commit.interval.ms", "1000").unwrap();
        assert_eq!(c.effective_commit_interval(), Duration::from_secs(1));
    }

    #[test]
    fn client_settings_go_to_their_clients_by_prefix_and_are_checked_when_set() {
        let mut c = StreamsConfig::new("app", "127.0.0.1:9092");
        c.set("producer.batch.size", "262144").unwrap();
        c.set("consumer.max.partition.fetch.bytes", "2097152")
            .unwrap();
        c.set("restore.consumer.max.partition.fetch.bytes", "4194304")
            .unwrap();
        c.set("main.consumer.group.id", "not-the-app").unwrap();
        let mut producer = strom_client::ProducerConfig::new("127.0.0.1:9092");
        c.clients.apply_to_producer(&mut producer).unwrap();
        assert_eq!(producer.batch_size, 262_144);
        let mut main = strom_client::consumer::ConsumerConfig::new("127.0.0.1:9092");
        c.clients
            .apply_to_consumer(ConsumerKind::Main, &mut main)
            .unwrap();
        assert_eq!(main.max_partition_fetch_bytes, 2_097_152);
        let mut restore = strom_client::consumer::ConsumerConfig::new("127.0.0.1:9092");
        c.clients
            .apply_to_consumer(ConsumerKind::Restore, &mut restore)
            .unwrap();
        assert_eq!(
            restore.max_partition_fetch_bytes, 4_194_304,
            "the kind's own wins"
        );
        // A bad value names the whole key; so does an unknown client setting.
        let e = c.set("producer.batch.size", "big").unwrap_err();
        assert!(e.contains("producer.batch.size"), "{e}");
        let e = c.set("consumer.no.such.setting", "1").unwrap_err();
        assert!(e.contains("consumer.no.such.setting"), "{e}");
    }
}
