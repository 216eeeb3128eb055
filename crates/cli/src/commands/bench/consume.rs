//! Consume: librdkafka reads a topic's records back from the start of every partition, either assigned the
//! partitions directly or as the one member of a new consumer group (which adds the group join, the assignment and
//! the committed-offset lookup to the path).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::figures::Figures;
use super::produce::client_config;

/// How long the consumer may go without a record before the run is declared stuck.
const STALL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Assign,
    Group,
}

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: usize,
    mode: Mode,
    from_disk: bool,
) -> Result<Figures> {
    let group = format!("strom-bench-{topic}-{}", std::process::id());
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .context("creating the consumer")?;
    match mode {
        Mode::Assign => {
            let mut assignment = TopicPartitionList::new();
            for p in 0..partitions {
                assignment.add_partition_offset(topic, p, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
        }
        Mode::Group => consumer.subscribe(&[topic])?,
    }

    // The topic also holds the produce run's warm-up records (one per partition); those count as read but not
    // toward `records`.
    let progress = super::report::progress_bar(records as u64, "read");
    let mut read = 0usize;
    let mut bytes = 0u64;
    // The clock starts at the first record, so connecting, the first metadata round trip and (in a group) the join
    // are not counted.
    let mut start = None;
    let mut last_record = Instant::now();
    while read < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                start.get_or_insert_with(Instant::now);
                read += 1;
                bytes += message.payload_len() as u64;
                last_record = Instant::now();
                if read.is_multiple_of(4096) {
                    progress.set_position(read as u64);
                }
            }
            Some(Err(e)) => return Err(e).context("consuming"),
            None if last_record.elapsed() > STALL => {
                bail!("no record for {STALL:?} after reading {read} of {records}")
            }
            None => {}
        }
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    progress.finish_and_clear();
    let mut figures = Figures::new(read, bytes, elapsed);
    figures.note = Some(if from_disk {
        "read from the disk: the segments were evicted from the page cache first"
    } else {
        "just written, so read from the page cache"
    });
    Ok(figures)
}
