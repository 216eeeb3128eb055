//! End-to-end: kafkajs 2.2.4 (pure JavaScript, non-flexible request versions only) creates topics on, produces to
//! and reads back from a real Strom broker. The script `tests/clients/kafkajs_roundtrip.js` checks every record
//! and exits non-zero on a mismatch; this test also checks the gzip topic is stored gzip-compressed.
//!
//! Needs `node` and `npm ci` run in `crates/cli/tests/clients` (`scripts/test-deps` does both); a missing module
//! fails the test with that hint.

mod common;
#[path = "clients/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use common::TestBroker;
use strom_log::Compression;

const INSTALL: &str =
    "install Node.js and run `npm ci` in crates/cli/tests/clients (or run scripts/test-deps)";

#[test]
fn kafkajs_creates_produces_and_reads_back_every_record() {
    let broker = TestBroker::start();
    let finished = support::run(
        Command::new("node")
            .arg(support::clients_dir().join("kafkajs_roundtrip.js"))
            .arg(broker.bootstrap())
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
        None,
        Duration::from_secs(240),
        INSTALL,
    );
    finished.assert_client_success(INSTALL);
    println!("{}", finished.stdout);

    let data = broker.data_dir();
    assert_eq!(
        support::assert_stored_with(data, "kafkajs-plain", 3, Compression::None),
        60
    );
    assert_eq!(
        support::assert_stored_with(data, "kafkajs-gzip", 3, Compression::Gzip),
        60
    );
}
