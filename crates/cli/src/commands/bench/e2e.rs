//! End-to-end latency: a producer sends at a fixed rate (linger 0, acks=1) while a consumer reads the same
//! partitions; each record carries the time it was due to be sent, and its latency is the time from then until
//! the consumer has it. Measuring from the *scheduled* send time means a stalled producer shows up as latency
//! instead of hiding in a lower rate (no coordinated omission). Both are librdkafka's, or both Strom's Rust client
//! ([`Client`]): the same broker under the two clients tells which side a tail comes from.

use std::sync::Arc;
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

/// The client library both ends of a run use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Librdkafka,
    /// `strom-client`: the producer's tasks on a runtime of their own, sent to from a thread that keeps the
    /// schedule, and the consumer polled on the measuring thread.
    Strom,
}

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u32,
    records: usize,
    client: Client,
) -> Result<Figures> {
    create_topic(bootstrap, topic, partitions)?;
    if client == Client::Strom {
        return run_strom(bootstrap, topic, partitions, rate, records);
    }
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
    let (warmed_up, wait_for_warm_up) = std::sync::mpsc::channel::<()>();
    let sender = {
        let topic = topic.to_string();
        std::thread::spawn(move || -> Result<()> {
            let mut schedule = Schedule::new(epoch, rate);
            let mut payload = vec![b'x'; RECORD_BYTES];
            for seq in 0..total {
                if seq == WARM_UP {
                    wait_for_warm_up
                        .recv()
                        .context("the consumer stopped during warm-up")?;
                    schedule.start = Instant::now();
                }
                payload[..16].copy_from_slice(&schedule.wait_for(seq));
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
                let latency = latency_of(message.payload().unwrap_or_default(), arrived)?;
                received += 1;
                last_record = Instant::now();
                if received == WARM_UP {
                    let _ = warmed_up.send(());
                }
                if let Some(micros) = latency {
                    measured_from.get_or_insert_with(Instant::now);
                    latencies_us.push(micros);
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

/// The schedule of one run: when record `seq` is due. The measured records' schedule starts (`start` is reset)
/// once the consumer has every warm-up record.
struct Schedule {
    epoch: Instant,
    interval: Duration,
    start: Instant,
}

impl Schedule {
    fn new(epoch: Instant, rate: u32) -> Self {
        Self {
            epoch,
            interval: Duration::from_secs_f64(1.0 / f64::from(rate.max(1))),
            start: Instant::now(),
        }
    }

    /// Sleeps until `seq` is due and returns the record's stamp: sequence number and due time.
    fn wait_for(&self, seq: u64) -> [u8; 16] {
        let due = self.start + self.interval.mul_f64(seq.saturating_sub(WARM_UP) as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let due_nanos = due.duration_since(self.epoch).as_nanos() as u64;
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&seq.to_be_bytes());
        stamp[8..].copy_from_slice(&due_nanos.to_be_bytes());
        stamp
    }
}

/// Latency of one received record (`None` for a warm-up record): microseconds from due to `arrived_nanos`.
fn latency_of(payload: &[u8], arrived_nanos: u64) -> Result<Option<u32>> {
    if payload.len() < 16 {
        bail!("a record of {} bytes is not from this run", payload.len());
    }
    let seq = u64::from_be_bytes(payload[..8].try_into()?);
    let due = u64::from_be_bytes(payload[8..16].try_into()?);
    let micros = arrived_nanos.saturating_sub(due) / 1000;
    Ok((seq >= WARM_UP).then(|| u32::try_from(micros).unwrap_or(u32::MAX)))
}

fn run_strom(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u32,
    records: usize,
) -> Result<Figures> {
    use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
    use strom_client::{Acks, Producer, ProducerConfig, ProducerRecord};

    let producer_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the producer's runtime")?;
    let consumer_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the consumer's runtime")?;
    let mut producer_config = ProducerConfig::new(bootstrap);
    producer_config.acks = Acks::Leader;
    producer_config.linger = Duration::ZERO;
    let producer = Arc::new(
        producer_runtime
            .block_on(Producer::new(producer_config))
            .context("creating the producer")?,
    );
    let mut consumer_config = ConsumerConfig::new(bootstrap);
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    consumer_config.fetch_min_bytes = 1;
    consumer_config.fetch_max_wait = Duration::from_millis(500);
    let mut consumer = consumer_runtime
        .block_on(Consumer::new(consumer_config))
        .context("creating the consumer")?;
    // A new topic with no group: reading from the earliest offset reads exactly what this run sends.
    consumer_runtime
        .block_on(consumer.assign((0..partitions).map(|p| TopicPartition::new(topic, p))))
        .context("assigning the partitions")?;

    let epoch = Instant::now();
    let total = WARM_UP + records as u64;
    let (warmed_up, wait_for_warm_up) = std::sync::mpsc::channel::<()>();
    let sender = {
        let producer = producer.clone();
        let handle = producer_runtime.handle().clone();
        let topic: Arc<str> = Arc::from(topic);
        std::thread::spawn(move || -> Result<()> {
            let mut schedule = Schedule::new(epoch, rate);
            let mut payload = vec![b'x'; RECORD_BYTES];
            let mut deliveries = Vec::with_capacity(total as usize);
            for seq in 0..total {
                if seq == WARM_UP {
                    wait_for_warm_up
                        .recv()
                        .context("the consumer stopped during warm-up")?;
                    schedule.start = Instant::now();
                }
                payload[..16].copy_from_slice(&schedule.wait_for(seq));
                let record = ProducerRecord::new(topic.clone())
                    .key(seq.to_string())
                    .value(payload.clone());
                deliveries.push(handle.block_on(producer.send(record))?);
            }
            handle.block_on(async {
                for delivery in deliveries {
                    delivery.await?;
                }
                anyhow::Ok(())
            })
        })
    };

    let progress = super::report::progress_bar(records as u64, "received");
    let mut latencies_us: Vec<u32> = Vec::with_capacity(records);
    let mut received = 0u64;
    let mut last_record = Instant::now();
    let mut measured_from = None;
    while received < total {
        let batch = consumer_runtime
            .block_on(consumer.poll(Duration::from_millis(100)))
            .context("consuming")?;
        let arrived = epoch.elapsed().as_nanos() as u64;
        if batch.is_empty() && last_record.elapsed() > STALL {
            bail!("no record for {STALL:?} after receiving {received} of {total}");
        }
        for record in batch {
            let latency = latency_of(record.value.as_deref().unwrap_or_default(), arrived)?;
            received += 1;
            last_record = Instant::now();
            if received == WARM_UP {
                let _ = warmed_up.send(());
            }
            if let Some(micros) = latency {
                measured_from.get_or_insert_with(Instant::now);
                latencies_us.push(micros);
                if latencies_us.len().is_multiple_of(1024) {
                    progress.set_position(latencies_us.len() as u64);
                }
            }
        }
    }
    let elapsed = measured_from.map(|s| s.elapsed()).unwrap_or_default();
    progress.finish_and_clear();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the e2e producer thread panicked"))??;
    producer_runtime.block_on(producer.close());
    if latencies_us.len() != records {
        bail!(
            "received {} of {records} measured records",
            latencies_us.len()
        );
    }
    let mut figures = Figures::new(records, (records * RECORD_BYTES) as u64, elapsed);
    figures.latency_ms = Latency::from_micros(&mut latencies_us);
    figures.note = Some("fixed rate; latency from scheduled send to consumer poll (strom-client)");
    Ok(figures)
}
