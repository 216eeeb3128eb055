//! The transaction APIs at the wire level with bad input: unknown transactional ids and producer ids, stale and
//! future producer epochs (PRODUCER_FENCED from the versions that know it, INVALID_PRODUCER_EPOCH before, as Kafka
//! answers them), markers from an older producer or coordinator epoch, and TxnOffsetCommit from a member of another
//! generation. Each gets Kafka's error code and changes nothing: the transaction stays open at the same last stable
//! offset until its producer ends it, and offsets refused in a transaction are not committed with it. On a
//! cluster, a partition leader verifies a transaction's first batch with the coordinator on another broker.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::cluster::{create_topic, wait_until, TestCluster};
use common::raw::RawClient;
use common::TestBroker;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, JoinGroupRequest, ListOffsetsRequest,
    ProducerId, RequestKind, ResponseKind, SyncGroupRequest, TopicName, TransactionalId,
    TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const PRODUCER_FENCED: i16 = 90;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Waits until the broker coordinates `transactional_id` (FindCoordinator answers without error once
/// `__transaction_state` exists and its partition is loaded), as clients do before their first transactional
/// request.
fn wait_for_coordinator(client: &mut RawClient, transactional_id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s(transactional_id)]);
        let ResponseKind::FindCoordinator(r) = client.request(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(request),
        ) else {
            panic!("wrong response type")
        };
        let code = r.coordinators[0].error_code;
        if code == 0 {
            return r.coordinators[0].node_id.0;
        }
        last = Some(code);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no transaction coordinator for {transactional_id} after 60 s (last FindCoordinator error {last:?})");
}

/// InitProducerId, asked again while the coordinator is not ready (as clients do: on a cluster, the broker
/// FindCoordinator named may not have applied the metadata that makes it the coordinator yet).
fn init_producer_id(client: &mut RawClient, transactional_id: &str) -> (i64, i16) {
    const RETRIABLE: [i16; 4] = [
        COORDINATOR_LOAD_IN_PROGRESS,
        COORDINATOR_NOT_AVAILABLE,
        NOT_COORDINATOR,
        CONCURRENT_TRANSACTIONS,
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(transactional_id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let ResponseKind::InitProducerId(r) = client.request(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(request),
        ) else {
            panic!("wrong response type")
        };
        if RETRIABLE.contains(&r.error_code) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(r.error_code, 0, "InitProducerId");
        return (r.producer_id.0, r.producer_epoch);
    }
}

/// AddPartitionsToTxn at `version` for one partition; the partition's error code.
fn add_partition(
    client: &mut RawClient,
    version: i16,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    topic: &str,
    partition: i32,
) -> i16 {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(transactional_id)))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(producer_epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![partition])]);
    let ResponseKind::AddPartitionsToTxn(r) = client.request(
        ApiKey::AddPartitionsToTxn,
        version,
        RequestKind::AddPartitionsToTxn(request),
    ) else {
        panic!("wrong response type")
    };
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end_txn(
    client: &mut RawClient,
    version: i16,
    transactional_id: &str,
    producer: (i64, i16),
    commit: bool,
) -> i16 {
    end_txn_continuing(client, version, transactional_id, producer, commit).0
}

/// EndTxn; its error code and (v5+) the producer id and epoch the producer continues with.
fn end_txn_continuing(
    client: &mut RawClient,
    version: i16,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    commit: bool,
) -> (i16, (i64, i16)) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_committed(commit);
    let ResponseKind::EndTxn(r) =
        client.request(ApiKey::EndTxn, version, RequestKind::EndTxn(request))
    else {
        panic!("wrong response type")
    };
    (r.error_code, (r.producer_id.0, r.producer_epoch))
}

/// WriteTxnMarkers (as a coordinator sends it) for one partition; the partition's error code.
fn write_marker(
    client: &mut RawClient,
    (producer_id, producer_epoch): (i64, i16),
    coordinator_epoch: i32,
    topic: &str,
    partition: i32,
) -> i16 {
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(true)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![partition])])]);
    let ResponseKind::WriteTxnMarkers(r) = client.request(
        ApiKey::WriteTxnMarkers,
        1,
        RequestKind::WriteTxnMarkers(request),
    ) else {
        panic!("wrong response type")
    };
    r.markers[0].topics[0].partitions[0].error_code
}

/// How a TxnOffsetCommit presents its group member: the group, generation and member id (-1 and "" outside a
/// group's membership).
struct Member<'a> {
    group: &'a str,
    generation: i32,
    id: &'a str,
}

/// TxnOffsetCommit at `version` of `offset` for `topic`-0 by `member`; the partition's error code.
fn txn_offset_commit(
    client: &mut RawClient,
    version: i16,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    member: Member,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_group_id(GroupId(s(member.group)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_generation_id(member.generation)
        .with_member_id(s(member.id))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let ResponseKind::TxnOffsetCommit(r) = client.request(
        ApiKey::TxnOffsetCommit,
        version,
        RequestKind::TxnOffsetCommit(request),
    ) else {
        panic!("wrong response type")
    };
    r.topics[0].partitions[0].error_code
}

/// The offset `group` has committed for `topic`-0 (-1: none).
fn committed_offset(client: &mut RawClient, group: &str, topic: &str) -> i64 {
    let r = common::raw::offset_fetch(client, group, topic, 5);
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

/// ListOffsets LATEST at `isolation_level` (0 read_uncommitted: the high watermark; 1 read_committed: the last
/// stable offset).
fn latest(client: &mut RawClient, topic: &str, partition: i32, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let ResponseKind::ListOffsets(r) =
        client.request(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(request))
    else {
        panic!("wrong response type")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets");
    p.offset
}

/// Produce (acks=all) of a transactional batch to partition 0 of `topic`; (error code, base offset).
fn produce_transactional(
    client: &mut RawClient,
    transactional_id: &str,
    topic: &str,
    records: Bytes,
) -> (i16, i64) {
    produce_transactional_to(client, transactional_id, topic, 0, records)
}

/// Produce (acks=all) of a transactional batch to `topic`-`partition`; (error code, base offset).
fn produce_transactional_to(
    client: &mut RawClient,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    produce_transactional_at(client, 8, transactional_id, topic, partition, records)
}

/// Produce (acks=all) at `version` of a transactional batch to `topic`-`partition`; (error code, base offset).
/// v12+ is transaction version 2: the partition joins the transaction with its first batch.
fn produce_transactional_at(
    client: &mut RawClient,
    version: i16,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(transactional_id))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) =
        client.request(ApiKey::Produce, version, RequestKind::Produce(request))
    else {
        panic!("wrong response type")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Sends a produce until its answer is not NOT_ENOUGH_REPLICAS, which a leader gives (as Kafka does) while it
/// cannot reach the transaction's coordinator yet, e.g. before it has applied the metadata that names it.
fn until_answered(mut produce: impl FnMut() -> i16) -> i16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let code = produce();
        if code != NOT_ENOUGH_REPLICAS || Instant::now() >= deadline {
            return code;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A transactional RecordBatch of `records` records from `(producer id, epoch)` starting at sequence 0.
fn transactional_batch(records: usize, producer: (i64, i16)) -> Bytes {
    transactional_batch_from(records, producer, 0)
}

/// A transactional RecordBatch of `records` records from `(producer id, epoch)` starting at `base_sequence`.
fn transactional_batch_from(
    records: usize,
    (producer_id, producer_epoch): (i64, i16),
    base_sequence: i32,
) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
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

/// Requests for a transactional id the coordinator never saw, a wrong producer id, and stale or future epochs
/// get Kafka's codes; markers of an older producer epoch or coordinator epoch write nothing. The open transaction
/// keeps the last stable offset where it began throughout, and its producer still commits it afterwards.
#[test]
fn bad_ids_epochs_and_markers_get_kafka_s_codes_and_change_nothing() {
    let broker = TestBroker::start();
    let topic = "txn-bad-input";
    broker.create_topic(topic, 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    wait_for_coordinator(&mut client, "bad-input");
    wait_for_coordinator(&mut client, "never-initialised");

    let nobody = (1_000_000, 0);
    assert_eq!(
        end_txn(&mut client, 3, "never-initialised", nobody, true),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        add_partition(&mut client, 3, "never-initialised", nobody, topic, 0),
        INVALID_PRODUCER_ID_MAPPING
    );

    // A second InitProducerId bumps the epoch: the first producer is a zombie.
    let (producer_id, zombie_epoch) = init_producer_id(&mut client, "bad-input");
    let (again, epoch) = init_producer_id(&mut client, "bad-input");
    assert_eq!((again, epoch), (producer_id, zombie_epoch + 1));
    let zombie = (producer_id, zombie_epoch);
    let current = (producer_id, epoch);

    assert_eq!(
        add_partition(&mut client, 3, "bad-input", zombie, topic, 0),
        PRODUCER_FENCED
    );
    assert_eq!(
        add_partition(&mut client, 1, "bad-input", zombie, topic, 0),
        INVALID_PRODUCER_EPOCH,
        "before v2, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(
        add_partition(&mut client, 3, "bad-input", current, topic, 0),
        0
    );
    let (code, base) = produce_transactional(
        &mut client,
        "bad-input",
        topic,
        transactional_batch(3, current),
    );
    assert_eq!((code, base), (0, 0));
    let open = |client: &mut RawClient| (latest(client, topic, 0, 1), latest(client, topic, 0, 0));
    assert_eq!(
        open(&mut client),
        (0, 3),
        "(last stable offset, high watermark) with the transaction open"
    );

    assert_eq!(
        end_txn(&mut client, 3, "bad-input", (producer_id + 1, epoch), true),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        end_txn(&mut client, 3, "bad-input", zombie, true),
        PRODUCER_FENCED
    );
    assert_eq!(
        end_txn(&mut client, 1, "bad-input", zombie, false),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        end_txn(&mut client, 3, "bad-input", (producer_id, epoch + 1), true),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        write_marker(&mut client, zombie, 0, topic, 0),
        INVALID_PRODUCER_EPOCH,
        "a marker of an older producer epoch"
    );
    assert_eq!(open(&mut client), (0, 3), "nothing changed");

    // A marker from a newer coordinator (epoch 7) ends the transaction; one from an older coordinator is fenced
    // and writes nothing; the producer's own EndTxn, whose coordinator is older still, finds it already ended.
    assert_eq!(write_marker(&mut client, current, 7, topic, 0), 0);
    assert_eq!(open(&mut client), (4, 4), "records and marker stable");
    assert_eq!(
        write_marker(&mut client, current, 3, topic, 0),
        TRANSACTION_COORDINATOR_FENCED
    );
    assert_eq!(open(&mut client), (4, 4), "the fenced marker wrote nothing");
    assert_eq!(end_txn(&mut client, 3, "bad-input", current, true), 0);
    assert_eq!(open(&mut client), (4, 4));
}

/// TxnOffsetCommit from a member of another generation, or an unknown member, is refused with Kafka's codes and
/// the refused offsets are not committed when the transaction commits.
#[test]
fn txn_offset_commit_of_another_generation_is_refused_and_not_committed() {
    let broker = TestBroker::start();
    let topic = "txn-offsets-input";
    broker.create_topic(topic, 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let group = "txn-generation-group";

    // One member in generation `generation` (the KIP-394 member-id round trip first).
    let join = |client: &mut RawClient, member_id: &str| {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
        let ResponseKind::JoinGroup(r) =
            client.request(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(request))
        else {
            panic!("wrong response type")
        };
        (r.error_code, r.member_id.to_string(), r.generation_id)
    };
    let (code, member, _) = join(&mut client, "");
    assert_eq!(code, MEMBER_ID_REQUIRED);
    let (code, member, generation) = join(&mut client, &member);
    assert_eq!(code, 0);
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"assignment"))]);
    let ResponseKind::SyncGroup(r) =
        client.request(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(request))
    else {
        panic!("wrong response type")
    };
    assert_eq!(r.error_code, 0);

    wait_for_coordinator(&mut client, "txn-generation");
    let producer = init_producer_id(&mut client, "txn-generation");
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s("txn-generation")))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(s(group)));
    let ResponseKind::AddOffsetsToTxn(r) = client.request(
        ApiKey::AddOffsetsToTxn,
        3,
        RequestKind::AddOffsetsToTxn(request),
    ) else {
        panic!("wrong response type")
    };
    assert_eq!(r.error_code, 0);

    let txn_commit = |client: &mut RawClient, generation: i32, id: &str| {
        let member = Member {
            group,
            generation,
            id,
        };
        txn_offset_commit(client, 3, "txn-generation", producer, member, topic, 42)
    };
    assert_eq!(
        txn_commit(&mut client, generation + 1, &member),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        txn_commit(&mut client, generation, "not-a-member"),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(end_txn(&mut client, 3, "txn-generation", producer, true), 0);

    assert_eq!(
        committed_offset(&mut client, group, topic),
        -1,
        "a refused transactional offset commit is not committed with its transaction"
    );
}

/// KIP-890's verification across brokers: a partition leader whose transaction coordinator runs on another broker
/// takes a transaction's first batch only once that coordinator (asked with AddPartitionsToTxn v4 `verify_only`)
/// confirms the partition is in the producer's ongoing transaction. A batch for a partition never added, and a
/// late batch after the transaction ended, are refused with INVALID_TXN_STATE and write nothing.
#[test]
fn a_leader_takes_a_transaction_s_first_batch_once_its_remote_coordinator_verifies_it() {
    let cluster = TestCluster::start(
        3,
        &[
            "controller.quorum.election.timeout.ms=500",
            "broker.heartbeat.interval.ms=200",
            "transaction.state.log.num.partitions=3",
        ],
    );
    let topic = "txn-verified";
    let (code, message, _) = create_topic(cluster.addr(1), topic, 6, 1, 30_000).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let id = "verified-across-brokers";
    let mut any = RawClient::connect(cluster.addr(1));
    let coordinator = wait_for_coordinator(&mut any, id);
    // A partition led by another broker than the coordinator.
    let (partition, leader) = wait_until(
        "a partition led away from the coordinator",
        Duration::from_secs(60),
        || {
            let request =
                kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s(topic)))),
                ]));
            let ResponseKind::Metadata(m) =
                any.request(ApiKey::Metadata, 9, RequestKind::Metadata(request))
            else {
                panic!("wrong response type")
            };
            m.topics[0]
                .partitions
                .iter()
                .find(|p| p.leader_id.0 >= 0 && p.leader_id.0 != coordinator)
                .map(|p| (p.partition_index, p.leader_id.0))
                .ok_or_else(|| {
                    format!(
                        "coordinator {coordinator}, partitions {:?}",
                        m.topics[0].partitions
                    )
                })
        },
    );
    let mut at_coordinator = RawClient::connect(cluster.addr(coordinator));
    let mut at_leader = RawClient::connect(cluster.addr(leader));
    let producer = init_producer_id(&mut at_coordinator, id);

    let produce = |client: &mut RawClient, sequence: i32| {
        until_answered(|| {
            produce_transactional_to(
                client,
                id,
                topic,
                partition,
                transactional_batch_from(3, producer, sequence),
            )
            .0
        })
    };
    assert_eq!(
        produce(&mut at_leader, 0),
        INVALID_TXN_STATE,
        "a batch for a partition never added to the transaction"
    );
    assert_eq!(
        latest(&mut at_leader, topic, partition, 0),
        0,
        "nothing written"
    );
    assert_eq!(
        add_partition(&mut at_coordinator, 3, id, producer, topic, partition),
        0
    );
    assert_eq!(
        produce(&mut at_leader, 0),
        0,
        "verified by the remote coordinator"
    );
    assert_eq!(
        produce(&mut at_leader, 3),
        0,
        "the transaction is open here: no check"
    );
    assert_eq!(
        (
            latest(&mut at_leader, topic, partition, 1),
            latest(&mut at_leader, topic, partition, 0)
        ),
        (0, 6)
    );
    assert_eq!(end_txn(&mut at_coordinator, 3, id, producer, true), 0);
    assert_eq!(
        latest(&mut at_leader, topic, partition, 1),
        7,
        "committed: records and marker stable"
    );
    assert_eq!(
        produce(&mut at_leader, 6),
        INVALID_TXN_STATE,
        "a late batch after its transaction ended"
    );
    assert_eq!(
        (
            latest(&mut at_leader, topic, partition, 1),
            latest(&mut at_leader, topic, partition, 0)
        ),
        (7, 7),
        "the late batch wrote nothing and opened no transaction"
    );

    // Transaction version 2: the leader adds the partition with the remote coordinator (AddPartitionsToTxn v5),
    // and after the epoch bump of EndTxn v5 a late batch of the ended transaction's epoch is fenced.
    let produce_v12 = |client: &mut RawClient, producer: (i64, i16), sequence: i32| {
        until_answered(|| {
            produce_transactional_at(
                client,
                12,
                id,
                topic,
                partition,
                transactional_batch_from(3, producer, sequence),
            )
            .0
        })
    };
    assert_eq!(
        produce_v12(&mut at_leader, producer, 6),
        0,
        "added with its first batch"
    );
    assert_eq!(latest(&mut at_leader, topic, partition, 1), 7, "open");
    let (code, bumped) = end_txn_continuing(&mut at_coordinator, 5, id, producer, true);
    assert_eq!((code, bumped), (0, (producer.0, producer.1 + 1)));
    assert_eq!(latest(&mut at_leader, topic, partition, 1), 11);
    assert_eq!(
        produce_v12(&mut at_leader, producer, 9),
        INVALID_PRODUCER_EPOCH,
        "a late batch of the ended transaction's epoch"
    );
    assert_eq!(produce_v12(&mut at_leader, bumped, 0), 0);
    assert_eq!(
        end_txn_continuing(&mut at_coordinator, 5, id, bumped, false),
        (0, (producer.0, producer.1 + 2))
    );
    assert_eq!(
        (
            latest(&mut at_leader, topic, partition, 1),
            latest(&mut at_leader, topic, partition, 0)
        ),
        (15, 15),
        "aborted: stable up to the high watermark"
    );
}

/// Transaction version 2 (KIP-890 part 2) on one broker: ApiVersions finalizes `transaction.version` 2; Produce
/// v12 and TxnOffsetCommit v5 add their partitions without AddPartitionsToTxn or AddOffsetsToTxn; EndTxn v5
/// ends each transaction with the next producer epoch and answers it (a retry gets the same answer); a late
/// write of the ended epoch is fenced; an abort with nothing open bumps the epoch too. Produce below v12 still
/// needs the partition added first.
#[test]
fn transaction_version_2_adds_partitions_implicitly_and_bumps_the_epoch_per_transaction() {
    let broker = TestBroker::start();
    let topic = "tv2";
    broker.create_topic(topic, 2, &[]);
    let mut client = RawClient::connect(broker.addr);
    let id = "tv2-producer";
    let group = "tv2-group";

    let ResponseKind::ApiVersions(versions) = client.request(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(
            kafka_protocol::messages::ApiVersionsRequest::default()
                .with_client_software_name(s("strom-test"))
                .with_client_software_version(s("1")),
        ),
    ) else {
        panic!("wrong response type")
    };
    let finalized: Vec<(String, i16)> = versions
        .finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.max_version_level))
        .collect();
    assert_eq!(finalized, vec![("transaction.version".to_string(), 2)]);
    assert!(versions.finalized_features_epoch >= 0);

    wait_for_coordinator(&mut client, id);
    let producer = init_producer_id(&mut client, id);
    assert_eq!(
        produce_transactional_at(
            &mut client,
            11,
            id,
            topic,
            1,
            transactional_batch(2, producer)
        )
        .0,
        INVALID_TXN_STATE,
        "before v12 a partition must be added first"
    );
    assert_eq!(
        produce_transactional_at(
            &mut client,
            12,
            id,
            topic,
            0,
            transactional_batch(4, producer)
        )
        .0,
        0
    );
    let txn_commit = |client: &mut RawClient, producer: (i64, i16), offset: i64| {
        let outside = Member {
            group,
            generation: -1,
            id: "",
        };
        txn_offset_commit(client, 5, id, producer, outside, topic, offset)
    };
    assert_eq!(txn_commit(&mut client, producer, 42), 0);
    assert_eq!(latest(&mut client, topic, 0, 1), 0, "open");

    let (code, bumped) = end_txn_continuing(&mut client, 5, id, producer, true);
    assert_eq!((code, bumped), (0, (producer.0, producer.1 + 1)));
    assert_eq!(
        end_txn_continuing(&mut client, 5, id, producer, true),
        (0, bumped),
        "a retry of the EndTxn gets the same answer"
    );
    assert_eq!(
        (
            latest(&mut client, topic, 0, 1),
            latest(&mut client, topic, 0, 0)
        ),
        (5, 5),
        "committed: four records and the marker"
    );
    assert_eq!(committed_offset(&mut client, group, topic), 42);

    assert_eq!(
        produce_transactional_at(
            &mut client,
            12,
            id,
            topic,
            0,
            transactional_batch_from(1, producer, 4)
        )
        .0,
        INVALID_PRODUCER_EPOCH,
        "a late write of the ended transaction's epoch"
    );
    assert_eq!(
        txn_commit(&mut client, producer, 99),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(latest(&mut client, topic, 0, 0), 5, "nothing written");

    // The next transaction runs at the bumped epoch, its sequences from 0; aborted, it bumps again.
    assert_eq!(
        produce_transactional_at(
            &mut client,
            12,
            id,
            topic,
            0,
            transactional_batch(2, bumped)
        )
        .0,
        0
    );
    let (code, aborted) = end_txn_continuing(&mut client, 5, id, bumped, false);
    assert_eq!((code, aborted), (0, (producer.0, producer.1 + 2)));
    assert_eq!(
        (
            latest(&mut client, topic, 0, 1),
            latest(&mut client, topic, 0, 0)
        ),
        (8, 8)
    );
    let (code, empty) = end_txn_continuing(&mut client, 5, id, aborted, false);
    assert_eq!(
        (code, empty),
        (0, (producer.0, producer.1 + 3)),
        "an abort with nothing open bumps the epoch too"
    );
}
