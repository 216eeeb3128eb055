//! `strom bench` end to end: a strom broker child process, every scenario at a small size, the summary lines,
//! the targets, the JSON report, and `--compare` against a saved report. No speed thresholds: this checks that the
//! bench measures, not how fast this machine is.

use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str], report: &Path, compare: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
    command
        .arg("bench")
        .args(args)
        .args(["--records", "2000", "--runs", "1", "--report"])
        .arg(report)
        .env_remove("STROM_BROKERS");
    if let Some(saved) = compare {
        command.arg("--compare").arg(saved);
    }
    command.output().expect("run strom bench")
}

fn line_of<'a>(stdout: &'a str, case: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{case}: ")))
        .unwrap_or_else(|| panic!("no summary line for {case} in:\n{stdout}"))
}

#[test]
fn bench_prints_summaries_targets_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = bench(
        &[
            "--scenario",
            "produce-1k",
            "--scenario",
            "consume",
            "--scenario",
            "ceiling",
            "--scenario",
            "e2e-latency",
            "--scenario",
            "many-partitions",
            "--scenario",
            "e2e-after-load",
            "--after-load-mb",
            "2",
            "--e2e-rate",
            "1000",
            "--e2e-seconds",
            "1",
        ],
        &report,
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strom bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for case in [
        "ceiling-1k",
        "ceiling-100b",
        "sink-1k",
        "sink-100b",
        "produce-1k/p1",
        "produce-1k/p6",
        "consume/assign",
        "consume/group",
        "many-partitions/p1000",
    ] {
        let line = line_of(&stdout, case);
        assert!(
            line.starts_with(&format!("{case}: 2000 records, ")),
            "{line}"
        );
        assert!(
            line.contains("records/sec") && line.contains("MB/sec"),
            "{line}"
        );
    }
    let produce = line_of(&stdout, "produce-1k/p6");
    for part in [
        "p50 ",
        "p99 ",
        "p99.9 ",
        "max ",
        "% of ceiling-1k",
        "% of sink-1k",
        "broker cpu ",
        "broker peak rss ",
        "client cpu ",
        // Issue 13: the broker's own request time beside the client's latency.
        "broker Produce request time p50 <= ",
    ] {
        assert!(produce.contains(part), "{produce} lacks {part}");
    }
    assert!(
        line_of(&stdout, "consume/assign").contains("broker Fetch request time p50 <= "),
        "{stdout}"
    );
    assert!(line_of(&stdout, "consume/group").contains("% of produce-1k/p6"));
    let e2e = line_of(&stdout, "e2e-latency");
    assert!(e2e.starts_with("e2e-latency: 1000 records, "), "{e2e}");
    assert!(e2e.contains("p99 "), "{e2e}");
    // Issue 13: the broker's shares of the tail, produce side and fetch side.
    assert!(
        e2e.contains("broker Produce request time p50 <= ")
            && e2e.contains("broker fetch wake-up p50 <= "),
        "{e2e}"
    );
    // The same run with Strom's own client at both ends, beside librdkafka's.
    let strom_client = line_of(&stdout, "e2e-latency/strom-client");
    assert!(
        strom_client.starts_with("e2e-latency/strom-client: 1000 records, ")
            && strom_client.contains("p99.9 "),
        "{strom_client}"
    );
    // After 2 MiB of load, one second at each fixed rate.
    for (case, records) in [("e2e-after-load/5k", 5000), ("e2e-after-load/10k", 10000)] {
        let line = line_of(&stdout, case);
        assert!(
            line.starts_with(&format!("{case}: {records} records, ")),
            "{line}"
        );
        assert!(line.contains("p99.9 "), "{line}");
    }
    for target in [
        "produce-1k/p6:",
        "consume/assign:",
        "e2e-latency:",
        "e2e-after-load/5k:",
        "e2e-after-load/10k:",
        "many-partitions/p1000:",
    ] {
        assert!(
            stdout.lines().any(
                |l| (l.starts_with("  met") || l.starts_with("  MISSED")) && l.contains(target)
            ),
            "no target line for {target} in:\n{stdout}"
        );
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written"))
            .expect("report is JSON");
    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["memory_kib"].as_u64().unwrap() > 0);
    assert_eq!(report["parameters"]["records"], 2000);
    for case in ["ceiling-1k", "produce-1k/p6", "consume/group"] {
        let figures = &report["scenarios"][case];
        assert_eq!(figures["records"], 2000, "{case}: {figures}");
        assert!(
            figures["records_per_sec"].as_f64().unwrap() > 0.0,
            "{case}: {figures}"
        );
        assert!(
            figures["mb_per_sec"].as_f64().unwrap() > 0.0,
            "{case}: {figures}"
        );
    }
    let produce = &report["scenarios"]["produce-1k/p6"];
    assert!(produce["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(produce["fraction_of"]["ceiling-1k"].as_f64().unwrap() > 0.0);
    assert!(produce["fraction_of"]["sink-1k"].as_f64().unwrap() > 0.0);
    assert!(produce["broker"]["cpu_seconds"].as_f64().is_some());
    assert!(produce["broker"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let requests = &produce["broker_request_ms"];
    assert_eq!(requests["api"], "Produce", "{produce}");
    assert!(requests["requests"].as_u64().unwrap() > 0, "{produce}");
    assert!(
        requests["p50"].as_f64().unwrap() <= requests["p99"].as_f64().unwrap(),
        "{produce}"
    );
    let many = &report["scenarios"]["many-partitions/p1000"];
    assert!(many["broker"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let targets = report["targets"].as_array().expect("targets in the report");
    assert!(
        targets.iter().any(|t| t["case"] == "e2e-latency"),
        "{targets:?}"
    );
}

/// Issue 11: a strom-streams application in the bench process, set against the produce-100b/p6 rate of the same
/// run, with its start-up (the group join) timed apart.
#[test]
fn bench_measures_streams_topologies_against_the_same_run_produce_rate() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = bench(
        &["--scenario", "streams", "--scenario", "produce-100b"],
        &report,
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strom bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in ["streams/stateless", "streams/windowed-count"] {
        let line = line_of(&stdout, case);
        assert!(
            line.starts_with(&format!("{case}: 2000 records, ")),
            "{line}"
        );
        for part in [
            "records/sec",
            "startup ",
            "% of produce-100b/p6",
            "client cpu ",
        ] {
            assert!(line.contains(part), "{line} lacks {part}");
        }
    }
    assert!(
        stdout
            .lines()
            .any(|l| (l.starts_with("  met") || l.starts_with("  MISSED"))
                && l.contains("streams/stateless:")),
        "no target line for streams/stateless in:\n{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written"))
            .expect("report is JSON");
    for case in ["streams/stateless", "streams/windowed-count"] {
        let figures = &report["scenarios"][case];
        assert_eq!(figures["records"], 2000, "{case}: {figures}");
        assert!(figures["startup_ms"].as_f64().unwrap() > 0.0, "{figures}");
        assert!(
            figures["fraction_of"]["produce-100b/p6"].as_f64().unwrap() > 0.0,
            "{figures}"
        );
    }
}

#[test]
fn compare_flags_a_case_worse_than_the_saved_report() {
    let dir = tempfile::tempdir().unwrap();
    // A saved report whose figure no machine reaches: this run must be flagged, and exit 1.
    let saved = dir.path().join("saved.json");
    std::fs::write(
        &saved,
        r#"{"scenarios": {"ceiling-1k": {"records_per_sec": 1e15}}}"#,
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let out = bench(&["--scenario", "ceiling"], &report, Some(&saved));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("REGRESSION ceiling-1k: records/s"),
        "{stdout}"
    );
    for case in ["ceiling-100b", "sink-1k"] {
        assert!(
            stdout.contains(&format!("{case}: not in the saved report")),
            "{stdout}"
        );
    }
    assert!(stderr.contains("more than 10 % worse"), "{stderr}");
    // The report is still written, so the new figures are not lost.
    assert!(report.exists());
}

#[test]
fn a_bad_broker_setting_is_named_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = bench(
        &[
            "--scenario",
            "produce-1k",
            "--broker-set",
            "log.flush.interval.mss=5",
        ],
        &report,
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("log.flush.interval.mss"), "{stderr}");
    assert!(!report.exists());
}

/// The replicated scenarios start their own 3-node cluster: produce-replicated is set against the single broker's
/// produce-durable of the same run, and failover reports the pause after a leader's kill (a short broker session
/// here, so the controller fences the dead broker within seconds).
#[test]
fn bench_measures_replicated_produce_and_a_failover_on_a_three_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = bench(
        &[
            "--scenario",
            "produce-durable",
            "--scenario",
            "produce-replicated",
            "--scenario",
            "failover",
            "--broker-set",
            "broker.session.timeout.ms=3000",
            "--broker-set",
            "broker.heartbeat.interval.ms=500",
        ],
        &report,
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strom bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replicated = line_of(&stdout, "produce-replicated/p6");
    assert!(
        replicated.starts_with("produce-replicated/p6: 2000 records, "),
        "{replicated}"
    );
    for part in ["p99 ", "% of produce-durable/p6"] {
        assert!(replicated.contains(part), "{replicated} lacks {part}");
    }
    let failover = line_of(&stdout, "failover");
    assert!(failover.contains("pause "), "{failover}");
    assert!(
        stdout
            .lines()
            .any(|l| (l.starts_with("  met") || l.starts_with("  MISSED"))
                && l.contains("produce-replicated/p6:")),
        "no target line for produce-replicated/p6 in:\n{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written"))
            .expect("report is JSON");
    let replicated = &report["scenarios"]["produce-replicated/p6"];
    assert_eq!(replicated["records"], 2000, "{replicated}");
    assert!(
        replicated["fraction_of"]["produce-durable/p6"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let failover = &report["scenarios"]["failover"];
    let pause = failover["pause_ms"]
        .as_f64()
        .expect("pause_ms in the report");
    assert!(pause > 0.0, "{failover}");
    assert!(failover["records"].as_u64().unwrap() > 0, "{failover}");
}
