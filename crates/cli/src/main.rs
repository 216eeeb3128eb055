//! `strom`: the one binary: the broker (`strom broker`) and the client commands (topic, produce, consume, group,
//! transactions, cluster) built on `strom-client`.
//!
//! Exit codes: 0 success, 1 the operation failed (the message names the problem, Kafka error codes in words),
//! 2 bad usage (from clap).

mod commands;
mod kafka_errors;
mod output;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

/// The broker allocates and frees a buffer per produce request and per fetched partition, many of them larger
/// than glibc's mmap threshold; glibc maps and unmaps each one, and the page faults and page clearing that follow
/// cost more CPU than the copies themselves (measured with perf on `strom bench --scenario consume`). mimalloc
/// keeps freed memory for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom: an event streaming platform that speaks the Kafka protocol"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(
        long,
        global = true,
        env = "STROM_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = output::Format::Table)]
    pub format: output::Format,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: data in ./strom-data, Kafka listener on 127.0.0.1:9092.
    Broker(commands::broker::BrokerArgs),
    /// Create, list, describe, delete topics, add partitions, change configs.
    #[command(subcommand)]
    Topic(commands::topic::TopicCommand),
    /// Produce records from stdin or a file.
    Produce(commands::produce::ProduceArgs),
    /// Consume records (from the beginning, the end, an offset, a timestamp or a relative time).
    Consume(commands::consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their offsets.
    #[command(subcommand)]
    Group(commands::group::GroupCommand),
    /// List and describe transactions; show the producers with state on a topic's partitions.
    #[command(subcommand)]
    Transactions(commands::transactions::TransactionsCommand),
    /// Show the cluster: brokers, controller, cluster id.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Prepare a node's data directory: `format` writes its cluster id and node id (kafka-storage.sh).
    #[command(subcommand)]
    Storage(commands::storage::StorageCommand),
    /// Run an N-node cluster on this machine (each node a broker and a controller); Ctrl-C stops it.
    DevCluster(commands::dev_cluster::DevClusterArgs),
    /// Measure throughput and latency with librdkafka against an in-process Strom broker or `--brokers`.
    Bench(commands::bench::BenchArgs),
    /// Print a shell completion script: `strom completions bash > /etc/bash_completion.d/strom`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The broker logs its life; client commands keep stderr for errors only.
    let default_filter = if matches!(cli.command, Command::Broker(_) | Command::DevCluster(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STROM_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Broker(args) => commands::broker::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Storage(cmd) => commands::storage::run(cmd),
        Command::DevCluster(args) => commands::dev_cluster::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "strom", &mut std::io::stdout());
            Ok(())
        }
        Command::Topic(cmd) => client_runtime()?.block_on(commands::topic::run(&global, cmd)),
        Command::Produce(args) => client_runtime()?.block_on(commands::produce::run(&global, args)),
        Command::Consume(args) => client_runtime()?.block_on(commands::consume::run(&global, args)),
        Command::Group(cmd) => client_runtime()?.block_on(commands::group::run(&global, cmd)),
        Command::Cluster(cmd) => client_runtime()?.block_on(commands::cluster::run(&global, cmd)),
        Command::Transactions(cmd) => {
            client_runtime()?.block_on(commands::transactions::run(&global, cmd))
        }
    }
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
