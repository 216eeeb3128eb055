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
            send_on_schedule(epoch, rate, total, &wait_for_warm_up, |seq, payload| {
                send(&producer, &topic, None, &seq.to_string(), payload)
            })?;
            producer.flush(Duration::from_secs(60))?;
            check_failures(&producer)
        })
    };

    let mut received = Received::new(epoch, records, warmed_up);
    while received.count < total {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => received.record(message.payload().unwrap_or_default())?,
            Some(Err(e)) => return Err(e).context("consuming"),
            None => received.check_stall(total)?,
        }
    }
    received.finish(
        sender,
        "fixed rate; latency from scheduled send to consumer poll",
    )
}

/// Sends records `0..total` through `send` (sequence number, payload), each when it is due at `rate` per second,
/// its payload stamped with its sequence number and due time (nanoseconds since `epoch`). The measured records'
/// schedule starts once `warmed_up` says the consumer has every warm-up record.
fn send_on_schedule(
    epoch: Instant,
    rate: u32,
    total: u64,
    warmed_up: &std::sync::mpsc::Receiver<()>,
    mut send: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut start = Instant::now();
    let mut payload = vec![b'x'; RECORD_BYTES];
    for seq in 0..total {
        if seq == WARM_UP {
            warmed_up
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
        send(seq, &payload)?;
    }
    Ok(())
}

/// The consumer's side of a run: what has arrived and the latency of each measured record.
struct Received {
    epoch: Instant,
    records: usize,
    count: u64,
    latencies_us: Vec<u32>,
    last_record: Instant,
    measured_from: Option<Instant>,
    /// Told once every warm-up record is in, which starts the measured records' schedule.
    warmed_up: std::sync::mpsc::Sender<()>,
    progress: indicatif::ProgressBar,
}

impl Received {
    fn new(epoch: Instant, records: usize, warmed_up: std::sync::mpsc::Sender<()>) -> Self {
        Self {
            epoch,
            records,
            count: 0,
            latencies_us: Vec::with_capacity(records),
            last_record: Instant::now(),
            measured_from: None,
            warmed_up,
            progress: super::report::progress_bar(records as u64, "received"),
        }
    }

    /// A record's payload arrived now: its latency is from the due time it carries.
    fn record(&mut self, payload: &[u8]) -> Result<()> {
        let arrived = self.epoch.elapsed().as_nanos() as u64;
        if payload.len() < 16 {
            bail!("a record of {} bytes is not from this run", payload.len());
        }
        let seq = u64::from_be_bytes(payload[..8].try_into()?);
        let due = u64::from_be_bytes(payload[8..16].try_into()?);
        self.count += 1;
        self.last_record = Instant::now();
        if self.count == WARM_UP {
            let _ = self.warmed_up.send(());
        }
        if seq >= WARM_UP {
            self.measured_from.get_or_insert_with(Instant::now);
            let micros = arrived.saturating_sub(due) / 1000;
            self.latencies_us
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
            if self.latencies_us.len().is_multiple_of(1024) {
                self.progress.set_position(self.latencies_us.len() as u64);
            }
        }
        Ok(())
    }

    /// A poll brought nothing: an error once nothing has come for [`STALL`].
    fn check_stall(&self, total: u64) -> Result<()> {
        if self.last_record.elapsed() > STALL {
            bail!(
                "no record for {STALL:?} after receiving {} of {total}",
                self.count
            );
        }
        Ok(())
    }

    /// Every record is in: joins the sender and gives the run's figures.
    fn finish(
        mut self,
        sender: std::thread::JoinHandle<Result<()>>,
        note: &'static str,
    ) -> Result<Figures> {
        let elapsed = self.measured_from.map(|s| s.elapsed()).unwrap_or_default();
        self.progress.finish_and_clear();
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("the e2e producer thread panicked"))??;
        let records = self.records;
        if self.latencies_us.len() != records {
            bail!(
                "received {} of {records} measured records",
                self.latencies_us.len()
            );
        }
        let mut figures = Figures::new(records, (records * RECORD_BYTES) as u64, elapsed);
        figures.latency_ms = Latency::from_micros(&mut self.latencies_us);
        figures.note = Some(note);
        Ok(figures)
    }
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
            let mut deliveries = Vec::with_capacity(total as usize);
            send_on_schedule(epoch, rate, total, &wait_for_warm_up, |seq, payload| {
                let record = ProducerRecord::new(topic.clone())
                    .key(seq.to_string())
                    .value(payload.to_vec());
                deliveries.push(handle.block_on(producer.send(record))?);
                Ok(())
            })?;
            handle.block_on(async {
                for delivery in deliveries {
                    delivery.await?;
                }
                anyhow::Ok(())
            })
        })
    };

    let mut received = Received::new(epoch, records, warmed_up);
    while received.count < total {
        let batch = consumer_runtime
            .block_on(consumer.poll(Duration::from_millis(100)))
            .context("consuming")?;
        if batch.is_empty() {
            received.check_stall(total)?;
        }
        for record in batch {
            received.record(record.value.as_deref().unwrap_or_default())?;
        }
    }
    let figures = received.finish(
        sender,
        "fixed rate; latency from scheduled send to consumer poll (strom-client)",
    );
    producer_runtime.block_on(producer.close());
    figures
}
