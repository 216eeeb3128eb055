//! `--compare`: set this run's figures against a report saved by an earlier `strom bench --report`, and flag every
//! case more than 10 % worse: a lower rate, or for the fixed-rate e2e-latency case a higher p99 latency.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::CaseResult;

/// How much worse than the saved figure a case may be before it is flagged.
const TOLERANCE: f64 = 0.10;

/// The figures of a saved report, by case name.
pub struct Saved {
    path: String,
    cases: BTreeMap<String, SavedCase>,
}

struct SavedCase {
    records_per_sec: f64,
    p99_ms: Option<f64>,
}

pub struct Comparison {
    pub baseline: String,
    pub lines: Vec<String>,
    pub regressions: usize,
}

pub fn load(path: &Path) -> Result<Saved> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the report to compare with, {}", path.display()))?;
    let json: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a strom bench report", path.display()))?;
    parse(&json, &path.display().to_string())
}

fn parse(json: &Value, path: &str) -> Result<Saved> {
    let scenarios = json["scenarios"]
        .as_object()
        .with_context(|| format!("{path} has no \"scenarios\" object: not a strom bench report"))?;
    let cases = scenarios
        .iter()
        .filter_map(|(name, figures)| {
            Some((
                name.clone(),
                SavedCase {
                    records_per_sec: figures["records_per_sec"].as_f64()?,
                    p99_ms: figures["latency_ms"]["p99"].as_f64(),
                },
            ))
        })
        .collect();
    Ok(Saved {
        path: path.to_string(),
        cases,
    })
}

pub fn compare(saved: &Saved, results: &[CaseResult]) -> Comparison {
    let mut lines = Vec::new();
    let mut regressions = 0;
    for result in results {
        let Some(old) = saved.cases.get(result.name) else {
            lines.push(format!("{}: not in the saved report", result.name));
            continue;
        };
        let (what, old_value, new_value, worse) = if result.name.starts_with("e2e-") {
            let new = result.figures.latency_ms.map_or(f64::INFINITY, |l| l.p99);
            let old = old.p99_ms.unwrap_or(f64::INFINITY);
            ("p99 ms", old, new, new > old * (1.0 + TOLERANCE))
        } else {
            let new = result.figures.records_per_sec;
            let old = old.records_per_sec;
            ("records/s", old, new, new < old * (1.0 - TOLERANCE))
        };
        let change = (new_value / old_value - 1.0) * 100.0;
        if worse {
            regressions += 1;
        }
        lines.push(format!(
            "{}{}: {what} {old_value:.2} -> {new_value:.2} ({change:+.1} %)",
            if worse { "REGRESSION " } else { "" },
            result.name
        ));
    }
    Comparison {
        baseline: saved.path.clone(),
        lines,
        regressions,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::figures::{Figures, Latency};
    use super::*;

    fn result(name: &'static str, rate: f64, p99: Option<f64>) -> CaseResult {
        let mut figures = Figures::new(rate as usize, 0, Duration::from_secs(1));
        figures.latency_ms = p99.map(|p99| Latency {
            p50: p99 / 2.0,
            p99,
            p999: p99,
            max: p99,
        });
        CaseResult {
            name,
            figures,
            rates_of_all_runs: vec![rate],
            ratios: Vec::new(),
        }
    }

    fn saved() -> Saved {
        let report = json!({"scenarios": {
            "produce-1k/p6": {"records_per_sec": 500000.0, "latency_ms": {"p99": 100.0}},
            "consume/assign": {"records_per_sec": 400000.0},
            "e2e-latency": {"records_per_sec": 10000.0, "latency_ms": {"p99": 2.0}},
        }});
        parse(&report, "old.json").unwrap()
    }

    #[test]
    fn a_rate_more_than_ten_percent_lower_is_a_regression() {
        let c = compare(
            &saved(),
            &[
                result("produce-1k/p6", 440_000.0, None),
                result("consume/assign", 370_000.0, None),
            ],
        );
        assert_eq!(c.regressions, 1, "{:?}", c.lines);
        assert!(
            c.lines[0].starts_with("REGRESSION produce-1k/p6"),
            "{}",
            c.lines[0]
        );
        assert!(c.lines[0].contains("-12.0 %"), "{}", c.lines[0]);
        assert!(c.lines[1].starts_with("consume/assign"), "{}", c.lines[1]);
    }

    #[test]
    fn e2e_latency_is_judged_by_its_p99() {
        let better_rate_worse_latency =
            compare(&saved(), &[result("e2e-latency", 20_000.0, Some(2.5))]);
        assert_eq!(better_rate_worse_latency.regressions, 1);
        let within = compare(&saved(), &[result("e2e-latency", 5_000.0, Some(2.1))]);
        assert_eq!(within.regressions, 0, "{:?}", within.lines);
    }

    #[test]
    fn cases_missing_from_the_saved_report_are_named_not_flagged() {
        let c = compare(&saved(), &[result("many-partitions/p1000", 1.0, None)]);
        assert_eq!(c.regressions, 0);
        assert_eq!(c.lines, ["many-partitions/p1000: not in the saved report"]);
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused_by_name() {
        let err = parse(&json!({"hello": 1}), "notes.json").err().unwrap();
        assert!(err.to_string().contains("notes.json"), "{err}");
    }
}
