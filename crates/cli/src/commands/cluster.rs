//! `strom cluster`: the cluster as its brokers report it.
//!
//! `info --format json` prints `{"cluster_id", "controller_id", "brokers": [{"id", "host", "port", "rack",
//! "state"}]}` (state `running` or `fenced`); `quorum --format json` prints `{"leader_id", "leader_epoch",
//! "high_watermark", "voters": [{"id", "log_end_offset", "lag"}]}`; `elect-leaders --format json` prints
//! `[{"topic", "partition", "elected", "error"}]`.

use anyhow::Result;
use serde_json::json;
use strom_client::admin::Admin;

use crate::kafka_errors::to_anyhow;
use crate::output::{print_json, Format, Table};
use crate::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers (running and fenced).
    Info,
    /// The metadata quorum: active controller, epoch, committed offset and each voter's lag (as
    /// `kafka-metadata-quorum.sh describe --status`).
    Quorum,
    /// Move partitions' leadership back to their preferred replica (the first in the replica list), as
    /// `kafka-leader-election.sh --election-type PREFERRED`. Without --topic: every partition.
    ElectLeaders {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (repeatable).
        #[arg(long, requires = "topic")]
        partition: Vec<i32>,
    },
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
            let mut brokers: Vec<_> = cluster
                .brokers
                .iter()
                .map(|b| (b, "running"))
                .chain(cluster.fenced_brokers.iter().map(|b| (b, "fenced")))
                .collect();
            brokers.sort_by_key(|(b, _)| b.id);
            match global.format {
                Format::Json => print_json(&json!({
                    "cluster_id": cluster.cluster_id,
                    "controller_id": cluster.controller_id,
                    "brokers": brokers.iter().map(|(b, state)| json!({
                        "id": b.id,
                        "host": b.host,
                        "port": b.port,
                        "rack": b.rack,
                        "state": state,
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    println!(
                        "Cluster ID: {}",
                        cluster.cluster_id.as_deref().unwrap_or("-")
                    );
                    println!("Controller: {}", cluster.controller_id);
                    println!();
                    let mut table = Table::new(["ID", "HOST", "PORT", "RACK", "STATE"]);
                    for (b, state) in &brokers {
                        table.row([
                            b.id.to_string(),
                            b.host.clone(),
                            b.port.to_string(),
                            b.rack.clone().unwrap_or_else(|| "-".into()),
                            state.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        ClusterCommand::Quorum => {
            let admin = connect(global).await?;
            let quorum = admin.describe_quorum().await.map_err(to_anyhow)?;
            match global.format {
                Format::Json => print_json(&json!({
                    "leader_id": quorum.leader_id,
                    "leader_epoch": quorum.leader_epoch,
                    "high_watermark": quorum.high_watermark,
                    "voters": quorum.voters.iter().map(|v| json!({
                        "id": v.id,
                        "log_end_offset": v.log_end_offset,
                        "lag": v.lag,
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    println!("LeaderId:       {}", quorum.leader_id);
                    println!("LeaderEpoch:    {}", quorum.leader_epoch);
                    println!("HighWatermark:  {}", quorum.high_watermark);
                    println!(
                        "CurrentVoters:  [{}]",
                        quorum
                            .voters
                            .iter()
                            .map(|v| v.id.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    println!();
                    let mut table = Table::new(["NODE", "STATUS", "LOG-END-OFFSET", "LAG"]);
                    for v in &quorum.voters {
                        table.row([
                            v.id.to_string(),
                            if v.id == quorum.leader_id {
                                "Leader"
                            } else {
                                "Follower"
                            }
                            .to_string(),
                            v.log_end_offset.to_string(),
                            v.lag.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        ClusterCommand::ElectLeaders { topic, partition } => {
            let admin = connect(global).await?;
            let requested: Option<Vec<(String, i32)>> = match (&topic, partition.is_empty()) {
                (None, _) => None,
                (Some(t), false) => Some(partition.iter().map(|p| (t.clone(), *p)).collect()),
                (Some(t), true) => {
                    let described = super::topic::describe_one(&admin, t).await?;
                    Some(
                        described
                            .partitions
                            .iter()
                            .map(|p| (t.clone(), p.partition))
                            .collect(),
                    )
                }
            };
            let results = admin
                .elect_preferred_leaders(requested.as_deref())
                .await
                .map_err(to_anyhow)?;
            // Already led by the preferred replica is no failure.
            let not_needed = |e: &strom_client::Error| {
                matches!(e, strom_client::Error::Kafka { code, .. }
                    if *code == strom_protocol::kafka::ResponseError::ElectionNotNeeded)
            };
            let failed: Vec<_> = results
                .iter()
                .filter(|(_, r)| r.as_ref().is_err_and(|e| !not_needed(e)))
                .collect();
            match global.format {
                Format::Json => print_json(
                    &results
                        .iter()
                        .map(|((t, p), r)| {
                            json!({
                                "topic": t,
                                "partition": p,
                                "elected": r.is_ok(),
                                "error": r.as_ref().err().map(|e| e.to_string()),
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    let mut table = Table::new(["TOPIC", "PARTITION", "RESULT"]);
                    for ((t, p), r) in &results {
                        let outcome = match r {
                            Ok(()) => "elected preferred leader".to_string(),
                            Err(e) if not_needed(e) => {
                                "already led by its preferred replica".into()
                            }
                            Err(e) => e.to_string(),
                        };
                        table.row([t.clone(), p.to_string(), outcome]);
                    }
                    print!("{}", table.render());
                }
            }
            if !failed.is_empty() {
                anyhow::bail!(
                    "{} partition(s) could not be moved to their preferred leader",
                    failed.len()
                );
            }
        }
    }
    Ok(())
}
