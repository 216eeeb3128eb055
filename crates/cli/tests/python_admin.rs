//! kafka-python 3.0.12's admin `describe_cluster()` against a Strom broker. It reads DescribeCluster v1's
//! `endpoint_type` and failed against a broker serving only v0 (a user hit that); Strom serves v0-v2.
//!
//! Needs `python3` with kafka-python 3.0.12 (`scripts/test-deps` installs it); a missing package fails the
//! test with that hint.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use common::TestBroker;

const INSTALL: &str = "install kafka-python with `python3 -m pip install kafka-python==3.0.12 \
                       aiokafka==0.14.0` (or run scripts/test-deps)";

#[test]
fn kafka_python_describe_cluster_lists_the_broker_and_controller() {
    let broker = TestBroker::start();
    let finished = support::run(
        Command::new("python3")
            .arg(support::clients_dir().join("kafka_python_admin.py"))
            .arg(broker.bootstrap())
            .arg("1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
        Duration::from_secs(120),
        INSTALL,
    );
    finished.assert_client_success(INSTALL);
}
