//! `strom bench`: named scenarios measured with librdkafka (the client most of the world uses) against a Strom
//! broker started as a child process, or any Kafka-compatible broker (`--brokers`). Each scenario prints one
//! `kafka-producer-perf-test`-style line and goes into a JSON report. `ceiling` measures, in the same run, what a
//! bare loopback read+CRC+append server reaches, so every produce figure is also given as a fraction of it; the
//! report can be compared with a saved one (`--compare`), flagging any scenario more than 10 % worse.

mod broker_metrics;
mod broker_process;
mod ceiling;
mod compare;
mod consume;
mod e2e;
mod figures;
mod produce;
mod replicated;
mod report;
mod sink;
mod streams;
mod targets;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, ValueEnum};

use broker_process::{BrokerProcess, UsageProbe};
use figures::Figures;

/// Partitions of the topics the scenarios create, unless a case says otherwise.
const PARTITIONS: i32 = 6;
/// Partitions of the many-partitions scenario's topic.
const MANY_PARTITIONS: i32 = 1000;
/// The traffic e2e-after-load follows, as a user's broker sees it before its latency is measured: `mb` MiB at
/// acks=1, three quarters in 1 KiB records and a quarter in 100 B records (2048 MiB: 1.57M and 5.4M records),
/// each read back.
fn after_load(mb: u64) -> [(produce::Load, usize); 2] {
    let bytes = mb * 1024 * 1024;
    [
        (produce::Load::ONE_K, (bytes * 3 / 4 / 1024).max(1) as usize),
        (produce::Load::HUNDRED_B, (bytes / 4 / 100).max(1) as usize),
    ]
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scenario to run; repeat for several. Default: all of them.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Records per scenario run (e2e-latency sends --e2e-rate × --e2e-seconds instead).
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Run each scenario this many times and report the run with the median rate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Write a JSON report (machine, git commit, parameters, figures, targets) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Compare with a report saved by an earlier run; exits with status 1 if any scenario is more than 10 % worse.
    #[arg(long, value_name = "REPORT")]
    pub compare: Option<PathBuf>,
    /// Config for the strom broker the bench starts, as `strom broker --set`; repeatable:
    /// `--broker-set log.flush.interval.ms=60000`.
    #[arg(long = "broker-set", value_name = "KEY=VALUE")]
    pub broker_settings: Vec<String>,
    /// e2e-latency: records per second the producer sends.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub e2e_rate: u32,
    /// e2e-latency and e2e-after-load: how long each run sends for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub e2e_seconds: u32,
    /// e2e-after-load: MiB produced (and consumed) right before each run.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    pub after_load_mb: u64,
    /// streams: the application's `num.stream.threads` (Kafka Streams' default, 1, unless given).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams_threads: u32,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Bare loopback TCP server that reads, CRC-checks and appends frames to a file: 1 KiB and 100 B records.
    Ceiling,
    /// acks=1, 1 KiB records, 1 and 6 partitions.
    #[value(name = "produce-1k")]
    Produce1k,
    /// acks=1, 100 B records, 1 and 6 partitions.
    #[value(name = "produce-100b")]
    Produce100b,
    /// acks=all (acknowledged after fsync), 1 KiB records, 6 partitions.
    #[value(name = "produce-durable")]
    ProduceDurable,
    /// Read back the 1 KiB records of produce-1k: assigned partitions, and as a consumer group.
    Consume,
    /// Fixed-rate produce (linger 0, acks=1) to consume, per-record latency: librdkafka's clients, then Strom's.
    #[value(name = "e2e-latency")]
    E2eLatency,
    /// e2e-latency at 5,000 and 10,000 records/s right after 2 GB of produce traffic (1.5M × 1 KiB and
    /// 5M × 100 B, acks=1) and its consumption, with no pause between: the tail users see after real traffic.
    #[value(name = "e2e-after-load")]
    E2eAfterLoad,
    /// 1,000 partitions, 1 KiB records, acks=1.
    #[value(name = "many-partitions")]
    ManyPartitions,
    /// A strom-streams application in the bench process over 100 B records on 6 partitions: a stateless
    /// filter + map_values topology, and a windowed count (tumbling 10 s windows).
    Streams,
    /// produce-durable against a 3-node cluster started by the bench (replication factor 3,
    /// min.insync.replicas=2): every record on all three replicas before it is acknowledged.
    #[value(name = "produce-replicated")]
    ProduceReplicated,
    /// produce-1k's load (6 partitions, JSON-like text values, sent uncompressed) into topics whose
    /// `compression.type` is producer (as sent), lz4, zstd and gzip: the broker's recompression cost.
    #[value(name = "produce-recompress")]
    ProduceRecompress,
    /// produce-durable's load (1 KiB, acks=all, 6 partitions) from librdkafka transactional producers, in
    /// transactions of 1,000 records each producer commits one after the other: one producer, then four at once.
    #[value(name = "produce-transactional")]
    ProduceTransactional,
    /// kill -9 of a partition leader under an idempotent acks=all load (2,000 records/s) on that cluster: the
    /// produce pause until a new leader acknowledges.
    Failover,
}

/// One measured line of the bench: a scenario with its parameters.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Transactions of `per_transaction` records from `producers` transactional producers at once.
    Transactional {
        per_transaction: usize,
        producers: usize,
    },
    Ceiling {
        record_bytes: usize,
    },
    Sink {
        load: produce::Load,
    },
    Produce {
        load: produce::Load,
        partitions: i32,
    },
    Consume(consume::Mode),
    E2eLatency(e2e::Client),
    /// e2e-latency at `rate` records/s right after [`after_load`]'s traffic.
    E2eAfterLoad {
        rate: u32,
    },
    /// A strom-streams topology over records written before the run.
    Streams(streams::Topology),
    /// On the bench's 3-node cluster.
    Replicated {
        load: produce::Load,
    },
    Failover,
    /// produce-1k's load with text values into a topic of `compression.type` = `codec` (None: producer).
    Recompress {
        codec: Option<&'static str>,
    },
}

impl Kind {
    /// The API whose broker-side request time is set beside the case's latency: Produce where the latency is a
    /// produce's delivery (e2e's too: its tail is produce plus fetch, and the produce side is where queueing
    /// showed), Fetch for consume.
    fn main_api(&self) -> Option<&'static str> {
        match self {
            Kind::Produce { .. }
            | Kind::Recompress { .. }
            | Kind::Transactional { .. }
            | Kind::E2eLatency(_)
            | Kind::E2eAfterLoad { .. } => Some("Produce"),
            Kind::Consume(_) => Some("Fetch"),
            Kind::Ceiling { .. }
            | Kind::Sink { .. }
            | Kind::Streams(_)
            | Kind::Replicated { .. }
            | Kind::Failover => None,
        }
    }
}

impl Scenario {
    fn cases(self) -> Vec<Case> {
        use produce::Load;
        let produce = |name, load, partitions| Case {
            name,
            kind: Kind::Produce { load, partitions },
        };
        match self {
            Scenario::Ceiling => vec![
                Case {
                    name: "ceiling-1k",
                    kind: Kind::Ceiling { record_bytes: 1024 },
                },
                Case {
                    name: "ceiling-100b",
                    kind: Kind::Ceiling { record_bytes: 100 },
                },
                Case {
                    name: "sink-1k",
                    kind: Kind::Sink { load: Load::ONE_K },
                },
                Case {
                    name: "sink-100b",
                    kind: Kind::Sink {
                        load: Load::HUNDRED_B,
                    },
                },
            ],
            Scenario::Produce1k => vec![
                produce("produce-1k/p1", Load::ONE_K, 1),
                produce("produce-1k/p6", Load::ONE_K, PARTITIONS),
            ],
            Scenario::Produce100b => vec![
                produce("produce-100b/p1", Load::HUNDRED_B, 1),
                produce("produce-100b/p6", Load::HUNDRED_B, PARTITIONS),
            ],
            Scenario::ProduceDurable => {
                vec![produce("produce-durable/p6", Load::DURABLE, PARTITIONS)]
            }
            Scenario::Consume => vec![
                Case {
                    name: "consume/assign",
                    kind: Kind::Consume(consume::Mode::Assign),
                },
                Case {
                    name: "consume/group",
                    kind: Kind::Consume(consume::Mode::Group),
                },
            ],
            Scenario::E2eLatency => vec![
                Case {
                    name: "e2e-latency",
                    kind: Kind::E2eLatency(e2e::Client::Librdkafka),
                },
                Case {
                    name: "e2e-latency/strom-client",
                    kind: Kind::E2eLatency(e2e::Client::Strom),
                },
            ],
            Scenario::E2eAfterLoad => vec![
                Case {
                    name: "e2e-after-load/5k",
                    kind: Kind::E2eAfterLoad { rate: 5_000 },
                },
                Case {
                    name: "e2e-after-load/10k",
                    kind: Kind::E2eAfterLoad { rate: 10_000 },
                },
            ],
            Scenario::ManyPartitions => vec![produce(
                "many-partitions/p1000",
                Load::ONE_K,
                MANY_PARTITIONS,
            )],
            Scenario::Streams => vec![
                Case {
                    name: "streams/stateless",
                    kind: Kind::Streams(streams::Topology::Stateless),
                },
                Case {
                    name: "streams/windowed-count",
                    kind: Kind::Streams(streams::Topology::WindowedCount),
                },
            ],
            Scenario::ProduceReplicated => vec![Case {
                name: "produce-replicated/p6",
                kind: Kind::Replicated {
                    load: Load::DURABLE,
                },
            }],
            Scenario::ProduceRecompress => [
                ("produce-recompress/as-sent", None),
                ("produce-recompress/lz4", Some("lz4")),
                ("produce-recompress/zstd", Some("zstd")),
                ("produce-recompress/gzip", Some("gzip")),
            ]
            .into_iter()
            .map(|(name, codec)| Case {
                name,
                kind: Kind::Recompress { codec },
            })
            .collect(),
            Scenario::ProduceTransactional => vec![
                Case {
                    name: "produce-transactional/p6",
                    kind: Kind::Transactional {
                        per_transaction: 1_000,
                        producers: 1,
                    },
                },
                Case {
                    name: "produce-transactional/p6x4",
                    kind: Kind::Transactional {
                        per_transaction: 1_000,
                        producers: 4,
                    },
                },
            ],
            Scenario::Failover => vec![Case {
                name: "failover",
                kind: Kind::Failover,
            }],
        }
    }
}

/// What a case's figures are set against in its summary line: the same-run ceiling for its record size, or for
/// consume, many-partitions and streams the 6-partition produce figure of their record size.
fn baselines(case: &Case) -> &'static [&'static str] {
    match case.kind {
        Kind::Produce {
            partitions: MANY_PARTITIONS,
            ..
        } => &["ceiling-1k", "sink-1k", "produce-1k/p6"],
        Kind::Produce { load, .. } if load.record_bytes == 100 => &["ceiling-100b", "sink-100b"],
        Kind::Produce { .. } => &["ceiling-1k", "sink-1k"],
        Kind::Sink { load } if load.record_bytes == 100 => &["ceiling-100b"],
        Kind::Sink { .. } => &["ceiling-1k"],
        Kind::Consume(_) => &["produce-1k/p6"],
        Kind::Streams(_) => &["produce-100b/p6"],
        Kind::Replicated { .. } | Kind::Transactional { .. } => &["produce-durable/p6"],
        Kind::Recompress { codec: Some(_) } => &["produce-recompress/as-sent"],
        Kind::Recompress { codec: None } => &[],
        Kind::Ceiling { .. } | Kind::E2eLatency(_) | Kind::E2eAfterLoad { .. } | Kind::Failover => {
            &[]
        }
    }
}

/// One case's result: the median run, and every run's rate.
pub struct CaseResult {
    pub name: &'static str,
    pub figures: Figures,
    pub rates_of_all_runs: Vec<f64>,
    /// (baseline case, this rate ÷ the baseline's rate)
    pub ratios: Vec<(&'static str, f64)>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    // Declaration order: the ceiling first so produce figures can be set against it, consume after the produce
    // run whose records it reads.
    scenarios.sort();
    scenarios.dedup();
    let baseline = match &args.compare {
        Some(path) => Some(compare::load(path)?),
        None => None,
    };

    let broker = match external_brokers() {
        Some(_) if !args.broker_settings.is_empty() => {
            bail!(
                "--broker-set configures the broker the bench starts, not one given with --brokers"
            )
        }
        Some(brokers) => Broker::External(brokers),
        None => {
            let settings: Vec<&str> = args.broker_settings.iter().map(String::as_str).collect();
            Broker::Child(BrokerProcess::start(&settings)?)
        }
    };
    let bootstrap = broker.bootstrap();
    eprintln!(
        "strom bench: {} records per run, {} run(s) per case, broker {} ({})",
        args.records,
        args.runs,
        bootstrap,
        match &broker {
            Broker::Child(_) =>
                "a strom broker child process in a temp dir, sharing this machine's cores",
            Broker::External(_) => "external",
        }
    );

    let mut results: Vec<CaseResult> = Vec::new();
    // The 3-node cluster of the replicated scenarios, started when the first of them runs.
    let mut cluster: Option<replicated::BenchCluster> = None;
    // Topic holding 1 KiB records from the latest 6-partition produce run, for consume to read back.
    let mut written: Option<String> = None;
    for case in scenarios.iter().flat_map(|s| s.cases()) {
        let on_cluster = matches!(case.kind, Kind::Replicated { .. } | Kind::Failover);
        if on_cluster && matches!(broker, Broker::External(_)) {
            eprintln!(
                "note: {} runs on a 3-node cluster the bench starts; skipped with --brokers",
                case.name
            );
            continue;
        }
        if on_cluster && cluster.is_none() {
            cluster = Some(replicated::BenchCluster::start(&args.broker_settings)?);
        }
        let mut runs = Vec::new();
        for run in 0..args.runs {
            let topic = format!(
                "bench-{}-{}-{run}",
                case.name.replace('/', "-"),
                std::process::id()
            );
            if let Kind::Consume(_) = case.kind {
                if written.is_none() {
                    // No produce-1k/p6 in this bench: write the records first, outside the measurement.
                    let source = format!("bench-consume-source-{}", std::process::id());
                    produce::run(
                        &bootstrap,
                        &source,
                        PARTITIONS,
                        produce::Load::ONE_K,
                        args.records,
                    )?;
                    written = Some(source);
                }
            }
            if let Kind::Streams(_) = case.kind {
                // The input, written before the broker settles: the run measures its processing only.
                streams::produce_input(&bootstrap, &topic, PARTITIONS, args.records)?;
            }
            if let Broker::Child(process) = &broker {
                if !process.settle() {
                    eprintln!("note: the broker was still busy when {} started", case.name);
                }
            }
            let data_dir = match &broker {
                Broker::Child(process) => process.data_dir().to_path_buf(),
                // An external broker on this machine most likely writes to the temp dir's filesystem.
                Broker::External(_) => std::env::temp_dir(),
            };
            broker_process::settle_writeback(&data_dir)?;
            // Consume reads from the disk where the bench can see the broker's files, as a consumer catching up
            // on old data would; from the page cache otherwise.
            let mut from_disk = false;
            if let (Kind::Consume(_), Broker::Child(_), Some(source)) =
                (case.kind, &broker, &written)
            {
                from_disk = broker_process::evict_from_page_cache(&data_dir, source)? > 0;
            }
            // The traffic e2e-after-load measures after: written and read right before, not settled.
            let mut load_topics = Vec::new();
            if let Kind::E2eAfterLoad { .. } = case.kind {
                for (i, (load, records)) in after_load(args.after_load_mb).into_iter().enumerate() {
                    let load_topic = format!("{topic}-load{i}");
                    produce::run(&bootstrap, &load_topic, PARTITIONS, load, records)?;
                    consume::run(
                        &bootstrap,
                        &load_topic,
                        PARTITIONS,
                        records,
                        consume::Mode::Assign,
                        false,
                    )?;
                    load_topics.push(load_topic);
                }
            }
            // The ceiling and the sink run in this process and involve no broker; the cluster's three brokers are
            // not probed.
            let measured = !matches!(case.kind, Kind::Ceiling { .. } | Kind::Sink { .. });
            let broker_measured = measured && !on_cluster;
            let broker_probe = broker
                .pid()
                .filter(|_| broker_measured)
                .and_then(UsageProbe::start);
            let client_probe = measured
                .then(|| UsageProbe::start(std::process::id()))
                .flatten();
            // The broker's own request times of the API whose latency the case reports.
            let metrics_before = broker
                .metrics_addr()
                .filter(|_| broker_measured)
                .zip(case.kind.main_api())
                .map(|(addr, api)| broker_metrics::scrape(addr).map(|s| (addr, api, s)))
                .transpose()?;
            // A topic this run wrote and no later case reads: deleted once the run is measured, so the broker's
            // disk and page cache hold one run's data at a time (in a VM, page cache growing into memory never
            // touched before costs the host a page fault per page, which showed as a 2x slower third run).
            let mut finished_topic = None;
            let mut figures = match case.kind {
                Kind::Ceiling { record_bytes } => ceiling::run(args.records, record_bytes)?,
                Kind::Sink { load } => {
                    let sink = sink::Sink::start(&topic, PARTITIONS)?;
                    let mut figures = produce::send_all(
                        &sink.addr().to_string(),
                        &topic,
                        PARTITIONS,
                        load,
                        args.records,
                    )?;
                    figures.note = Some("librdkafka into a bare read + CRC-32C + append sink");
                    figures
                }
                Kind::Produce { load, partitions } => {
                    let figures = produce::run(&bootstrap, &topic, partitions, load, args.records)?;
                    finished_topic = if case.name == "produce-1k/p6" {
                        // Consume reads the latest one.
                        written.replace(topic)
                    } else {
                        Some(topic)
                    };
                    figures
                }
                Kind::Consume(mode) => {
                    let source = written.as_deref().context("no topic to consume")?;
                    consume::run(
                        &bootstrap,
                        source,
                        PARTITIONS,
                        args.records,
                        mode,
                        from_disk,
                    )?
                }
                Kind::Streams(topology) => {
                    let figures = streams::run(
                        &bootstrap,
                        &topic,
                        PARTITIONS,
                        args.records,
                        topology,
                        args.streams_threads as usize,
                    )?;
                    finished_topic = Some(topic);
                    figures
                }
                Kind::E2eLatency(client) => {
                    let records = args.e2e_rate as usize * args.e2e_seconds as usize;
                    let figures = e2e::run(
                        &bootstrap,
                        &topic,
                        PARTITIONS,
                        args.e2e_rate,
                        records,
                        client,
                    )?;
                    finished_topic = Some(topic);
                    figures
                }
                Kind::E2eAfterLoad { rate } => {
                    let records = rate as usize * args.e2e_seconds as usize;
                    let figures = e2e::run(
                        &bootstrap,
                        &topic,
                        PARTITIONS,
                        rate,
                        records,
                        e2e::Client::Librdkafka,
                    )?;
                    finished_topic = Some(topic);
                    figures
                }
                Kind::Transactional {
                    per_transaction,
                    producers,
                } => {
                    let figures = produce::run_transactional(
                        &bootstrap,
                        &topic,
                        PARTITIONS,
                        args.records,
                        per_transaction,
                        producers,
                    )?;
                    finished_topic = Some(topic);
                    figures
                }
                Kind::Recompress { codec } => {
                    let figures = produce::run_recompressed(
                        &bootstrap,
                        &topic,
                        PARTITIONS,
                        codec,
                        args.records,
                    )?;
                    finished_topic = Some(topic);
                    figures
                }
                Kind::Replicated { load } => {
                    let cluster = cluster.as_ref().context("the bench cluster")?;
                    let bootstrap = cluster.bootstrap();
                    let figures = produce::run(&bootstrap, &topic, PARTITIONS, load, args.records)?;
                    produce::delete_topic(&bootstrap, &topic)?;
                    figures
                }
                Kind::Failover => {
                    let cluster = cluster.as_mut().context("the bench cluster")?;
                    let figures = replicated::failover(cluster, &topic)?;
                    produce::delete_topic(&cluster.bootstrap(), &topic)?;
                    figures
                }
            };
            figures.broker = broker_probe.and_then(|p| p.finish(figures.records));
            figures.client = client_probe.and_then(|p| p.finish(figures.records));
            if let Some((addr, api, before)) = metrics_before {
                let after = broker_metrics::scrape(addr)?;
                figures.broker_request_ms = after.since(&before, broker_metrics::REQUEST_TIME, api);
                if matches!(case.kind, Kind::E2eLatency(_) | Kind::E2eAfterLoad { .. }) {
                    figures.broker_fetch_wakeup_ms =
                        after.since(&before, broker_metrics::FETCH_WAKEUP, "Fetch");
                }
            }
            if let Some(topic) = finished_topic {
                produce::delete_topic(&bootstrap, &topic)?;
            }
            for topic in load_topics {
                produce::delete_topic(&bootstrap, &topic)?;
            }
            runs.push(figures);
        }
        let rates_of_all_runs: Vec<f64> = runs.iter().map(|f| f.records_per_sec).collect();
        let figures = match case.kind {
            // A fixed-rate run is judged by its latency, not its rate.
            Kind::E2eLatency(_) | Kind::E2eAfterLoad { .. } => {
                figures::median_run(runs, |f| f.latency_ms.map_or(f64::MAX, |l| l.p99))
            }
            Kind::Failover => figures::median_run(runs, |f| f.pause_ms.unwrap_or(f64::MAX)),
            _ => figures::median_run(runs, |f| f.records_per_sec),
        };
        let ratios = baselines(&case)
            .iter()
            .filter_map(|&b| {
                let base = results.iter().find(|r| r.name == b)?;
                Some((b, figures.records_per_sec / base.figures.records_per_sec))
            })
            .collect::<Vec<_>>();
        println!("{}: {}", case.name, figures.summary_line(&ratios));
        results.push(CaseResult {
            name: case.name,
            figures,
            rates_of_all_runs,
            ratios,
        });
    }

    let checked = targets::check(&results);
    if !checked.is_empty() {
        println!("targets (issues #5, #10, #11, #12 and #13, 2-core machine):");
        for t in &checked {
            println!("  {}", t.line());
        }
    }
    let comparison = baseline.as_ref().map(|old| compare::compare(old, &results));
    if let Some(comparison) = &comparison {
        println!("compared with {}:", comparison.baseline);
        for line in &comparison.lines {
            println!("  {line}");
        }
    }

    if let Some(path) = &args.report {
        let report = report::build(
            &args,
            &bootstrap,
            broker.pid().is_some(),
            &results,
            &checked,
        );
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing the report to {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Broker::Child(process) = broker {
        process.stop()?;
    }
    if let Some(comparison) = comparison {
        if comparison.regressions > 0 {
            bail!(
                "{} case(s) more than 10 % worse than {}",
                comparison.regressions,
                comparison.baseline
            );
        }
    }
    Ok(())
}

/// Where the scenarios send their load.
enum Broker {
    Child(BrokerProcess),
    External(String),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Child(process) => process.addr().to_string(),
            Broker::External(brokers) => brokers.clone(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Broker::Child(process) => Some(process.pid()),
            Broker::External(_) => None,
        }
    }

    fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Broker::Child(process) => process.metrics_addr(),
            Broker::External(_) => None,
        }
    }
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
