//! `strom group`: list, describe and delete consumer groups; reset their offsets.
//!
//! Table output is for people; `--format json` prints one JSON document whose keys are stable:
//! - `list`: `[{"group", "state", "type", "protocol_type"}]` (`type` is "classic", "consumer", or null when the
//!   broker's ListGroups version does not report it)
//! - `describe`: `{"group", "state", "type", "protocol_type", "protocol", "members": [{"member_id",
//!   "instance_id", "client_id", "host", "assignment": [{"topic", "partitions"}]}], "offsets": [{"topic",
//!   "partition", "current_offset", "log_end_offset", "lag", "member_id"}]}` (unknown numbers are null)
//! - `delete`: `[{"group", "deleted", "error"}]`
//! - `reset-offsets`: `{"group", "executed", "partitions": [{"topic", "partition", "current_offset",
//!   "new_offset"}]}`
//!
//! `reset-offsets` is a dry run that prints the plan unless `--execute` is given, as Kafka's
//! `kafka-consumer-groups.sh`; executing needs a group without active members.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use strom_client::admin::{GroupDescription, ResetSpec, TopicSelection};

use super::cluster::connect;
use crate::kafka_errors::{explain, to_anyhow};
use crate::output::{or_dash, print_json, Format, Table};
use crate::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups.
    List,
    /// Show a group's state, members and, per partition, committed offset, log end offset and lag.
    Describe { group: String },
    /// Delete groups (with their committed offsets). Groups with active members cannot be deleted.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets. Prints the plan; commits it only with --execute.
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
pub struct ResetArgs {
    pub group: String,
    /// TOPIC or TOPIC:P1,P2,... (repeatable).
    #[arg(long = "topic", required = true, value_parser = parse_topic_selection)]
    pub topics: Vec<TopicSelection>,
    #[command(flatten)]
    pub to: ResetTarget,
    /// Commit the new offsets (without it, only print the plan).
    #[arg(long)]
    pub execute: bool,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (kept within the log's range).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record at or after this time, RFC 3339 (UTC when no zone), e.g. 2024-05-01T12:00:00Z.
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// Move the committed offset by N (negative: back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
}

impl ResetTarget {
    fn spec(&self) -> ResetSpec {
        if self.to_earliest {
            ResetSpec::ToEarliest
        } else if self.to_latest {
            ResetSpec::ToLatest
        } else if let Some(o) = self.to_offset {
            ResetSpec::ToOffset(o)
        } else if let Some(ts) = self.to_datetime {
            ResetSpec::ToTimestamp(ts)
        } else {
            // clap's group requires exactly one of the flags.
            ResetSpec::ShiftBy(self.shift_by.unwrap_or(0))
        }
    }
}

fn parse_topic_selection(s: &str) -> Result<TopicSelection, String> {
    let (topic, partitions) = match s.split_once(':') {
        None => (s, None),
        Some((t, ps)) => {
            let parsed: Result<Vec<i32>, _> =
                ps.split(',').map(|p| p.trim().parse::<i32>()).collect();
            match parsed {
                Ok(list) if !list.is_empty() => (t, Some(list)),
                _ => return Err(format!("expected TOPIC or TOPIC:P1,P2,..., got {s:?}")),
            }
        }
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P1,P2,..., got {s:?}"));
    }
    Ok(TopicSelection {
        topic: topic.to_string(),
        partitions,
    })
}

/// RFC 3339 to milliseconds since the epoch.
fn parse_datetime(s: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e} (expected e.g. 2024-05-01T12:00:00Z)"))?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "time before 1970".to_string())?;
    i64::try_from(since_epoch.as_millis()).map_err(|_| "time too far in the future".to_string())
}

pub async fn run(global: &GlobalArgs, command: GroupCommand) -> Result<()> {
    let admin = connect(global).await?;
    let format = global.format;
    match command {
        GroupCommand::List => {
            let groups = admin.list_groups().await.map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(
                    &groups
                        .iter()
                        .map(|g| {
                            json!({
                                "group": g.group_id,
                                "state": g.state,
                                "type": (!g.group_type.is_empty()).then_some(&g.group_type),
                                "protocol_type": g.protocol_type,
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    let mut table = Table::new(["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"]);
                    for g in &groups {
                        table.row([
                            g.group_id.as_str(),
                            dash(&g.state),
                            dash(&g.group_type),
                            dash(&g.protocol_type),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        GroupCommand::Describe { group } => describe(&admin, &group, format).await?,
        GroupCommand::Delete { groups } => {
            let results = admin.delete_groups(&groups).await.map_err(to_anyhow)?;
            let failures: Vec<String> = results
                .iter()
                .filter_map(|(_, r)| r.as_ref().err().map(explain))
                .collect();
            match format {
                Format::Json => print_json(
                    &results
                        .iter()
                        .map(|(g, r)| json!({"group": g, "deleted": r.is_ok(), "error": r.as_ref().err().map(explain)}))
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    for (g, _) in results.iter().filter(|(_, r)| r.is_ok()) {
                        println!("Deleted group {g}.");
                    }
                }
            }
            if !failures.is_empty() {
                bail!("{}", failures.join("\nerror: "));
            }
        }
        GroupCommand::ResetOffsets(args) => {
            let plan = admin
                .reset_group_offsets(&args.group, &args.topics, args.to.spec(), args.execute)
                .await
                .map_err(to_anyhow)?;
            match format {
                Format::Json => print_json(&json!({
                    "group": args.group,
                    "executed": args.execute,
                    "partitions": plan.iter().map(|e| json!({
                        "topic": e.topic,
                        "partition": e.partition,
                        "current_offset": e.current,
                        "new_offset": e.new,
                    })).collect::<Vec<_>>(),
                }))?,
                Format::Table => {
                    let mut table = Table::new([
                        "GROUP",
                        "TOPIC",
                        "PARTITION",
                        "CURRENT-OFFSET",
                        "NEW-OFFSET",
                    ]);
                    for e in &plan {
                        table.row([
                            args.group.clone(),
                            e.topic.clone(),
                            e.partition.to_string(),
                            or_dash(e.current),
                            e.new.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                    if !args.execute {
                        // stderr, so the table on stdout stays parseable.
                        eprintln!(
                            "Dry run: nothing was changed. Add --execute to commit these offsets."
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `group describe`: the group, its members, and one line per partition it owns or has committed, as
/// `kafka-consumer-groups --describe` shows them.
async fn describe(admin: &strom_client::admin::Admin, group: &str, format: Format) -> Result<()> {
    let description = admin.describe_group(group).await.map_err(to_anyhow)?;
    // Partitions assigned to a member (committed or not) plus partitions with a commit but no owner.
    let mut owner: BTreeMap<(String, i32), &str> = BTreeMap::new();
    for m in &description.members {
        for t in &m.assignment {
            for p in &t.partitions {
                owner.insert((t.topic.clone(), *p), m.member_id.as_str());
            }
        }
    }
    let mut offsets = admin.list_group_offsets(group).await.map_err(to_anyhow)?;
    let uncommitted: Vec<(String, i32)> = owner
        .keys()
        .filter(|k| !offsets.iter().any(|o| o.topic == k.0 && o.partition == k.1))
        .cloned()
        .collect();
    if !uncommitted.is_empty() {
        offsets.extend(
            admin
                .group_offsets_for(group, &uncommitted)
                .await
                .map_err(to_anyhow)?,
        );
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    }
    if description.state == "Dead" && description.members.is_empty() && offsets.is_empty() {
        return Err(anyhow!("group '{group}' does not exist"));
    }
    let owner_of =
        |topic: &str, partition: i32| owner.get(&(topic.to_string(), partition)).copied();
    match format {
        Format::Json => print_json(&json!({
            "group": description.group_id,
            "state": description.state,
            "type": description.group_type.as_str(),
            "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": description.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": m.assignment.iter().map(|t| json!({
                    "topic": t.topic,
                    "partitions": t.partitions,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "offsets": offsets.iter().map(|o| json!({
                "topic": o.topic,
                "partition": o.partition,
                "current_offset": o.committed,
                "log_end_offset": o.log_end_offset,
                "lag": o.lag,
                "member_id": owner_of(&o.topic, o.partition),
            })).collect::<Vec<_>>(),
        }))?,
        Format::Table => print_description(&description, &offsets, owner_of),
    }
    Ok(())
}

fn print_description<'a>(
    d: &'a GroupDescription,
    offsets: &[strom_client::admin::GroupOffset],
    owner_of: impl Fn(&str, i32) -> Option<&'a str>,
) {
    println!(
        "Group: {}  State: {}  Type: {}  Protocol: {}  Members: {}",
        d.group_id,
        d.state,
        d.group_type.as_str(),
        dash(&d.protocol),
        d.members.len()
    );
    println!();
    let member = |id: &str| d.members.iter().find(|m| m.member_id == id);
    let mut table = Table::new([
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for o in offsets {
        let m = owner_of(&o.topic, o.partition).and_then(member);
        table.row([
            o.topic.clone(),
            o.partition.to_string(),
            or_dash(o.committed),
            or_dash(o.log_end_offset),
            or_dash(o.lag),
            m.map_or("-".into(), |m| m.member_id.clone()),
            m.map_or("-".into(), |m| m.client_host.clone()),
            m.map_or("-".into(), |m| m.client_id.clone()),
        ]);
    }
    if table.is_empty() {
        println!("No partition is assigned to the group or has a committed offset.");
    } else {
        print!("{}", table.render());
    }
    if !d.members.is_empty() {
        println!();
        let mut table = Table::new(["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for m in &d.members {
            let assignment = m
                .assignment
                .iter()
                .map(|t| {
                    let ps: Vec<String> = t.partitions.iter().map(i32::to_string).collect();
                    format!("{}:{}", t.topic, ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ");
            table.row([
                m.member_id.as_str(),
                &m.client_id,
                &m.client_host,
                dash(&assignment),
            ]);
        }
        print!("{}", table.render());
    }
}
