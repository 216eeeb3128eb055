//! `strom bench`: named scenarios measured with librdkafka (the client most of the world uses) against an
//! in-process Strom broker or any Kafka-compatible broker (`--brokers`), each printed as one
//! `kafka-producer-perf-test`-style line and written to a JSON report. `ceiling` measures, in the same run, what
//! a bare loopback read+append server reaches, so every produce figure is also given as a fraction of it.

mod ceiling;
mod consume;
mod figures;
mod produce;
mod report;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum};
use strom_broker::{Broker, BrokerConfig, RunningBroker};

use figures::Figures;

/// Partitions of every topic the produce and consume scenarios create.
const PARTITIONS: i32 = 6;
/// Name of the in-process broker's runtime threads, so its CPU time can be told apart from the client's.
const BROKER_THREAD: &str = "strom-broker";

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scenario to run; repeat for several. Default: every implemented scenario.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Records per scenario run.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Write a JSON report (machine, git commit, parameters, figures) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Run each scenario this many times and report the run with the median rate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Bare loopback TCP server that reads length-prefixed frames and appends them to a file.
    Ceiling,
    /// acks=1, 6 partitions, 1 KiB records.
    #[value(name = "produce-1k")]
    Produce1k,
    /// acks=1, 6 partitions, 100 B records.
    #[value(name = "produce-100b")]
    Produce100b,
    /// acks=all (acknowledged after fsync), 6 partitions, 1 KiB records.
    #[value(name = "produce-durable")]
    ProduceDurable,
    /// Read back, in assign mode, the 1 KiB records a produce run wrote.
    Consume,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Ceiling => "ceiling",
            Scenario::Produce1k => "produce-1k",
            Scenario::Produce100b => "produce-100b",
            Scenario::ProduceDurable => "produce-durable",
            Scenario::Consume => "consume",
        }
    }
}

/// Where the scenarios send their load.
enum Target {
    InProcess {
        runtime: tokio::runtime::Runtime,
        broker: RunningBroker,
        // Held so the data directory lives as long as the broker.
        _dir: tempfile::TempDir,
    },
    External(String),
}

impl Target {
    fn bootstrap(&self) -> String {
        match self {
            Target::InProcess { broker, .. } => broker.local_addr().to_string(),
            Target::External(brokers) => brokers.clone(),
        }
    }

    fn in_process(&self) -> bool {
        matches!(self, Target::InProcess { .. })
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    // The ceiling runs first so produce figures can be given as a fraction of it; consume reads what produce wrote.
    scenarios.sort();
    scenarios.dedup();

    let target = match external_brokers() {
        Some(brokers) => Target::External(brokers),
        None => start_broker()?,
    };
    let bootstrap = target.bootstrap();
    eprintln!(
        "strom bench: {} records per run, {} run(s) per scenario, broker {} ({})",
        args.records,
        args.runs,
        bootstrap,
        if target.in_process() {
            "in-process Strom, sharing this process and its cores with the client"
        } else {
            "external"
        }
    );

    let mut results: Vec<(Scenario, Figures, Vec<f64>)> = Vec::new();
    let mut ceiling_rate: Option<f64> = None;
    // Topic holding 1 KiB records from the latest produce-1k run, for consume to read back.
    let mut written: Option<String> = None;
    for &scenario in &scenarios {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            // The ceiling does not involve the broker.
            let measure_broker = target.in_process() && scenario != Scenario::Ceiling;
            let mut probe = figures::BrokerProbe::start(measure_broker);
            let mut figures = match scenario {
                Scenario::Ceiling => ceiling::run(args.records)?,
                Scenario::Consume => {
                    let topic = match written.clone() {
                        Some(topic) => topic,
                        None => {
                            // No produce-1k in this run: write the records first, outside the measurement.
                            let topic = format!("bench-consume-source-{run}");
                            produce::run(&bootstrap, &topic, produce::Load::ONE_K, args.records)?;
                            probe = figures::BrokerProbe::start(measure_broker);
                            written = Some(topic.clone());
                            topic
                        }
                    };
                    consume::run(&bootstrap, &topic, args.records)?
                }
                Scenario::Produce1k | Scenario::Produce100b | Scenario::ProduceDurable => {
                    let load = match scenario {
                        Scenario::Produce1k => produce::Load::ONE_K,
                        Scenario::Produce100b => produce::Load::HUNDRED_B,
                        _ => produce::Load::DURABLE,
                    };
                    let topic = format!("bench-{}-{}-{run}", scenario.name(), std::process::id());
                    let figures = produce::run(&bootstrap, &topic, load, args.records)?;
                    if scenario == Scenario::Produce1k {
                        written = Some(topic);
                    }
                    figures
                }
            };
            figures.broker = probe.finish(figures.records);
            runs.push(figures);
        }
        let rates: Vec<f64> = runs.iter().map(|f| f.records_per_sec).collect();
        let median = figures::median_run(runs);
        if scenario == Scenario::Ceiling {
            ceiling_rate = Some(median.records_per_sec);
        }
        let ratio = match scenario {
            Scenario::Produce1k | Scenario::ProduceDurable => {
                ceiling_rate.map(|c| median.records_per_sec / c)
            }
            // 100 B records against a ceiling measured with 1 KiB records: compare bytes, not records.
            Scenario::Produce100b => ceiling_rate.map(|c| median.mb_per_sec / (c * 1024.0 / 1e6)),
            _ => None,
        };
        println!("{}: {}", scenario.name(), median.summary_line(ratio));
        results.push((scenario, median, rates));
    }

    if let Some(path) = &args.report {
        let report = report::build(
            &args,
            &bootstrap,
            target.in_process(),
            &results,
            ceiling_rate,
        );
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing the report to {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Target::InProcess {
        runtime, broker, ..
    } = target
    {
        runtime.block_on(broker.shutdown());
    }
    Ok(())
}

/// The `--brokers` value if it was given on the command line. `--brokers` is the global client option, whose
/// default (127.0.0.1:9092) must not count as a request to bench an external broker, so the command line is read
/// again for where the value came from.
fn external_brokers() -> Option<String> {
    let matches = crate::Cli::command()
        .try_get_matches_from(std::env::args_os())
        .ok()?;
    let bench = matches.subcommand_matches("bench")?;
    if bench.value_source("brokers") != Some(clap::parser::ValueSource::CommandLine) {
        return None;
    }
    bench.get_one::<String>("brokers").cloned()
}

fn start_broker() -> Result<Target> {
    let dir = tempfile::tempdir().context("creating the broker's temp dir")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(BROKER_THREAD)
        .enable_all()
        .build()?;
    let broker = runtime.block_on(async {
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            num_partitions: PARTITIONS,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        anyhow::Ok(Broker::start(config, listener).await?)
    })?;
    Ok(Target::InProcess {
        runtime,
        broker,
        _dir: dir,
    })
}
