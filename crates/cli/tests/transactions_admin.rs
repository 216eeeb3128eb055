//! The transaction admin APIs (issue 12, KIP-664) against real brokers, with a transaction librdkafka's
//! transactional producer holds open: DescribeTransactions, ListTransactions (v0, v1's duration filter and v2's id pattern) and
//! DescribeProducers with raw requests, errors included; `strom transactions list|describe|producers` and the
//! last stable offset in `strom topic describe`; and in a two-broker cluster the answers of the broker that does
//! not coordinate the id or holds no replica, and of a follower.

mod common;

use std::time::Duration;

use common::cluster::{create_topic, metadata, request, strom, wait_until, TestCluster};
use common::raw::RawClient;
use common::{client_config, TestBroker};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::PartitionResponse;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeProducersRequest, DescribeTransactionsRequest,
    FindCoordinatorRequest, ListOffsetsRequest, ListTransactionsRequest, ListTransactionsResponse,
    ProducerId, RequestKind, ResponseKind, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(60);
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_COORDINATOR: i16 = 16;
const INVALID_REQUEST: i16 = 42;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
const INVALID_REGULAR_EXPRESSION: i16 = 128;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn now_ms() -> i64 {
    std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() as i64
}

/// A transactional producer with a transaction open: `counts[p]` records written to partition `p` of `topic`.
fn open_transaction(bootstrap: &str, id: &str, topic: &str, counts: &[usize]) -> BaseProducer {
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    for (partition, &n) in counts.iter().enumerate() {
        for i in 0..n {
            let value = format!("{id}-{partition}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(partition as i32)
                        .payload(&value),
                )
                .unwrap();
        }
    }
    producer.flush(TIMEOUT).unwrap();
    producer
}

fn describe_transactions(client: &mut RawClient, ids: &[&str]) -> Vec<TransactionState> {
    let body = DescribeTransactionsRequest::default()
        .with_transactional_ids(ids.iter().map(|i| TransactionalId(sb(i))).collect());
    let ResponseKind::DescribeTransactions(r) = client.request(
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(body),
    ) else {
        panic!("not a DescribeTransactions response")
    };
    assert_eq!(r.transaction_states.len(), ids.len());
    r.transaction_states
}

fn list_transactions(
    client: &mut RawClient,
    version: i16,
    states: &[&str],
    producer_ids: &[i64],
    duration: i64,
) -> ListTransactionsResponse {
    let body = ListTransactionsRequest::default()
        .with_state_filters(states.iter().map(|s| sb(s)).collect())
        .with_producer_id_filters(producer_ids.iter().map(|p| ProducerId(*p)).collect())
        .with_duration_filter(duration);
    let ResponseKind::ListTransactions(r) = client.request(
        ApiKey::ListTransactions,
        version,
        RequestKind::ListTransactions(body),
    ) else {
        panic!("not a ListTransactions response")
    };
    r
}

/// (transactional id, producer id, state) of each listed transaction.
fn listed(r: &ListTransactionsResponse) -> Vec<(String, i64, String)> {
    assert_eq!(r.error_code, 0);
    r.transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.producer_id.0,
                t.transaction_state.to_string(),
            )
        })
        .collect()
}

fn describe_producers_body(topics: &[(&str, &[i32])]) -> RequestKind {
    RequestKind::DescribeProducers(
        DescribeProducersRequest::default().with_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    TopicRequest::default()
                        .with_name(TopicName(sb(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect(),
        ),
    )
}

/// Per topic, the partition responses, in request order.
fn describe_producers(
    client: &mut RawClient,
    topics: &[(&str, &[i32])],
) -> Vec<Vec<PartitionResponse>> {
    let ResponseKind::DescribeProducers(r) = client.request(
        ApiKey::DescribeProducers,
        0,
        describe_producers_body(topics),
    ) else {
        panic!("not a DescribeProducers response")
    };
    r.topics.into_iter().map(|t| t.partitions).collect()
}

/// ListOffsets latest for `topic`-`partition`, at read_committed (the LSO) or read_uncommitted (the HW).
fn latest(client: &mut RawClient, topic: &str, partition: i32, read_committed: bool) -> i64 {
    let body = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(i8::from(read_committed))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let ResponseKind::ListOffsets(r) =
        client.request(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body))
    else {
        panic!("not a ListOffsets response")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[test]
fn an_open_transaction_is_described_listed_and_its_producer_shown_then_committed() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);

    // Before any transactional id was used there is no `__transaction_state`: no coordinator here, as Kafka says.
    let before = describe_transactions(&mut client, &["early"]);
    assert_eq!(before[0].error_code, NOT_COORDINATOR);
    assert_eq!(before[0].transactional_id.0.as_str(), "early");
    for v in [0, 1] {
        assert!(listed(&list_transactions(&mut client, v, &[], &[], -1)).is_empty());
    }
    assert_eq!(
        describe_transactions(&mut client, &[""])[0].error_code,
        INVALID_REQUEST
    );

    broker.create_topic("txa", 2, &[]);
    let started = now_ms();
    let producer = open_transaction(&broker.bootstrap(), "open-tx", "txa", &[3, 2]);
    let flushed = now_ms();

    let described = describe_transactions(&mut client, &["open-tx", "never-used"]);
    let d = &described[0];
    assert_eq!(d.error_code, 0);
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    let pid = d.producer_id.0;
    assert!(pid >= 0);
    assert_eq!(d.producer_epoch, 0);
    assert_eq!(d.transaction_timeout_ms, 60_000);
    assert!(
        (started..=flushed).contains(&d.transaction_start_time_ms),
        "{} not in {started}..={flushed}",
        d.transaction_start_time_ms
    );
    assert_eq!(d.topics.len(), 1);
    assert_eq!(d.topics[0].topic.0.as_str(), "txa");
    assert_eq!(d.topics[0].partitions, vec![0, 1]);
    assert_eq!(described[1].error_code, TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(described[1].transactional_id.0.as_str(), "never-used");

    // Filters: known states, unknown ones (echoed, matching nothing), producer ids.
    let ongoing = vec![("open-tx".to_string(), pid, "Ongoing".to_string())];
    assert_eq!(
        listed(&list_transactions(&mut client, 0, &[], &[], -1)),
        ongoing
    );
    assert_eq!(
        listed(&list_transactions(&mut client, 0, &["Ongoing"], &[], -1)),
        ongoing
    );
    let r = list_transactions(&mut client, 0, &["CompleteCommit"], &[], -1);
    assert!(listed(&r).is_empty() && r.unknown_state_filters.is_empty());
    let r = list_transactions(&mut client, 0, &["Bogus"], &[], -1);
    assert!(listed(&r).is_empty(), "an unknown state matches nothing");
    assert_eq!(r.unknown_state_filters, vec![sb("Bogus")]);
    let r = list_transactions(&mut client, 0, &["Bogus", "Ongoing"], &[], -1);
    assert_eq!(listed(&r), ongoing);
    assert_eq!(r.unknown_state_filters, vec![sb("Bogus")]);
    let r = list_transactions(&mut client, 0, &["PrepareEpochFence"], &[], -1);
    assert!(
        listed(&r).is_empty() && r.unknown_state_filters.is_empty(),
        "one of Kafka's states"
    );
    assert_eq!(
        listed(&list_transactions(&mut client, 0, &[], &[pid], -1)),
        ongoing
    );
    assert!(listed(&list_transactions(&mut client, 0, &[], &[pid + 1], -1)).is_empty());
    // v1: only transactions running longer than the duration.
    assert!(listed(&list_transactions(&mut client, 1, &[], &[], 3_600_000)).is_empty());
    wait_until("the transaction to run longer than 0 ms", TIMEOUT, || {
        let got = listed(&list_transactions(&mut client, 1, &[], &[], 0));
        if got == ongoing {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    // v2 (KIP-1152): a regular expression the whole id matches; empty is no filter; one that does not compile is
    // INVALID_REGULAR_EXPRESSION.
    let by_pattern = |client: &mut RawClient, pattern: &str| {
        let body = ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(Some(sb(pattern)));
        let ResponseKind::ListTransactions(r) = client.request(
            ApiKey::ListTransactions,
            2,
            RequestKind::ListTransactions(body),
        ) else {
            panic!("not a ListTransactions response")
        };
        r
    };
    assert_eq!(listed(&by_pattern(&mut client, "open-.*")), ongoing);
    assert_eq!(listed(&by_pattern(&mut client, "")), ongoing);
    assert!(
        listed(&by_pattern(&mut client, "open")).is_empty(),
        "the whole id must match"
    );
    assert!(listed(&by_pattern(&mut client, "other-.*")).is_empty());
    assert_eq!(
        by_pattern(&mut client, "open-(").error_code,
        INVALID_REGULAR_EXPRESSION
    );

    // The producer on each partition: sequence, time, the open transaction from offset 0, no marker yet.
    let partitions = describe_producers(&mut client, &[("txa", &[0, 1, 5]), ("nope", &[0])]);
    for (p, last_sequence) in [(0, 2), (1, 1)] {
        let r = &partitions[0][p];
        assert_eq!((r.partition_index, r.error_code), (p as i32, 0));
        assert_eq!(r.active_producers.len(), 1, "{r:?}");
        let s = &r.active_producers[0];
        assert_eq!(s.producer_id.0, pid);
        assert_eq!(s.producer_epoch, 0);
        assert_eq!(s.last_sequence, last_sequence);
        assert!(
            (started..=flushed).contains(&s.last_timestamp),
            "{}",
            s.last_timestamp
        );
        assert_eq!(s.coordinator_epoch, -1);
        assert_eq!(s.current_txn_start_offset, 0);
    }
    assert_eq!(
        (
            partitions[0][2].partition_index,
            partitions[0][2].error_code
        ),
        (5, UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert_eq!(partitions[1][0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(
        latest(&mut client, "txa", 0, true),
        0,
        "held by the open transaction"
    );
    assert_eq!(latest(&mut client, "txa", 0, false), 3);

    producer.commit_transaction(TIMEOUT).unwrap();
    wait_until("the commit to complete", TIMEOUT, || {
        let d = describe_transactions(&mut client, &["open-tx"]).remove(0);
        match d.transaction_state.as_str() {
            "CompleteCommit" => Ok(d),
            other => Err(other.to_string()),
        }
    });
    assert_eq!(
        listed(&list_transactions(
            &mut client,
            0,
            &["CompleteCommit"],
            &[],
            -1
        )),
        vec![("open-tx".to_string(), pid, "CompleteCommit".to_string())]
    );
    assert!(listed(&list_transactions(&mut client, 0, &["Ongoing"], &[], -1)).is_empty());
    let partitions = describe_producers(&mut client, &[("txa", &[0])]);
    let s = &partitions[0][0].active_producers[0];
    assert_eq!(s.current_txn_start_offset, -1, "no transaction open");
    assert!(
        s.coordinator_epoch >= 0,
        "the marker's: {}",
        s.coordinator_epoch
    );
    assert_eq!(s.last_sequence, 2);
    // The marker follows the three records; nothing holds the LSO back any more.
    assert_eq!(latest(&mut client, "txa", 0, true), 4);
    assert_eq!(latest(&mut client, "txa", 0, false), 4);
}

/// Runs `strom --brokers <bootstrap> args`; (exit code, stdout, stderr).
fn run(bootstrap: &str, args: &[&str]) -> (i32, String, String) {
    let out = strom(bootstrap, args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[track_caller]
fn ok(bootstrap: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(bootstrap, args);
    assert_eq!(code, 0, "strom {args:?} failed: {stderr}");
    stdout
}

#[track_caller]
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(bootstrap, args);
    assert_eq!(code, 1, "strom {args:?} should fail; stdout: {stdout}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[track_caller]
fn json_of(bootstrap: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok(bootstrap, &all)).expect("valid JSON")
}

/// The table's rows (header first), cells split on runs of spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn strom_transactions_commands_and_the_lso_in_topic_describe() {
    let broker = TestBroker::start();
    let b = &broker.bootstrap();
    assert_eq!(
        ok(b, &["transactions", "list"]),
        "No transaction matches.\n"
    );
    let err = fails(b, &["transactions", "describe", "nobody"]);
    assert!(
        err.contains("transactional id 'nobody'")
            && err.contains("TRANSACTIONAL_ID_NOT_FOUND (105)"),
        "{err}"
    );

    broker.create_topic("cli-tx", 2, &[]);
    let started = now_ms();
    let producer = open_transaction(b, "cli-open", "cli-tx", &[3, 2]);
    let pid = json_of(b, &["transactions", "list"])[0]["producer_id"]
        .as_i64()
        .unwrap();

    assert_eq!(
        rows(&ok(b, &["transactions", "list"])),
        [
            vec!["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"],
            vec!["cli-open", "1", &pid.to_string(), "Ongoing"],
        ]
    );
    assert_eq!(
        json_of(b, &["transactions", "list", "--state", "Ongoing"]),
        json!([{"transactional_id": "cli-open", "coordinator": 1, "producer_id": pid, "state": "Ongoing"}])
    );
    assert_eq!(
        ok(b, &["transactions", "list", "--state", "CompleteCommit"]),
        "No transaction matches.\n"
    );
    assert_eq!(
        json_of(
            b,
            &[
                "transactions",
                "list",
                "--producer-id",
                &(pid + 1).to_string()
            ]
        ),
        json!([])
    );
    assert_eq!(
        json_of(
            b,
            &["transactions", "list", "--producer-id", &pid.to_string()]
        )[0]["transactional_id"],
        "cli-open"
    );
    assert_eq!(
        json_of(b, &["transactions", "list", "--duration-filter", "3600000"]),
        json!([])
    );
    assert_eq!(
        json_of(
            b,
            &[
                "transactions",
                "list",
                "--transactional-id-pattern",
                "cli-.*"
            ]
        )[0]["transactional_id"],
        "cli-open"
    );
    assert_eq!(
        json_of(
            b,
            &["transactions", "list", "--transactional-id-pattern", "cli"]
        ),
        json!([])
    );
    let err = fails(b, &["transactions", "list", "--state", "Bogus"]);
    assert!(err.contains("unknown transaction state 'Bogus'"), "{err}");
    let err = fails(
        b,
        &[
            "transactions",
            "list",
            "--transactional-id-pattern",
            "cli-(",
        ],
    );
    assert!(err.contains("INVALID_REGULAR_EXPRESSION"), "{err}");

    let described = json_of(b, &["transactions", "describe", "cli-open"]);
    let start = described[0]["start_time_ms"].as_i64().unwrap();
    assert!(start >= started && start <= now_ms(), "{described}");
    assert_eq!(
        described,
        json!([{
            "transactional_id": "cli-open",
            "coordinator": 1,
            "state": "Ongoing",
            "producer_id": pid,
            "producer_epoch": 0,
            "timeout_ms": 60000,
            "start_time_ms": start,
            "partitions": [{"topic": "cli-tx", "partitions": [0, 1]}],
        }])
    );
    let table = rows(&ok(b, &["transactions", "describe", "cli-open"]));
    assert_eq!(
        table[0],
        [
            "TRANSACTIONAL-ID",
            "COORDINATOR",
            "PRODUCER-ID",
            "EPOCH",
            "STATE",
            "TIMEOUT-MS",
            "START-TIME",
            "DURATION-MS",
            "PARTITIONS"
        ]
    );
    assert_eq!(
        table[1][..6],
        ["cli-open", "1", &pid.to_string(), "0", "Ongoing", "60000"]
    );
    assert!(table[1][7].parse::<i64>().unwrap() >= 0, "{table:?}");
    assert_eq!(table[1][8], "cli-tx:0,1");
    // One id found, one not: the found one is printed, the command fails naming the other.
    let (code, stdout, stderr) = run(b, &["transactions", "describe", "cli-open", "ghost"]);
    assert_eq!(code, 1);
    assert_eq!(rows(&stdout).len(), 2, "{stdout}");
    assert!(
        stderr.contains("'ghost'") && stderr.contains("(105)"),
        "{stderr}"
    );

    let producers = json_of(b, &["transactions", "producers", "cli-tx"]);
    let rows_of = |v: &Value| v.as_array().unwrap().clone();
    let all = rows_of(&producers);
    assert_eq!(all.len(), 2, "{producers}");
    for (row, (partition, last_sequence)) in all.iter().zip([(0, 2), (1, 1)]) {
        let ts = row["last_timestamp"].as_i64().unwrap();
        assert!(ts >= started, "{row}");
        assert_eq!(
            row,
            &json!({
                "topic": "cli-tx",
                "partition": partition,
                "producer_id": pid,
                "producer_epoch": 0,
                "last_sequence": last_sequence,
                "last_timestamp": ts,
                "coordinator_epoch": null,
                "current_txn_start_offset": 0,
            })
        );
    }
    let one = json_of(
        b,
        &["transactions", "producers", "cli-tx", "--partition", "1"],
    );
    assert_eq!(rows_of(&one).len(), 1);
    assert_eq!(one[0]["partition"], 1);
    let table = rows(&ok(
        b,
        &["transactions", "producers", "cli-tx", "--partition", "0"],
    ));
    assert_eq!(
        table[0],
        [
            "TOPIC",
            "PARTITION",
            "PRODUCER-ID",
            "EPOCH",
            "LAST-SEQUENCE",
            "LAST-TIMESTAMP",
            "COORDINATOR-EPOCH",
            "TXN-START-OFFSET"
        ]
    );
    assert_eq!(table[1][..5], ["cli-tx", "0", &pid.to_string(), "0", "2"]);
    assert_eq!(table[1][6..], ["-", "0"]);
    let err = fails(b, &["transactions", "producers", "nope"]);
    assert!(err.contains("'nope'"), "{err}");
    let err = fails(
        b,
        &["transactions", "producers", "cli-tx", "--partition", "9"],
    );
    assert!(
        err.contains("cli-tx-9") && err.contains("UNKNOWN_TOPIC_OR_PARTITION (3)"),
        "{err}"
    );

    // The open transaction holds partition 0's last stable offset at its first record.
    let offsets = |v: &Value, p: usize| {
        (
            v["partitions"][p]["high_watermark"].as_i64(),
            v["partitions"][p]["last_stable_offset"].as_i64(),
        )
    };
    let topic = json_of(b, &["topic", "describe", "cli-tx"]);
    assert_eq!(offsets(&topic, 0), (Some(3), Some(0)), "{topic}");
    assert_eq!(offsets(&topic, 1), (Some(2), Some(0)), "{topic}");
    let table = rows(&ok(b, &["topic", "describe", "cli-tx"]));
    assert_eq!(
        table[2][..5],
        [
            "PARTITION",
            "LEADER",
            "EPOCH",
            "HIGH-WATERMARK",
            "LAST-STABLE-OFFSET"
        ]
    );
    assert_eq!(table[3][..5], ["0", "1", "0", "3", "0"]);

    producer.commit_transaction(TIMEOUT).unwrap();
    wait_until("the commit to complete", TIMEOUT, || {
        let d = json_of(b, &["transactions", "describe", "cli-open"]);
        if d[0]["state"] == "CompleteCommit" {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
    let topic = json_of(b, &["topic", "describe", "cli-tx"]);
    assert_eq!(offsets(&topic, 0), (Some(4), Some(4)), "{topic}");
    assert_eq!(offsets(&topic, 1), (Some(3), Some(3)), "{topic}");
    let producers = json_of(
        b,
        &["transactions", "producers", "cli-tx", "--partition", "0"],
    );
    assert_eq!(producers[0]["current_txn_start_offset"], Value::Null);
    assert!(
        producers[0]["coordinator_epoch"].as_i64().unwrap() >= 0,
        "{producers}"
    );
    let table = rows(&ok(b, &["transactions", "describe", "cli-open"]));
    assert_eq!(table[1][4], "CompleteCommit");
    assert_eq!(
        table[1][7], "-",
        "a complete transaction has no running duration"
    );
}

/// The broker FindCoordinator (v4) names for transactional id `id`, asked of `addr`.
fn transaction_coordinator(addr: std::net::SocketAddr, id: &str) -> Result<i32, String> {
    let body = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![sb(id)]);
    let ResponseKind::FindCoordinator(r) = request(
        addr,
        ApiKey::FindCoordinator,
        4,
        RequestKind::FindCoordinator(body),
        Duration::from_secs(20),
    )?
    else {
        return Err("not a FindCoordinator response".into());
    };
    let c = r.coordinators.first().ok_or("no coordinator")?;
    match c.error_code {
        0 => Ok(c.node_id.0),
        code => Err(format!("FindCoordinator error {code}")),
    }
}

#[test]
fn in_a_cluster_only_the_coordinator_describes_and_every_replica_shows_producers() {
    let cluster = TestCluster::start(
        2,
        &[
            "controller.quorum.election.timeout.ms=500",
            "broker.heartbeat.interval.ms=200",
            "transaction.state.log.num.partitions=2",
            "offsets.topic.num.partitions=2",
        ],
    );
    // "spread": one partition per broker, no copies; "mirrored": one partition on both brokers.
    for (topic, partitions, rf) in [("spread", 2, 1), ("mirrored", 1, 2)] {
        let (code, message, _) =
            create_topic(cluster.addr(1), topic, partitions, rf, 30_000).unwrap();
        assert_eq!(code, 0, "{topic}: {message:?}");
    }
    let view = wait_until("every partition led and in sync", TIMEOUT, || {
        let view = metadata(cluster.addr(1))?;
        let ready = ["spread", "mirrored"].iter().all(|t| {
            view.topics.get(*t).is_some_and(|t| {
                t.partitions
                    .values()
                    .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
            })
        });
        if ready {
            Ok(view)
        } else {
            Err(format!("{:?}", view.topics))
        }
    });
    let spread = view.topic("spread").partitions.clone();
    let mirrored_leader = view.topic("mirrored").partitions[&0].leader;

    let bootstrap = cluster.bootstrap(1);
    let producer: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", "c-tx")
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    for (topic, partition) in [("spread", 0), ("spread", 1), ("mirrored", 0)] {
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload("v"),
            )
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();

    let coordinator = transaction_coordinator(cluster.addr(1), "c-tx").unwrap();
    let other = if coordinator == 1 { 2 } else { 1 };
    let mut at_coordinator = RawClient::connect(cluster.addr(coordinator));
    let mut at_other = RawClient::connect(cluster.addr(other));
    let d = describe_transactions(&mut at_coordinator, &["c-tx"]).remove(0);
    assert_eq!((d.error_code, d.transaction_state.as_str()), (0, "Ongoing"));
    let pid = d.producer_id.0;
    assert_eq!(
        describe_transactions(&mut at_other, &["c-tx"])[0].error_code,
        NOT_COORDINATOR
    );
    assert_eq!(
        listed(&list_transactions(&mut at_coordinator, 1, &[], &[], -1)),
        vec![("c-tx".to_string(), pid, "Ongoing".to_string())]
    );
    assert!(
        listed(&list_transactions(&mut at_other, 1, &[], &[], -1)).is_empty(),
        "each broker lists the ids it coordinates"
    );

    // Asked of each broker: its own partition of "spread" answers, the other's is not here.
    for broker in [1, 2] {
        let mut client = RawClient::connect(cluster.addr(broker));
        let partitions = describe_producers(&mut client, &[("spread", &[0, 1])]).remove(0);
        for r in &partitions {
            let hosted = spread[&r.partition_index].replicas.contains(&broker);
            if hosted {
                assert_eq!(r.error_code, 0, "broker {broker}: {r:?}");
                assert_eq!(r.active_producers[0].producer_id.0, pid);
                assert_eq!(r.active_producers[0].current_txn_start_offset, 0);
            } else {
                assert_eq!(
                    r.error_code, NOT_LEADER_OR_FOLLOWER,
                    "broker {broker}: {r:?}"
                );
            }
        }
    }
    // A follower answers from its copy of the producer state once it has copied the batch.
    let follower = if mirrored_leader == 1 { 2 } else { 1 };
    let mut at_follower = RawClient::connect(cluster.addr(follower));
    wait_until("the follower's copy of the producer state", TIMEOUT, || {
        let r = describe_producers(&mut at_follower, &[("mirrored", &[0])])
            .remove(0)
            .remove(0);
        match r.active_producers.first() {
            Some(s) if r.error_code == 0 && s.producer_id.0 == pid => {
                assert_eq!(s.current_txn_start_offset, 0);
                Ok(())
            }
            _ => Err(format!("{r:?}")),
        }
    });

    // The CLI finds the coordinator and lists every broker's ids, whichever broker it starts from.
    let described = json_of(
        &cluster.bootstrap(other),
        &["transactions", "describe", "c-tx"],
    );
    assert_eq!(described[0]["coordinator"], coordinator);
    assert_eq!(described[0]["state"], "Ongoing");
    assert_eq!(
        json_of(&cluster.bootstrap(other), &["transactions", "list"]),
        json!([{"transactional_id": "c-tx", "coordinator": coordinator, "producer_id": pid, "state": "Ongoing"}])
    );
    let producers = json_of(
        &cluster.bootstrap(other),
        &["transactions", "producers", "spread"],
    );
    assert_eq!(producers.as_array().unwrap().len(), 2, "{producers}");
}
