//! Transactions with librdkafka's transactional producer against the broker's coordinator (issue 12):
//! committed transactions are read by read_committed consumers, aborted ones never; a second producer with the
//! same transactional.id fences the first, whose open transaction is aborted.

mod common;

use std::time::Duration;

use common::{client_config, TestBroker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

const TOPIC: &str = "tx-out";
const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(bootstrap: &str, transactional_id: &str) -> BaseProducer {
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer
}

fn send(producer: &BaseProducer, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(v))
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
}

fn batch(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every value in the topic at `isolation`, once `count` arrived (read from the beginning).
fn read(bootstrap: &str, isolation: &str, count: usize) -> Vec<String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("check-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{isolation}: {} of {count} read: {out:?}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_transactions_are_read_aborted_and_fenced_ones_never() {
    let broker = TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
    })
    .await;
    let bootstrap = broker.bootstrap.clone();
    broker.create_topic(TOPIC, 2).await;

    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let p1 = producer(&b, "tx-1");
        p1.begin_transaction().unwrap();
        send(&p1, &batch("committed-a", 10));
        p1.commit_transaction(TIMEOUT).unwrap();
        p1.begin_transaction().unwrap();
        send(&p1, &batch("aborted", 5));
        p1.abort_transaction(TIMEOUT).unwrap();
        p1.begin_transaction().unwrap();
        send(&p1, &batch("committed-b", 3));
        p1.commit_transaction(TIMEOUT).unwrap();

        // A zombie: p1 leaves a transaction open, p2 takes over the transactional id.
        p1.begin_transaction().unwrap();
        send(&p1, &batch("zombie", 2));
        let p2 = producer(&b, "tx-1");
        let fenced = p1.commit_transaction(TIMEOUT);
        assert!(fenced.is_err(), "the old producer is fenced");
        p2.begin_transaction().unwrap();
        send(&p2, &batch("successor", 4));
        p2.commit_transaction(TIMEOUT).unwrap();
    })
    .await
    .unwrap();

    let mut expected: Vec<String> = [
        batch("committed-a", 10),
        batch("committed-b", 3),
        batch("successor", 4),
    ]
    .concat();
    expected.sort();
    let b = bootstrap.clone();
    let committed = tokio::task::spawn_blocking(move || read(&b, "read_committed", 17))
        .await
        .unwrap();
    assert_eq!(committed, expected);
    // read_uncommitted sees the aborted and the zombie's records too.
    let b = bootstrap.clone();
    let all = tokio::task::spawn_blocking(move || read(&b, "read_uncommitted", 24))
        .await
        .unwrap();
    assert_eq!(all.iter().filter(|v| v.starts_with("aborted")).count(), 5);
    assert_eq!(all.iter().filter(|v| v.starts_with("zombie")).count(), 2);
    broker.stop().await;
}

/// Consume-transform-produce: a transactional producer sends its consumer's offsets to the transaction. A
/// committed transaction moves the group's committed offsets with the outputs; an aborted one moves neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_sent_to_a_transaction_are_committed_with_it_and_dropped_with_an_abort() {
    use rdkafka::consumer::CommitMode;
    let broker = TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
        c.group_initial_rebalance_delay_ms = 0;
    })
    .await;
    let bootstrap = broker.bootstrap.clone();
    for topic in ["ctp-in", TOPIC] {
        broker.create_topic(topic, 2).await;
    }
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let plain: BaseProducer = client_config(&b).create().unwrap();
        for i in 0..20 {
            let key = format!("k{i}");
            let value = format!("in-{i}");
            plain
                .send(BaseRecord::to("ctp-in").key(&key).payload(&value))
                .unwrap();
        }
        plain.flush(TIMEOUT).unwrap();

        let consumer: BaseConsumer = client_config(&b)
            .set("group.id", "ctp")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("ctp-in", p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut inputs = Vec::new();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while inputs.len() < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "read {}",
                inputs.len()
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                inputs.push((m.partition(), m.offset()));
            }
        }
        let producer = producer(&b, "ctp-tx");
        let offsets = |upto: &[(i32, i64)]| {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (p, next) in upto {
                tpl.add_partition_offset("ctp-in", *p, rdkafka::Offset::Offset(*next))
                    .unwrap();
            }
            tpl
        };
        let metadata = consumer.group_metadata().unwrap();
        // An aborted transaction: neither its output nor its offsets.
        producer.begin_transaction().unwrap();
        send(&producer, &batch("out-aborted", 3));
        producer
            .send_offsets_to_transaction(&offsets(&[(0, 3), (1, 3)]), &metadata, TIMEOUT)
            .unwrap();
        producer.abort_transaction(TIMEOUT).unwrap();
        // A committed one: both.
        producer.begin_transaction().unwrap();
        send(&producer, &batch("out-committed", 5));
        producer
            .send_offsets_to_transaction(&offsets(&[(0, 5), (1, 7)]), &metadata, TIMEOUT)
            .unwrap();
        producer.commit_transaction(TIMEOUT).unwrap();

        let committed = consumer
            .committed_offsets(offsets(&[(0, 0), (1, 0)]), TIMEOUT)
            .unwrap();
        let got: Vec<(i32, rdkafka::Offset)> = committed
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, rdkafka::Offset::Offset(5)),
                (1, rdkafka::Offset::Offset(7))
            ]
        );
        // Committing plainly still works beside the transactional commits.
        consumer
            .commit(&offsets(&[(0, 6), (1, 7)]), CommitMode::Sync)
            .unwrap();
    })
    .await
    .unwrap();
    let b = bootstrap.clone();
    let outputs = tokio::task::spawn_blocking(move || read(&b, "read_committed", 5))
        .await
        .unwrap();
    assert!(
        outputs.iter().all(|v| v.starts_with("out-committed")),
        "{outputs:?}"
    );
    broker.stop().await;
}

/// A producer that dies with its transaction open holds read_committed readers at the last stable offset until
/// `transaction.timeout.ms` passes; the coordinator then aborts it with the next epoch, the readers go on past
/// it without its records, and the dead producer's epoch is fenced. Driven with raw requests, so "dies" is
/// simply: sends nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_left_open_blocks_read_committed_until_it_times_out_and_is_aborted() {
    use bytes::{Bytes, BytesMut};
    use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, TopicPartition};
    use strom_client::{Connection, ConnectionConfig};
    use strom_protocol::kafka::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use strom_protocol::kafka::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use strom_protocol::kafka::messages::{
        AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
        ProduceRequest, ProducerId, TopicName, TransactionalId,
    };
    use strom_protocol::kafka::protocol::StrBytes;
    use strom_protocol::kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const TXN_TIMEOUT_MS: i32 = 3_000;
    let broker = TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 1;
        c.transaction_abort_timed_out_transaction_cleanup_interval_ms = 100;
    })
    .await;
    let bootstrap = broker.bootstrap.clone();
    broker.create_topic(TOPIC, 1).await;
    let conn = Connection::connect(&bootstrap, ConnectionConfig::default())
        .await
        .unwrap();
    let id = TransactionalId(StrBytes::from_static_str("abandoned"));
    let found = conn
        .request(
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![StrBytes::from_static_str("abandoned")]),
        )
        .await
        .unwrap();
    assert_eq!(found.coordinators[0].error_code, 0);
    // The coordinator loads its new partition just after the topic exists: retried as a client would.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let init = loop {
        let r = conn
            .request(
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(id.clone()))
                    .with_transaction_timeout_ms(TXN_TIMEOUT_MS)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await
            .unwrap();
        if r.error_code == 0 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "InitProducerId: {}",
            r.error_code
        );
        // A client's retry backoff.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let added = conn
        .request(
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id.clone())
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![0])]),
        )
        .await
        .unwrap();
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: pid.0,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: now,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"never-committed")),
        headers: Default::default(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let produce_request = ProduceRequest::default()
        .with_transactional_id(Some(id.clone()))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let produced = conn.request(&produce_request).await.unwrap();
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    // A plain record after it, from another producer.
    let plain = strom_client::Producer::new(strom_client::ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    plain
        .send(strom_client::ProducerRecord::new(TOPIC).value("after"))
        .await
        .unwrap()
        .await
        .unwrap();
    let partition = broker
        .state()
        .topics
        .get(TOPIC)
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    assert_eq!(partition.high_watermark(), 2);
    assert_eq!(
        partition.last_stable_offset().unwrap(),
        0,
        "held at the open transaction"
    );

    // A read_committed reader gets "after" only once the coordinator aborted the transaction.
    let mut cc = ConsumerConfig::new(&bootstrap);
    cc.isolation_level = IsolationLevel::ReadCommitted;
    cc.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(cc).await.unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign([tp.clone()]).await.unwrap();
    consumer.seek(&tp, 0).unwrap();
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while read.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transaction was never aborted"
        );
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            read.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(read, ["after"]);
    assert_eq!(
        partition.last_stable_offset().unwrap(),
        3,
        "the abort marker at 2"
    );

    // The dead producer's epoch is fenced.
    let ended = conn
        .request(
            &EndTxnRequest::default()
                .with_transactional_id(id.clone())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(true),
        )
        .await
        .unwrap();
    assert_eq!(ended.error_code, 90, "PRODUCER_FENCED");
    // So is a late write of its transaction: refused, nothing appended.
    let late = conn.request(&produce_request).await.unwrap();
    assert_eq!(
        late.responses[0].partition_responses[0].error_code, 47,
        "INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(partition.high_watermark(), 3);
    broker.stop().await;
}
