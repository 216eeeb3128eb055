//! Progress bars appear when stderr is a terminal: the commands run under `script` (util-linux), which gives
//! them a pseudo-terminal.

mod common;

use std::process::Command;

use common::TestBroker;

/// Runs `strom ARGS` on a pseudo-terminal and returns everything it wrote there.
fn on_a_terminal(broker: &TestBroker, args: &str) -> String {
    let strom = env!("CARGO_BIN_EXE_strom");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{strom} --brokers {} {args}", broker.bootstrap()),
            "/dev/null",
        ])
        // cargo's LD_LIBRARY_PATH is harmless here, but keep the child's environment plain.
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("script(1) from util-linux runs");
    assert!(
        out.status.success(),
        "strom {args}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).replace('\r', "\n")
}

#[test]
fn producing_a_large_file_and_consuming_to_a_count_show_progress_on_a_terminal() {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.txt");
    let lines: String = (0..12_000)
        .map(|i| format!("k{i}|{}\n", "x".repeat(100)))
        .collect();
    std::fs::write(&file, lines).unwrap();

    let produced = on_a_terminal(
        &broker,
        &format!("produce big --file {} --key-separator '|'", file.display()),
    );
    assert!(
        produced.contains('\u{2588}'),
        "a filled progress bar was drawn:\n{produced}"
    );
    assert!(produced.contains("produced 12000 records"), "{produced}");

    let consumed = on_a_terminal(
        &broker,
        "consume big --from-beginning -n 12000 --template ''",
    );
    assert!(
        consumed.contains('\u{2588}'),
        "a progress bar to the count was drawn"
    );
}
