//! `strom consume TOPIC`: print records from the end (default), the beginning, an offset, a timestamp or a
//! relative time; alone (every partition assigned) or in a group (committing what was printed).
//!
//! In a group, offsets are committed for exactly the records printed: with `-n` a poll may return more records
//! than are printed, and those must be read again by the next consumer of the group.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use strom_client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};

use super::produce::explain;
use crate::output::Format;
use crate::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at the oldest record (in a group: where the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "from_time", "since"])]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, value_name = "N", requires = "partition", conflicts_with_all = ["from_time", "since"])]
    offset: Option<i64>,
    /// Start at the first record at or after this time, e.g. 2024-05-01T12:00:00Z.
    #[arg(long, value_name = "RFC3339", conflicts_with = "since")]
    from_time: Option<String>,
    /// Start this long ago, e.g. -1h, 30m, "-2h 15m".
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    since: Option<String>,
    /// Exit after this many records.
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// Consume as a member of this group, committing the offsets of printed records.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["offset", "from_time", "since"])]
    group: Option<String>,
    /// Read only this partition.
    #[arg(long, value_name = "P")]
    partition: Option<i32>,
    /// Print the key before the value, separated by a tab.
    #[arg(long)]
    print_key: bool,
    /// Print each record through a template with {topic} {partition} {offset} {timestamp} {key} {value}
    /// {headers}, e.g. "{partition}:{offset} {key}={value}".
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "print_key")]
    template: Option<String>,
    /// Exit when no record arrives for this long (for scripts).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

/// Where to start reading when not in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    End,
    Beginning,
    Offset(i64),
    Timestamp(i64),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `-1h`, `1h` and `1h 30m` all mean "one hour (and a half) ago".
fn parse_since(raw: &str, now: i64) -> Result<i64> {
    let trimmed = raw.trim();
    let text = trimmed.strip_prefix('-').unwrap_or(trimmed);
    let d = humantime::parse_duration(text).map_err(|e| {
        anyhow::anyhow!("--since {raw:?} is not a duration like -1h, 30m or \"1h 30m\": {e}")
    })?;
    Ok(now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(now))
}

fn parse_time(raw: &str) -> Result<i64> {
    let t = humantime::parse_rfc3339_weak(raw.trim()).map_err(|e| {
        anyhow::anyhow!(
            "--from-time {raw:?} is not an RFC 3339 time like 2024-05-01T12:00:00Z: {e}"
        )
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

fn start_of(args: &ConsumeArgs) -> Result<Start> {
    Ok(if args.from_beginning {
        Start::Beginning
    } else if let Some(o) = args.offset {
        if o < 0 {
            bail!("--offset must be at least 0, got {o}");
        }
        Start::Offset(o)
    } else if let Some(t) = &args.from_time {
        Start::Timestamp(parse_time(t)?)
    } else if let Some(s) = &args.since {
        Start::Timestamp(parse_since(s, now_ms())?)
    } else {
        Start::End
    })
}

fn text(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn headers_json(r: &ConsumerRecord) -> serde_json::Value {
    serde_json::Value::Object(
        r.headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    text(v).map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect(),
    )
}

fn render(r: &ConsumerRecord, args: &ConsumeArgs, format: Format) -> String {
    if format == Format::Json {
        // Written field by field to keep the documented order (serde_json's map would sort the keys).
        let j = |v: serde_json::Value| v.to_string();
        return format!(
            "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{},\"headers\":{}}}",
            j((*r.topic).into()),
            r.partition,
            r.offset,
            r.timestamp,
            j(text(&r.key).into()),
            j(text(&r.value).into()),
            j(headers_json(r)),
        );
    }
    let key = text(&r.key).unwrap_or_default();
    let value = text(&r.value).unwrap_or_default();
    if let Some(t) = &args.template {
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v).unwrap_or_default()))
            .collect();
        return fill(
            t,
            &[
                ("topic", r.topic.to_string()),
                ("partition", r.partition.to_string()),
                ("offset", r.offset.to_string()),
                ("timestamp", r.timestamp.to_string()),
                ("key", key),
                ("value", value),
                ("headers", headers.join(",")),
            ],
        );
    }
    if args.print_key {
        format!("{key}\t{value}")
    } else {
        value
    }
}

/// Replaces each `{name}` in one pass, so a value containing `{key}` is printed as is.
fn fill(template: &str, fields: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let field = after.find('}').and_then(|close| {
            fields
                .iter()
                .find(|(n, _)| *n == &after[..close])
                .map(|f| (close, f))
        });
        match field {
            Some((close, (_, value))) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn validate_template(t: &str) -> Result<()> {
    const NAMES: [&str; 7] = [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
    ];
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !NAMES.contains(&name) {
            bail!(
                "--template has unknown field {{{name}}}; known: {}",
                NAMES.map(|n| format!("{{{n}}}")).join(" ")
            );
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

pub async fn run(global: &GlobalArgs, args: ConsumeArgs) -> Result<()> {
    let start = start_of(&args)?;
    if let Some(t) = &args.template {
        validate_template(t)?;
    }
    let client_error = |e: strom_client::Error| anyhow::anyhow!("{}", explain(&e));
    let mut config = ConsumerConfig::new(&global.brokers);
    config.client_id = "strom-cli".into();
    // Reading a topic should never create it.
    config.allow_auto_create_topics = false;
    config.group_id = args.group.clone();
    config.enable_auto_commit = false;
    config.fetch_max_wait = Duration::from_millis(200);
    if args.from_beginning {
        config.auto_offset_reset = strom_client::consumer::OffsetReset::Earliest;
    }
    let mut consumer = Consumer::new(config).await.map_err(client_error)?;
    let topic = match consumer.cluster().topic_or_fetch(&args.topic).await {
        Ok(t) => t,
        Err(e) if e.kafka_code().map(|c| c.code()) == Some(3) => bail!(
            "topic {:?} does not exist ({})",
            args.topic,
            crate::kafka_errors::describe(3)
        ),
        Err(e) => return Err(client_error(e)),
    };
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(p) if p < 0 || p as usize >= topic.partition_count() => bail!(
            "topic {:?} has no partition {p} (it has {})",
            args.topic,
            topic.partition_count()
        ),
        Some(p) => vec![TopicPartition::new(&args.topic, p)],
        None => (0..topic.partition_count() as i32)
            .map(|p| TopicPartition::new(&args.topic, p))
            .collect(),
    };
    if args.group.is_some() && args.partition.is_none() {
        consumer.subscribe(&[&args.topic]).map_err(client_error)?;
    } else {
        consumer
            .assign(partitions.clone())
            .await
            .map_err(client_error)?;
        if args.group.is_none() {
            match start {
                Start::End => consumer.seek_to_end(&[]).await,
                Start::Beginning => consumer.seek_to_beginning(&[]).await,
                Start::Offset(o) => consumer.seek(&partitions[0], o),
                Start::Timestamp(ts) => consumer.seek_to_timestamp(&[], ts).await,
            }
            .map_err(client_error)?;
        }
    }

    let progress = match args.count {
        Some(n) if std::io::stderr().is_terminal() && global.format != Format::Json => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec}")
                    .expect("valid template"),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    };
    let idle = args.timeout_ms.map(Duration::from_millis);
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let mut to_commit: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut last_record = tokio::time::Instant::now();
    let mut interrupted = false;
    let outcome: Result<()> = async {
        loop {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            let wait = match idle {
                Some(idle) => {
                    let left = idle.saturating_sub(last_record.elapsed());
                    if left.is_zero() {
                        if let Some(n) = args.count {
                            bail!(
                                "timed out: no record for {} ms after {printed} of {n} records",
                                idle.as_millis()
                            );
                        }
                        break;
                    }
                    left.min(Duration::from_secs(1))
                }
                None => Duration::from_secs(1),
            };
            let records = tokio::select! {
                r = consumer.poll(wait) => r.map_err(client_error)?,
                _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
            };
            if records.is_empty() {
                continue;
            }
            last_record = tokio::time::Instant::now();
            let mut out = stdout.lock();
            for r in &records {
                if args.count.is_some_and(|n| printed >= n) {
                    // Not printed: the group's next reader starts here.
                    to_commit
                        .entry(TopicPartition::new(&*r.topic, r.partition))
                        .or_insert(r.offset);
                    continue;
                }
                let line = render(r, &args, global.format);
                if let Err(e) = writeln!(out, "{line}") {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e.into());
                }
                printed += 1;
                progress.inc(1);
                to_commit.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
            }
            if let Err(e) = out.flush() {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
            drop(out);
            if args.group.is_some() && !to_commit.is_empty() {
                let offsets = std::mem::take(&mut to_commit);
                if let Err(e) = consumer.commit_offsets_sync(&offsets).await {
                    // A rebalance took the partition away: the new owner reads on from the last good commit.
                    tracing::warn!(error = %explain(&e), "commit failed");
                }
            }
        }
        Ok(())
    }
    .await;
    progress.finish_and_clear();
    let closed = consumer.close().await;
    outcome?;
    closed.map_err(client_error)?;
    if interrupted {
        eprintln!("interrupted after {printed} records");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_negative_and_compound_durations() {
        let now = 10_000_000;
        assert_eq!(parse_since("-1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_since("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_since("-1h 30m", now).unwrap(), now - 5_400_000);
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn from_time_is_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_time("May 1st").is_err());
    }

    #[test]
    fn template_fills_known_fields_once() {
        let t = "{partition}:{offset} {key}={value} {unknown";
        let out = fill(
            t,
            &[
                ("partition", "2".into()),
                ("offset", "7".into()),
                ("key", "k".into()),
                ("value", "{key}".into()),
            ],
        );
        assert_eq!(out, "2:7 k={key} {unknown");
        assert!(validate_template("{partition} {nope}").is_err());
        assert!(validate_template("{partition}:{offset} {key}={value}").is_ok());
    }
}
