//! `strom topic`: create, list, describe, delete topics, add partitions, change configs.
//!
//! Table output is for people; `--format json` prints one JSON document whose keys are stable:
//! - `create`: `{"topic", "partitions", "replication_factor", "topic_id", "validate_only"}`
//! - `list`: `[{"topic", "partitions", "replication_factor", "internal", "topic_id"}]`
//! - `describe`: `{"topic", "topic_id", "internal", "partitions": [{"partition", "leader", "leader_epoch",
//!   "high_watermark", "last_stable_offset", "replicas", "isr", "under_replicated"}], "configs": [{"name",
//!   "value", "source"}]}` (configs that are not built-in defaults; offsets null when the leader cannot say)
//! - `delete`: `[{"topic", "deleted", "error"}]` (`error` is null or the message)
//! - `add-partitions`: `{"topic", "partitions"}`
//! - `alter-config`: `{"topic", "set": {key: value}, "deleted": [key]}`
//! - `reassign`: `[{"topic", "partition", "accepted", "error"}]`
//! - `reassignments`: `[{"topic", "partition", "replicas", "adding", "removing"}]` (in progress only)
//!
//! Any failure exits 1 with `error: ...` on stderr naming the topic and the Kafka error in words.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::json;
use strom_client::admin::{AlterConfigOp, ConfigResource, NewTopic};

use super::cluster::connect;
use crate::kafka_errors::{explain, to_anyhow};
use crate::output::{ids, or_dash, print_json, Format, Table};
use crate::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short, long, allow_negative_numbers = true)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short, long, allow_negative_numbers = true)]
        replication_factor: Option<i16>,
        /// A topic config, key=value (repeatable), e.g. -c retention.ms=86400000.
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Check the request (name, partitions, configs) without creating the topic.
        #[arg(long)]
        validate_only: bool,
    },
    /// List topics.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, ISR, under-replicated ones marked) and the configs that are
    /// not defaults.
    Describe {
        name: String,
        /// Only partitions whose ISR is smaller than their replica list.
        #[arg(long)]
        under_replicated: bool,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Raise a topic's partition count to a new total (partitions are never removed).
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
    /// Set or remove topic config overrides.
    AlterConfig {
        name: String,
        /// Set an override, key=value (repeatable).
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove an override so the broker's value applies again (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Move partitions to other brokers, as `kafka-reassign-partitions.sh --execute`: the new replicas copy the
    /// leader's log and join the ISR before the replicas that leave are dropped (leadership moves off a leaving
    /// leader). `--cancel` goes back to the replicas from before.
    Reassign {
        name: String,
        /// The partitions to move (repeatable; default: every partition of the topic).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
        /// The target brokers, the preferred leader first, e.g. --replicas 2,3,4.
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "cancel",
            conflicts_with = "cancel"
        )]
        replicas: Vec<i32>,
        /// Cancel the reassignment in progress instead.
        #[arg(long)]
        cancel: bool,
        /// Wait until the reassignment has completed (the new replicas are in sync and the old ones gone).
        #[arg(long)]
        wait: bool,
    },
    /// The partition reassignments in progress (of one topic, or of all).
    Reassignments { name: Option<String> },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub async fn run(global: &GlobalArgs, command: TopicCommand) -> Result<()> {
    let admin = connect(global).await?;
    let format = global.format;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
            validate_only,
        } => {
            let mut topic = NewTopic::new(&name)
                .partitions(partitions.unwrap_or(-1))
                .replication_factor(replication_factor.unwrap_or(-1));
            topic.configs = config;
            let result = admin
                .create_topics(&[topic], validate_only)
                .await
                .map_err(to_anyhow)?
                .remove(0);
            let created = result.result.map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(&json!({
                    "topic": name,
                    "partitions": created.partitions,
                    "replication_factor": created.replication_factor,
                    "topic_id": created.topic_id,
                    "validate_only": validate_only,
                }))?,
                Format::Table if validate_only => println!(
                    "Topic {name} is valid: {} partition(s), replication factor {} (not created: --validate-only).",
                    created.partitions, created.replication_factor
                ),
                Format::Table => println!(
                    "Created topic {name}: {} partition(s), replication factor {}.",
                    created.partitions, created.replication_factor
                ),
            }
        }
        TopicCommand::List { internal } => {
            let topics = admin.list_topics(internal).await.map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(
                    &topics
                        .iter()
                        .map(|t| {
                            json!({
                                "topic": t.name,
                                "partitions": t.partitions,
                                "replication_factor": t.replication_factor,
                                "internal": t.internal,
                                "topic_id": t.topic_id,
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    let mut table = Table::new(["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
                    for t in &topics {
                        table.row([
                            t.name.clone(),
                            t.partitions.to_string(),
                            t.replication_factor.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        TopicCommand::Describe {
            name,
            under_replicated,
        } => {
            let described = describe_one(&admin, &name).await?;
            let offsets = partition_offsets(&admin, &described).await;
            let offsets_of = |p: i32| offsets.get(&p).copied().unwrap_or((None, None));
            let configs: Vec<_> = described
                .configs
                .iter()
                .filter(|c| !c.is_default())
                .collect();
            match format {
                Format::Json => print_json(&json!({
                    "topic": described.name,
                    "topic_id": described.topic_id,
                    "internal": described.internal,
                    "partitions": described.partitions.iter()
                        .filter(|p| !under_replicated || p.isr.len() < p.replicas.len())
                        .map(|p| json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "high_watermark": offsets_of(p.partition).0,
                        "last_stable_offset": offsets_of(p.partition).1,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "under_replicated": p.isr.len() < p.replicas.len(),
                    })).collect::<Vec<_>>(),
                    "configs": configs.iter().map(|c| json!({
                        "name": c.name,
                        "value": c.value,
                        "source": c.source.as_str(),
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    println!(
                        "Topic: {}  ID: {}  Partitions: {}  Replication factor: {}{}",
                        described.name,
                        described.topic_id.as_deref().unwrap_or("-"),
                        described.partitions.len(),
                        described.partitions.first().map_or(0, |p| p.replicas.len()),
                        if described.internal {
                            "  (internal)"
                        } else {
                            ""
                        }
                    );
                    println!();
                    let mut table = Table::new([
                        "PARTITION",
                        "LEADER",
                        "EPOCH",
                        "HIGH-WATERMARK",
                        "LAST-STABLE-OFFSET",
                        "REPLICAS",
                        "ISR",
                        "STATE",
                    ]);
                    for p in &described.partitions {
                        let under = p.isr.len() < p.replicas.len();
                        if under_replicated && !under {
                            continue;
                        }
                        let leader = if p.leader < 0 {
                            "none".to_string()
                        } else {
                            p.leader.to_string()
                        };
                        let state = if p.leader < 0 {
                            "offline"
                        } else if under {
                            "under-replicated"
                        } else {
                            "in sync"
                        };
                        let (hw, lso) = offsets_of(p.partition);
                        table.row([
                            p.partition.to_string(),
                            leader,
                            p.leader_epoch.to_string(),
                            or_dash(hw),
                            or_dash(lso),
                            ids(&p.replicas),
                            ids(&p.isr),
                            state.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                    if !configs.is_empty() {
                        println!();
                        let mut table = Table::new(["CONFIG", "VALUE", "SOURCE"]);
                        for c in &configs {
                            let value = if c.sensitive {
                                "(sensitive)"
                            } else {
                                c.value.as_deref().unwrap_or("")
                            };
                            table.row([c.name.as_str(), value, c.source.as_str()]);
                        }
                        print!("{}", table.render());
                    }
                }
            }
        }
        TopicCommand::Delete { names } => {
            let results = admin.delete_topics(&names).await.map_err(to_anyhow)?;
            let failures: Vec<String> = results
                .iter()
                .filter_map(|r| r.result.as_ref().err().map(explain))
                .collect();
            match format {
                Format::Json => print_json(
                    &results
                        .iter()
                        .map(|r| {
                            json!({
                                "topic": r.topic,
                                "deleted": r.result.is_ok(),
                                "error": r.result.as_ref().err().map(explain),
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    for r in results.iter().filter(|r| r.result.is_ok()) {
                        println!("Deleted topic {}.", r.topic);
                    }
                }
            }
            if !failures.is_empty() {
                bail!("{}", failures.join("\nerror: "));
            }
        }
        TopicCommand::AddPartitions { name, count } => {
            admin
                .create_partitions(&[(name.clone(), count)], false)
                .await
                .map_err(to_anyhow)?
                .remove(0)
                .result
                .map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(&json!({"topic": name, "partitions": count}))?,
                Format::Table => println!("Topic {name} now has {count} partition(s)."),
            }
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
            }
            let changes: Vec<AlterConfigOp> = set
                .iter()
                .map(|(k, v)| AlterConfigOp::Set(k.clone(), v.clone()))
                .chain(delete.iter().map(|k| AlterConfigOp::Delete(k.clone())))
                .collect();
            admin
                .alter_configs(&ConfigResource::Topic(name.clone()), &changes, false)
                .await
                .map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(&json!({
                    "topic": name,
                    "set": set.iter().cloned().collect::<BTreeMap<_, _>>(),
                    "deleted": delete,
                }))?,
                Format::Table => {
                    println!("Updated the configs of topic {name}.");
                    for (k, v) in &set {
                        println!("  set {k}={v}");
                    }
                    for k in &delete {
                        println!("  deleted {k}");
                    }
                }
            }
        }
        TopicCommand::Reassign {
            name,
            partitions,
            replicas,
            cancel,
            wait,
        } => {
            let partitions = if partitions.is_empty() {
                let described = describe_one(&admin, &name).await?;
                described.partitions.iter().map(|p| p.partition).collect()
            } else {
                partitions
            };
            let target = (!cancel).then_some(replicas);
            let requested: Vec<(String, i32, Option<Vec<i32>>)> = partitions
                .iter()
                .map(|p| (name.clone(), *p, target.clone()))
                .collect();
            let results = admin
                .alter_partition_reassignments(&requested, true)
                .await
                .map_err(to_anyhow)?;
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            match format {
                Format::Json => print_json(
                    &results
                        .iter()
                        .map(|((t, p), r)| {
                            json!({
                                "topic": t,
                                "partition": p,
                                "accepted": r.is_ok(),
                                "error": r.as_ref().err().map(explain),
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    let mut table = Table::new(["TOPIC", "PARTITION", "RESULT"]);
                    for ((t, p), r) in &results {
                        let outcome = match (r, &target) {
                            (Ok(()), Some(to)) => format!("moving to {}", ids(to)),
                            (Ok(()), None) => "cancelled".to_string(),
                            (Err(e), _) => explain(e),
                        };
                        table.row([t.clone(), p.to_string(), outcome]);
                    }
                    print!("{}", table.render());
                }
            }
            if failed > 0 {
                bail!("{failed} partition(s) of {name} could not be reassigned");
            }
            if wait {
                wait_reassigned(&admin, &name).await?;
                if format == Format::Table {
                    println!("Reassignment of {name} completed.");
                }
            }
        }
        TopicCommand::Reassignments { name } => {
            let names = name.map(|n| vec![n]);
            let ongoing = admin
                .list_partition_reassignments(names.as_deref())
                .await
                .map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(
                    &ongoing
                        .iter()
                        .map(|r| {
                            json!({
                                "topic": r.topic,
                                "partition": r.partition,
                                "replicas": r.replicas,
                                "adding": r.adding,
                                "removing": r.removing,
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table if ongoing.is_empty() => {
                    println!("No partition reassignment in progress.")
                }
                Format::Table => {
                    let mut table =
                        Table::new(["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
                    for r in &ongoing {
                        table.row([
                            r.topic.clone(),
                            r.partition.to_string(),
                            ids(&r.replicas),
                            ids(&r.adding),
                            ids(&r.removing),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
    }
    Ok(())
}

/// One topic's description, or the error that names it.
pub(crate) async fn describe_one(
    admin: &strom_client::admin::Admin,
    name: &str,
) -> Result<strom_client::admin::TopicDescription> {
    admin
        .describe_topics(&[name.to_string()])
        .await
        .map_err(to_anyhow)?
        .remove(0)
        .result
        .map_err(to_anyhow)
}

/// Each partition's high watermark and last stable offset (ListOffsets latest at read_uncommitted and at
/// read_committed), from its leader. What cannot be read (no leader, a leader that is down) is None: the
/// description shows it as unknown rather than failing.
async fn partition_offsets(
    admin: &strom_client::admin::Admin,
    described: &strom_client::admin::TopicDescription,
) -> BTreeMap<i32, (Option<i64>, Option<i64>)> {
    use strom_client::admin::OffsetSpec;
    let partitions: Vec<(String, i32)> = described
        .partitions
        .iter()
        .map(|p| (described.name.clone(), p.partition))
        .collect();
    let read = |spec| {
        let partitions = &partitions;
        async move {
            admin
                .list_offsets(partitions, spec)
                .await
                .map(|rs| {
                    rs.into_iter()
                        .filter_map(|r| Some((r.partition, r.result.ok()?.offset?)))
                        .collect::<BTreeMap<i32, i64>>()
                })
                .unwrap_or_default()
        }
    };
    // The last stable offset first: read after it, the high watermark can only be higher, so the two never
    // show an LSO above the HW.
    let stable = read(OffsetSpec::LastStable).await;
    let high_watermarks = read(OffsetSpec::Latest).await;
    partitions
        .iter()
        .map(|(_, p)| {
            (
                *p,
                (high_watermarks.get(p).copied(), stable.get(p).copied()),
            )
        })
        .collect()
}

/// Polls until `topic` has no reassignment in progress (the new replicas copy the whole log first, which takes
/// as long as the data takes; there is no deadline, interrupt to stop waiting: the reassignment goes on).
async fn wait_reassigned(admin: &strom_client::admin::Admin, topic: &str) -> Result<()> {
    let names = [topic.to_string()];
    loop {
        let ongoing = admin
            .list_partition_reassignments(Some(&names))
            .await
            .map_err(to_anyhow)?;
        if ongoing.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
