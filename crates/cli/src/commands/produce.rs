//! `strom produce TOPIC`: one record per input line, from stdin or `--file`.
//!
//! Every record is sent without waiting for the previous one (the producer batches them); results are
//! collected as they arrive so memory stays bounded by `buffer.memory`, not by the input size.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use strom_client::{Cluster, ClusterConfig, Producer, ProducerConfig, ProducerRecord};

use crate::output::Format;
use crate::GlobalArgs;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Read records from this file instead of stdin (one record per line).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Split each line into key and value at the first SEP (a line without SEP is an error).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Add a header to every record; repeatable: --header source=web --header v=2.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition.
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Distribution strategy for records without --partition.
    #[arg(long, value_enum, default_value_t = PartitionerArg::Default)]
    partitioner: PartitionerArg,
    /// Compression codec for record batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Acknowledgements to wait for: 0 (none), 1 (leader), all (every in-sync replica; fsynced on Strom).
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all"])]
    acks: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PartitionerArg {
    /// murmur2 of the key (same partition as the Java client), sticky for records without a key.
    Default,
    /// murmur2 of the key; records without a key are spread at random.
    Murmur2,
    /// Fill a batch on one partition, then move on.
    Sticky,
    /// One partition after the other.
    RoundRobin,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Parses `--header k=v` values.
fn parse_headers(raw: &[String]) -> Result<Vec<(String, Option<Bytes>)>> {
    raw.iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Some(Bytes::from(v.to_string())))),
            _ => bail!("--header expects KEY=VALUE with a non-empty key, got {h:?}"),
        })
        .collect()
}

/// Opens the input and tells its size when it is a regular file (for the progress bar).
fn open_input(file: &Option<PathBuf>) -> Result<(Box<dyn Read>, Option<u64>)> {
    match file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            Ok((Box::new(f), size))
        }
        None => {
            #[cfg(unix)]
            let size = {
                use std::os::fd::AsFd;
                std::io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .ok()
                    .map(std::fs::File::from)
                    .and_then(|f| f.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
            };
            #[cfg(not(unix))]
            let size = None;
            Ok((Box::new(std::io::stdin()), size))
        }
    }
}

/// A client error in words: Kafka error codes explained.
pub fn explain(e: &strom_client::Error) -> String {
    match e.kafka_code() {
        Some(code) => match e {
            strom_client::Error::Kafka { context, .. } => {
                format!("{context}: {}", crate::kafka_errors::describe(code.code()))
            }
            _ => e.to_string(),
        },
        None => e.to_string(),
    }
}

pub async fn run(global: &GlobalArgs, args: ProduceArgs) -> Result<()> {
    let headers = parse_headers(&args.headers)?;
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let mut config = ProducerConfig::new(&global.brokers);
    let set = |config: &mut ProducerConfig, k: &str, v: &str| -> Result<()> {
        config
            .set(k, v)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    set(&mut config, "acks", &args.acks)?;
    set(
        &mut config,
        "compression.type",
        match args.compression {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        },
    )?;
    set(
        &mut config,
        "partitioner",
        match args.partitioner {
            PartitionerArg::Default => "default",
            PartitionerArg::Murmur2 => "murmur2",
            PartitionerArg::Sticky => "sticky",
            PartitionerArg::RoundRobin => "round_robin",
        },
    )?;
    set(&mut config, "client.id", "strom-cli")?;
    // Fail fast on a topic that does not exist instead of waiting max.block.ms for it to appear.
    set(&mut config, "max.block.ms", "10000")?;

    let cluster = Cluster::connect(ClusterConfig::new(&global.brokers))
        .await
        .map_err(|e| anyhow::anyhow!("{}", explain(&e)))?;
    let topic = match cluster.topic_or_fetch(&args.topic).await {
        Ok(t) => t,
        Err(e) if e.kafka_code().map(|c| c.code()) == Some(3) => bail!(
            "topic {:?} does not exist ({}); create it with `strom topic create {}`",
            args.topic,
            crate::kafka_errors::describe(3),
            args.topic
        ),
        Err(e) if e.is_retriable() => cluster
            .wait_for_topic(&args.topic, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("{}", explain(&e)))?,
        Err(e) => bail!("{}", explain(&e)),
    };
    if let Some(p) = args.partition {
        if p < 0 || p as usize >= topic.partition_count() {
            bail!(
                "topic {:?} has no partition {p} (it has {})",
                args.topic,
                topic.partition_count()
            );
        }
    }
    let producer = Producer::with_cluster(config, cluster);

    let (input, size) = open_input(&args.file)?;
    let progress = match size {
        Some(n) if n >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    };
    let mut reader = BufReader::new(input);
    let mut pending = FuturesUnordered::new();
    let mut summary = Summary::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .context("cannot read input")?;
        if read == 0 {
            break;
        }
        number += 1;
        progress.inc(read as u64);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let mut record = ProducerRecord::new(&args.topic);
        record.headers = headers.clone();
        match &args.key_separator {
            Some(sep) => {
                let Some(at) = find(text, sep.as_bytes()) else {
                    bail!("line {number} has no key separator {sep:?}");
                };
                record.key = Some(Bytes::copy_from_slice(&text[..at]));
                record.value = Some(Bytes::copy_from_slice(&text[at + sep.len()..]));
            }
            None => record.value = Some(Bytes::copy_from_slice(text)),
        }
        record.partition = args.partition;
        let bytes =
            record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len);
        let delivery = producer.send(record).await.map_err(|e| {
            anyhow::anyhow!("record on line {number} not accepted: {}", explain(&e))
        })?;
        pending.push(delivery.map(move |r| (r, bytes)));
        // Collect whatever finished meanwhile, so results do not pile up for a large input.
        while let Some(Some(done)) = pending.next().now_or_never() {
            summary.add(done)?;
        }
    }
    producer.flush().await;
    while let Some(done) = pending.next().await {
        summary.add(done)?;
    }
    producer.close().await;
    progress.finish_and_clear();
    summary.print(&args.topic, global.format);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct Summary {
    records: u64,
    bytes: u64,
    partitions: BTreeMap<i32, u64>,
}

impl Summary {
    fn add(
        &mut self,
        (result, bytes): (
            Result<strom_client::RecordMetadata, strom_client::Error>,
            usize,
        ),
    ) -> Result<()> {
        let meta = result.map_err(|e| anyhow::anyhow!("delivery failed: {}", explain(&e)))?;
        self.records += 1;
        self.bytes += bytes as u64;
        *self.partitions.entry(meta.partition).or_default() += 1;
        Ok(())
    }

    fn print(&self, topic: &str, format: Format) {
        match format {
            Format::Json => println!(
                "{}",
                serde_json::json!({
                    "topic": topic,
                    "records": self.records,
                    "bytes": self.bytes,
                    "partitions": self.partitions.iter().map(|(p, n)| (p.to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
                })
            ),
            Format::Table => {
                let partitions: Vec<String> = self
                    .partitions
                    .iter()
                    .map(|(p, n)| format!("{p} ({n})"))
                    .collect();
                println!(
                    "produced {} records ({} bytes) to {topic}; partitions: {}",
                    self.records,
                    self.bytes,
                    if partitions.is_empty() {
                        "none".to_string()
                    } else {
                        partitions.join(", ")
                    }
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_a_key_and_an_equals_sign() {
        let h = parse_headers(&["a=1".into(), "b=".into(), "c=x=y".into()]).unwrap();
        assert_eq!(h[0], ("a".into(), Some(Bytes::from("1"))));
        assert_eq!(h[1], ("b".into(), Some(Bytes::new())));
        assert_eq!(h[2], ("c".into(), Some(Bytes::from("x=y"))));
        assert!(parse_headers(&["nokey".into()]).is_err());
        assert!(parse_headers(&["=v".into()]).is_err());
    }

    #[test]
    fn separator_splits_at_the_first_occurrence() {
        assert_eq!(find(b"k::v::w", b"::"), Some(1));
        assert_eq!(find(b"kv", b"::"), None);
    }
}
