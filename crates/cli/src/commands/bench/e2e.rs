//! End-to-end latency: a librdkafka producer sends at a fixed rate (linger 0, acks=1) while a librdkafka consumer
//! reads the same partitions; each record carries the time it was due to be sent, and its latency is the time from
//! then until the consumer has it. Measuring from the *scheduled* send time means a stalled producer shows up as
//! latency instead of hiding in a lower rate (no coordinated omission).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::figures::{Figures, Latency};
use super::produce::{check_failures, client_config, create_topic, send, Deliveries};

/// Bytes per record: the 16-byte stamp (sequence number, due time) and padding.
const RECORD_BYTES: usize = 100;
/// Records sent, and received, before the measured ones are scheduled: connections, metadata, the first fetches.
const WARM_UP: u64 = 100;
/// How long the consumer may go without a record before the run is declared stuck.
const STALL: Duration = Duration::from_secs(30);

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u32,
    records: usize,
) -> Result<Figures> {
    create_topic(bootstrap, topic, partitions)?;
    let producer: ThreadedProducer<Deliveries> = client_config(bootstrap)
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("socket.nagle.disable", "true")
        .set("compression.type", "none")
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("strom-bench-{topic}"))
        .set("enable.auto.commit", "false")
        .set("socket.nagle.disable", "true")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1")
        .create()
        .context("creating the consumer")?;
    // A new topic, so reading from the beginning reads exactly what this run sends.
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let epoch = Instant::now();
    let total = WARM_UP + records as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let (warmed_up, wait_for_warm_up) = std::sync::mpsc::channel::<()>();
    let sender = {
        let topic = topic.to_string();
        std::thread::spawn(move || -> Result<()> {
            let mut payload = vec![b'x'; RECORD_BYTES];
            let mut start = Instant::now();
            for seq in 0..total {
                if seq == WARM_UP {
                    // The schedule of the measured records starts once the consumer has every warm-up record.
                    wait_for_warm_up
                        .recv()
                        .context("the consumer stopped during warm-up")?;
                    start = Instant::now();
                }
                let due = start + interval.mul_f64(seq.saturating_sub(WARM_UP) as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let due_nanos = due.duration_since(epoch).as_nanos() as u64;
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                payload[8..16].copy_from_slice(&due_nanos.to_be_bytes());
                send(&producer, &topic, None, &seq.to_string(), &payload)?;
            }
            producer.flush(Duration::from_secs(60))?;
            check_failures(&producer)
        })
    };

    let progress = super::report::progress_bar(records as u64, "received");
    let mut latencies_us: Vec<u32> = Vec::with_capacity(records);
    let mut received = 0u64;
    let mut last_record = Instant::now();
    let mut measured_from = None;
    while received < total {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let arrived = epoch.elapsed().as_nanos() as u64;
                let payload = message.payload().unwrap_or_default();
                if payload.len() < 16 {
                    bail!("a record of {} bytes is not from this run", payload.len());
                }
                let seq = u64::from_be_bytes(payload[..8].try_into()?);
                let due = u64::from_be_bytes(payload[8..16].try_into()?);
                received += 1;
                last_record = Instant::now();
                if received == WARM_UP {
                    let _ = warmed_up.send(());
                }
                if seq >= WARM_UP {
                    measured_from.get_or_insert_with(Instant::now);
                    let micros = arrived.saturating_sub(due) / 1000;
                    latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    if latencies_us.len().is_multiple_of(1024) {
                        progress.set_position(latencies_us.len() as u64);
                    }
                }
            }
            Some(Err(e)) => return Err(e).context("consuming"),
            None if last_record.elapsed() > STALL => {
                bail!("no record for {STALL:?} after receiving {received} of {total}")
            }
            None => {}
        }
    }
    let elapsed = measured_from.map(|s| s.elapsed()).unwrap_or_default();
    progress.finish_and_clear();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the e2e producer thread panicked"))??;
    if latencies_us.len() != records {
        bail!(
            "received {} of {records} measured records",
            latencies_us.len()
        );
    }
    let mut figures = Figures::new(records, (records * RECORD_BYTES) as u64, elapsed);
    figures.latency_ms = Latency::from_micros(&mut latencies_us);
    figures.note = Some("fixed rate; latency from scheduled send to consumer poll");
    Ok(figures)
}
