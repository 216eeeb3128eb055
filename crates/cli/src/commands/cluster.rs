//! `strom cluster`: the cluster as its brokers report it.
//!
//! `info --format json` prints `{"cluster_id", "controller_id", "brokers": [{"id", "host", "port", "rack"}]}`.

use anyhow::Result;
use serde_json::json;
use strom_client::admin::Admin;

use crate::kafka_errors::to_anyhow;
use crate::output::{print_json, Format, Table};
use crate::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers.
    Info,
}

/// The admin client for the client commands, connected to `--brokers` / `STROM_BROKERS`.
pub async fn connect(global: &GlobalArgs) -> Result<Admin> {
    Admin::connect(&global.brokers).await.map_err(to_anyhow)
}

pub async fn run(global: &GlobalArgs, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Info => {
            let admin = connect(global).await?;
            let cluster = admin.describe_cluster().await.map_err(to_anyhow)?;
            match global.format {
                Format::Json => print_json(&json!({
                    "cluster_id": cluster.cluster_id,
                    "controller_id": cluster.controller_id,
                    "brokers": cluster.brokers.iter().map(|b| json!({
                        "id": b.id,
                        "host": b.host,
                        "port": b.port,
                        "rack": b.rack,
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    println!(
                        "Cluster ID: {}",
                        cluster.cluster_id.as_deref().unwrap_or("-")
                    );
                    println!("Controller: {}", cluster.controller_id);
                    println!();
                    let mut table = Table::new(["ID", "HOST", "PORT", "RACK"]);
                    for b in &cluster.brokers {
                        table.row([
                            b.id.to_string(),
                            b.host.clone(),
                            b.port.to_string(),
                            b.rack.clone().unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
    }
    Ok(())
}
