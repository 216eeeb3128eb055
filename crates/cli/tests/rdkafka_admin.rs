//! End-to-end admin operations through librdkafka's AdminClient and consumer metadata calls.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::time::Duration;

use common::{admin_options, block_on, consume, delivered, enqueue, TestBroker};
use rdkafka::admin::{AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

fn partitions_of(broker: &TestBroker, topic: &str) -> Option<usize> {
    let consumer = broker.consumer(&[("allow.auto.create.topics", "false")]);
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() {
        return None;
    }
    Some(t.partitions().len())
}

#[test]
fn topics_are_created_grown_and_deleted() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false);
    let admin = broker.admin();
    let opts = admin_options();

    let new = [
        NewTopic::new("alpha", 2, TopicReplication::Fixed(1)),
        NewTopic::new("beta", -1, TopicReplication::Fixed(-1)),
    ];
    for r in block_on(admin.create_topics(new.iter(), &opts)).unwrap() {
        r.expect("created");
    }
    assert_eq!(partitions_of(&broker, "alpha"), Some(2));
    assert_eq!(
        partitions_of(&broker, "beta"),
        Some(1),
        "-1 means num.partitions"
    );

    // Creating an existing topic, a bad name, or too many replicas fails with Kafka's error codes.
    let again = [NewTopic::new("alpha", 1, TopicReplication::Fixed(1))];
    let r = block_on(admin.create_topics(again.iter(), &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let bad = [NewTopic::new("bad name!", 1, TopicReplication::Fixed(1))];
    let r = block_on(admin.create_topics(bad.iter(), &opts)).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidTopic);
    let rf3 = [NewTopic::new("gamma", 1, TopicReplication::Fixed(3))];
    let r = block_on(admin.create_topics(rf3.iter(), &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );

    // validate_only creates nothing.
    let dry = [NewTopic::new("dry", 1, TopicReplication::Fixed(1))];
    block_on(admin.create_topics(dry.iter(), &admin_options().validate_only(true))).unwrap()[0]
        .as_ref()
        .unwrap();
    assert_eq!(partitions_of(&broker, "dry"), None);

    // Grow alpha to 5 partitions; shrinking is refused.
    let grow = [NewPartitions::new("alpha", 5)];
    block_on(admin.create_partitions(grow.iter(), &opts)).unwrap()[0]
        .as_ref()
        .unwrap();
    assert_eq!(partitions_of(&broker, "alpha"), Some(5));
    let shrink = [NewPartitions::new("alpha", 2)];
    let r = block_on(admin.create_partitions(shrink.iter(), &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidPartitions
    );

    // Produce to a new partition, then delete the topic: its data directory goes away.
    let producer = broker.producer(&[]);
    block_on(
        producer.send(
            FutureRecord::to("alpha")
                .partition(4)
                .payload(&b"x"[..])
                .key(&b"k"[..]),
            Duration::from_secs(20),
        ),
    )
    .unwrap();
    assert!(broker.data_dir().join("alpha-4").exists());
    for r in block_on(admin.delete_topics(&["alpha"], &opts)).unwrap() {
        r.expect("deleted");
    }
    assert_eq!(partitions_of(&broker, "alpha"), None);
    assert!(!broker.data_dir().join("alpha-4").exists());
    let r = block_on(admin.delete_topics(&["alpha"], &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
}

fn config_value(broker: &TestBroker, topic: &str, key: &str) -> (String, bool) {
    let admin = broker.admin();
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .unwrap();
    let resource = results.into_iter().next().unwrap().expect("described");
    let entry = resource
        .get(key)
        .unwrap_or_else(|| panic!("{key} is described"));
    (entry.value.clone().unwrap_or_default(), entry.is_default)
}

#[test]
fn topic_configs_are_created_described_and_altered() {
    let broker = TestBroker::start();
    broker.create_topic(
        "configured",
        1,
        &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
    );
    assert_eq!(
        config_value(&broker, "configured", "retention.ms"),
        ("3600000".into(), false)
    );
    assert_eq!(
        config_value(&broker, "configured", "cleanup.policy"),
        ("compact".into(), false)
    );
    let (segment_bytes, is_default) = config_value(&broker, "configured", "segment.bytes");
    assert!(is_default);
    assert_eq!(segment_bytes, (1u64 << 30).to_string());

    let admin = broker.admin();
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("configured")).set("retention.bytes", "1048576");
    for r in block_on(admin.alter_configs([&alter], &admin_options())).unwrap() {
        r.expect("altered");
    }
    // AlterConfigs replaces the whole set: retention.ms returns to its default.
    assert_eq!(
        config_value(&broker, "configured", "retention.bytes"),
        ("1048576".into(), false)
    );
    assert!(config_value(&broker, "configured", "retention.ms").1);

    // Invalid values and unknown keys are refused with INVALID_CONFIG and change nothing.
    // (rdkafka 0.39 drops per-resource AlterConfigs errors, so this part speaks the protocol directly.)
    for (key, value) in [
        ("retention.bytes", "lots"),
        ("no.such.config", "1"),
        ("cleanup.policy", "sometimes"),
    ] {
        let (code, message) = raw_alter_config(&broker, "configured", key, value);
        assert_eq!(code, 40, "INVALID_CONFIG for {key}={value}");
        assert!(
            message.contains(key),
            "the message names the key: {message}"
        );
    }
    assert_eq!(
        config_value(&broker, "configured", "retention.bytes"),
        ("1048576".into(), false)
    );

    // Configs survive a restart.
    let temp = broker.stop().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {});
    assert_eq!(
        config_value(&broker, "configured", "retention.bytes"),
        ("1048576".into(), false)
    );
}

/// Issue 14, first part: Kafka 4 topic configs that Strom used to refuse, through a real client. Each is created,
/// described and altered; bad values and tiered storage get INVALID_CONFIG with a message that names the key.
#[test]
fn kafka_4_topic_configs_for_segments_flushes_and_codec_levels_are_accepted_and_acted_on() {
    use std::os::unix::fs::MetadataExt;
    let broker = TestBroker::start();
    let created = [
        ("compression.gzip.level", "9"),
        ("compression.lz4.level", "12"),
        ("compression.zstd.level", "-5"),
        ("file.delete.delay.ms", "1000"),
        ("flush.ms", "200"),
        ("local.retention.bytes", "-2"),
        ("local.retention.ms", "-2"),
        ("preallocate", "true"),
        ("remote.storage.enable", "false"),
        ("segment.jitter.ms", "60000"),
        ("segment.bytes", "8388608"),
    ];
    broker.create_topic("kafka4", 1, &created);
    for (key, value) in created {
        assert_eq!(
            config_value(&broker, "kafka4", key),
            (value.to_string(), false),
            "{key}"
        );
    }
    // preallocate: the partition's first segment has its 8 MiB reserved while the file is empty.
    let segment = broker
        .data_dir()
        .join("kafka4-0")
        .join(format!("{:020}.log", 0));
    let meta = std::fs::metadata(&segment).unwrap();
    assert_eq!(meta.len(), 0);
    assert!(
        meta.blocks() * 512 >= 8 << 20,
        "{} bytes reserved",
        meta.blocks() * 512
    );

    // Defaults as Kafka 4 documents them.
    broker.create_topic("plain", 1, &[]);
    for (key, value) in [
        ("compression.gzip.level", "-1"),
        ("compression.lz4.level", "9"),
        ("compression.zstd.level", "3"),
        ("file.delete.delay.ms", "60000"),
        ("flush.ms", "1000"),
        ("local.retention.bytes", "-2"),
        ("local.retention.ms", "-2"),
        ("preallocate", "false"),
        ("remote.storage.enable", "false"),
        ("segment.jitter.ms", "0"),
    ] {
        assert_eq!(
            config_value(&broker, "plain", key),
            (value.to_string(), true),
            "{key}"
        );
    }

    let admin = broker.admin();
    let alter = AlterConfig::new(ResourceSpecifier::Topic("plain"))
        .set("flush.ms", "5000")
        .set("segment.jitter.ms", "1000");
    for r in block_on(admin.alter_configs([&alter], &admin_options())).unwrap() {
        r.expect("altered");
    }
    assert_eq!(
        config_value(&broker, "plain", "flush.ms"),
        ("5000".into(), false)
    );
    assert_eq!(
        config_value(&broker, "plain", "segment.jitter.ms"),
        ("1000".into(), false)
    );

    for (key, value, says) in [
        ("compression.gzip.level", "0", "from 1 to 9"),
        ("compression.lz4.level", "18", "from 1 to 17"),
        ("compression.zstd.level", "23", "to 22"),
        ("flush.ms", "-1", "at least 0"),
        ("segment.jitter.ms", "soon", "integer"),
        ("preallocate", "maybe", "true or false"),
        ("remote.storage.enable", "true", "tiered storage"),
        ("local.retention.ms", "86400000", "tiered storage"),
        ("local.retention.bytes", "1073741824", "tiered storage"),
    ] {
        let (code, message) = raw_alter_config(&broker, "plain", key, value);
        assert_eq!(code, 40, "INVALID_CONFIG for {key}={value}: {message}");
        assert!(
            message.contains(key) && message.contains(says),
            "{key}={value}: {message}"
        );
    }
    assert_eq!(
        config_value(&broker, "plain", "flush.ms"),
        ("5000".into(), false)
    );
}

/// Issue 14: `compression.type` per topic. A batch in another codec than the topic's is rewritten by the broker
/// into the topic's codec before it is stored, and reads back with the same records; `producer` stores batches as
/// sent. Altering the codec applies to the batches produced after it.
#[test]
fn a_topic_s_compression_type_is_the_codec_its_batches_are_stored_in() {
    use strom_log::Compression;
    let broker = TestBroker::start();
    broker.create_topic(
        "to-zstd",
        1,
        &[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "10"),
        ],
    );
    broker.create_topic(
        "to-uncompressed",
        1,
        &[("compression.type", "uncompressed")],
    );
    broker.create_topic("as-sent", 1, &[]);
    assert_eq!(
        config_value(&broker, "to-zstd", "compression.type"),
        ("zstd".into(), false)
    );
    assert_eq!(
        config_value(&broker, "as-sent", "compression.type"),
        ("producer".into(), true)
    );

    // Values that every codec shrinks, so librdkafka compresses the batches it is asked to.
    let value = |topic: &str, i: usize| format!("{topic} record {i} ").repeat(30);
    let produce = |producer_codec: &str, topic: &str, from: usize| {
        let producer =
            broker.producer(&[("compression.type", producer_codec), ("linger.ms", "20")]);
        let futures: Vec<_> = (from..from + 50)
            .map(|i| {
                enqueue(
                    &producer,
                    FutureRecord::to(topic)
                        .key(&format!("k{i}"))
                        .payload(&value(topic, i)),
                )
            })
            .collect();
        for f in futures {
            delivered(f).expect("acknowledged");
        }
    };
    produce("none", "to-zstd", 0);
    produce("lz4", "to-zstd", 50);
    produce("gzip", "to-uncompressed", 0);
    produce("snappy", "as-sent", 0);

    let codecs = |topic: &str| -> Vec<Compression> {
        support::batches_on_disk(broker.data_dir(), topic, 0)
            .iter()
            .map(|h| h.compression())
            .collect()
    };
    for (topic, count, codec) in [
        ("to-zstd", 100, Compression::Zstd),
        ("to-uncompressed", 50, Compression::None),
        ("as-sent", 50, Compression::Snappy),
    ] {
        let stored = codecs(topic);
        assert!(
            !stored.is_empty() && stored.iter().all(|c| *c == codec),
            "{topic}: batches stored as {stored:?}"
        );
        let consumer = broker.consumer(&[]);
        let read = consume(&consumer, topic, &[0], Offset::Beginning, count);
        for (i, r) in read.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "{topic}");
            assert_eq!(
                r.key.as_deref(),
                Some(format!("k{i}").as_bytes()),
                "{topic}"
            );
            assert_eq!(
                r.value.as_deref(),
                Some(value(topic, i).as_bytes()),
                "{topic}"
            );
        }
    }

    // Altered: the batches produced after it are stored in the new codec, the earlier ones stay as they are.
    let admin = broker.admin();
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("as-sent")).set("compression.type", "gzip");
    for r in block_on(admin.alter_configs([&alter], &admin_options())).unwrap() {
        r.expect("altered");
    }
    produce("snappy", "as-sent", 50);
    let stored = codecs("as-sent");
    assert_eq!(stored.first(), Some(&Compression::Snappy), "{stored:?}");
    assert_eq!(stored.last(), Some(&Compression::Gzip), "{stored:?}");
    let consumer = broker.consumer(&[]);
    let read = consume(&consumer, "as-sent", &[0], Offset::Beginning, 100);
    assert_eq!(
        read[99].value.as_deref(),
        Some(value("as-sent", 99).as_bytes())
    );

    let (code, message) = raw_alter_config(&broker, "as-sent", "compression.type", "brotli");
    assert_eq!(code, 40, "INVALID_CONFIG: {message}");
    assert!(
        message.contains("compression.type") && message.contains("zstd"),
        "{message}"
    );
}

/// Every topic config Kafka 4 documents (4.0 and 4.1 list the same 33): a value to create the topic with, a value
/// to alter it to, and a value Kafka refuses.
const KAFKA_4_TOPIC_CONFIGS: [(&str, &str, &str, &str); 33] = [
    ("cleanup.policy", "compact", "compact,delete", "never"),
    ("compression.gzip.level", "9", "1", "0"),
    ("compression.lz4.level", "12", "1", "18"),
    ("compression.type", "zstd", "lz4", "brotli"),
    ("compression.zstd.level", "-5", "22", "23"),
    ("delete.retention.ms", "1000", "0", "-1"),
    ("file.delete.delay.ms", "1000", "0", "-1"),
    ("flush.messages", "1000", "1", "0"),
    ("flush.ms", "200", "0", "-1"),
    ("follower.replication.throttled.replicas", "0:1", "*", "0:x"),
    ("index.interval.bytes", "8192", "0", "-1"),
    ("leader.replication.throttled.replicas", "*", "0:1,1:2", "1"),
    ("local.retention.bytes", "-2", "-2", "1048576"),
    ("local.retention.ms", "-2", "-2", "86400000"),
    ("max.compaction.lag.ms", "60000", "1", "0"),
    ("max.message.bytes", "2000000", "0", "-1"),
    ("message.timestamp.after.max.ms", "1000", "0", "-1"),
    ("message.timestamp.before.max.ms", "1000", "0", "-1"),
    (
        "message.timestamp.type",
        "LogAppendTime",
        "CreateTime",
        "Later",
    ),
    ("min.cleanable.dirty.ratio", "0.25", "0.75", "1.5"),
    ("min.compaction.lag.ms", "1000", "0", "-1"),
    ("min.insync.replicas", "2", "1", "0"),
    ("preallocate", "true", "false", "maybe"),
    ("remote.log.copy.disable", "false", "false", "true"),
    ("remote.log.delete.on.disable", "false", "false", "true"),
    ("remote.storage.enable", "false", "false", "true"),
    ("retention.bytes", "1048576", "-1", "lots"),
    ("retention.ms", "3600000", "-1", "-5"),
    ("segment.bytes", "1048576", "2097152", "13"),
    ("segment.index.bytes", "4096", "8192", "3"),
    ("segment.jitter.ms", "1000", "0", "-1"),
    ("segment.ms", "60000", "1", "0"),
    ("unclean.leader.election.enable", "true", "false", "maybe"),
];

/// Issue 14's walk: every Kafka 4 topic config through librdkafka's admin client. DescribeConfigs lists exactly
/// Kafka's keys; each key creates a topic, is described as that topic's override, is altered, and a bad value is
/// refused with INVALID_CONFIG at create and at alter, leaving the topic as it was.
#[test]
fn every_kafka_4_topic_config_is_created_described_and_altered() {
    let broker = TestBroker::start();
    let admin = broker.admin();
    let opts = admin_options();
    let described = |topic: &str| {
        let results =
            block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts)).unwrap();
        results.into_iter().next().unwrap().expect("described")
    };
    // (value, is_default) of one key.
    let value_of = |topic: &str, key: &str| {
        let resource = described(topic);
        let entry = resource
            .get(key)
            .unwrap_or_else(|| panic!("{key} described"));
        (entry.value.clone(), entry.is_default)
    };

    broker.create_topic("defaults", 1, &[]);
    let mut listed: Vec<String> = described("defaults")
        .entries
        .iter()
        .map(|e| e.name.clone())
        .collect();
    listed.sort();
    let kafka: Vec<String> = KAFKA_4_TOPIC_CONFIGS
        .iter()
        .map(|c| c.0.to_string())
        .collect();
    assert_eq!(
        listed, kafka,
        "DescribeConfigs lists Kafka 4's topic configs"
    );

    for (i, (key, created, altered, bad)) in KAFKA_4_TOPIC_CONFIGS.into_iter().enumerate() {
        let topic = format!("walk-{i}");
        broker.create_topic(&topic, 1, &[(key, created)]);
        let (value, is_default) = value_of(&topic, key);
        assert_eq!(value.as_deref(), Some(created), "{key} at create");
        assert!(!is_default, "{key}: the topic's own value");

        let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set(key, altered);
        for r in block_on(admin.alter_configs([&alter], &opts)).unwrap() {
            r.unwrap_or_else(|e| panic!("{key}={altered}: {e:?}"));
        }
        let (value, _) = value_of(&topic, key);
        assert_eq!(value.as_deref(), Some(altered), "{key} after alter");

        let refused = NewTopic::new("refused", 1, TopicReplication::Fixed(1)).set(key, bad);
        let r = block_on(admin.create_topics([&refused], &opts)).unwrap();
        assert_eq!(
            r[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidConfig,
            "create with {key}={bad}"
        );
        let (code, message) = raw_alter_config(&broker, &topic, key, bad);
        assert_eq!(code, 40, "alter to {key}={bad}: {message}");
        assert!(message.contains(key), "{key}={bad}: {message}");
        let (value, _) = value_of(&topic, key);
        assert_eq!(value.as_deref(), Some(altered), "{key} unchanged by {bad}");
    }
    assert_eq!(
        partitions_of(&broker, "refused"),
        None,
        "no refused topic exists"
    );
}

/// Dynamic broker configs, as `kafka-configs.sh --alter --entity-type brokers` and `kafka-reassign-partitions.sh
/// --throttle` set them: the throttle rates change on a running broker, are described with their dynamic source,
/// survive a restart, and a key Strom cannot change at run time is refused as Kafka refuses one.
#[test]
fn broker_throttles_are_altered_at_run_time_and_described_as_dynamic() {
    // A Kafka key Strom accepts but does not act on, as a server.properties written for Kafka sets it.
    let broker = TestBroker::start_with(|c| {
        assert!(c.set_or_ignore("num.io.threads", "16").unwrap());
    });
    let admin = broker.admin();
    let opts = admin_options();
    let node = ResourceSpecifier::Broker(1);
    let described = |admin: &rdkafka::admin::AdminClient<_>, key: &str| {
        let results = block_on(admin.describe_configs([&node], &opts)).unwrap();
        let resource = results.into_iter().next().unwrap().expect("described");
        let entry = resource
            .get(key)
            .unwrap_or_else(|| panic!("{key} described"));
        (
            entry.value.clone(),
            format!("{:?}", entry.source),
            entry.is_read_only,
        )
    };
    assert_eq!(
        described(&admin, "leader.replication.throttled.rate"),
        (Some(i64::MAX.to_string()), "Default".to_string(), false)
    );

    let alter = AlterConfig::new(node)
        .set("leader.replication.throttled.rate", "1048576")
        .set("follower.replication.throttled.rate", "2097152");
    for r in block_on(admin.alter_configs([&alter], &opts)).unwrap() {
        r.expect("altered");
    }
    assert_eq!(
        described(&admin, "leader.replication.throttled.rate"),
        (Some("1048576".into()), "DynamicBroker".to_string(), false)
    );
    assert!(
        described(&admin, "num.partitions").2,
        "static keys are read-only"
    );
    assert_eq!(
        described(&admin, "num.io.threads"),
        (Some("16".into()), "StaticBroker".to_string(), true),
        "the file's keys are described as set"
    );

    // Not changeable at run time, a bad value, an unknown key: refused, nothing changed.
    const INVALID_REQUEST: i16 = 42;
    const INVALID_CONFIG: i16 = 40;
    for (key, value, code, says) in [
        (
            "num.io.threads",
            "16",
            INVALID_REQUEST,
            "cannot update num.io.threads dynamically",
        ),
        ("num.partitions", "3", INVALID_REQUEST, "restart"),
        (
            "leader.replication.throttled.rate",
            "-5",
            INVALID_CONFIG,
            "leader.replication.throttled.rate",
        ),
        ("no.such.key", "1", INVALID_CONFIG, "unknown broker config"),
    ] {
        let (got, message) = raw_alter(&broker, 4, "1", key, value);
        assert_eq!(got, code, "{key}={value}: {message}");
        assert!(message.contains(says), "{key}={value}: {message}");
    }
    assert_eq!(
        described(&admin, "follower.replication.throttled.rate").0,
        Some("2097152".into())
    );

    // Kept in the metadata log: a restart keeps them.
    drop(admin);
    let temp = broker.stop().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {});
    let admin = broker.admin();
    assert_eq!(
        described(&admin, "leader.replication.throttled.rate"),
        (Some("1048576".into()), "DynamicBroker".to_string(), false)
    );
    // AlterConfigs replaces the resource's whole dynamic set: naming one key drops the other.
    let alter = AlterConfig::new(node).set("log.cleaner.io.max.bytes.per.second", "5000000");
    for r in block_on(admin.alter_configs([&alter], &opts)).unwrap() {
        r.expect("altered");
    }
    assert_eq!(
        described(&admin, "leader.replication.throttled.rate"),
        (Some(i64::MAX.to_string()), "Default".to_string(), false)
    );
    assert_eq!(
        described(&admin, "log.cleaner.io.max.bytes.per.second"),
        (Some("5000000".into()), "DynamicBroker".to_string(), false)
    );
}

fn raw_alter_config(broker: &TestBroker, topic: &str, key: &str, value: &str) -> (i16, String) {
    raw_alter(broker, 2, topic, key, value)
}

/// AlterConfigs of one key of one resource (2: topic, 4: broker) over the raw protocol: librdkafka's admin client
/// does not hand back a resource's error message.
fn raw_alter(
    broker: &TestBroker,
    resource_type: i8,
    name: &str,
    key: &str,
    value: &str,
) -> (i16, String) {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{AlterConfigsRequest, ApiKey, RequestKind, ResponseKind};
    use kafka_protocol::protocol::StrBytes;
    let config = AlterableConfig::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())));
    let resource = AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(vec![config]);
    let request = AlterConfigsRequest::default().with_resources(vec![resource]);
    let mut client = common::raw::RawClient::connect(broker.addr);
    let ResponseKind::AlterConfigs(r) =
        client.request(ApiKey::AlterConfigs, 1, RequestKind::AlterConfigs(request))
    else {
        panic!("wrong response type")
    };
    let r = &r.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn offsets_for_times_find_the_first_record_at_or_after_the_timestamp() {
    let broker = TestBroker::start();
    broker.create_topic("timeline", 1, &[]);
    let producer = broker.producer(&[("linger.ms", "20"), ("compression.type", "lz4")]);
    let t0 = 1_600_000_000_000i64;
    let futures: Vec<_> = (0..100i64)
        .map(|i| {
            enqueue(
                &producer,
                FutureRecord::to("timeline")
                    .payload(&format!("{i}"))
                    .key(&b"k"[..])
                    .timestamp(t0 + i * 10),
            )
        })
        .collect();
    for f in futures {
        delivered(f).unwrap();
    }
    let consumer = broker.consumer(&[]);
    for (target, expected) in [(t0, 0), (t0 + 5, 1), (t0 + 500, 50), (t0 + 991, -1), (0, 0)] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("timeline", 0, Offset::Offset(target))
            .unwrap();
        let found = consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .unwrap();
        let offset = found.find_partition("timeline", 0).unwrap().offset();
        let expected = if expected < 0 {
            Offset::End
        } else {
            Offset::Offset(expected)
        };
        assert_eq!(offset, expected, "timestamp {target}");
    }
    // Replay from a point in time: exactly the records at or after it.
    let got = consume(&consumer, "timeline", &[0], Offset::Offset(50), 50);
    assert!(got.iter().all(|r| r.timestamp.unwrap() >= t0 + 500));
    assert_eq!(got[0].offset, 50);

    let (low, high) = consumer
        .fetch_watermarks("timeline", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 100));
}

#[test]
fn delete_records_moves_the_log_start_offset() {
    let broker = TestBroker::start();
    broker.create_topic("trim", 1, &[("segment.bytes", "1024")]);
    let producer = broker.producer(&[("linger.ms", "0")]);
    for i in 0..100 {
        block_on(
            producer.send(
                FutureRecord::to("trim")
                    .payload(&format!("record-{i:04}"))
                    .key(&b"k"[..]),
                Duration::from_secs(20),
            ),
        )
        .unwrap();
    }
    let admin = broker.admin();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(60))
        .unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options())).unwrap();
    assert_eq!(
        result.find_partition("trim", 0).unwrap().offset(),
        Offset::Offset(60)
    );

    let consumer = broker.consumer(&[]);
    let (low, high) = consumer
        .fetch_watermarks("trim", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (60, 100));
    let got = consume(&consumer, "trim", &[0], Offset::Beginning, 40);
    assert_eq!(got[0].offset, 60);
    assert_eq!(got[0].value.as_deref(), Some(&b"record-0060"[..]));

    // Beyond the high watermark is out of range.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::Offset(500))
        .unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options())).unwrap();
    let err = result.find_partition("trim", 0).unwrap().error();
    assert!(err.is_err(), "{err:?}");

    // The new log start offset survives a restart.
    drop(consumer);
    let temp = broker.stop().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {});
    let consumer = broker.consumer(&[]);
    let (low, _) = consumer
        .fetch_watermarks("trim", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(low, 60);
}
