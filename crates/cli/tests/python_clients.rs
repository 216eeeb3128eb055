//! End-to-end: the pure-Python Kafka clients kafka-python 3.0.12 and aiokafka 0.14.0 create topics on, produce
//! to and consume from a real Strom broker. Each test runs one script from `tests/clients/` against its own
//! broker; the script checks every record it reads back and exits non-zero on a mismatch. Both libraries pick
//! their request versions from our ApiVersions answer, so this also checks that what we advertise is servable.
//!
//! Needs `python3` with `pip install kafka-python==3.0.12 aiokafka==0.14.0` (`scripts/test-deps` installs them); a
//! missing package fails the test with that hint.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use common::TestBroker;
use strom_log::Compression;

const INSTALL: &str =
    "install the Python clients with `python3 -m pip install kafka-python==3.0.12 \
                       aiokafka==0.14.0` (or run scripts/test-deps)";

/// Runs `tests/clients/<script> <bootstrap>` with python3 and fails the test with its output unless it exits 0.
fn run_script(broker: &TestBroker, script: &str) {
    let path = support::clients_dir().join(script);
    let finished = support::run(
        Command::new("python3")
            .arg(&path)
            .arg(broker.bootstrap())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
        Duration::from_secs(240),
        INSTALL,
    );
    finished.assert_client_success(INSTALL);
    println!("{}", finished.stdout);
}

/// The scripts produce 60 records to each of a plain and a gzip topic (3 partitions); check the broker stored
/// them exactly as compressed.
fn assert_codecs_on_disk(broker: &TestBroker, plain: &str, gzip: &str) {
    let data = broker.data_dir();
    assert_eq!(
        support::assert_stored_with(data, plain, 3, Compression::None),
        60
    );
    assert_eq!(
        support::assert_stored_with(data, gzip, 3, Compression::Gzip),
        60
    );
}

#[test]
fn kafka_python_creates_produces_and_reads_back_every_record() {
    let broker = TestBroker::start();
    run_script(&broker, "kafka_python_roundtrip.py");
    assert_codecs_on_disk(&broker, "kafka-python-plain", "kafka-python-gzip");
}

#[test]
fn aiokafka_creates_produces_and_reads_back_every_record() {
    let broker = TestBroker::start();
    run_script(&broker, "aiokafka_roundtrip.py");
    assert_codecs_on_disk(&broker, "aiokafka-plain", "aiokafka-gzip");
}
