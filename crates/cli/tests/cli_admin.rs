//! `strom topic|group|cluster` end to end: the real binary against a real broker, asserting stdout (tables and
//! JSON), stderr and exit codes, failures included.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::group::{produce, wait_for_assignments, wait_processed, Member};
use common::TestBroker;
use serde_json::Value;

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

fn strom(broker: &TestBroker, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("--brokers")
        .arg(broker.bootstrap())
        .args(args)
        .env_remove("STROM_LOG")
        .output()
        .expect("strom runs");
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code().expect("exit code"),
    }
}

/// Runs a command that must succeed and returns its stdout.
fn ok(broker: &TestBroker, args: &[&str]) -> String {
    let run = strom(broker, args);
    assert_eq!(run.code, 0, "strom {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
fn fails(broker: &TestBroker, args: &[&str]) -> String {
    let run = strom(broker, args);
    assert_eq!(
        run.code, 1,
        "strom {args:?} should fail; stdout: {}",
        run.stdout
    );
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    run.stderr
}

fn json(broker: &TestBroker, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok(broker, &all)).expect("valid JSON")
}

#[test]
fn topic_commands() {
    let broker = TestBroker::start();
    let b = &broker;

    assert_eq!(
        ok(
            b,
            &[
                "topic",
                "create",
                "orders",
                "-p",
                "3",
                "-c",
                "retention.ms=86400000"
            ]
        ),
        "Created topic orders: 3 partition(s), replication factor 1.\n"
    );
    let err = fails(b, &["topic", "create", "orders"]);
    assert_eq!(
        err,
        "error: topic 'orders' already exists: TOPIC_ALREADY_EXISTS (36): a topic with that name already exists\n"
    );
    let err = fails(b, &["topic", "create", "bad", "-c", "retention.ms=abc"]);
    assert!(
        err.contains("topic 'bad'") && err.contains("retention.ms"),
        "{err}"
    );
    assert!(err.contains("INVALID_CONFIG (40)"), "{err}");
    assert_eq!(
        ok(b, &["topic", "create", "checked", "-p", "2", "--validate-only"]),
        "Topic checked is valid: 2 partition(s), replication factor 1 (not created: --validate-only).\n"
    );
    let created = json(b, &["topic", "create", "events"]);
    assert_eq!(created["topic"], "events");
    assert_eq!(created["replication_factor"], 1);
    assert_eq!(created["validate_only"], false);
    assert!(created["partitions"].as_i64().unwrap() >= 1);
    assert_eq!(created["topic_id"].as_str().unwrap().len(), 36);
    let events_partitions = created["partitions"].as_i64().unwrap();

    assert_eq!(
        ok(b, &["topic", "list"]),
        format!(
            "TOPIC   PARTITIONS  REPLICATION-FACTOR\nevents  {events_partitions:<10}  1\norders  3           1\n"
        )
    );
    let listed = json(b, &["topic", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["events", "orders"],
        "validate-only and failed creations created nothing"
    );
    assert_eq!(listed[1]["partitions"], 3);
    assert_eq!(listed[1]["internal"], false);

    let described = ok(b, &["topic", "describe", "orders"]);
    let lines: Vec<&str> = described.lines().collect();
    assert!(lines[0].starts_with("Topic: orders  ID: "), "{described}");
    assert!(
        lines[0].ends_with("  Partitions: 3  Replication factor: 1"),
        "{described}"
    );
    assert_eq!(
        lines[1..].join("\n"),
        "\nPARTITION  LEADER  EPOCH  HIGH-WATERMARK  LAST-STABLE-OFFSET  REPLICAS  ISR  STATE\n\
         0          1       0      0               0                   1         1    in sync\n\
         1          1       0      0               0                   1         1    in sync\n\
         2          1       0      0               0                   1         1    in sync\n\
         \nCONFIG        VALUE     SOURCE\nretention.ms  86400000  DYNAMIC_TOPIC_CONFIG"
    );
    let err = fails(b, &["topic", "describe", "nope"]);
    assert_eq!(
        err,
        "error: topic 'nope': UNKNOWN_TOPIC_OR_PARTITION (3): the topic or partition does not exist\n"
    );

    assert_eq!(
        ok(b, &["topic", "add-partitions", "orders", "--count", "5"]),
        "Topic orders now has 5 partition(s).\n"
    );
    let err = fails(b, &["topic", "add-partitions", "orders", "--count", "2"]);
    assert!(err.contains("INVALID_PARTITIONS (37)"), "{err}");

    assert_eq!(
        ok(b, &["topic", "alter-config", "orders", "--set", "cleanup.policy=compact", "--delete", "retention.ms"]),
        "Updated the configs of topic orders.\n  set cleanup.policy=compact\n  deleted retention.ms\n"
    );
    let err = fails(
        b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "segment.bytes=lots",
        ],
    );
    assert!(
        err.contains("segment.bytes") && err.contains("INVALID_CONFIG (40)"),
        "{err}"
    );
    let err = fails(b, &["topic", "alter-config", "orders"]);
    assert_eq!(
        err,
        "error: nothing to change: give --set KEY=VALUE and/or --delete KEY\n"
    );
    let altered = json(
        b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=1000",
        ],
    );
    assert_eq!(
        altered,
        serde_json::json!({"topic": "orders", "set": {"retention.ms": "1000"}, "deleted": []})
    );

    let described = json(b, &["topic", "describe", "orders"]);
    assert_eq!(described["topic"], "orders");
    assert_eq!(described["partitions"].as_array().unwrap().len(), 5);
    assert_eq!(
        described["partitions"][4],
        serde_json::json!({"partition": 4, "leader": 1, "leader_epoch": 0, "high_watermark": 0, "last_stable_offset": 0, "replicas": [1], "isr": [1], "under_replicated": false})
    );
    assert_eq!(
        described["configs"],
        serde_json::json!([
            {"name": "cleanup.policy", "value": "compact", "source": "DYNAMIC_TOPIC_CONFIG"},
            {"name": "retention.ms", "value": "1000", "source": "DYNAMIC_TOPIC_CONFIG"},
        ])
    );

    let run = strom(b, &["topic", "delete", "orders", "nope"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "Deleted topic orders.\n");
    assert_eq!(
        run.stderr,
        "error: topic 'nope' does not exist: UNKNOWN_TOPIC_OR_PARTITION (3): the topic or partition does not exist\n"
    );
    let deleted = json(b, &["topic", "delete", "events"]);
    assert_eq!(
        deleted,
        serde_json::json!([{"topic": "events", "deleted": true, "error": null}])
    );
    assert_eq!(
        ok(b, &["topic", "list"]),
        "TOPIC  PARTITIONS  REPLICATION-FACTOR\n"
    );
}

#[test]
fn cluster_info() {
    let broker = TestBroker::start();
    let port = broker.addr.port();
    let out = ok(&broker, &["cluster", "info"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Cluster ID: ") && lines[0].len() > "Cluster ID: ".len(),
        "{out}"
    );
    assert_eq!(
        lines[1..].join("\n"),
        format!(
            "Controller: 1\n\nID  HOST       PORT   RACK  STATE\n1   127.0.0.1  {port}  -     running"
        )
    );
    let info = json(&broker, &["cluster", "info"]);
    assert_eq!(info["controller_id"], 1);
    assert_eq!(
        info["cluster_id"].as_str().unwrap(),
        &lines[0]["Cluster ID: ".len()..]
    );
    assert_eq!(
        info["brokers"],
        serde_json::json!([{"id": 1, "host": "127.0.0.1", "port": port, "rack": null, "state": "running"}])
    );
}

#[test]
fn unreachable_broker_is_a_clear_failure() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["topic", "list"])
        .env("STROM_BROKERS", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: no broker reachable") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

fn start_member(broker: &TestBroker, group: &str, topic: &str) -> Member {
    let processed = Arc::new(Mutex::new(Vec::new()));
    let member = Member::start(
        0,
        &broker.bootstrap(),
        group,
        topic,
        &[("client.id", "lag-test")],
        processed,
    );
    wait_for_assignments(&[&member], "the member owns both partitions", |a| {
        a[0].len() == 2
    });
    member
}

#[test]
fn group_commands() {
    let broker = TestBroker::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    let b = &broker;
    let bootstrap = broker.bootstrap();
    ok(b, &["topic", "create", "clicks", "-p", "2"]);
    produce(&bootstrap, "clicks", 2, 10);

    // A member consumes and commits everything, then leaves; 5 more records per partition make a lag of 5.
    let processed = Arc::new(Mutex::new(Vec::new()));
    let mut member = Member::start(0, &bootstrap, "readers", "clicks", &[], processed.clone());
    wait_processed(&processed, 20);
    member.stop();
    produce(&bootstrap, "clicks", 2, 5);

    assert_eq!(
        ok(b, &["group", "list"]),
        "GROUP    STATE  TYPE  PROTOCOL-TYPE\nreaders  Empty  -     consumer\n"
    );
    let listed = json(b, &["group", "list"]);
    assert_eq!(
        listed,
        // Strom's ListGroups (v4) does not report the group type.
        serde_json::json!([{"group": "readers", "state": "Empty", "type": null, "protocol_type": "consumer"}])
    );

    let described = ok(b, &["group", "describe", "readers"]);
    assert_eq!(
        described,
        "Group: readers  State: Empty  Type: classic  Protocol: -  Members: 0\n\n\
         TOPIC   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID\n\
         clicks  0          10              15              5    -            -     -\n\
         clicks  1          10              15              5    -            -     -\n"
    );
    let d = json(b, &["group", "describe", "readers"]);
    assert_eq!(d["state"], "Empty");
    assert_eq!(d["members"], serde_json::json!([]));
    assert_eq!(
        d["offsets"][1],
        serde_json::json!({"topic": "clicks", "partition": 1, "current_offset": 10, "log_end_offset": 15,
                           "lag": 5, "member_id": null})
    );
    let err = fails(b, &["group", "describe", "nobody"]);
    assert_eq!(err, "error: group 'nobody' does not exist\n");

    // Reset: a dry run changes nothing; --execute commits the plan.
    let run = strom(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-earliest",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "GROUP    TOPIC   PARTITION  CURRENT-OFFSET  NEW-OFFSET\n\
         readers  clicks  0          10              0\n\
         readers  clicks  1          10              0\n"
    );
    assert!(run.stderr.contains("Dry run"), "{}", run.stderr);
    assert_eq!(
        json(b, &["group", "describe", "readers"])["offsets"][0]["current_offset"],
        10
    );

    let reset = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(reset["executed"], true);
    assert_eq!(
        reset["partitions"][0],
        serde_json::json!({"topic": "clicks", "partition": 0, "current_offset": 10, "new_offset": 0})
    );
    let d = json(b, &["group", "describe", "readers"]);
    assert_eq!(d["offsets"][0]["current_offset"], 0);
    assert_eq!(d["offsets"][0]["lag"], 15);

    let shift = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks:1",
            "--shift-by",
            "3",
            "--execute",
        ],
    );
    assert_eq!(
        shift["partitions"],
        serde_json::json!([{"topic": "clicks", "partition": 1, "current_offset": 0, "new_offset": 3}])
    );
    let clamp = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks:0",
            "--to-offset",
            "99",
        ],
    );
    assert_eq!(
        clamp["partitions"][0]["new_offset"], 15,
        "an offset past the end is clamped to the log end"
    );
    let future = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-datetime",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(future["partitions"][0]["new_offset"], 15);
    let past = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-datetime",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(past["partitions"][1]["new_offset"], 0);
    let latest = json(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-latest",
            "--execute",
        ],
    );
    assert_eq!(
        latest["partitions"][1],
        serde_json::json!({"topic": "clicks", "partition": 1, "current_offset": 3, "new_offset": 15})
    );

    let err = fails(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "missing",
            "--to-earliest",
        ],
    );
    assert!(
        err.contains("topic 'missing'") && err.contains("UNKNOWN_TOPIC_OR_PARTITION (3)"),
        "{err}"
    );
    let err = fails(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks:7",
            "--to-earliest",
        ],
    );
    assert!(err.contains("has no partition 7 (it has 2)"), "{err}");
    let usage = strom(
        b,
        &["group", "reset-offsets", "readers", "--topic", "clicks"],
    );
    assert_eq!(
        usage.code, 2,
        "no target is a usage error: {}",
        usage.stderr
    );

    // An active group: described with its member, but its offsets cannot be reset and it cannot be deleted.
    let member = start_member(&broker, "readers", "clicks");
    let d = json(b, &["group", "describe", "readers"]);
    assert_eq!(d["state"], "Stable");
    assert_eq!(d["members"][0]["client_id"], "lag-test");
    assert_eq!(
        d["members"][0]["assignment"],
        serde_json::json!([{"topic": "clicks", "partitions": [0, 1]}])
    );
    let member_id = d["members"][0]["member_id"].as_str().unwrap().to_string();
    assert_eq!(d["offsets"][0]["member_id"], member_id.as_str());
    let table = ok(b, &["group", "describe", "readers"]);
    assert!(
        table.starts_with("Group: readers  State: Stable  Type: classic  Protocol: "),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "MEMBER-ID{}",
            " ".repeat(member_id.len() - "MEMBER-ID".len() + 2)
        )),
        "{table}"
    );
    assert!(table.contains("clicks:0,1"), "{table}");

    let err = fails(
        b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "clicks",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(
        err,
        "error: cannot reset the offsets of group 'readers': it is Stable with 1 active member(s); stop its consumers \
         first: NON_EMPTY_GROUP (68): the group still has active members\n"
    );
    let err = fails(b, &["group", "delete", "readers"]);
    assert!(
        err.contains("group 'readers'") && err.contains("NON_EMPTY_GROUP (68)"),
        "{err}"
    );
    drop(member);

    assert_eq!(
        ok(b, &["group", "delete", "readers"]),
        "Deleted group readers.\n"
    );
    assert_eq!(
        ok(b, &["group", "list"]),
        "GROUP  STATE  TYPE  PROTOCOL-TYPE\n"
    );
    // JSON still describes every item; the exit code and stderr report the failure.
    let run = strom(b, &["group", "delete", "gone", "--format", "json"]);
    assert_eq!(run.code, 1);
    let deleted: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(deleted[0]["deleted"], false);
    assert_eq!(
        run.stderr,
        "error: group 'gone': GROUP_ID_NOT_FOUND (69): the group does not exist\n"
    );
    assert_eq!(
        deleted[0]["error"],
        run.stderr["error: ".len()..].trim_end()
    );
}
