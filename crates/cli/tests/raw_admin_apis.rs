//! The admin and offset APIs at the wire level, each at its lowest, a middle and its highest served version
//! (`strom_protocol::apis::SUPPORTED_APIS`): ListOffsets, Metadata, CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs, OffsetForLeaderEpoch,
//! InitProducerId (transactional ids) and ApiVersions.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::raw::{produce, RawClient};
use common::TestBroker;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const UNKNOWN_TOPIC_ID: i16 = 100;

// DescribeConfigs resource types and config sources.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Every topic config Strom accepts (README, "Topic configs").
const TOPIC_CONFIG_KEYS: [&str; 15] = [
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Sends `$body` as API `$api` at version `$v` and unwraps the matching response type.
macro_rules! call {
    ($client:expr, $api:ident, $v:expr, $body:expr) => {{
        let ResponseKind::$api(r) = $client.request(ApiKey::$api, $v, RequestKind::$api($body))
        else {
            panic!("wrong response type")
        };
        r
    }};
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// One RecordBatch v2 (no producer id) whose records carry these timestamps. Record i gets sequence i - 1 so
/// kafka-protocol's encoder keeps all of them in one batch (it splits whenever `offset - sequence` changes); the
/// batch's base sequence, taken from the first record, is -1 as a non-idempotent batch needs.
fn batch_with_timestamps(timestamps: &[i64]) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn records(n: usize) -> Bytes {
    batch_with_timestamps(&vec![1_700_000_000_000; n])
}

// ---------------------------------------------------------------------------------------------------------------
// Request builders.

fn new_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(tn(name))
        .with_num_partitions(partitions)
        .with_replication_factor(if partitions == -1 { -1 } else { 1 })
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(sb(k))
                        .with_value(Some(sb(v)))
                })
                .collect(),
        )
}

fn create_topics(
    client: &mut RawClient,
    version: i16,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only);
    call!(client, CreateTopics, version, request).topics
}

fn create_one(client: &mut RawClient, name: &str, partitions: i32) -> CreatableTopicResult {
    let r = create_topics(client, 7, vec![new_topic(name, partitions, &[])], false);
    assert_eq!(
        r[0].error_code, NONE,
        "create {name}: {:?}",
        r[0].error_message
    );
    r[0].clone()
}

fn metadata(
    client: &mut RawClient,
    version: i16,
    topics: Option<&[&str]>,
    allow_auto_create: bool,
) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(tn(t))))
                .collect()
        }))
        // The flag is on the wire from v4; before that it must stay at its default (true).
        .with_allow_auto_topic_creation(allow_auto_create || version < 4);
    call!(client, Metadata, version, request)
}

fn names(topics: &[MetadataResponseTopic]) -> Vec<String> {
    topics
        .iter()
        .map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default())
        .collect()
}

/// Partition count of `topic` as Metadata v9 reports it (without creating it); `None` if it does not exist.
fn partition_count(client: &mut RawClient, topic: &str) -> Option<usize> {
    let r = metadata(client, 9, Some(&[topic]), false);
    let t = &r.topics[0];
    match t.error_code {
        NONE => Some(t.partitions.len()),
        UNKNOWN_TOPIC_OR_PARTITION => None,
        other => panic!("metadata for {topic}: error {other}"),
    }
}

fn list_offsets(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(tn(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let r = call!(client, ListOffsets, version, request);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].name.0.as_str(), topic);
    assert_eq!(r.topics[0].partitions.len(), 1);
    assert_eq!(r.topics[0].partitions[0].partition_index, partition);
    r.topics[0].partitions[0].clone()
}

fn delete_records(client: &mut RawClient, topic: &str, partition: i32, offset: i64) -> i16 {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(tn(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])]);
    call!(client, DeleteRecords, 2, request).topics[0].partitions[0].error_code
}

fn describe_configs(
    client: &mut RawClient,
    version: i16,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
    include_synonyms: bool,
) -> DescribeConfigsResult {
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(sb(name))
            .with_configuration_keys(
                keys.map(|k| k.iter().map(|k| sb(k)).collect()),
            )])
        .with_include_synonyms(include_synonyms);
    let r = call!(client, DescribeConfigs, version, request);
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].resource_type, resource_type);
    assert_eq!(r.results[0].resource_name.as_str(), name);
    r.results[0].clone()
}

fn config<'a>(result: &'a DescribeConfigsResult, key: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} missing from {:?}", config_names(result)))
}

fn config_names(result: &DescribeConfigsResult) -> Vec<String> {
    result.configs.iter().map(|c| c.name.to_string()).collect()
}

/// (value, source) of one topic config, as DescribeConfigs v4 reports it.
fn topic_config(client: &mut RawClient, topic: &str, key: &str) -> (String, i8) {
    let r = describe_configs(client, 4, RESOURCE_TOPIC, topic, Some(&[key]), false);
    assert_eq!(r.error_code, NONE);
    let c = config(&r, key);
    (
        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        c.config_source,
    )
}

fn alter(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(sb(topic))
            .with_configs(
                ops.iter()
                    .map(|(name, op, value)| {
                        AlterableConfig::default()
                            .with_name(sb(name))
                            .with_config_operation(*op)
                            .with_value(value.map(sb))
                    })
                    .collect(),
            )]);
    let r = call!(client, IncrementalAlterConfigs, version, request);
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].resource_name.as_str(), topic);
    (
        r.responses[0].error_code,
        r.responses[0].error_message.as_ref().map(|m| m.to_string()),
    )
}

fn offset_for_epoch(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> EpochEndOffset {
    let request =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(tn(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    let r = call!(client, OffsetForLeaderEpoch, version, request);
    assert_eq!(r.topics[0].topic.0.as_str(), topic);
    r.topics[0].partitions[0].clone()
}

// ---------------------------------------------------------------------------------------------------------------
// ListOffsets (1..=7)

#[test]
fn list_offsets_latest_earliest_max_timestamp_and_by_timestamp() {
    let broker = TestBroker::start();
    broker.create_topic("ts", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    // Offsets 0..5 and 5..8; the largest timestamp (9000) is at offset 6, not at the end of a batch.
    let first = batch_with_timestamps(&[1000, 5000, 3000, 5000, 2000]);
    let second = batch_with_timestamps(&[6000, 9000, 8000]);
    assert_eq!(produce(&mut client, "ts", 0, first), (NONE, 0));
    assert_eq!(produce(&mut client, "ts", 0, second), (NONE, 5));

    for v in [1, 4, 7] {
        let latest = list_offsets(&mut client, v, "ts", 0, -1);
        assert_eq!(
            (latest.error_code, latest.offset, latest.timestamp),
            (NONE, 8, -1),
            "v{v} latest"
        );
        let earliest = list_offsets(&mut client, v, "ts", 0, -2);
        assert_eq!(
            (earliest.error_code, earliest.offset, earliest.timestamp),
            (NONE, 0, -1),
            "v{v} earliest"
        );
        if v >= 4 {
            assert_eq!(latest.leader_epoch, 0, "v{v}");
            assert_eq!(earliest.leader_epoch, 0, "v{v}");
        }
        // By timestamp: the first offset whose record timestamp is >= the target, with that record's timestamp.
        for (target, offset, timestamp) in [
            (0, 0, 1000),
            (1000, 0, 1000),
            (1001, 1, 5000),
            (5000, 1, 5000),
            (5001, 5, 6000),
            (8500, 6, 9000),
            (9000, 6, 9000),
        ] {
            let r = list_offsets(&mut client, v, "ts", 0, target);
            assert_eq!(
                (r.error_code, r.offset, r.timestamp),
                (NONE, offset, timestamp),
                "v{v} timestamp {target}"
            );
        }
        let none = list_offsets(&mut client, v, "ts", 0, 9001);
        assert_eq!(
            (none.error_code, none.offset, none.timestamp),
            (NONE, -1, -1),
            "v{v}: no record at or after the timestamp"
        );

        for (topic, partition) in [("ts", 1), ("no-such-topic", 0)] {
            let r = list_offsets(&mut client, v, topic, partition, -1);
            assert_eq!(
                r.error_code, UNKNOWN_TOPIC_OR_PARTITION,
                "v{v} {topic}-{partition}"
            );
        }
    }
    // MAX_TIMESTAMP (-3), v7: offset and timestamp of the record holding the largest timestamp.
    let max = list_offsets(&mut client, 7, "ts", 0, -3);
    assert_eq!((max.error_code, max.offset, max.timestamp), (NONE, 6, 9000));
    assert_eq!(max.leader_epoch, 0);

    // After DeleteRecords, earliest and timestamp lookups start at the new log start offset.
    assert_eq!(delete_records(&mut client, "ts", 0, 5), NONE);
    for v in [1, 4, 7] {
        let earliest = list_offsets(&mut client, v, "ts", 0, -2);
        assert_eq!((earliest.error_code, earliest.offset), (NONE, 5), "v{v}");
        let r = list_offsets(&mut client, v, "ts", 0, 0);
        assert_eq!((r.offset, r.timestamp), (5, 6000), "v{v}");
        let latest = list_offsets(&mut client, v, "ts", 0, -1);
        assert_eq!(latest.offset, 8, "v{v}");
    }
    let max = list_offsets(&mut client, 7, "ts", 0, -3);
    assert_eq!((max.error_code, max.offset, max.timestamp), (NONE, 6, 9000));

    // ListOffsets never creates topics.
    assert!(broker
        .broker()
        .state()
        .topics
        .get("no-such-topic")
        .is_none());
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata (0..=11)

#[test]
fn metadata_topic_lists_auto_creation_ids_and_cluster_fields() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3);
    let mut client = RawClient::connect(broker.addr);
    let alpha_id = create_one(&mut client, "alpha", 2).topic_id;
    let beta_id = create_one(&mut client, "beta", 1).topic_id;
    assert!(!alpha_id.is_nil() && !beta_id.is_nil() && alpha_id != beta_id);
    let port = i32::from(broker.addr.port());

    // v0: an empty list means every topic.
    let r = metadata(&mut client, 0, Some(&[]), true);
    assert_eq!(names(&r.topics), vec!["alpha", "beta"]);
    // v1+: null means every topic, an empty list means none.
    for v in [1, 4, 9, 11] {
        let all = metadata(&mut client, v, None, false);
        assert_eq!(names(&all.topics), vec!["alpha", "beta"], "v{v}");
        let none = metadata(&mut client, v, Some(&[]), false);
        assert!(none.topics.is_empty(), "v{v}: empty list means no topics");
    }

    let mut cluster_ids = Vec::new();
    for v in [0, 1, 4, 9, 11] {
        let r = metadata(&mut client, v, Some(&["alpha"]), false);
        assert_eq!(r.brokers.len(), 1, "v{v}");
        let b = &r.brokers[0];
        assert_eq!(
            (b.node_id.0, b.host.as_str(), b.port),
            (1, "127.0.0.1", port),
            "v{v}"
        );
        if v >= 1 {
            assert_eq!(r.controller_id.0, 1, "v{v}: controller id");
        }
        if v >= 2 {
            let id = r.cluster_id.clone().expect("cluster id from v2");
            assert!(!id.is_empty(), "v{v}");
            cluster_ids.push(id.to_string());
        } else {
            assert!(r.cluster_id.is_none(), "v{v}: no cluster id before v2");
        }
        let t = &r.topics[0];
        assert_eq!((t.error_code, t.is_internal), (NONE, false), "v{v}");
        assert_eq!(names(&r.topics), vec!["alpha"], "v{v}");
        assert_eq!(t.partitions.len(), 2, "v{v}");
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition_index, i as i32, "v{v}");
            assert_eq!(p.error_code, NONE, "v{v}");
            assert_eq!(p.leader_id.0, 1, "v{v}");
            assert_eq!(p.replica_nodes, vec![BrokerId(1)], "v{v}");
            assert_eq!(p.isr_nodes, vec![BrokerId(1)], "v{v}");
            if v >= 7 {
                assert_eq!(p.leader_epoch, 0, "v{v}");
            }
        }
        if v >= 10 {
            assert_eq!(t.topic_id, alpha_id, "v{v}: topic id from v10");
        } else {
            assert!(t.topic_id.is_nil(), "v{v}: no topic id before v10");
        }
    }
    cluster_ids.dedup();
    assert_eq!(cluster_ids.len(), 1, "one cluster id");

    // allow_auto_topic_creation=false (v4+): UNKNOWN_TOPIC_OR_PARTITION and nothing is created.
    for v in [4, 9, 11] {
        let r = metadata(&mut client, v, Some(&["ghost"]), false);
        assert_eq!(names(&r.topics), vec!["ghost"], "v{v}");
        assert_eq!(r.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
        assert!(r.topics[0].partitions.is_empty(), "v{v}");
    }
    assert!(broker.broker().state().topics.get("ghost").is_none());

    // Before v4 there is no flag: naming a topic creates it with num.partitions (3 here); so does the flag on v4+.
    for (v, name) in [(1, "auto-v1"), (9, "auto-v9")] {
        let r = metadata(&mut client, v, Some(&[name]), true);
        assert_eq!(r.topics[0].error_code, NONE, "v{v}");
        assert_eq!(r.topics[0].partitions.len(), 3, "v{v}: num.partitions");
        assert_eq!(partition_count(&mut client, name), Some(3));
    }

    // An invalid name is INVALID_TOPIC_EXCEPTION and is never created.
    for v in [1, 9, 11] {
        for bad in ["bad/name", "a b", ".."] {
            let r = metadata(&mut client, v, Some(&[bad]), true);
            assert_eq!(
                r.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
                "v{v} {bad:?}"
            );
        }
    }
    let all = metadata(&mut client, 1, None, false);
    assert_eq!(
        names(&all.topics),
        vec!["alpha", "auto-v1", "auto-v9", "beta"]
    );
}

/// Kafka validates the name of every topic it cannot find, whether or not it may create it
/// (`KafkaApis.getTopicMetadata`: `Topic.validate(topic)` → INVALID_TOPIC_EXCEPTION, otherwise
/// UNKNOWN_TOPIC_OR_PARTITION), so an invalid name is INVALID_TOPIC_EXCEPTION with allow_auto_topic_creation=false
/// too, and also on a broker with auto.create.topics.enable=false.
#[test]
fn metadata_reports_invalid_names_without_auto_creation_like_kafka() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for v in [4, 9, 11] {
        let r = metadata(&mut client, v, Some(&["bad/name"]), false);
        assert_eq!(
            r.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
            "v{v} allow_auto_topic_creation=false"
        );
    }
}

/// The same rule on a broker with auto.create.topics.enable=false, where the request's flag cannot create anything.
#[test]
fn metadata_reports_invalid_names_when_broker_auto_creation_is_off_like_kafka() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false);
    let mut client = RawClient::connect(broker.addr);
    for v in [1, 9] {
        let r = metadata(&mut client, v, Some(&["bad/name"]), true);
        assert_eq!(
            r.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
            "v{v} auto.create.topics.enable=false"
        );
        let r = metadata(&mut client, v, Some(&["fine-name"]), true);
        assert_eq!(r.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CreateTopics (2..=7)

#[test]
fn create_topics_defaults_validate_only_configs_and_errors() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3);
    let mut client = RawClient::connect(broker.addr);
    for v in [2, 5, 7] {
        let name = |s: &str| format!("{s}-v{v}");

        // Explicit partitions and replication factor.
        let r = create_topics(&mut client, v, vec![new_topic(&name("two"), 2, &[])], false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name.0.as_str(), name("two"));
        assert_eq!(r[0].error_code, NONE, "v{v}: {:?}", r[0].error_message);
        assert_eq!(partition_count(&mut client, &name("two")), Some(2), "v{v}");
        if v >= 5 {
            assert_eq!(
                (r[0].num_partitions, r[0].replication_factor),
                (2, 1),
                "v{v}"
            );
        }
        if v >= 7 {
            let id = r[0].topic_id;
            assert!(!id.is_nil(), "v{v}: topic id");
            let m = metadata(&mut client, 11, Some(&[&name("two")]), false);
            assert_eq!(m.topics[0].topic_id, id, "v{v}: same id as Metadata");
        }

        // Creating it again: TOPIC_ALREADY_EXISTS.
        let r = create_topics(&mut client, v, vec![new_topic(&name("two"), 2, &[])], false);
        assert_eq!(r[0].error_code, TOPIC_ALREADY_EXISTS, "v{v}");

        // -1 partitions and replication factor: the broker's num.partitions (3).
        if v >= 5 {
            let r = create_topics(
                &mut client,
                v,
                vec![new_topic(&name("dflt"), -1, &[])],
                false,
            );
            assert_eq!(r[0].error_code, NONE, "v{v}: {:?}", r[0].error_message);
            assert_eq!(
                (r[0].num_partitions, r[0].replication_factor),
                (3, 1),
                "v{v}"
            );
            assert_eq!(partition_count(&mut client, &name("dflt")), Some(3), "v{v}");
        }

        // validate_only: the same answer, nothing created.
        let r = create_topics(&mut client, v, vec![new_topic(&name("dry"), 4, &[])], true);
        assert_eq!(r[0].error_code, NONE, "v{v}");
        if v >= 5 {
            assert_eq!(r[0].num_partitions, 4, "v{v}");
        }
        assert_eq!(
            partition_count(&mut client, &name("dry")),
            None,
            "v{v}: not created"
        );
        let r = create_topics(&mut client, v, vec![new_topic(&name("dry"), 0, &[])], true);
        assert_eq!(
            r[0].error_code, INVALID_PARTITIONS,
            "v{v}: validate_only still validates"
        );

        // Invalid partition count, replication factor and name.
        let r = create_topics(
            &mut client,
            v,
            vec![new_topic(&name("zero"), 0, &[])],
            false,
        );
        assert_eq!(r[0].error_code, INVALID_PARTITIONS, "v{v}");
        let r = create_topics(
            &mut client,
            v,
            vec![new_topic(&name("rf3"), 1, &[]).with_replication_factor(3)],
            false,
        );
        assert_eq!(r[0].error_code, INVALID_REPLICATION_FACTOR, "v{v}");
        let r = create_topics(&mut client, v, vec![new_topic("bad/name", 1, &[])], false);
        assert_eq!(r[0].error_code, INVALID_TOPIC_EXCEPTION, "v{v}");

        // An invalid config value or an unknown config key: INVALID_CONFIG with a message; nothing created.
        for (key, value) in [("retention.ms", "soon"), ("no.such.config", "1")] {
            let r = create_topics(
                &mut client,
                v,
                vec![new_topic(&name("badcfg"), 1, &[(key, value)])],
                false,
            );
            assert_eq!(r[0].error_code, INVALID_CONFIG, "v{v} {key}={value}");
            let message = r[0].error_message.clone().expect("an error message");
            assert!(!message.is_empty(), "v{v}");
            assert_eq!(partition_count(&mut client, &name("badcfg")), None, "v{v}");
        }

        // The same name twice in one request: INVALID_REQUEST for it; the other topic is created.
        let r = create_topics(
            &mut client,
            v,
            vec![
                new_topic(&name("dup"), 1, &[]),
                new_topic(&name("solo"), 1, &[]),
                new_topic(&name("dup"), 2, &[]),
            ],
            false,
        );
        for t in &r {
            let expected = if t.name.0.as_str() == name("dup") {
                INVALID_REQUEST
            } else {
                NONE
            };
            assert_eq!(t.error_code, expected, "v{v} {}", t.name.0.as_str());
        }
        assert!(r.iter().any(|t| t.name.0.as_str() == name("dup")));
        assert_eq!(partition_count(&mut client, &name("dup")), None, "v{v}");
        assert_eq!(partition_count(&mut client, &name("solo")), Some(1), "v{v}");

        // Replica assignments: to this broker (id 1) works; to any other broker id is INVALID_REPLICA_ASSIGNMENT.
        let assign = |brokers: &[&[i32]]| {
            brokers
                .iter()
                .enumerate()
                .map(|(i, ids)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(i as i32)
                        .with_broker_ids(ids.iter().map(|&b| BrokerId(b)).collect())
                })
                .collect::<Vec<_>>()
        };
        let r = create_topics(
            &mut client,
            v,
            vec![new_topic(&name("assigned"), -1, &[]).with_assignments(assign(&[&[1], &[1]]))],
            false,
        );
        assert_eq!(r[0].error_code, NONE, "v{v}: {:?}", r[0].error_message);
        assert_eq!(
            partition_count(&mut client, &name("assigned")),
            Some(2),
            "v{v}"
        );
        for brokers in [&[&[2][..]][..], &[&[1], &[2]], &[&[1, 2]]] {
            let r = create_topics(
                &mut client,
                v,
                vec![new_topic(&name("elsewhere"), -1, &[]).with_assignments(assign(brokers))],
                false,
            );
            assert_eq!(
                r[0].error_code, INVALID_REPLICA_ASSIGNMENT,
                "v{v} {brokers:?}"
            );
        }
        assert_eq!(
            partition_count(&mut client, &name("elsewhere")),
            None,
            "v{v}"
        );
    }
}

#[test]
fn create_topics_echoes_every_config_with_its_source_from_v5() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for v in [5, 7] {
        let name = format!("echo-v{v}");
        let r = create_topics(
            &mut client,
            v,
            vec![new_topic(
                &name,
                1,
                &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
            )],
            false,
        );
        assert_eq!(r[0].error_code, NONE, "v{v}: {:?}", r[0].error_message);
        let configs = r[0].configs.clone().expect("configs from v5");
        let by_name: BTreeMap<String, (Option<String>, i8)> = configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    (c.value.as_ref().map(|v| v.to_string()), c.config_source),
                )
            })
            .collect();
        for key in TOPIC_CONFIG_KEYS {
            let (value, source) = by_name
                .get(key)
                .unwrap_or_else(|| panic!("v{v}: {key} echoed"));
            assert!(value.is_some(), "v{v}: {key} has a value");
            let expected = if key == "retention.ms" || key == "cleanup.policy" {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            assert_eq!(*source, expected, "v{v}: source of {key}");
        }
        assert_eq!(by_name["retention.ms"].0.as_deref(), Some("3600000"));
        assert_eq!(by_name["cleanup.policy"].0.as_deref(), Some("compact"));

        // The echo agrees with DescribeConfigs.
        for key in TOPIC_CONFIG_KEYS {
            let (value, source) = topic_config(&mut client, &name, key);
            assert_eq!(
                (Some(value), source),
                by_name[key].clone(),
                "v{v}: {key} in CreateTopics and DescribeConfigs"
            );
        }
    }
}

/// Kafka computes a created topic's echoed config source the way DescribeConfigs does
/// (`ConfigHelper.createTopicConfigEntry`): a value that comes from the broker's config file is
/// STATIC_BROKER_CONFIG (4), not DEFAULT_CONFIG (5).
#[test]
fn create_topics_reports_static_broker_config_sources_like_describe_configs() {
    let broker = TestBroker::start_with(|c| {
        let unknown = c
            .apply_properties("log.retention.ms=3600000\n")
            .expect("valid properties");
        assert!(unknown.is_empty());
    });
    let mut client = RawClient::connect(broker.addr);
    let r = create_topics(&mut client, 7, vec![new_topic("static", 1, &[])], false);
    assert_eq!(r[0].error_code, NONE);
    assert_eq!(
        topic_config(&mut client, "static", "retention.ms"),
        ("3600000".to_string(), SOURCE_STATIC_BROKER),
        "DescribeConfigs"
    );
    let configs = r[0].configs.clone().expect("configs");
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .expect("retention.ms echoed");
    assert_eq!(
        retention.value.as_ref().map(|v| v.as_str()),
        Some("3600000")
    );
    assert_eq!(
        retention.config_source, SOURCE_STATIC_BROKER,
        "CreateTopics v7 echo of a config-file value"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// DeleteTopics (1..=6)

#[test]
fn delete_topics_by_name_and_by_topic_id() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "del-a", 2);
    let b_id = create_one(&mut client, "del-b", 1).topic_id;
    let c_id = create_one(&mut client, "del-c", 1).topic_id;
    assert_eq!(produce(&mut client, "del-a", 1, records(3)), (NONE, 0));

    // v1: by name.
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![tn("del-a"), tn("missing")])
        .with_timeout_ms(10_000);
    let r = call!(client, DeleteTopics, 1, request);
    let codes: Vec<(String, i16)> = r
        .responses
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("del-a".to_string(), NONE),
            ("missing".to_string(), UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert_eq!(partition_count(&mut client, "del-a"), None);

    // v6: by topic id; the response names the topic and echoes the id.
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(b_id)])
        .with_timeout_ms(10_000);
    let r = call!(client, DeleteTopics, 6, request);
    let t = &r.responses[0];
    assert_eq!(t.error_code, NONE, "{:?}", t.error_message);
    assert_eq!(t.name.as_ref().map(|n| n.0.as_str()), Some("del-b"));
    assert_eq!(t.topic_id, b_id);
    assert_eq!(partition_count(&mut client, "del-b"), None);

    // v6: the deleted id again is UNKNOWN_TOPIC_ID; by name still works at v6.
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(b_id),
            DeleteTopicState::default().with_name(Some(tn("del-c"))),
        ])
        .with_timeout_ms(10_000);
    let r = call!(client, DeleteTopics, 6, request);
    assert_eq!(r.responses[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(r.responses[0].topic_id, b_id);
    assert_eq!(r.responses[1].error_code, NONE);
    assert_eq!(
        r.responses[1].topic_id, c_id,
        "v6 reports the deleted topic's id"
    );
    assert_eq!(partition_count(&mut client, "del-c"), None);

    // v4 (a middle version): by name.
    create_one(&mut client, "del-d", 1);
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![tn("del-d")])
        .with_timeout_ms(10_000);
    let r = call!(client, DeleteTopics, 4, request);
    assert_eq!(r.responses[0].error_code, NONE);

    // A deleted name can be created again, empty and with a new id.
    let again = create_one(&mut client, "del-a", 1);
    assert_ne!(again.topic_id, b_id);
    let latest = list_offsets(&mut client, 7, "del-a", 0, -1);
    assert_eq!((latest.error_code, latest.offset), (NONE, 0));
}

// ---------------------------------------------------------------------------------------------------------------
// CreatePartitions (0..=3)

#[test]
fn create_partitions_grows_validates_and_never_shrinks() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for v in [0, 1, 3] {
        let name = format!("grow-v{v}");
        create_one(&mut client, &name, 1);
        let grow = |count: i32, validate_only: bool, assignments: Option<&[i32]>| {
            CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(tn(&name))
                    .with_count(count)
                    .with_assignments(assignments.map(|a| {
                        a.iter()
                            .map(|&b| {
                                CreatePartitionsAssignment::default()
                                    .with_broker_ids(vec![BrokerId(b)])
                            })
                            .collect()
                    }))])
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
        };
        let code = |r: kafka_protocol::messages::CreatePartitionsResponse| {
            assert_eq!(r.results.len(), 1);
            r.results[0].error_code
        };

        assert_eq!(
            code(call!(client, CreatePartitions, v, grow(3, false, None))),
            NONE,
            "v{v}"
        );
        assert_eq!(partition_count(&mut client, &name), Some(3), "v{v}");
        assert_eq!(
            produce(&mut client, &name, 2, records(2)),
            (NONE, 0),
            "v{v}: new partition works"
        );

        assert_eq!(
            code(call!(client, CreatePartitions, v, grow(5, true, None))),
            NONE,
            "v{v}"
        );
        assert_eq!(
            partition_count(&mut client, &name),
            Some(3),
            "v{v}: validate_only"
        );

        for count in [2, 3] {
            let r = call!(client, CreatePartitions, v, grow(count, false, None));
            assert_eq!(
                r.results[0].error_code, INVALID_PARTITIONS,
                "v{v} count {count}"
            );
            assert!(r.results[0].error_message.is_some(), "v{v}");
        }
        assert_eq!(
            code(call!(
                client,
                CreatePartitions,
                v,
                grow(4, false, Some(&[2]))
            )),
            INVALID_REPLICA_ASSIGNMENT,
            "v{v}"
        );
        assert_eq!(
            code(call!(
                client,
                CreatePartitions,
                v,
                grow(4, false, Some(&[1]))
            )),
            NONE,
            "v{v}: assignment to this broker"
        );
        assert_eq!(partition_count(&mut client, &name), Some(4), "v{v}");

        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(tn("no-such-topic"))
                .with_count(2)])
            .with_timeout_ms(10_000);
        assert_eq!(
            code(call!(client, CreatePartitions, v, request)),
            UNKNOWN_TOPIC_OR_PARTITION,
            "v{v}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// DescribeConfigs (1..=4)

#[test]
fn describe_configs_topic_and_broker_resources() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let r = create_topics(
        &mut client,
        7,
        vec![new_topic("cfg", 1, &[("cleanup.policy", "compact")])],
        false,
    );
    assert_eq!(r[0].error_code, NONE);
    for v in [1, 2, 4] {
        // Every key, each with a value; the override is TOPIC_CONFIG, the rest DEFAULT_CONFIG.
        let r = describe_configs(&mut client, v, RESOURCE_TOPIC, "cfg", None, false);
        assert_eq!(r.error_code, NONE, "v{v}");
        let got = config_names(&r);
        for key in TOPIC_CONFIG_KEYS {
            assert!(got.iter().any(|g| g == key), "v{v}: {key} described");
        }
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "v{v}: each key once");
        for c in &r.configs {
            // Kafka's default for the throttled replica lists is the empty list.
            let empty_default = c.name.as_str().ends_with(".replication.throttled.replicas");
            assert!(
                c.value
                    .as_ref()
                    .is_some_and(|v| v.is_empty() == empty_default),
                "v{v}: {} has a value",
                c.name.as_str()
            );
            assert!(!c.read_only, "v{v}: topic configs are writable");
            assert!(!c.is_sensitive, "v{v}");
            assert!(c.synonyms.is_empty(), "v{v}: no synonyms unless asked");
            let expected = if c.name.as_str() == "cleanup.policy" {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            assert_eq!(c.config_source, expected, "v{v}: {}", c.name.as_str());
        }
        assert_eq!(
            config(&r, "cleanup.policy")
                .value
                .as_ref()
                .map(|v| v.as_str()),
            Some("compact")
        );
        assert_eq!(
            config(&r, "compression.type")
                .value
                .as_ref()
                .map(|v| v.as_str()),
            Some("producer")
        );
        if v >= 3 {
            assert_eq!(config(&r, "cleanup.policy").config_type, 7, "v{v}: LIST");
            assert_eq!(config(&r, "retention.ms").config_type, 5, "v{v}: LONG");
            assert_eq!(config(&r, "segment.bytes").config_type, 3, "v{v}: INT");
        }

        // configuration_keys filters.
        let r = describe_configs(
            &mut client,
            v,
            RESOURCE_TOPIC,
            "cfg",
            Some(&["retention.ms", "cleanup.policy"]),
            false,
        );
        let mut got = config_names(&r);
        got.sort();
        assert_eq!(got, vec!["cleanup.policy", "retention.ms"], "v{v}");

        // include_synonyms: an overridden key lists the topic override first.
        let r = describe_configs(
            &mut client,
            v,
            RESOURCE_TOPIC,
            "cfg",
            Some(&["cleanup.policy"]),
            true,
        );
        let c = config(&r, "cleanup.policy");
        let first = c.synonyms.first().expect("a synonym for an overridden key");
        assert_eq!(
            (
                first.name.as_str(),
                first.value.as_ref().map(|v| v.as_str()),
                first.source
            ),
            ("cleanup.policy", Some("compact"), SOURCE_TOPIC),
            "v{v}"
        );

        // The broker resource by its id: static, read-only broker configs.
        let r = describe_configs(&mut client, v, RESOURCE_BROKER, "1", None, false);
        assert_eq!(r.error_code, NONE, "v{v}");
        let c = config(&r, "num.partitions");
        assert_eq!(c.value.as_ref().map(|v| v.as_str()), Some("1"), "v{v}");
        assert!(c.read_only, "v{v}");
        // Issue 14's broker keys, at Kafka's defaults.
        for (key, value) in [
            ("log.cleaner.enable", "true"),
            ("log.cleaner.backoff.ms", "15000"),
            ("log.cleaner.min.cleanable.ratio", "0.5"),
            ("log.roll.jitter.ms", "0"),
            ("log.preallocate", "false"),
            ("log.segment.delete.delay.ms", "60000"),
        ] {
            let c = config(&r, key);
            assert_eq!(
                c.value.as_ref().map(|v| v.as_str()),
                Some(value),
                "v{v} {key}"
            );
        }
        let r = describe_configs(
            &mut client,
            v,
            RESOURCE_BROKER,
            "1",
            Some(&["auto.create.topics.enable"]),
            false,
        );
        assert_eq!(config_names(&r), vec!["auto.create.topics.enable"], "v{v}");

        // An unknown topic.
        let r = describe_configs(&mut client, v, RESOURCE_TOPIC, "nope", None, false);
        assert_eq!(r.error_code, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
        assert!(r.configs.is_empty(), "v{v}");
    }
}

/// With include_synonyms Kafka lists every synonym in precedence order, ending with the broker key's built-in
/// default as DEFAULT_CONFIG (`ConfigHelper.configSynonyms` adds `staticDefaultConfigs` with source
/// DEFAULT_CONFIG): `cleanup.policy` has the synonym `log.cleanup.policy=delete` (5) whether or not the topic
/// overrides it.
#[test]
fn describe_configs_synonyms_include_the_broker_default_like_kafka() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let r = create_topics(
        &mut client,
        7,
        vec![
            new_topic("syn-override", 1, &[("cleanup.policy", "compact")]),
            new_topic("syn-default", 1, &[]),
        ],
        false,
    );
    assert!(r.iter().all(|t| t.error_code == NONE));
    let synonyms = |client: &mut RawClient, topic: &str| {
        let r = describe_configs(
            client,
            4,
            RESOURCE_TOPIC,
            topic,
            Some(&["cleanup.policy"]),
            true,
        );
        config(&r, "cleanup.policy")
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.value.as_ref().map(|v| v.to_string()),
                    s.source,
                )
            })
            .collect::<Vec<_>>()
    };
    let broker_default = (
        "log.cleanup.policy".to_string(),
        Some("delete".to_string()),
        SOURCE_DEFAULT,
    );
    assert_eq!(
        synonyms(&mut client, "syn-override"),
        vec![
            (
                "cleanup.policy".to_string(),
                Some("compact".to_string()),
                SOURCE_TOPIC
            ),
            broker_default.clone()
        ]
    );
    assert_eq!(synonyms(&mut client, "syn-default"), vec![broker_default]);
}

// ---------------------------------------------------------------------------------------------------------------
// IncrementalAlterConfigs (0..=1)

#[test]
fn incremental_alter_configs_set_delete_append_subtract() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "pristine", 1);
    let default_retention = topic_config(&mut client, "pristine", "retention.ms");
    assert_eq!(default_retention.1, SOURCE_DEFAULT);
    assert_eq!(
        topic_config(&mut client, "pristine", "cleanup.policy"),
        ("delete".to_string(), SOURCE_DEFAULT)
    );
    for v in [0, 1] {
        let t = format!("alter-v{v}");
        create_one(&mut client, &t, 1);

        assert_eq!(
            alter(
                &mut client,
                v,
                &t,
                &[("retention.ms", SET, Some("1000"))],
                false
            )
            .0,
            NONE
        );
        assert_eq!(
            topic_config(&mut client, &t, "retention.ms"),
            ("1000".to_string(), SOURCE_TOPIC),
            "v{v} SET"
        );

        // validate_only checks but changes nothing.
        assert_eq!(
            alter(
                &mut client,
                v,
                &t,
                &[("retention.ms", SET, Some("2000"))],
                true
            )
            .0,
            NONE
        );
        assert_eq!(
            topic_config(&mut client, &t, "retention.ms").0,
            "1000",
            "v{v}"
        );

        assert_eq!(
            alter(&mut client, v, &t, &[("retention.ms", DELETE, None)], false).0,
            NONE
        );
        assert_eq!(
            topic_config(&mut client, &t, "retention.ms"),
            default_retention,
            "v{v} DELETE reverts to the default"
        );

        // APPEND / SUBTRACT on the list config cleanup.policy (default "delete").
        assert_eq!(
            alter(
                &mut client,
                v,
                &t,
                &[("cleanup.policy", APPEND, Some("compact"))],
                false
            )
            .0,
            NONE
        );
        let (value, source) = topic_config(&mut client, &t, "cleanup.policy");
        assert_eq!(
            (list_items(&value), source),
            (vec!["compact", "delete"], SOURCE_TOPIC),
            "v{v} APPEND (order is pinned by incremental_append_keeps_list_order_like_kafka)"
        );
        assert_eq!(
            alter(
                &mut client,
                v,
                &t,
                &[("cleanup.policy", APPEND, Some("compact"))],
                false
            )
            .0,
            NONE
        );
        assert_eq!(
            list_items(&topic_config(&mut client, &t, "cleanup.policy").0),
            vec!["compact", "delete"],
            "v{v}: APPEND of a present value adds nothing"
        );
        assert_eq!(
            alter(
                &mut client,
                v,
                &t,
                &[("cleanup.policy", SUBTRACT, Some("delete"))],
                false
            )
            .0,
            NONE
        );
        assert_eq!(
            topic_config(&mut client, &t, "cleanup.policy"),
            ("compact".to_string(), SOURCE_TOPIC),
            "v{v} SUBTRACT"
        );

        // APPEND on a non-list key, or an invalid value: INVALID_CONFIG with a message, and the resource's other
        // operations are not applied either.
        for ops in [
            &[
                ("retention.ms", SET, Some("5000")),
                ("retention.ms", APPEND, Some("1")),
            ][..],
            &[
                ("retention.ms", SET, Some("5000")),
                ("segment.ms", SUBTRACT, Some("1")),
            ],
            &[
                ("retention.ms", SET, Some("5000")),
                ("segment.bytes", SET, Some("huge")),
            ],
            &[("no.such.config", SET, Some("1"))],
        ] {
            let (code, message) = alter(&mut client, v, &t, ops, false);
            assert_eq!(code, INVALID_CONFIG, "v{v} {ops:?}");
            assert!(message.is_some_and(|m| !m.is_empty()), "v{v} {ops:?}");
            assert_eq!(
                topic_config(&mut client, &t, "retention.ms"),
                default_retention,
                "v{v} {ops:?}: nothing applied"
            );
        }

        let (code, _) = alter(
            &mut client,
            v,
            "no-such-topic",
            &[("retention.ms", SET, Some("1"))],
            false,
        );
        assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
    }
}

/// The items of a list config value, sorted.
fn list_items(value: &str) -> Vec<&str> {
    let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
    items.sort();
    items
}

/// Kafka's APPEND adds the new items after the current ones (`(oldValueList ++ appendingValueList).distinct` in
/// `ConfigAdminManager.prepareIncrementalConfigs`) and stores the list as written, so appending `compact` to the
/// default `delete` describes as `delete,compact`.
#[test]
fn incremental_append_keeps_list_order_like_kafka() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "order", 1);
    let op = [("cleanup.policy", APPEND, Some("compact"))];
    assert_eq!(alter(&mut client, 1, "order", &op, false).0, NONE);
    assert_eq!(
        topic_config(&mut client, "order", "cleanup.policy").0,
        "delete,compact"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// DescribeCluster (0), DescribeLogDirs (1..=2), OffsetForLeaderEpoch (2..=4), InitProducerId, ApiVersions

#[test]
fn describe_cluster_matches_metadata() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let m = metadata(&mut client, 11, None, false);
    let r = call!(
        client,
        DescribeCluster,
        0,
        DescribeClusterRequest::default()
    );
    assert_eq!(r.error_code, NONE);
    assert_eq!(Some(r.cluster_id.clone()), m.cluster_id);
    assert!(!r.cluster_id.is_empty());
    assert_eq!(r.controller_id.0, 1);
    assert_eq!(r.brokers.len(), 1);
    let b = &r.brokers[0];
    assert_eq!(
        (b.broker_id.0, b.host.as_str(), b.port),
        (1, "127.0.0.1", i32::from(broker.addr.port()))
    );
}

#[test]
fn describe_log_dirs_reports_partition_sizes() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "logs-a", 2);
    create_one(&mut client, "logs-b", 1);
    assert_eq!(produce(&mut client, "logs-a", 0, records(10)), (NONE, 0));
    assert_eq!(produce(&mut client, "logs-b", 0, records(1)), (NONE, 0));
    let batch_len = records(10).len() as i64;
    for v in [1, 2] {
        let r = call!(
            client,
            DescribeLogDirs,
            v,
            DescribeLogDirsRequest::default().with_topics(None)
        );
        assert_eq!(r.results.len(), 1, "v{v}: one log dir");
        let dir = &r.results[0];
        assert_eq!(dir.error_code, NONE, "v{v}");
        assert!(!dir.log_dir.is_empty(), "v{v}");
        let mut topics: Vec<&str> = dir.topics.iter().map(|t| t.name.0.as_str()).collect();
        topics.sort();
        assert_eq!(topics, vec!["logs-a", "logs-b"], "v{v}: every topic");
        let a = dir
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "logs-a")
            .unwrap();
        let mut sizes: Vec<(i32, i64)> = a
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![(0, batch_len), (1, 0)], "v{v}: partition sizes");
        assert!(a
            .partitions
            .iter()
            .all(|p| p.offset_lag == 0 && !p.is_future_key));

        let filter = DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(tn("logs-b"))
                .with_partitions(vec![0]),
            DescribableLogDirTopic::default()
                .with_topic(tn("no-such-topic"))
                .with_partitions(vec![0]),
        ]));
        let r = call!(client, DescribeLogDirs, v, filter);
        let topics = &r.results[0].topics;
        assert_eq!(topics.len(), 1, "v{v}: only the requested, existing topic");
        assert_eq!(topics[0].name.0.as_str(), "logs-b");
        assert_eq!(topics[0].partitions.len(), 1);
        assert!(topics[0].partitions[0].partition_size > 0, "v{v}");
    }
}

#[test]
fn offset_for_leader_epoch_ends_epoch_zero_at_the_log_end() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "epochs", 2);
    assert_eq!(produce(&mut client, "epochs", 0, records(7)), (NONE, 0));
    for v in [2, 3, 4] {
        let r = offset_for_epoch(&mut client, v, "epochs", 0, -1, 0);
        assert_eq!(
            (r.error_code, r.partition, r.leader_epoch, r.end_offset),
            (NONE, 0, 0, 7),
            "v{v} epoch 0"
        );
        let r = offset_for_epoch(&mut client, v, "epochs", 0, 0, 0);
        assert_eq!(
            (r.error_code, r.end_offset),
            (NONE, 7),
            "v{v} with current epoch 0"
        );
        let r = offset_for_epoch(&mut client, v, "epochs", 1, -1, 0);
        assert_eq!(
            (r.error_code, r.leader_epoch, r.end_offset),
            (NONE, 0, 0),
            "v{v} empty partition"
        );
        let r = offset_for_epoch(&mut client, v, "epochs", 0, -1, 5);
        assert_eq!(
            (r.error_code, r.leader_epoch, r.end_offset),
            (NONE, -1, -1),
            "v{v} unknown epoch 5"
        );
        let r = offset_for_epoch(&mut client, v, "epochs", 0, 3, 0);
        assert_eq!(
            r.error_code, UNKNOWN_LEADER_EPOCH,
            "v{v} current epoch ahead"
        );
        for (topic, partition) in [("epochs", 9), ("no-such-topic", 0)] {
            let r = offset_for_epoch(&mut client, v, topic, partition, -1, 0);
            assert_eq!(
                r.error_code, UNKNOWN_TOPIC_OR_PARTITION,
                "v{v} {topic}-{partition}"
            );
            assert_eq!((r.leader_epoch, r.end_offset), (-1, -1), "v{v}");
        }
    }
}

#[test]
fn init_producer_id_with_a_transactional_id_is_refused() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for v in [0, 2, 4] {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(sb("txn-1"))))
            .with_transaction_timeout_ms(60_000);
        let r = call!(client, InitProducerId, v, request);
        assert_ne!(r.error_code, NONE, "v{v}");
        assert_eq!(r.producer_id.0, -1, "v{v}: no producer id handed out");
        // Without one it works.
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let r = call!(client, InitProducerId, v, request);
        assert_eq!(r.error_code, NONE, "v{v}");
        assert!(r.producer_id.0 >= 0, "v{v}");
    }
}

#[test]
fn api_versions_lists_exactly_the_supported_apis() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let expected: Vec<(i16, i16, i16)> = strom_protocol::apis::SUPPORTED_APIS
        .iter()
        .map(|a| (a.key as i16, a.min_version, a.max_version))
        .collect();
    for v in [0, 1, 2, 3] {
        let mut request = ApiVersionsRequest::default();
        if v >= 3 {
            request = request
                .with_client_software_name(sb("raw-test"))
                .with_client_software_version(sb("1.0"));
        }
        let r = call!(client, ApiVersions, v, request);
        assert_eq!(r.error_code, NONE, "v{v}");
        let mut got: Vec<(i16, i16, i16)> = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        got.sort();
        assert_eq!(got, expected, "v{v}");
    }
}

#[test]
fn out_of_range_delete_records_is_reported() {
    // DeleteRecords is a helper above; pin its own edge so a broken helper cannot hide behind it.
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create_one(&mut client, "dr", 1);
    assert_eq!(produce(&mut client, "dr", 0, records(4)), (NONE, 0));
    assert_eq!(delete_records(&mut client, "dr", 0, 9), OFFSET_OUT_OF_RANGE);
    assert_eq!(delete_records(&mut client, "dr", 0, 2), NONE);
    assert_eq!(list_offsets(&mut client, 7, "dr", 0, -2).offset, 2);
}
