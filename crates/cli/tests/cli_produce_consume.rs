//! `strom produce` and `strom consume` as a user runs them: the real binary against a broker, checking output
//! and exit codes.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::TestBroker;

fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.group_initial_rebalance_delay_ms = 50;
        c.auto_create_topics = false;
    })
}

/// Runs `strom --brokers <broker> <args>` with `stdin` and returns its output.
fn strom(broker: &TestBroker, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("--brokers")
        .arg(broker.bootstrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strom");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn fails(o: Output, message: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(message),
        "stderr lacks {message:?}: {}",
        stderr(&o)
    );
}

#[test]
fn a_file_with_keys_and_headers_comes_back_in_every_output_format() {
    let broker = broker();
    broker.create_topic("orders", 3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.txt");
    let lines: Vec<String> = (0..30)
        .map(|i| format!("customer-{}|order {i}", i % 5))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let summary = ok(strom(
        &broker,
        &[
            "produce",
            "orders",
            "--file",
            file.to_str().unwrap(),
            "--key-separator",
            "|",
            "--header",
            "source=cli",
            "--header",
            "version=2",
            "--compression",
            "zstd",
        ],
        "",
    ));
    assert!(
        summary.starts_with("produced 30 records (") && summary.contains("to orders"),
        "{summary}"
    );

    let values = ok(strom(
        &broker,
        &["consume", "orders", "--from-beginning", "-n", "30"],
        "",
    ));
    let mut got: Vec<&str> = values.lines().collect();
    got.sort_by_key(|v| v[6..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..30).map(|i| format!("order {i}")).collect();
    assert_eq!(got, expected);

    let json = ok(strom(
        &broker,
        &[
            "--format",
            "json",
            "consume",
            "orders",
            "--from-beginning",
            "-n",
            "30",
        ],
        "",
    ));
    let mut per_key_partition = std::collections::BTreeMap::new();
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            line.starts_with("{\"topic\":\"orders\",\"partition\":"),
            "{line}"
        );
        assert_eq!(
            v["headers"],
            serde_json::json!({"source": "cli", "version": "2"})
        );
        let key = v["key"].as_str().unwrap().to_string();
        let i: u32 = v["value"].as_str().unwrap()[6..].parse().unwrap();
        assert_eq!(key, format!("customer-{}", i % 5));
        assert!(v["timestamp"].as_i64().unwrap() > 0);
        // The key decides the partition.
        let p = v["partition"].as_i64().unwrap();
        assert_eq!(*per_key_partition.entry(key).or_insert(p), p);
    }
    assert_eq!(json.lines().count(), 30);

    let templated = ok(strom(
        &broker,
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--offset",
            "0",
            "--timeout-ms",
            "1000",
            "--template",
            "{partition}:{offset} {key}={value}",
        ],
        "",
    ));
    for (n, line) in templated.lines().enumerate() {
        assert!(line.starts_with(&format!("0:{n} customer-")), "{line}");
    }
    let keyed = ok(strom(
        &broker,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "-n",
            "1",
            "--print-key",
        ],
        "",
    ));
    assert!(
        keyed.starts_with("customer-") && keyed.contains("\torder "),
        "{keyed}"
    );
}

#[test]
fn a_group_reads_once_then_finds_nothing_new() {
    let broker = broker();
    broker.create_topic("events", 2, &[]);
    let input: String = (0..50).map(|i| format!("event {i}\n")).collect();
    ok(strom(
        &broker,
        &["produce", "events", "--partitioner", "round-robin"],
        &input,
    ));
    let first = ok(strom(
        &broker,
        &[
            "consume",
            "events",
            "--group",
            "readers",
            "--from-beginning",
            "-n",
            "50",
        ],
        "",
    ));
    assert_eq!(first.lines().count(), 50);
    let again = ok(strom(
        &broker,
        &[
            "consume",
            "events",
            "--group",
            "readers",
            "--from-beginning",
            "--timeout-ms",
            "1000",
        ],
        "",
    ));
    assert_eq!(again, "", "the group committed everything it printed");

    // -n stops mid-way: the next member of the group starts right after the last printed record.
    ok(strom(
        &broker,
        &["produce", "events", "--partition", "0"],
        "a\nb\nc\nd\n",
    ));
    let two = ok(strom(
        &broker,
        &["consume", "events", "--group", "readers", "-n", "2"],
        "",
    ));
    assert_eq!(two, "a\nb\n");
    let rest = ok(strom(
        &broker,
        &[
            "consume",
            "events",
            "--group",
            "readers",
            "--timeout-ms",
            "1000",
        ],
        "",
    ));
    assert_eq!(rest, "c\nd\n");
}

#[test]
fn since_and_from_time_replay_recent_records_only() {
    let broker = broker();
    broker.create_topic("clock", 1, &[]);
    ok(strom(&broker, &["produce", "clock"], "one\ntwo\n"));
    let recent = ok(strom(
        &broker,
        &["consume", "clock", "--since", "-1h", "-n", "2"],
        "",
    ));
    assert_eq!(recent, "one\ntwo\n");
    let future = ok(strom(
        &broker,
        &[
            "consume",
            "clock",
            "--from-time",
            "2999-01-01T00:00:00Z",
            "--timeout-ms",
            "500",
        ],
        "",
    ));
    assert_eq!(future, "", "nothing at or after a future time");
    let past = ok(strom(
        &broker,
        &[
            "consume",
            "clock",
            "--from-time",
            "2000-01-01T00:00:00Z",
            "-n",
            "2",
        ],
        "",
    ));
    assert_eq!(past, "one\ntwo\n");
    // Default: from the end, so a script with a timeout sees only what arrives later.
    let tail = ok(strom(
        &broker,
        &["consume", "clock", "--timeout-ms", "500"],
        "",
    ));
    assert_eq!(tail, "");
}

#[test]
fn bad_input_fails_with_a_message_that_names_the_problem() {
    let broker = broker();
    broker.create_topic("real", 1, &[]);
    fails(
        strom(&broker, &["produce", "missing"], "x\n"),
        "topic \"missing\" does not exist (UNKNOWN_TOPIC_OR_PARTITION (3)",
    );
    fails(
        strom(&broker, &["consume", "missing", "--timeout-ms", "100"], ""),
        "topic \"missing\" does not exist",
    );
    fails(
        strom(&broker, &["produce", "real", "--header", "novalue"], "x\n"),
        "--header expects KEY=VALUE",
    );
    fails(
        strom(&broker, &["consume", "real", "--since", "last tuesday"], ""),
        "--since \"last tuesday\" is not a duration",
    );
    fails(
        strom(&broker, &["consume", "real", "--from-time", "noon"], ""),
        "is not an RFC 3339 time",
    );
    fails(
        strom(
            &broker,
            &["produce", "real", "--key-separator", ":"],
            "k:v\nno separator\n",
        ),
        "line 2 has no key separator",
    );
    fails(
        strom(&broker, &["produce", "real", "--partition", "7"], "x\n"),
        "has no partition 7 (it has 1)",
    );
    fails(
        strom(
            &broker,
            &["consume", "real", "-n", "1", "--timeout-ms", "300"],
            "",
        ),
        "timed out: no record for 300 ms after 0 of 1 records",
    );
    // Usage errors are clap's: exit 2.
    let usage = strom(&broker, &["consume", "real", "--offset", "3"], "");
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
}
