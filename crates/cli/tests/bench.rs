//! `strom bench` end to end: the in-process broker, three scenarios, the summary lines and the JSON report.
//! No speed thresholds: this checks that the bench measures, not how fast this machine is.

use std::process::Command;

#[test]
fn bench_prints_summaries_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args([
            "bench",
            "--scenario",
            "produce-1k",
            "--scenario",
            "consume",
            "--scenario",
            "ceiling",
            "--records",
            "2000",
            "--runs",
            "1",
            "--report",
        ])
        .arg(&report)
        .env_remove("STROM_BROKERS")
        .output()
        .expect("run strom bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strom bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for scenario in ["ceiling", "produce-1k", "consume"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{scenario}: 2000 records, ")))
            .unwrap_or_else(|| panic!("no summary line for {scenario} in:\n{stdout}"));
        assert!(
            line.contains("records/sec") && line.contains("MB/sec"),
            "{line}"
        );
    }
    let produce = stdout
        .lines()
        .find(|l| l.starts_with("produce-1k:"))
        .unwrap();
    for part in ["p50 ", "p99 ", "p99.9 ", "max ", "% of ceiling"] {
        assert!(produce.contains(part), "{produce} lacks {part}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written"))
            .expect("report is JSON");
    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["memory_kib"].as_u64().unwrap() > 0);
    assert_eq!(report["parameters"]["records"], 2000);
    for scenario in ["ceiling", "produce-1k", "consume"] {
        let figures = &report["scenarios"][scenario];
        assert_eq!(figures["records"], 2000, "{scenario}: {figures}");
        assert!(
            figures["records_per_sec"].as_f64().unwrap() > 0.0,
            "{scenario}: {figures}"
        );
        assert!(
            figures["mb_per_sec"].as_f64().unwrap() > 0.0,
            "{scenario}: {figures}"
        );
    }
    let produce = &report["scenarios"]["produce-1k"];
    assert!(produce["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(produce["fraction_of_ceiling"].as_f64().unwrap() > 0.0);
    assert!(produce["broker"]["cpu_seconds"].as_f64().is_some());
}
