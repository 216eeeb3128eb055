//! `strom storage`: prepare a node's data directory before its first start, as `kafka-storage.sh` does.
//!
//! `format` writes `meta.properties` (cluster id and node id) into the data directory named by the config, and
//! refuses a directory that is already formatted, so it never overwrites a node's data. Every node of a
//! cluster is formatted with the same cluster id; a node then never joins another cluster's data.

use anyhow::{bail, Result};

use super::broker::{broker_config, BrokerArgs};

#[derive(clap::Subcommand)]
pub enum StorageCommand {
    /// Write meta.properties for this node (node.id and log.dirs come from --config / --set).
    Format {
        /// The cluster's id; the same on every node. Generated (and printed) when left out.
        #[arg(long, short = 't')]
        cluster_id: Option<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Print a new random cluster id.
    RandomUuid,
}

pub fn run(command: StorageCommand) -> Result<()> {
    match command {
        StorageCommand::RandomUuid => {
            println!("{}", strom_metadata::generate_cluster_id());
            Ok(())
        }
        StorageCommand::Format { cluster_id, broker } => {
            let config = broker_config(&broker)?;
            let cluster_id = cluster_id.unwrap_or_else(strom_metadata::generate_cluster_id);
            if cluster_id.is_empty() || cluster_id.contains(char::is_whitespace) {
                bail!("cluster id {cluster_id:?} must be non-empty and without spaces");
            }
            strom_broker::cluster::format(&config.data_dir, &cluster_id, config.node_id)?;
            println!(
                "Formatted {} for cluster {cluster_id}, node {}.",
                config.data_dir.display(),
                config.node_id
            );
            Ok(())
        }
    }
}
