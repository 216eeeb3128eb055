//! Consume: librdkafka in assign mode reads a topic's records back from the start of every partition.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::figures::Figures;
use super::produce::client_config;
use super::PARTITIONS;

/// How long the consumer may go without a record before the run is declared stuck.
const STALL: Duration = Duration::from_secs(30);

pub fn run(bootstrap: &str, topic: &str, records: usize) -> Result<Figures> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "strom-bench-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    // The topic also holds the produce run's warm-up records (one per partition); those count as read but not
    // toward `records`.
    let progress = super::report::progress_bar(records as u64, "read");
    let mut read = 0usize;
    let mut bytes = 0u64;
    // The clock starts at the first record, so connecting and the first metadata round trip are not counted.
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
    figures.note = Some("just written, so read from the page cache");
    Ok(figures)
}
