//! The JSON report and the progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::broker_process::read_kib;
use super::streams;
use super::targets::Checked;
use super::{BenchArgs, CaseResult, MANY_PARTITIONS, PARTITIONS};

/// A bar on stderr while a run is under way; hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} records {verb} {{per_sec}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn build(
    args: &BenchArgs,
    bootstrap: &str,
    broker_measured: bool,
    results: &[CaseResult],
    targets: &[Checked],
) -> Value {
    let scenarios: serde_json::Map<String, Value> = results
        .iter()
        .map(|r| {
            let mut value = serde_json::to_value(&r.figures).unwrap_or(Value::Null);
            value["rates_of_all_runs"] = json!(r.rates_of_all_runs);
            value["fraction_of"] = r
                .ratios
                .iter()
                .map(|(baseline, ratio)| (baseline.to_string(), json!(ratio)))
                .collect::<serde_json::Map<_, _>>()
                .into();
            (r.name.to_string(), value)
        })
        .collect();
    json!({
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "memory_kib": read_kib("/proc/meminfo", "MemTotal"),
            "cpu": cpu_model(),
        },
        "git_commit": git_commit(),
        "parameters": {
            "records": args.records,
            "runs": args.runs,
            "partitions": PARTITIONS,
            "many_partitions": MANY_PARTITIONS,
            "e2e_rate": args.e2e_rate,
            "e2e_seconds": args.e2e_seconds,
            "after_load_mb": args.after_load_mb,
            "streams": {
                "keys": streams::KEYS,
                "stream_threads": args.streams_threads,
                "commit_interval_ms": streams::COMMIT_INTERVAL.as_millis() as u64,
                "window_ms": streams::WINDOW.as_millis() as u64,
            },
            "client": format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
            "brokers": bootstrap,
            "broker_settings": args.broker_settings,
            "broker": if broker_measured {
                "strom broker child process in a temp dir, on the same cores as the client; its CPU and peak RSS \
                 from /proc of the broker process"
            } else {
                "external; broker CPU and memory not measured"
            },
        },
        "figures_are": "the run with the median records_per_sec of each case (e2e-latency: the median p99)",
        "scenarios": scenarios,
        "targets": targets,
    })
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
