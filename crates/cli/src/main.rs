//! `strom`: the one binary. `strom broker` runs a broker; `strom completions` prints shell completions. The
//! client commands (topic, produce, consume, group, cluster) arrive with the Rust client (issue 4).

mod commands;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom: an event streaming platform that speaks the Kafka protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: data in ./strom-data, Kafka listener on 127.0.0.1:9092.
    Broker(commands::broker::BrokerArgs),
    /// Print a shell completion script: `strom completions bash > /etc/bash_completion.d/strom`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STROM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => commands::broker::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "strom", &mut std::io::stdout());
            Ok(())
        }
    }
}
