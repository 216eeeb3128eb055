//! End-to-end: kcat, built on Debian 12's librdkafka 2.0.2, against a real Strom broker.
//!
//! librdkafka before 2.2.0 fails to parse an ApiVersions v3 response that carries optional tagged fields
//! (librdkafka issue 4253) and older librdkafka versions turn features on only when one pinned request version is
//! advertised, so this old client checks our ApiVersions encoding and advertised ranges; the tests also check
//! that each codec kcat asked for is what the broker stored on disk (librdkafka silently sends uncompressed data
//! when it thinks the broker cannot take a codec).
//!
//! Needs `kcat` on PATH (`apt-get install -y kcat`; `scripts/test-deps` installs it); a missing kcat fails the tests.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{enqueue, TestBroker};
use rdkafka::producer::FutureRecord;
use strom_log::Compression;

const INSTALL: &str =
    "install kcat with `apt-get install -y kcat` (Debian 12's kcat 1.7.1 on librdkafka 2.0.2; \
                       or run scripts/test-deps)";
const TIMEOUT: Duration = Duration::from_secs(60);

/// `kcat`, linked with the system's librdkafka. `cargo test` puts the build directories of native libraries on
/// LD_LIBRARY_PATH, and rdkafka-sys leaves its own (new) `librdkafka.so.1` there, which the dynamic linker would
/// load into kcat instead of Debian's 2.0.2.
fn kcat_command() -> Command {
    let mut command = Command::new("kcat");
    command.env_remove("LD_LIBRARY_PATH");
    command
}

/// Runs kcat against `broker` with `args` (and optional stdin); fails the test unless it exits 0.
fn kcat(broker: &TestBroker, args: &[&str], stdin: Option<String>) -> support::Finished {
    let finished = support::run(
        kcat_command()
            .args(["-b", &broker.bootstrap()])
            .args(["-X", "broker.address.family=v4", "-m", "20"])
            .args(args),
        stdin.map(String::into_bytes),
        TIMEOUT,
        INSTALL,
    );
    finished.assert_success();
    finished
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The librdkafka version kcat is linked with, from `kcat -V`.
fn librdkafka_version() -> (u32, u32, u32) {
    let finished = support::run(kcat_command().arg("-V"), None, TIMEOUT, INSTALL);
    finished.assert_success();
    let version = finished
        .stdout
        .split("librdkafka ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no librdkafka version in kcat -V\n{}", finished.report()));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn old_librdkafka_parses_api_versions_v3_and_lists_topic_metadata() {
    // The point of this file is an old librdkafka; a newer one would pass without proving our encoding.
    let version = librdkafka_version();
    assert!(
        version < (2, 2, 0),
        "kcat is linked with librdkafka {version:?}; these tests need one older than 2.2.0 (librdkafka issue 4253), \
         as Debian 12's kcat has: {INSTALL}"
    );

    let broker = TestBroker::start();
    broker.create_topic("listed", 3, &[]);
    broker.create_topic("other", 1, &[]);

    let listed = kcat(
        &broker,
        &["-L", "-t", "listed", "-d", "feature,protocol"],
        None,
    );
    let report = listed.report();
    // ApiVersions v3 was answered and parsed (no fallback to v0 or to broker.version.fallback).
    for needle in [
        "Sent ApiVersionRequest (v3",
        "Received ApiVersionResponse (v3",
        "Broker API support:",
        // What librdkafka 2.0.2 derives from our advertised ranges.
        "Enabling feature MsgVer2",
        "Enabling feature ApiVersion",
        "Enabling feature IdempotentProducer",
        "Enabling feature OffsetTime",
        "Enabling feature ZSTD",
    ] {
        assert!(listed.stderr.contains(needle), "no {needle:?} in\n{report}");
    }
    let lower = listed.stderr.to_lowercase();
    for bad in [
        "parse failure",
        "apiversionrequest failed",
        "failed to parse",
    ] {
        assert!(!lower.contains(bad), "{bad:?} in\n{report}");
    }

    let stdout = &listed.stdout;
    assert!(
        stdout.contains(&format!("broker 1 at {} (controller)", broker.bootstrap())),
        "{report}"
    );
    assert!(
        stdout.contains("topic \"listed\" with 3 partitions:"),
        "{report}"
    );
    for p in 0..3 {
        assert!(
            stdout.contains(&format!("partition {p}, leader 1, replicas: 1, isrs: 1")),
            "partition {p} missing\n{report}"
        );
    }
    assert!(
        !stdout.contains("\"other\""),
        "asked for one topic\n{report}"
    );

    // All topics.
    let all = kcat(&broker, &["-L"], None);
    assert!(all.stdout.contains(" 2 topics:"), "{}", all.report());
    assert!(
        all.stdout.contains("topic \"listed\" with 3 partitions:")
            && all.stdout.contains("topic \"other\" with 1 partitions:"),
        "{}",
        all.report()
    );
}

const LINES: usize = 150;
const KEYS: usize = 10;

/// Produces `LINES` keyed lines with `kcat -P -K: -z <codec>` and two headers into a new 3-partition topic, reads
/// them back with `kcat -C -e -f`, and checks every line, partition, offset, header and timestamp. Returns the
/// topic name.
fn kcat_round_trip(broker: &TestBroker, codec: &str) -> String {
    let topic = format!("kcat-{codec}");
    broker.create_topic(&topic, 3, &[]);
    // Compressible values, so librdkafka (which sends a batch uncompressed when compression does not shrink
    // it) really compresses.
    let input: String = (0..LINES)
        .map(|i| format!("k{}:value-{i}-{}\n", i % KEYS, "abcdefgh".repeat(8 + i % 5)))
        .collect();
    let before = now_ms();
    let header = format!("codec={codec}");
    kcat(
        broker,
        &[
            "-P",
            "-t",
            &topic,
            "-K",
            ":",
            "-z",
            codec,
            "-H",
            &header,
            "-H",
            "trace=kcat",
        ],
        Some(input),
    );
    let after = now_ms();

    let consumed = kcat(
        broker,
        &[
            "-C",
            "-t",
            &topic,
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %o %k %s %T %h\\n",
        ],
        None,
    );
    let report = consumed.report();
    let mut seen = [false; LINES];
    let mut partition_of_key = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for line in consumed.stdout.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 6, "unexpected line {line:?}\n{report}");
        let partition: i32 = fields[0].parse().unwrap();
        let offset: i64 = fields[1].parse().unwrap();
        let (key, value, timestamp) = (fields[2], fields[3], fields[4]);
        let i: usize = value
            .strip_prefix("value-")
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected value in {line:?}\n{report}"));
        assert!(i < LINES && !seen[i], "line {i} twice or unknown\n{report}");
        seen[i] = true;
        assert_eq!(key, format!("k{}", i % KEYS), "{line}");
        assert_eq!(
            value,
            format!("value-{i}-{}", "abcdefgh".repeat(8 + i % 5)),
            "{line}"
        );
        let timestamp: i64 = timestamp.parse().unwrap();
        assert!(
            (before..=after).contains(&timestamp),
            "timestamp {timestamp} of line {i} outside the produce window {before}..={after}"
        );
        assert_eq!(fields[5], format!("{header},trace=kcat"), "{line}");
        // librdkafka's default partitioner keeps a key on one partition.
        assert_eq!(
            *partition_of_key.entry(key.to_string()).or_insert(partition),
            partition,
            "key {key} on two partitions\n{report}"
        );
        by_partition.entry(partition).or_default().push((offset, i));
    }
    let missing: Vec<usize> = (0..LINES).filter(|i| !seen[*i]).collect();
    assert!(
        missing.is_empty(),
        "lines never consumed: {missing:?}\n{report}"
    );
    for (partition, mut records) in by_partition {
        records.sort();
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..records.len() as i64).collect::<Vec<_>>(),
            "partition {partition}: offsets are not dense from 0"
        );
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {partition}: lines out of produce order: {records:?}"
        );
    }
    topic
}

#[test]
fn kcat_round_trips_keyed_lines_uncompressed() {
    let broker = TestBroker::start();
    let topic = kcat_round_trip(&broker, "none");
    assert_eq!(
        support::assert_stored_with(broker.data_dir(), &topic, 3, Compression::None),
        LINES
    );
}

#[test]
fn kcat_round_trips_keyed_lines_gzip() {
    let broker = TestBroker::start();
    let topic = kcat_round_trip(&broker, "gzip");
    assert_eq!(
        support::assert_stored_with(broker.data_dir(), &topic, 3, Compression::Gzip),
        LINES
    );
}

#[test]
fn kcat_round_trips_keyed_lines_snappy() {
    let broker = TestBroker::start();
    let topic = kcat_round_trip(&broker, "snappy");
    assert_eq!(
        support::assert_stored_with(broker.data_dir(), &topic, 3, Compression::Snappy),
        LINES
    );
}

#[test]
fn kcat_round_trips_keyed_lines_zstd() {
    let broker = TestBroker::start();
    let topic = kcat_round_trip(&broker, "zstd");
    assert_eq!(
        support::assert_stored_with(broker.data_dir(), &topic, 3, Compression::Zstd),
        LINES
    );
}

/// The lines round-trip with `-z lz4`. librdkafka before 2.11.1 enables its LZ4 feature only when the broker
/// advertises FindCoordinator v0 (a stand-in for "Kafka >= 0.8.2" in rdkafka_feature.c).
#[test]
fn kcat_round_trips_keyed_lines_lz4() {
    let broker = TestBroker::start();
    kcat_round_trip(&broker, "lz4");
}

/// librdkafka before 2.11.1 compresses with lz4 only when the broker advertises FindCoordinator v0, which Strom
/// does since it serves consumer groups.
#[test]
fn kcat_lz4_batches_are_stored_lz4() {
    let broker = TestBroker::start();
    let topic = kcat_round_trip(&broker, "lz4");
    assert_eq!(
        support::assert_stored_with(broker.data_dir(), &topic, 3, Compression::Lz4),
        LINES
    );
}

#[test]
fn kcat_queries_offsets_for_times_and_consumes_from_a_timestamp() {
    let broker = TestBroker::start();
    broker.create_topic("times", 2, &[]);
    // kcat cannot set record timestamps, so produce them with rdkafka: partition 0 holds offsets 0..10 with
    // timestamps base + 10 * offset; partition 1 holds 5 records.
    let base = 1_700_000_000_000i64;
    let producer = broker.producer(&[]);
    let mut pending = Vec::new();
    for (partition, count) in [(0, 10), (1, 5)] {
        for i in 0..count {
            let key = format!("k{partition}-{i}");
            let value = format!("v{partition}-{i}");
            pending.push(enqueue(
                &producer,
                FutureRecord::to("times")
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(value.as_bytes())
                    .timestamp(base + 10 * i),
            ));
        }
    }
    for f in pending {
        common::delivered(f).expect("delivered");
    }

    // ListOffsets by timestamp: the first offset whose timestamp is >= the query; -1 past the last record.
    let query = kcat(
        &broker,
        &[
            "-Q",
            "-t",
            &format!("times:0:{}", base + 25),
            "-t",
            &format!("times:1:{}", base + 1_000_000),
        ],
        None,
    );
    let mut answers: Vec<&str> = query.stdout.lines().collect();
    answers.sort();
    assert_eq!(
        answers,
        ["times [0] offset 3", "times [1] offset -1"],
        "{}",
        query.report()
    );

    // Start and stop at timestamps: [base + 25, base + 65) is offsets 3..=6.
    let window = kcat(
        &broker,
        &[
            "-C",
            "-t",
            "times",
            "-p",
            "0",
            "-o",
            &format!("s@{}", base + 25),
            "-o",
            &format!("e@{}", base + 65),
            "-e",
            "-f",
            "%o %k %s %T\\n",
        ],
        None,
    );
    let expected: Vec<String> = (3..=6)
        .map(|o| format!("{o} k0-{o} v0-{o} {}", base + 10 * o))
        .collect();
    assert_eq!(
        window.stdout.lines().collect::<Vec<_>>(),
        expected,
        "{}",
        window.report()
    );

    // Relative to the end (ListOffsets latest): the last two records of partition 1.
    let tail = kcat(
        &broker,
        &[
            "-C", "-t", "times", "-p", "1", "-o", "-2", "-e", "-f", "%o %k\\n",
        ],
        None,
    );
    assert_eq!(
        tail.stdout.lines().collect::<Vec<_>>(),
        ["3 k1-3", "4 k1-4"],
        "{}",
        tail.report()
    );
}
