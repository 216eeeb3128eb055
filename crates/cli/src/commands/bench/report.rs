//! The JSON report and the progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::figures::{read_kib, Figures};
use super::{BenchArgs, Scenario, PARTITIONS};

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
    in_process: bool,
    results: &[(Scenario, Figures, Vec<f64>)],
    ceiling_rate: Option<f64>,
) -> Value {
    let scenarios: serde_json::Map<String, Value> = results
        .iter()
        .map(|(scenario, figures, rates)| {
            let mut value = serde_json::to_value(figures).unwrap_or(Value::Null);
            value["rates_of_all_runs"] = json!(rates);
            if let (Some(c), Scenario::Produce1k | Scenario::ProduceDurable) =
                (ceiling_rate, scenario)
            {
                value["fraction_of_ceiling"] = json!(figures.records_per_sec / c);
            }
            (scenario.name().to_string(), value)
        })
        .collect();
    json!({
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "memory_kib": read_kib("/proc/meminfo", "MemTotal"),
        },
        "git_commit": git_commit(),
        "parameters": {
            "records": args.records,
            "runs": args.runs,
            "partitions": PARTITIONS,
            "client": format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
            "brokers": bootstrap,
            "broker": if in_process {
                "in-process Strom broker in a temp dir; it shares this process and its cores with the client. \
                 Broker CPU is its runtime threads' only; peak RSS is the whole process's."
            } else {
                "external; broker CPU and memory not measured"
            },
        },
        "figures_are": "the run with the median records_per_sec of each scenario",
        "scenarios": scenarios,
    })
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
