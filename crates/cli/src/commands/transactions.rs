//! `strom transactions`: the transactions the brokers coordinate, one transactional id's state, and the producers
//! with state on a topic's partitions (Kafka's `kafka-transactions.sh list|describe|describe-producers`).
//!
//! Table output is for people; `--format json` prints one JSON document whose keys are stable:
//! - `list`: `[{"transactional_id", "coordinator", "producer_id", "state"}]`
//! - `describe`: `[{"transactional_id", "coordinator", "state", "producer_id", "producer_epoch", "timeout_ms",
//!   "start_time_ms", "partitions": [{"topic", "partitions"}]}]`, an id that failed as
//!   `{"transactional_id", "error"}` (`start_time_ms` is null before the id's first transaction)
//! - `producers`: `[{"topic", "partition", "producer_id", "producer_epoch", "last_sequence", "last_timestamp",
//!   "coordinator_epoch", "current_txn_start_offset"}]` (unknown values are null)
//!
//! Any failure exits 1 with `error: ...` on stderr; `describe` and `producers` print what they found first.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::json;
use strom_client::admin::{Admin, TransactionDescription, TransactionFilter};

use super::cluster::connect;
use super::topic::describe_one;
use crate::kafka_errors::{explain, to_anyhow};
use crate::output::{or_dash, print_json, Format, Table};
use crate::GlobalArgs;

/// Kafka's transaction states, as `--state` takes them.
const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "PrepareEpochFence",
];

#[derive(clap::Subcommand, Debug)]
pub enum TransactionsCommand {
    /// List the transactional ids the brokers coordinate, with their producer id and state.
    List {
        /// Only transactions in this state (repeatable): Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort, PrepareEpochFence.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only transactions of this producer id (repeatable).
        #[arg(long = "producer-id", value_name = "ID")]
        producer_ids: Vec<i64>,
        /// Only transactions running for longer than this many milliseconds.
        #[arg(long, value_name = "MS")]
        duration_filter: Option<i64>,
        /// Only transactional ids this regular expression matches whole (as kafka-transactions.sh).
        #[arg(long, value_name = "REGEX")]
        transactional_id_pattern: Option<String>,
    },
    /// Show transactional ids' state, producer id and epoch, timeout, start time and partitions.
    Describe {
        #[arg(required = true, value_name = "TRANSACTIONAL_ID")]
        ids: Vec<String>,
    },
    /// Show the producers with state on a topic's partitions: epoch, last sequence and timestamp, coordinator
    /// epoch and the first offset of the transaction each has open.
    Producers {
        topic: String,
        /// Only this partition (repeatable; default every partition).
        #[arg(long = "partition", value_name = "P")]
        partitions: Vec<i32>,
    },
}

pub async fn run(global: &GlobalArgs, command: TransactionsCommand) -> Result<()> {
    let admin = connect(global).await?;
    match command {
        TransactionsCommand::List {
            states,
            producer_ids,
            duration_filter,
            transactional_id_pattern,
        } => {
            if let Some(unknown) = states.iter().find(|s| !STATES.contains(&s.as_str())) {
                bail!(
                    "unknown transaction state '{unknown}' (Kafka's states: {})",
                    STATES.join(", ")
                );
            }
            let filter = TransactionFilter {
                states,
                producer_ids,
                running_longer_than_ms: duration_filter,
                transactional_id_pattern,
            };
            list(&admin, &filter, global.format).await
        }
        TransactionsCommand::Describe { ids } => describe(&admin, &ids, global.format).await,
        TransactionsCommand::Producers { topic, partitions } => {
            producers(&admin, &topic, partitions, global.format).await
        }
    }
}

async fn list(admin: &Admin, filter: &TransactionFilter, format: Format) -> Result<()> {
    let listed = admin.list_transactions(filter).await.map_err(to_anyhow)?;
    if !listed.unknown_states.is_empty() {
        bail!(
            "the brokers do not know the transaction state(s) {}",
            listed.unknown_states.join(", ")
        );
    }
    match format {
        Format::Json => print_json(
            &listed
                .transactions
                .iter()
                .map(|t| {
                    json!({
                        "transactional_id": t.transactional_id,
                        "coordinator": t.coordinator,
                        "producer_id": t.producer_id,
                        "state": t.state,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            let mut table = Table::new(["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]);
            for t in &listed.transactions {
                table.row([
                    t.transactional_id.clone(),
                    t.coordinator.to_string(),
                    t.producer_id.to_string(),
                    t.state.clone(),
                ]);
            }
            if table.is_empty() {
                println!("No transaction matches.");
            } else {
                print!("{}", table.render());
            }
            Ok(())
        }
    }
}

async fn describe(admin: &Admin, ids: &[String], format: Format) -> Result<()> {
    let results = admin.describe_transactions(ids).await.map_err(to_anyhow)?;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(explain))
        .collect();
    match format {
        Format::Json => print_json(
            &results
                .iter()
                .map(|(id, r)| match r {
                    Ok(d) => json!({
                        "transactional_id": d.transactional_id,
                        "coordinator": d.coordinator,
                        "state": d.state,
                        "producer_id": d.producer_id,
                        "producer_epoch": d.producer_epoch,
                        "timeout_ms": d.timeout_ms,
                        "start_time_ms": d.start_time_ms,
                        "partitions": d.partitions.iter().map(|t| json!({
                            "topic": t.topic,
                            "partitions": t.partitions,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(e) => json!({"transactional_id": id, "error": explain(e)}),
                })
                .collect::<Vec<_>>(),
        )?,
        Format::Table => {
            let found: Vec<&TransactionDescription> = results
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .collect();
            if !found.is_empty() {
                print!("{}", description_table(&found, now_ms()).render());
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\nerror: "));
    }
    Ok(())
}

/// `describe`'s table, as `kafka-transactions.sh describe` shows a transaction: the duration is how long the
/// transaction has been running, for one that is still open.
fn description_table(found: &[&TransactionDescription], now_ms: i64) -> Table {
    let mut table = Table::new([
        "TRANSACTIONAL-ID",
        "COORDINATOR",
        "PRODUCER-ID",
        "EPOCH",
        "STATE",
        "TIMEOUT-MS",
        "START-TIME",
        "DURATION-MS",
        "PARTITIONS",
    ]);
    for d in found {
        let open = matches!(
            d.state.as_str(),
            "Ongoing" | "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence"
        );
        let duration = d.start_time_ms.filter(|_| open).map(|s| now_ms - s);
        let partitions = d
            .partitions
            .iter()
            .map(|t| {
                let ps: Vec<String> = t.partitions.iter().map(i32::to_string).collect();
                format!("{}:{}", t.topic, ps.join(","))
            })
            .collect::<Vec<_>>()
            .join(" ");
        table.row([
            d.transactional_id.clone(),
            d.coordinator.to_string(),
            d.producer_id.to_string(),
            d.producer_epoch.to_string(),
            d.state.clone(),
            d.timeout_ms.to_string(),
            d.start_time_ms.map_or("-".to_string(), time),
            or_dash(duration),
            if partitions.is_empty() {
                "-".to_string()
            } else {
                partitions
            },
        ]);
    }
    table
}

async fn producers(
    admin: &Admin,
    topic: &str,
    mut partitions: Vec<i32>,
    format: Format,
) -> Result<()> {
    if partitions.is_empty() {
        partitions = describe_one(admin, topic)
            .await?
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
    }
    let wanted: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let results = admin.describe_producers(&wanted).await.map_err(to_anyhow)?;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(explain))
        .collect();
    let rows: Vec<_> = results
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|ps| (r, ps)))
        .flat_map(|(r, ps)| ps.iter().map(move |p| (r.topic.as_str(), r.partition, p)))
        .collect();
    match format {
        Format::Json => print_json(
            &rows
                .iter()
                .map(|(topic, partition, p)| {
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "producer_id": p.producer_id,
                        "producer_epoch": p.producer_epoch,
                        "last_sequence": p.last_sequence,
                        "last_timestamp": p.last_timestamp,
                        "coordinator_epoch": p.coordinator_epoch,
                        "current_txn_start_offset": p.current_txn_start_offset,
                    })
                })
                .collect::<Vec<_>>(),
        )?,
        Format::Table => {
            let mut table = Table::new([
                "TOPIC",
                "PARTITION",
                "PRODUCER-ID",
                "EPOCH",
                "LAST-SEQUENCE",
                "LAST-TIMESTAMP",
                "COORDINATOR-EPOCH",
                "TXN-START-OFFSET",
            ]);
            for (topic, partition, p) in &rows {
                table.row([
                    topic.to_string(),
                    partition.to_string(),
                    p.producer_id.to_string(),
                    p.producer_epoch.to_string(),
                    or_dash(p.last_sequence.map(i64::from)),
                    p.last_timestamp.map_or("-".to_string(), time),
                    or_dash(p.coordinator_epoch.map(i64::from)),
                    or_dash(p.current_txn_start_offset),
                ]);
            }
            if table.is_empty() {
                if failures.is_empty() {
                    println!("No producer has state on these partitions.");
                }
            } else {
                print!("{}", table.render());
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\nerror: "));
    }
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => "-".to_string(),
    }
}

fn now_ms() -> i64 {
    UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_client::admin::TopicPartitions;

    fn description(state: &str, start: Option<i64>) -> TransactionDescription {
        TransactionDescription {
            transactional_id: "tx".into(),
            coordinator: 1,
            state: state.into(),
            producer_id: 7,
            producer_epoch: 2,
            timeout_ms: 60_000,
            start_time_ms: start,
            partitions: vec![
                TopicPartitions {
                    topic: "a".into(),
                    partitions: vec![0, 2],
                },
                TopicPartitions {
                    topic: "b".into(),
                    partitions: vec![1],
                },
            ],
        }
    }

    #[test]
    fn an_open_transaction_shows_how_long_it_runs_a_complete_one_does_not() {
        let ongoing = description("Ongoing", Some(1_000));
        let complete = description("CompleteCommit", Some(1_000));
        let fresh = TransactionDescription {
            partitions: Vec::new(),
            ..description("Empty", None)
        };
        let table = description_table(&[&ongoing, &complete, &fresh], 3_500).render();
        let lines: Vec<&str> = table.lines().collect();
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "tx",
                "1",
                "7",
                "2",
                "Ongoing",
                "60000",
                "1970-01-01T00:00:01.000Z",
                "2500",
                "a:0,2",
                "b:1"
            ]
        );
        assert_eq!(cells(lines[2])[7], "-", "{table}");
        assert_eq!(cells(lines[3])[6..], ["-", "-", "-"], "{table}");
    }

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(time(-1), "-");
    }
}
