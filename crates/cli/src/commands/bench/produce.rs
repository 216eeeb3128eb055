//! Produce scenarios: librdkafka sends `records` records as fast as its queue takes them; each record's latency
//! is the time from `send` to its delivery report.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::figures::{Figures, Latency};

#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub record_bytes: usize,
    pub acks: &'static str,
    /// The client's send queue (`queue.buffering.max.kbytes`): what may be in flight, and so the bound on how long
    /// a record waits in the client before it is even sent.
    pub queue_kbytes: usize,
}

impl Load {
    pub const ONE_K: Load = Load {
        record_bytes: 1024,
        acks: "1",
        queue_kbytes: 1 << 20,
    };
    pub const HUNDRED_B: Load = Load {
        record_bytes: 100,
        acks: "1",
        queue_kbytes: 1 << 20,
    };
    /// Enough in flight to keep every partition's fsync group busy, little enough that the ack latency is the
    /// broker's rather than the client queue's.
    pub const DURABLE: Load = Load {
        record_bytes: 1024,
        acks: "all",
        queue_kbytes: 4 << 10,
    };
}

/// Collects delivery reports on librdkafka's polling thread.
#[derive(Default)]
pub struct Deliveries {
    latencies_us: Mutex<Vec<u32>>,
    failures: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        let micros = u32::try_from(sent_at.elapsed().as_micros()).unwrap_or(u32::MAX);
        match result {
            Ok(_) => self.latencies_us.lock().unwrap().push(micros),
            Err((e, _)) => self.failures.lock().unwrap().push(e.to_string()),
        }
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    config
}

/// Creates `topic` with `partitions` partitions, so an external broker's auto-create default does not decide, and
/// the broker's `default.replication.factor` (replication factor -1, KIP-464): a cluster started with
/// `--set default.replication.factor=3` is benched with replicated topics.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics([&new], &options))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Deletes a topic a run is done with.
pub fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.delete_topics(&[topic], &options))? {
        if let Err((name, code)) = result {
            bail!("deleting topic {name}: {code}");
        }
    }
    Ok(())
}

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    load: Load,
    records: usize,
) -> Result<Figures> {
    create_topic(bootstrap, topic, partitions)?;
    send_all(bootstrap, topic, partitions, load, records)
}

/// Sends `records` records to an existing topic and waits for every acknowledgement.
pub fn send_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    load: Load,
    records: usize,
) -> Result<Figures> {
    send_payloads(
        bootstrap,
        topic,
        partitions,
        load,
        records,
        &[vec![b'x'; load.record_bytes]],
    )
}

/// produce-1k's load (acks=1, 6 partitions, sent uncompressed) into a topic created with `compression.type` =
/// `codec` (None: the default, `producer`), with [`text_payloads`] as values: the broker's cost of rewriting
/// every batch into the topic's codec.
pub fn run_recompressed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    codec: Option<&str>,
    records: usize,
) -> Result<Figures> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    if let Some(codec) = codec {
        new = new.set("compression.type", codec);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics([&new], &options))? {
        if let Err((name, code)) = result {
            bail!("creating topic {name}: {code}");
        }
    }
    let load = Load::ONE_K;
    let payloads = text_payloads(load.record_bytes);
    send_payloads(bootstrap, topic, partitions, load, records, &payloads)
}

/// 4,096 distinct values of `bytes` bytes of JSON-like text with pseudo-random ids and numbers, which the codecs
/// shrink about as much as they shrink real event payloads (2-4x), unlike the `x` repeated of the other cases.
pub fn text_payloads(bytes: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: [&str; 8] = [
        "click",
        "view",
        "purchase",
        "search",
        "login",
        "logout",
        "add_to_cart",
        "share",
    ];
    (0..4096)
        .map(|_| {
            let mut text = String::with_capacity(bytes + 64);
            while text.len() < bytes {
                let r = next();
                text.push_str(&format!(
                    "{{\"user\":\"u{:08x}\",\"event\":\"{}\",\"ts\":{},\"amount\":{}.{:02}}},",
                    r as u32,
                    WORDS[(r >> 32) as usize % WORDS.len()],
                    1_700_000_000_000u64 + (r >> 40),
                    (r >> 20) % 10_000,
                    (r >> 8) % 100
                ));
            }
            text.truncate(bytes);
            text.into_bytes()
        })
        .collect()
}

/// Sends `records` records, values taken in turn from `payloads`, and waits for every acknowledgement.
fn send_payloads(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    load: Load,
    records: usize,
    payloads: &[Vec<u8>],
) -> Result<Figures> {
    let producer = producer(bootstrap, load)?;
    let payload = &payloads[0];
    // Enough distinct keys that the Java-compatible key hash spreads records over every partition.
    let keys: Vec<String> = (0..(4 * partitions as usize).max(1024))
        .map(|k| k.to_string())
        .collect();

    // Warm-up: metadata and connections to every partition leader, outside the measurement.
    for p in 0..partitions {
        send(&producer, topic, Some(p), &keys[0], payload)?;
    }
    producer.flush(Duration::from_secs(60))?;
    check_failures(&producer)?;
    producer.context().latencies_us.lock().unwrap().clear();

    let progress = super::report::progress_bar(records as u64, "sent");
    let start = Instant::now();
    for i in 0..records {
        let payload = &payloads[i % payloads.len()];
        send(&producer, topic, None, &keys[i % keys.len()], payload)?;
        if i.is_multiple_of(4096) {
            progress.set_position(i as u64);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("waiting for delivery reports")?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    check_failures(&producer)?;

    let mut latencies = std::mem::take(&mut *producer.context().latencies_us.lock().unwrap());
    if latencies.len() != records {
        bail!("{} of {records} records acknowledged", latencies.len());
    }
    let mut figures = Figures::new(records, (records * load.record_bytes) as u64, elapsed);
    figures.latency_ms = Latency::from_micros(&mut latencies);
    Ok(figures)
}

/// The produce scenarios' `batch.size`: batches are cut by `linger.ms` rather than by size.
pub const BATCH_SIZE: &str = "1000000";

/// The produce scenarios' librdkafka producer for `load`.
pub fn producer(bootstrap: &str, load: Load) -> Result<ThreadedProducer<Deliveries>> {
    producer_config(bootstrap, load)
        .create_with_context(Deliveries::default())
        .context("creating the producer")
}

/// The produce scenarios' librdkafka settings for `load`.
fn producer_config(bootstrap: &str, load: Load) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("acks", load.acks)
        .set("linger.ms", "5")
        .set("batch.size", BATCH_SIZE)
        .set("queue.buffering.max.kbytes", load.queue_kbytes.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none");
    config
}

/// How many records the broker has acknowledged so far.
pub fn acknowledged(producer: &ThreadedProducer<Deliveries>) -> usize {
    producer.context().latencies_us.lock().unwrap().len()
}

/// Sends one record, waiting for room while librdkafka's queue is full.
pub fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: &[u8],
) -> Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
        .key(key)
        .payload(payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The client's queue is full: wait for deliveries to make room. A record's latency counts from
                // when the queue takes it, so time spent blocked here is not counted twice.
                std::thread::sleep(Duration::from_micros(200));
                record = back;
                record.delivery_opaque = Box::new(Instant::now());
            }
            Err((e, _)) => return Err(e).context("sending a record"),
        }
    }
}

/// librdkafka's `rd_kafka_flush` with a timeout, as its `rd_kafka_commit_transaction` calls it: `linger.ms` counts
/// as elapsed for as long as the call waits (rdkafka's `flush` calls it with a zero timeout, which lifts linger
/// only for that instant, and then polls in 100 ms steps), and with delivery reports taken as events by the
/// producer's own thread the call just waits for the last one.
#[allow(unsafe_code)]
fn flush_immediately(producer: &ThreadedProducer<Deliveries>, timeout: Duration) -> Result<()> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live producer's handle (borrowed from `producer` for the whole call), and
    // rd_kafka_flush is thread-safe.
    let error =
        unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    if error != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        bail!("records of a transaction still unacknowledged after {timeout:?}: {error:?}");
    }
    Ok(())
}

/// Fails if any delivery report was an error.
pub fn check_failures(producer: &ThreadedProducer<Deliveries>) -> Result<()> {
    let failures = producer.context().failures.lock().unwrap();
    if let Some(first) = failures.first() {
        bail!("{} records failed, first: {first}", failures.len());
    }
    Ok(())
}

/// produce-durable's load from `producers` transactional producers (each its own `transactional.id` and thread,
/// like the stream threads of an exactly-once application): `records` records between them in transactions of
/// `per_transaction`, each producer committing one before it begins the next (a transactional producer cannot
/// pipeline transactions). The latency is each record's delivery report (acknowledged inside its transaction);
/// the rate counts the commits, which wait for the markers on every partition.
pub fn run_transactional(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: usize,
    per_transaction: usize,
    producers: usize,
) -> Result<Figures> {
    create_topic(bootstrap, topic, partitions)?;
    let load = Load::DURABLE;
    let timeout = Duration::from_secs(60);
    let payload = vec![b'x'; load.record_bytes];
    let keys: Vec<String> = (0..(4 * partitions as usize).max(1024))
        .map(|k| k.to_string())
        .collect();
    let progress = super::report::progress_bar(records as u64, "sent");
    // Every producer warms up (coordinator, metadata, every partition, in one transaction) before the clock starts.
    let warmed_up = std::sync::Barrier::new(producers + 1);
    let (elapsed, mut latencies) = std::thread::scope(|scope| -> Result<_> {
        let workers: Vec<_> = (0..producers)
            .map(|i| {
                let share = records / producers + usize::from(i < records % producers);
                let (keys, payload, progress, warmed_up) = (&keys, &payload, &progress, &warmed_up);
                scope.spawn(move || -> Result<Vec<u32>> {
                    let producer = transactional_producer(
                        bootstrap, topic, i, partitions, keys, payload, timeout,
                    );
                    warmed_up.wait();
                    let producer = producer?;
                    let mut sent = 0;
                    while sent < share {
                        producer.begin_transaction().context("begin_transaction")?;
                        let end = (sent + per_transaction).min(share);
                        for j in sent..end {
                            send(
                                &producer,
                                topic,
                                None,
                                &keys[(i + j * producers) % keys.len()],
                                payload,
                            )?;
                        }
                        // commit_transaction flushes first, but rdkafka's flush polls in steps of 100 ms while
                        // this producer's own polling thread takes the delivery reports, so a flush with records
                        // in flight would cost 100 ms however fast the broker answered: flush the way librdkafka's
                        // own commit does instead.
                        flush_immediately(&producer, timeout)?;
                        producer
                            .commit_transaction(timeout)
                            .context("commit_transaction")?;
                        progress.inc((end - sent) as u64);
                        sent = end;
                    }
                    check_failures(&producer)?;
                    let latencies =
                        std::mem::take(&mut *producer.context().latencies_us.lock().unwrap());
                    Ok(latencies)
                })
            })
            .collect();
        warmed_up.wait();
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(records);
        for worker in workers {
            latencies.extend(worker.join().expect("a producer thread panicked")?);
        }
        Ok((start.elapsed(), latencies))
    })?;
    progress.finish_and_clear();
    if latencies.len() != records {
        bail!("{} of {records} records acknowledged", latencies.len());
    }
    let mut figures = Figures::new(records, (records * load.record_bytes) as u64, elapsed);
    figures.latency_ms = Latency::from_micros(&mut latencies);
    figures.note = Some(if producers == 1 {
        "transactions of 1,000 records, each committed before the next"
    } else {
        "transactions of 1,000 records from several producers at once, each committing one before the next"
    });
    Ok(figures)
}

/// Transactional producer number `index` of the scenario, initialised and warmed up: one committed transaction with
/// a record to every partition, so the coordinator, metadata and partitions are all known before the clock starts.
fn transactional_producer(
    bootstrap: &str,
    topic: &str,
    index: usize,
    partitions: i32,
    keys: &[String],
    payload: &[u8],
    timeout: Duration,
) -> Result<ThreadedProducer<Deliveries>> {
    let producer: ThreadedProducer<Deliveries> = producer_config(bootstrap, Load::DURABLE)
        .set("transactional.id", format!("{topic}-tx-{index}"))
        .create_with_context(Deliveries::default())
        .context("creating the transactional producer")?;
    producer
        .init_transactions(timeout)
        .context("init_transactions")?;
    producer.begin_transaction().context("begin_transaction")?;
    for p in 0..partitions {
        send(&producer, topic, Some(p), &keys[0], payload)?;
    }
    producer
        .commit_transaction(timeout)
        .context("commit_transaction")?;
    check_failures(&producer)?;
    producer.context().latencies_us.lock().unwrap().clear();
    Ok(producer)
}
