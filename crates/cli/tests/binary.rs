//! The `strom` binary as an operator runs it: a config file with Kafka's key names, a ready line, and a clean
//! SIGTERM shutdown after which the next start skips recovery.

mod common;

use std::time::Duration;

use common::process::BrokerProcess;
use common::{client_config, delivered, enqueue};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[test]
fn config_file_keys_apply_and_sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("server.properties");
    std::fs::write(
        &config,
        format!(
            "# Kafka's names\nlog.dirs={}\nlisteners=PLAINTEXT://127.0.0.1:0\nnum.partitions=4\n\
             log.segment.bytes=65536\nmessage.max.bytes=2000000\nsome.unknown.key=1\n\
             num.io.threads=16\nsocket.send.buffer.bytes=102400\n",
            data.display()
        ),
    )
    .unwrap();
    let broker = BrokerProcess::spawn(&["--config".as_ref(), config.as_os_str()]);
    assert!(
        broker
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("some.unknown.key")),
        "unknown keys are reported"
    );
    // Kafka's keys that Strom does not act on: accepted, and named once at start.
    let ignored: Vec<String> = broker
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("accepted but not acted on"))
        .cloned()
        .collect();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(
        ignored[0].contains("num.io.threads, socket.send.buffer.bytes"),
        "{ignored:?}"
    );

    let producer: FutureProducer = client_config(&broker.addr.to_string()).create().unwrap();
    for i in 0..40 {
        delivered(enqueue(
            &producer,
            FutureRecord::to("from-config")
                .key(&format!("{i}"))
                .payload("v"),
        ))
        .unwrap();
    }
    drop(producer);
    let consumer: BaseConsumer = client_config(&broker.addr.to_string()).create().unwrap();
    let md = consumer
        .fetch_metadata(Some("from-config"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        md.topics()[0].partitions().len(),
        4,
        "num.partitions from the file"
    );
    drop(consumer);
    assert!(
        data.join("from-config-0").is_dir(),
        "log.dirs from the file"
    );

    let (clean, log) = broker.terminate();
    assert!(
        clean,
        "exit status 0 after SIGTERM; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("stopped cleanly")),
        "log:\n{}",
        log.join("\n")
    );

    let again = BrokerProcess::spawn(&["--config".as_ref(), config.as_os_str()]);
    let (clean, log) = again.terminate();
    assert!(clean, "log:\n{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.contains("recovered log")),
        "a clean shutdown lets the next start skip recovery; log:\n{}",
        log.join("\n")
    );
}

#[test]
fn a_bad_config_value_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.properties");
    std::fs::write(&config, "num.partitions=many\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["broker", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("num.partitions") && stderr.contains("many"),
        "{stderr}"
    );
}

#[test]
fn shell_completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("broker") && script.contains("completions"),
            "{shell}: {script}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown shell is a usage error");
}
